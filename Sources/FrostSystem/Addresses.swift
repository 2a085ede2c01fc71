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
