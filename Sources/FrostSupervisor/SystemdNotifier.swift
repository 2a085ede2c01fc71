import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// systemd's notify protocol (`NOTIFY_SOCKET`, a datagram socket; "@name" is abstract)
/// and its watchdog (`WATCHDOG_USEC`, for this process when `WATCHDOG_PID` says so).
public final class SystemdNotifier {
    public let socketPath: String?
    /// Seconds between watchdog pings systemd expects at most (nil: no watchdog).
    public let watchdogInterval: Double?

    public init(environment: [String: String], pid: Int32 = getpid()) {
        socketPath = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        if let usec = environment["WATCHDOG_USEC"].flatMap({ Double($0) }), usec > 0,
           environment["WATCHDOG_PID"].flatMap({ Int32($0) }).map({ $0 == pid }) ?? true {
            watchdogInterval = usec / 1_000_000
        } else {
            watchdogInterval = nil
        }
    }

    public var isActive: Bool { socketPath != nil }

    /// Sends "KEY=value" lines as one datagram; false when it could not be sent.
    @discardableResult
    public func send(_ fields: [String]) -> Bool {
        guard let socketPath else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard let (address, length) = unixSocketAddress(socketPath, abstractNames: true) else { return false }
        let message = Array(fields.joined(separator: "\n").utf8)
        let sent = withUnsafePointer(to: address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), pointer, length) }
            }
        }
        return sent == message.count
    }
}
