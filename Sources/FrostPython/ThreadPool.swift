#if canImport(Glibc)
import Glibc
#endif

/// A fixed number of dedicated Python threads taking work from one queue, each with its
/// own long-lived thread state.
///
/// Waking a thread and passing the GIL to it cost more than a fast request, so work is
/// not handed out one wake-up per job: a thread that finishes a job takes the next one
/// itself, and `submit` wakes a sleeping thread only when none is running. When the
/// running ones are slow (a handler that sleeps, waits on I/O or computes), a watchdog
/// that ticks every `tick` seconds while any thread runs wakes another one for work that
/// has waited a tick: a slow job delays a fast one by a few milliseconds, not by its
/// own length.
public final class PythonThreadPool: @unchecked Sendable {
    // @unchecked: the state is guarded by `monitor`; the rest is set before the threads start.
    public let size: Int
    /// How often the watchdog looks at the queue while threads run.
    static let tick = 0.004
    private let monitor = Monitor()
    private var queue: [(job: () -> Void, tick: Int)] = []
    private var head = 0
    private var stopping = false
    private var threads: [pthread_t] = []
    private let interpreter: Interpreter
    /// Threads running a job or about to take the next one.
    private var running = 0
    /// Threads waiting for work.
    private var idle = 0
    /// When each thread's job started (nil: none), for `busy`.
    private var startedAt: [Double?]
    /// The watchdog's tick count (work is stale when queued two ticks ago), and its own
    /// monitor, on which it sleeps while no thread runs.
    private var ticks = 0
    private let watchdogMonitor = Monitor()
    private var watchdogWoken = false
    private var watchdog: pthread_t?

    public init(interpreter: Interpreter, size: Int, name: String = "python") throws {
        precondition(size > 0)
        self.interpreter = interpreter
        self.size = size
        self.startedAt = Array(repeating: nil, count: size)
        for index in 0..<size {
            try startThread(name: "\(name)-\(index)") { pool in pool.runLoop(slot: index) }
        }
        if size > 1 {
            try startThread(name: "\(name)-watchdog") { pool in pool.watch() }
            watchdog = threads.removeLast()
        }
    }

    private final class Start {
        let pool: PythonThreadPool
        let body: (PythonThreadPool) -> Void
        init(_ pool: PythonThreadPool, _ body: @escaping (PythonThreadPool) -> Void) { (self.pool, self.body) = (pool, body) }
    }

    private func startThread(name: String, _ body: @escaping (PythonThreadPool) -> Void) throws {
        let context = Unmanaged.passRetained(Start(self, body)).toOpaque()
        var handle = pthread_t()
        let status = pthread_create(&handle, nil, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            start.body(start.pool)
            return nil
        }, context)
        guard status == 0 else {
            Unmanaged<Start>.fromOpaque(context).release()
            stop()
            throw InterpreterError("cannot start Python thread \(name): \(String(cString: strerror(status)))")
        }
        threads.append(handle)
    }

    /// Queues `job`; it runs on a pool thread holding the GIL.
    public func submit(_ job: @escaping () -> Void) {
        monitor.locked {
            precondition(!stopping, "work submitted to a stopped Python thread pool")
            queue.append((job, ticks))
            if running == 0 && idle > 0 { monitor.signal() }
        }
    }

    /// Threads running a job now, and how long the oldest of those jobs has run.
    public var busy: (count: Int, oldestSeconds: Double) {
        monitor.locked {
            let now = monotonicSeconds()
            let started = startedAt.compactMap { $0 }
            return (started.count, started.min().map { now - $0 } ?? 0)
        }
    }

    /// Lets the queued work finish, then deletes every thread state and joins the threads.
    public func stop() {
        monitor.locked {
            stopping = true
            monitor.broadcast()
        }
        wakeWatchdog()
        for thread in threads { pthread_join(thread, nil) }
        threads.removeAll()
        if let watchdog { pthread_join(watchdog, nil) }
        watchdog = nil
    }

    /// The next job for the thread in `slot` (nil: stop), and whether the thread had to
    /// wait for it. Called with `monitor` held; the thread counts as running when it
    /// returns a job.
    private func next(slot: Int) -> (job: () -> Void, waited: Bool)? {
        startedAt[slot] = nil
        var waited = false
        while head == queue.count && !stopping {
            running -= 1
            idle += 1
            monitor.wait()
            idle -= 1
            running += 1
            waited = true
        }
        guard head < queue.count else { return nil }
        let job = queue[head].job
        head += 1
        if head > 1024 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
        startedAt[slot] = monotonicSeconds()
        return (job, waited)
    }

    private func runLoop(slot: Int) {
        let state = interpreter.makeThreadStateForCurrentThread()
        monitor.locked { running += 1 }
        while let (job, waited) = monitor.locked({ next(slot: slot) }) {
            if waited && size > 1 { wakeWatchdog() }  // a thread runs again: the watchdog ticks
            state.withGIL { job() }
        }
        monitor.locked { running -= 1 }
        state.delete()
    }

    /// Ticks while any thread runs; wakes an idle thread for work queued two ticks ago.
    private func watch() {
        while true {
            let (active, stop) = monitor.locked { () -> (Bool, Bool) in
                ticks += 1
                if head < queue.count && queue[head].tick <= ticks - 2 && idle > 0 { monitor.signal() }
                return (running > 0, stopping)
            }
            if stop { return }
            watchdogMonitor.locked {
                if active {
                    _ = watchdogMonitor.wait(until: deadline(afterSeconds: PythonThreadPool.tick))
                } else {
                    while !watchdogWoken { watchdogMonitor.wait() }
                }
                watchdogWoken = false
            }
        }
    }

    private func wakeWatchdog() {
        watchdogMonitor.locked {
            watchdogWoken = true
            watchdogMonitor.signal()
        }
    }
}
