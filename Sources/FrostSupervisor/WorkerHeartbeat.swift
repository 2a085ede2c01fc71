#if canImport(Glibc)
import Glibc
#endif

/// What a worker's server tells the heartbeat loop about itself.
public struct WorkerHealth: Sendable {
    /// Requests answered since start.
    public var served: Int
    /// Seconds the longest-running handler has been busy (0: none).
    public var oldestBusySeconds: Double
    /// Handler threads busy now, and how many there are.
    public var busyThreads: Int
    public var threads: Int

    public init(served: Int, oldestBusySeconds: Double, busyThreads: Int, threads: Int) {
        self.served = served
        self.oldestBusySeconds = oldestBusySeconds
        self.busyThreads = busyThreads
        self.threads = threads
    }
}

/// The server a worker runs, as its heartbeat sees it.
public protocol WorkerServer {
    var health: WorkerHealth { get }
    /// Whether a handler thread picks up new work within `seconds`.
    func respondsWithin(seconds: Double) -> Bool
}

/// The worker's half of the supervision protocol: reports to the master while it waits
/// for a stop signal.
public struct WorkerHeartbeat {
    public var link: MasterLink
    /// The master's heartbeat time-out: reports come several times within it.
    public var heartbeatTimeout: Double
    /// A handler busy longer than this is stuck: no heartbeat, so the master replaces the worker.
    public var requestTimeout: Double
    /// Ask to be recycled after this many requests (plus 0…`maxRequestsJitter`); 0: never.
    public var maxRequests = 0
    public var maxRequestsJitter = 0
    /// Ask to be recycled above this resident set; 0: never.
    public var maxResidentMiB = 0

    public init(link: MasterLink, heartbeatTimeout: Double, requestTimeout: Double) {
        self.link = link
        self.heartbeatTimeout = heartbeatTimeout
        self.requestTimeout = requestTimeout
    }

    /// Waits for one of `signals` (SIGTERM/SIGINT), reporting every second (or a quarter
    /// of the heartbeat time-out when that is shorter): a heartbeat while no handler is
    /// stuck past the request time-out and a thread takes new work (or all are busy with
    /// requests within their deadlines: a saturated worker is not a hung one), and a
    /// request to be recycled after `maxRequests` or over `maxResidentMiB`. Returns the
    /// signal that stopped it (SIGTERM when the master went away).
    public func run(_ server: some WorkerServer, signals: inout sigset_t) -> Int32 {
        let jitter = maxRequestsJitter > 0 ? Int.random(in: 0...maxRequestsJitter) : 0
        let requestLimit = maxRequests > 0 ? maxRequests + jitter : 0
        var recycleAsked = false
        // Several reports within one heartbeat time-out, so that a short time-out (tests,
        // impatient operators) is not missed by the reporting cadence itself.
        let interval = max(0.05, min(1.0, heartbeatTimeout / 4))
        var wait = timespec(tv_sec: Int(interval), tv_nsec: Int((interval - interval.rounded(.down)) * 1e9))
        while true {
            let received = sigtimedwait(&signals, nil, &wait)
            if received == SIGTERM || received == SIGINT { return received }
            guard link.masterAlive else { return SIGTERM }
            let health = server.health
            let resident = MasterLink.residentKiB()
            let stuck = health.oldestBusySeconds > requestTimeout
            let saturated = health.busyThreads >= health.threads
            if !stuck, saturated || server.respondsWithin(seconds: min(1, heartbeatTimeout / 2)) {
                link.send(.heartbeat(served: health.served, residentKiB: resident))
            }
            if !recycleAsked {
                if requestLimit > 0, health.served >= requestLimit {
                    recycleAsked = link.send(.recycle(reason: "served \(health.served) requests, --max-requests \(requestLimit)"))
                } else if maxResidentMiB > 0, resident / 1024 > maxResidentMiB {
                    recycleAsked = link.send(.recycle(reason: "RSS \(resident / 1024) MiB over --max-rss \(maxResidentMiB)"))
                }
            }
        }
    }
}
