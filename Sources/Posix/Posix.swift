// The small system layer every target shares: clocks, sleeping, retrying with backoff, threads,
// whole writes, atomic publication, folders, trimming. One place each, so that a change such as
// "honour a stop while backing off" is made once (issue 24).
//
// Calls go through swift-system's `FileDescriptor` where it serves (a single `write(2)` retried
// on EINTR, errors as `Errno`); what swift-system does not offer (fsync of a folder, link(2)
// publication, pthreads) is written here against Glibc.
#if canImport(Glibc)
@_exported import Glibc
#elseif canImport(Darwin)
@_exported import Darwin
#endif
