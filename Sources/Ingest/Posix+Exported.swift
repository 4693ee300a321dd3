// The system layer (SystemError, clocks, writeAll, …) is part of what every stage sees through
// `import Ingest`.
@_exported import Posix
