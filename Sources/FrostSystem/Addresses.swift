#if canImport(Glibc)
import Glibc
#endif

/// Where to listen, as the command line and specs write it: "HOST:PORT" (IPv6 hosts in
/// brackets, an empty host for every interface, port 0 for any free one) or "unix:PATH".
public enum ListenAddress: Equatable, Sendable {
    case tcp(host: String, port: UInt16)
    case unix(path: String)

    /// nil when `text` is neither form.
    public init?(_ text: String) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { return nil }
            self = .unix(path: path)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self = .tcp(host: host, port: port)
    }
}

/// A `sockaddr_un` for `path` and its length for bind/connect/sendto; nil when the path
/// does not fit. With `abstractNames`, a path starting with "@" is an abstract name
/// (Linux; systemd's `NOTIFY_SOCKET` uses them): its length is exact.
public func unixSocketAddress(_ path: String, abstractNames: Bool = false) -> (address: sockaddr_un, length: socklen_t)? {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var bytes = Array(path.utf8)
    let abstract = abstractNames && bytes.first == UInt8(ascii: "@")
    if abstract { bytes[0] = 0 }
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in bytes.enumerated() { raw[index] = byte }
    }
    return (address, socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1)))
}

/// Where a socket is bound (getsockname): "127.0.0.1:8000", "[::1]:8000" or "unix:PATH".
public func localAddressDescription(of fd: Int32) -> String {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let status = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard status == 0 else { return "fd \(fd)" }
    switch Int32(storage.ss_family) {
    case AF_INET:
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                var copy = address.pointee.sin_addr
                var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
                inet_ntop(AF_INET, &copy, &text, socklen_t(text.count))
                return "\(cString(text)):\(UInt16(bigEndian: address.pointee.sin_port))"
            }
        }
    case AF_INET6:
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                var copy = address.pointee.sin6_addr
                var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
                inet_ntop(AF_INET6, &copy, &text, socklen_t(text.count))
                return "[\(cString(text))]:\(UInt16(bigEndian: address.pointee.sin6_port))"
            }
        }
    case AF_UNIX:
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_un.self, capacity: 1) { address in
                var path = address.pointee.sun_path
                let text = withUnsafeBytes(of: &path) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                return "unix:" + text
            }
        }
    default:
        return "fd \(fd)"
    }
}

private func cString(_ characters: [CChar]) -> String {
    String(decoding: characters.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
