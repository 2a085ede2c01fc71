import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// Why the master (or a worker's part of the process model) could not set something up.
public struct SupervisorError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// A listen address that is not HOST:PORT or unix:PATH, or a path too long.
        case badAddress
        /// The name of a listen address does not resolve.
        case unresolvable
        /// socket, bind or listen failed.
        case cannotListen
        /// The shared connection board could not be made or mapped.
        case connectionBoard
    }

    public let kind: Kind
    /// The address or descriptor concerned.
    public let subject: String
    public let message: String

    public init(_ kind: Kind, subject: String, _ message: String) {
        self.kind = kind
        self.subject = subject
        self.message = message
    }

    public var description: String { message }
}

/// Listening sockets: bound here once, or inherited from systemd, then handed to workers.
public enum ListenSockets {
    /// Binds and listens on "HOST:PORT" (port 0 picks one) or "unix:PATH" (an old socket
    /// file is replaced). The descriptor is close-on-exec; workers get duplicates.
    public static func bind(_ address: String, backlog: Int32 = 1024) throws -> Int32 {
        switch ListenAddress(address) {
        case .unix(let path):
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw SupervisorError(.cannotListen, subject: address, "cannot create a socket for \(address): \(errnoDescription())") }
            var info = stat()
            if lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
            guard let (storage, length) = unixSocketAddress(path) else {
                close(fd)
                throw SupervisorError(.badAddress, subject: address, "the socket path \(path) is too long")
            }
            let status = withUnsafePointer(to: storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
            }
            guard status == 0, listen(fd, backlog) == 0 else {
                let message = errnoDescription()
                close(fd)
                throw SupervisorError(.cannotListen, subject: address, "cannot listen on \(address): \(message)")
            }
            return fd
        case .tcp(let host, let port):
            return try bindTCP(address, host: host, port: port, backlog: backlog)
        case nil:
            throw SupervisorError(.badAddress, subject: address, "'\(address)' is not HOST:PORT or unix:PATH")
        }
    }

    private static func bindTCP(_ address: String, host: String, port: UInt16, backlog: Int32) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host.isEmpty ? nil : host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw SupervisorError(.unresolvable, subject: address, "cannot resolve \(host): \(String(cString: gai_strerror(status)))")
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
        throw SupervisorError(.cannotListen, subject: address, "cannot listen on \(address): \(failure)")
    }

    /// The sockets systemd passed (`LISTEN_PID` is this process, `LISTEN_FDS` how many,
    /// starting at descriptor 3); empty when there are none for this process.
    public static func fromSystemd(environment: [String: String], pid: Int32) -> [Int32] {
        guard let listenPID = environment["LISTEN_PID"].flatMap({ Int32($0) }), listenPID == pid,
              let count = environment["LISTEN_FDS"].flatMap({ Int32($0) }), count > 0 else { return [] }
        return (0..<count).map { 3 + $0 }
    }

    /// Moves a descriptor to 100 or above (close-on-exec), so that handing descriptors to
    /// a child at 3, 4, … never collides with the parent's own.
    public static func moveHigh(_ fd: Int32) -> Int32 {
        let moved = fcntl(fd, F_DUPFD_CLOEXEC, 100)
        guard moved >= 0 else { return fd }
        close(fd)
        return moved
    }
}

/// Limits of the serving process.
public enum ProcessLimits {
    /// Raises the soft limit on open descriptors to the hard one, as nginx
    /// (`worker_rlimit_nofile`) and Go's runtime do: every connection is a descriptor, and
    /// the usual soft default (1024) would refuse the 1025th while the system allows more.
    public static func raiseOpenFileLimit() {
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(resource, &limit)
    }
}



/// The process environment as a dictionary.
public func processEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var pointer = environ
    while let entry = pointer.pointee {
        let text = String(cString: entry)
        if let equals = text.firstIndex(of: "=") {
            result[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        pointer += 1
    }
    return result
}
