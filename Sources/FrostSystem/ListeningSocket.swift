#if canImport(Glibc)
import Glibc
#endif

/// Why a listening socket could not be made.
public struct ListenFailure: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// Not HOST:PORT or unix:PATH, or a socket path too long.
        case badAddress
        /// The host name does not resolve.
        case unresolvable
        /// socket, bind or listen failed.
        case cannotListen
    }

    public let kind: Kind
    /// The address as given.
    public let address: String
    public let message: String

    public var description: String { message }
}

/// Binds and listens on "HOST:PORT" (port 0 picks one; SO_REUSEADDR) or "unix:PATH" (an
/// old socket file there is replaced). The descriptor is close-on-exec. The master binds
/// its workers' sockets with it, and a process without a master its own.
public func bindListeningSocket(_ address: String, backlog: Int32) throws(ListenFailure) -> Int32 {
    switch ListenAddress(address) {
    case .unix(let path):
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw ListenFailure(kind: .cannotListen, address: address, message: "cannot create a socket for \(address): \(errnoDescription())")
        }
        var info = stat()
        if lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
        guard let (storage, length) = unixSocketAddress(path) else {
            close(fd)
            throw ListenFailure(kind: .badAddress, address: address, message: "the socket path \(path) is too long")
        }
        let status = withUnsafePointer(to: storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
        }
        guard status == 0, listen(fd, backlog) == 0 else {
            let message = errnoDescription()
            close(fd)
            throw ListenFailure(kind: .cannotListen, address: address, message: "cannot listen on \(address): \(message)")
        }
        return fd
    case .tcp(let host, let port):
        return try bindTCP(address, host: host, port: port, backlog: backlog)
    case nil:
        throw ListenFailure(kind: .badAddress, address: address, message: "'\(address)' is not HOST:PORT or unix:PATH")
    }
}

private func bindTCP(_ address: String, host: String, port: UInt16, backlog: Int32) throws(ListenFailure) -> Int32 {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_flags = AI_PASSIVE
    var list: UnsafeMutablePointer<addrinfo>?
    let status = getaddrinfo(host.isEmpty ? nil : host, String(port), &hints, &list)
    guard status == 0, let first = list else {
        throw ListenFailure(kind: .unresolvable, address: address, message: "cannot resolve \(host): \(String(cString: gai_strerror(status)))")
    }
    defer { freeaddrinfo(list) }
    var failure = "no address"
    var entry: UnsafeMutablePointer<addrinfo>? = first
    while let current = entry {
        entry = current.pointee.ai_next
        let fd = socket(current.pointee.ai_family, current.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { failure = errnoDescription(); continue }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if Glibc.bind(fd, current.pointee.ai_addr, current.pointee.ai_addrlen) == 0, listen(fd, backlog) == 0 {
            return fd
        }
        failure = errnoDescription()
        close(fd)
    }
    throw ListenFailure(kind: .cannotListen, address: address, message: "cannot listen on \(address): \(failure)")
}
