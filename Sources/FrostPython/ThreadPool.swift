import FrostSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A fixed number of dedicated Python threads taking work from one queue, each with its
/// own long-lived thread state.
///
/// Waking a thread and passing the GIL to it cost more than a fast request, so work is
/// not handed out one wake-up per job: a thread that finishes a job takes the next one
/// itself, and `submit` wakes a sleeping thread only when none is running. Sleeping
/// threads wait on their own condition in a stack, and the one woken is the one that
/// slept last: under steady load the same thread (its caches warm) serves, and the others
/// stay asleep. When the running ones are slow (a handler that sleeps, waits on I/O or
/// computes), a watchdog that ticks every `tick` seconds while any thread runs wakes
/// another one for work that has waited a tick: a slow job delays a fast one by a few
/// milliseconds, not by its own length.
public final class PythonThreadPool: @unchecked Sendable {
    // @unchecked: the state is guarded by `monitor`; the rest is set before the threads start.
    public let size: Int
    /// How often the watchdog looks at the queue while threads run.
    static let tick = 0.004
    private let monitor = Monitor()
    /// Jobs and when each was queued (monotonic seconds).
    private var queue: [(job: () -> Void, queuedAt: Double)] = []
    private var head = 0
    private var stopping = false
    private var threads: [pthread_t] = []
    private let interpreter: Interpreter
    /// Threads running a job or about to take the next one.
    private var running = 0
    /// Sleeping threads by slot, the most recent last; each waits on its own condition
    /// until `woken`.
    private var sleeping: [Int] = []
    private let wakeConditions: [Monitor.Condition]
    private var woken: [Bool]
    /// When each thread's job started (nil: none), for `busy`.
    private var startedAt: [Double?]
    /// How many of `startedAt` are set: read without the lock by `hasJob`, which an idle
    /// pool (the common case on a loop that runs its handlers itself) answers without it.
    private let runningJobs = Atomic<Int>(0)
    /// The watchdog's own monitor, on which it sleeps while no thread runs (`watchdogIdle`).
    private let watchdogMonitor = Monitor()
    private var watchdogIdle = false
    private var watchdogWoken = false
    private var watchdog: pthread_t?

