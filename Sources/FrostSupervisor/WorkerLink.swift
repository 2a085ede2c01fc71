import CProcess
#if canImport(Glibc)
import Glibc
#endif

/// What a worker tells its master, one line each over a socket pair:
///
///     READY                          serving
///     HEARTBEAT <served> <rss-kib>   alive and able to take work
///     RECYCLE <reason>               please start my replacement, then stop me
public enum WorkerMessage: Equatable, Sendable {
    case ready
    case heartbeat(served: Int, residentKiB: Int)
    case recycle(reason: String)

    public var line: String {
        switch self {
        case .ready: return "READY\n"
        case .heartbeat(let served, let resident): return "HEARTBEAT \(served) \(resident)\n"
        case .recycle(let reason): return "RECYCLE \(reason)\n"
        }
    }

    public init?(line: String) {
        let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
        switch parts.first {
        case "READY": self = .ready
        case "HEARTBEAT":
            let numbers = (parts.count > 1 ? parts[1] : "").split(separator: " ").compactMap { Int($0) }
            guard numbers.count == 2 else { return nil }
            self = .heartbeat(served: numbers[0], residentKiB: numbers[1])
        case "RECYCLE": self = .recycle(reason: parts.count > 1 ? parts[1] : "asked")
        default: return nil
        }
    }
}

/// The worker's end of the link to its master.
public final class MasterLink: @unchecked Sendable {
    // @unchecked: `send` writes whole lines with one write(2) each.
    public let fd: Int32
    public let masterPID: Int32

    /// The worker dies with its master (SIGTERM when the master goes away).
    public init(fd: Int32) {
        self.fd = fd
        self.masterPID = getppid()
        _ = frost_set_parent_death_signal(SIGTERM)
    }

    /// False once the master is gone (the parent changed).
    public var masterAlive: Bool { getppid() == masterPID }

    @discardableResult
    public func send(_ message: WorkerMessage) -> Bool {
        let bytes = Array(message.line.utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// This process's resident set in KiB (/proc/self/statm).
    public static func residentKiB() -> Int {
        let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let count = read(fd, &buffer, buffer.count)
        guard count > 0 else { return 0 }
        let fields = String(decoding: buffer[..<count], as: UTF8.self).split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE))) / 1024
    }
}
