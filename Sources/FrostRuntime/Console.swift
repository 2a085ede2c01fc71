import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// Writes straight to a file descriptor, unbuffered like Python's own stdio in the
/// loader, so Swift's and Python's output stay in order.
public func writeOut(_ text: String, to fd: Int32) {
    writeOut(Array(text.utf8), to: fd)
}

/// All of `bytes` to `fd` (retrying short writes and EINTR); stops at an error.
public func writeOut(_ bytes: [UInt8], to fd: Int32) {
    writeAll(bytes, to: fd)
}

/// A line on stdout.
public func printLine(_ text: String) { writeLine(text, to: 1) }
/// A line on stderr.
public func printError(_ text: String) { writeLine(text, to: 2) }