    public init(interpreter: Interpreter, size: Int, name: String = "python") throws {
        precondition(size > 0)
        self.interpreter = interpreter
        self.size = size
        self.startedAt = Array(repeating: nil, count: size)
        self.woken = Array(repeating: false, count: size)
        let monitor = self.monitor
        self.wakeConditions = (0..<size).map { _ in Monitor.Condition(monitor) }
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
            throw InterpreterError(.thread, "cannot start Python thread \(name): \(errnoDescription(status))")
        }
        threads.append(handle)
    }

    /// Queues `job`; it runs on a pool thread holding the GIL.
    public func submit(_ job: @escaping () -> Void) {
        let woken = monitor.locked { () -> Int? in
            precondition(!stopping, "work submitted to a stopped Python thread pool")
            queue.append((job, monotonicSeconds()))
            return running == 0 ? pickOne() : nil
        }
        if let woken { wakeConditions[woken].signal() }
    }

    /// Whether a thread has been running its job for longer than `seconds`: computing,
    /// it holds the GIL for long stretches, and work run elsewhere meanwhile (a fast
    /// handler on its event loop) would wait for it there.
    public func hasJob(runningLongerThan seconds: Double) -> Bool {
        if runningJobs.load(ordering: .relaxed) == 0 { return false }
        return monitor.locked {
            let since = monotonicSeconds() - seconds
            return startedAt.contains { $0.map { $0 < since } ?? false }
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
            while !sleeping.isEmpty { wakeOne() }
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
    ///
    /// A thread that finishes while another runs a job that began less than a tick ago
    /// goes to sleep instead of taking the next job: that other thread takes it in a
    /// moment, and two threads taking turns would pass the GIL back and forth on every
    /// request. Threads whose jobs run longer (blocked in I/O, `time.sleep`) do not count,
    /// so work keeps flowing around them.
    private func next(slot: Int) -> (job: () -> Void, waited: Bool)? {
        if startedAt[slot] != nil { runningJobs.wrappingSubtract(1, ordering: .relaxed) }
        startedAt[slot] = nil
        var waited = false
        if head < queue.count && !stopping && !isStale(queue[head].queuedAt) && anotherThreadIsFast(than: slot) {
            sleep(slot: slot)
            waited = true
        }
        while head == queue.count && !stopping {
            sleep(slot: slot)
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
        runningJobs.wrappingAdd(1, ordering: .relaxed)
        return (job, waited)
    }

    /// Sleeps until `wakeOne` picks this thread. `monitor` held.
    private func sleep(slot: Int) {
        running -= 1
        woken[slot] = false
        sleeping.append(slot)
        while !woken[slot] { wakeConditions[slot].wait() }
    }

    /// Wakes the thread that went to sleep last (its caches are the warmest). It counts
    /// as running from now on, so that the next `submit` does not wake a second one
    /// before it has run. `monitor` held.
    private func wakeOne() {
        if let slot = pickOne() { wakeConditions[slot].signal() }
    }

    /// Picks the thread `wakeOne` wakes and marks it woken, for a caller that signals its
    /// condition once it has released `monitor`: signalled under the mutex, the thread
    /// would wake only to block on it (a second sleep and wake-up per request, measured
    /// as the pool's busiest lock). `monitor` held.
    private func pickOne() -> Int? {
        guard let slot = sleeping.popLast() else { return nil }
        woken[slot] = true
        running += 1
        return slot
    }

    /// Whether work queued at `queuedAt` has waited a tick or more.
    private func isStale(_ queuedAt: Double) -> Bool {
        queuedAt <= monotonicSeconds() - PythonThreadPool.tick
    }

    /// Whether a thread other than `slot` runs a job that began less than a tick ago.
    private func anotherThreadIsFast(than slot: Int) -> Bool {
        let recent = monotonicSeconds() - PythonThreadPool.tick
        for index in startedAt.indices where index != slot {
            if let started = startedAt[index], started > recent { return true }
        }
        return false
    }

    private func runLoop(slot: Int) {
        let state = interpreter.makeThreadStateForCurrentThread()
        monitor.locked { running += 1 }
        // A thread that slept, or has just started, may find the watchdog asleep (it sleeps
        // while no thread runs): wake it so that it ticks while this job runs. A thread
        // that takes a job queued while it was starting did not sleep for it, and without
        // this the watchdog slept through that job (a 2 s handler held back the fast
        // requests queued behind it).
        var started = true
        while let (job, waited) = monitor.locked({ next(slot: slot) }) {
            if (waited || started) && size > 1 { wakeWatchdog() }
            started = false
            state.withGIL { job() }
        }
        monitor.locked { running -= 1 }
        state.delete()
    }

    /// Ticks while any thread runs; wakes a sleeping thread for work that has waited a tick.
    private func watch() {
        while true {
            let (active, stop) = monitor.locked { () -> (Bool, Bool) in
                if head < queue.count && isStale(queue[head].queuedAt) { wakeOne() }
                return (running > 0, stopping)
            }
            if stop { return }
            watchdogMonitor.locked {
                if active {
                    _ = watchdogMonitor.wait(until: deadline(afterSeconds: PythonThreadPool.tick))
                } else {
                    watchdogIdle = true
                    while !watchdogWoken { watchdogMonitor.wait() }
                    watchdogIdle = false
                    watchdogWoken = false
                }
            }
        }
    }

    /// Starts the watchdog ticking when it sleeps for want of running threads. The wake-up
    /// is kept even when the watchdog is not asleep yet: it may have seen no running
    /// thread a moment ago and be on its way to sleep, and would then sleep through the
    /// blocked job it is there for (queued work waited for that job to end).
    private func wakeWatchdog() {
        watchdogMonitor.locked {
            watchdogWoken = true
            if watchdogIdle { watchdogMonitor.signal() }
        }
    }
}
