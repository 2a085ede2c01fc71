// FrostSystem: the system layer, Foundation-free: every Glibc helper more than one module needs.

#if canImport(Glibc)
import Glibc
#endif

/// Writes all of `bytes` to `fd`, retrying short writes and EINTR. Returns false at the
/// first error (errno says which).
@discardableResult
public func writeAll(_ bytes: [UInt8], to fd: Int32) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        offset += n
    }
    return true
}

/// `text` and a newline in one write(2) where the descriptor takes it whole, so lines
/// from several processes (the master's, the workers') do not interleave.
@discardableResult
public func writeLine(_ text: String, to fd: Int32) -> Bool {
    writeAll(Array((text + "\n").utf8), to: fd)
}

/// errno as text ("No such file or directory").
public func errnoDescription(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}
