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
    /// file is replaced): `bindListeningSocket`. The descriptor is close-on-exec; workers
    /// get duplicates.
    public static func bind(_ address: String, backlog: Int32 = 1024) throws -> Int32 {
        do {
            return try bindListeningSocket(address, backlog: backlog)
        } catch {
            let kind: SupervisorError.Kind = switch error.kind {
            case .badAddress: .badAddress
            case .unresolvable: .unresolvable
            case .cannotListen: .cannotListen
            }
            throw SupervisorError(kind, subject: address, error.message)
        }
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
