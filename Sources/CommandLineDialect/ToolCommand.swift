import ArgumentParser
import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A pipeline tool's command: parsed and run by ``runAndExit(_:)``, which keeps the house's
/// exit codes and writes each diagnostic with one `write(2)`.
///
/// swift-argument-parser's own `main()` prints an error and its newline with two writes; on a
/// stderr shared by a pipeline's stages another stage's log line can land between them.
public protocol ToolCommand: ParsableCommand {}

extension ToolCommand {
    /// `gen`, `watch`, `validate`, `load`: the name in diagnostics and log lines.
    public static var toolName: String {
        configuration.commandName ?? String(describing: Self.self).lowercased()
    }

    /// The entry point `@main` calls: ``runAndExit(_:)`` with the process's arguments.
    public static func main() {
        runAndExit()
    }

    /// Parses `arguments` (the process's own when nil), runs the command and exits:
    /// 0 done (help and version on stdout), 64 a usage error, 1 a runtime failure with
    /// `load: Error: …` on stderr, 0 quietly when stdout was closed (EPIPE).
    public static func runAndExit(_ arguments: [String]? = nil) -> Never {
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            terminate(ExitStatus.success.rawValue)
        } catch is BrokenPipe {
            terminate(ExitStatus.success.rawValue)
        } catch {
            let code = exitCode(for: error).rawValue
            var text = fullMessage(for: error)
            if !text.isEmpty && !text.hasSuffix("\n") { text += "\n" }
            if text.isEmpty {
                // ExitCode thrown after the tool logged why.
            } else if code == ExitStatus.success.rawValue {
                writeWhole(1, text)
            } else {
                // The tool's name first: one log file holds every stage's stderr.
                writeWhole(2, "\(toolName): " + text)
            }
            terminate(code)
        }
    }
}

/// `text` with one `write(2)` (retried only for what a partial write left over).
func writeWhole(_ fd: Int32, _ text: String) {
    var copy = text
    copy.withUTF8 { buffer in
        _ = try? writeAll(fd, UnsafeRawBufferPointer(buffer))
    }
}

/// The C library's `exit`, which `ParsableArguments.exit(withError:)` hides inside the extension.
private func terminate(_ status: Int32) -> Never {
    exit(status)
}
