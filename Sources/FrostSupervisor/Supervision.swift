/// The master's policy, without processes or clocks: which workers to start, which to
/// stop or kill, when to give up, what to log and tell systemd. `Master` feeds it
/// events (a worker started, said something, exited; a signal; time passing) with the
/// time they happened, and carries out the commands it returns, in order.
///
/// Kept pure so crash, backoff, give-up, recycling, generation swaps and scaling are
/// unit-tested with made-up pids and times (`SupervisionTests`).
public struct Supervision: Sendable {
    /// What the policy needs to know of the configuration.
    public struct Settings: Sendable {
        /// Worker processes wanted at start (at least one).
        public var workers: Int
        /// A serving worker silent for this long is killed and replaced.
        public var heartbeatTimeout: Double
        /// How long a stopping worker may finish its requests before it is killed (plus 5 s).
        public var gracefulTimeout: Double
        /// How long a new worker may take to get ready.
        public var startTimeout: Double
        /// Failed starts, none ever ready, before the master gives up.
        public var startAttempts = 3
        /// Failed starts of a new generation before a reload is abandoned.
        public var reloadAttempts = 5

        public init(workers: Int, heartbeatTimeout: Double = 30, gracefulTimeout: Double = 30, startTimeout: Double = 120) {
            self.workers = workers
            self.heartbeatTimeout = heartbeatTimeout
            self.gracefulTimeout = gracefulTimeout
            self.startTimeout = startTimeout
        }
    }

    /// One worker process as the policy sees it.
    public struct Worker: Equatable, Sendable {
        public let number: Int
        public let generation: Int
        /// Nil between the `.spawn` command and `spawned(number:pid:now:)`.
        public fileprivate(set) var pid: Int32?
        public fileprivate(set) var state: State
        public fileprivate(set) var started: Double
        public fileprivate(set) var lastHeartbeat: Double
        public fileprivate(set) var served = 0
        public fileprivate(set) var residentKiB = 0

        /// Counts towards the generation's workers until it is reaped: starting, serving,
        /// or killed for not doing either (its replacement starts when it is gone).
        var holdsASlot: Bool {
            switch state {
            case .starting, .serving, .killed(.hung), .killed(.neverReady): return true
            case .recycling, .stopping, .killed: return false
            }
        }
    }

    public enum State: Equatable, Sendable {
        /// Started, not ready yet.
        case starting
        /// Ready and heart-beating.
        case serving
        /// Serving, but asked to be replaced; stopped once enough others serve.
        case recycling(reason: String)
        /// Sent SIGTERM at `since`; finishing its requests.
        case stopping(since: Double)
        /// Sent SIGKILL; waiting to be reaped.
        case killed(Kill)
    }

    /// Why a worker was killed.
    public enum Kill: Equatable, Sendable {
        /// Missed its heartbeat: replaced when reaped.
        case hung
        /// Not ready within the start timeout: a failed start.
        case neverReady
        /// Did not stop within the graceful timeout.
        case overstayed
        /// SIGQUIT: everything stops now.
        case stopNow
    }

    public enum Phase: Equatable, Sendable {
        /// The first generation is not serving yet.
        case starting
        case serving
        /// A new generation is starting; the previous one serves until it is ready.
        case reloading
        /// Every worker is being stopped; the master exits when they are gone.
        case stopping
    }

    /// What the master is to do, in order.
    public enum Command: Equatable, Sendable {
        /// Start a worker of the current generation and report it with `spawned` or `spawnFailed`.
        case spawn(number: Int)
        /// SIGTERM: finish the requests in flight, then exit.
        case terminate(pid: Int32)
        /// SIGKILL.
        case kill(pid: Int32)
        case log(String)
        /// sd_notify fields.
        case notify([String])
        /// The first generation serves: say so once (stdout, READY=1).
        case announce
    }

    public let settings: Settings
    public private(set) var workers: [Worker] = []
    public private(set) var phase: Phase = .starting
    public private(set) var generation = 1
    /// Workers wanted now (SIGTTIN/SIGTTOU change it).
    public private(set) var desired: Int
    /// Workers replaced after they died or hung.
    public private(set) var restarts = 0
    /// The master's exit status once `finished`.
    public private(set) var exitStatus: Int32 = 0
    /// Start failures since the last worker got ready (drives the backoff).
    public private(set) var startFailures = 0
    /// No spawning before this time (backoff after failed starts).
    public private(set) var nextSpawnAt = 0.0
    private var anyWorkerReady = false
    private var nextNumber = 0
    /// "worker 2 (pid 10) exited with status 1", waiting for its replacement's pid.
    private var replacing: [Int: String] = [:]

    public init(settings: Settings) {
        self.settings = settings
        self.desired = max(1, settings.workers)
    }

    /// The exit status once stopping is complete; nil while workers remain.
    public var finished: Int32? { phase == .stopping && workers.isEmpty ? exitStatus : nil }

    // MARK: Events

    /// Time passes: kill the hung and the overdue, keep `desired` workers of the current
    /// generation, retire the old ones once the new ones serve.
    public mutating func tick(now: Double) -> [Command] {
        var commands: [Command] = []
        if phase != .stopping {
            for index in workers.indices {
                guard let pid = workers[index].pid else { continue }
                let worker = workers[index]
                switch worker.state {
                case .serving, .recycling:
                    guard now - worker.lastHeartbeat > settings.heartbeatTimeout else { continue }
                    commands.append(.log("\(describe(worker)) missed its heartbeat for \(format(now - worker.lastHeartbeat)) s: killing it"))
                    commands.append(.kill(pid: pid))
                    workers[index].state = .killed(.hung)
                case .starting:
                    guard now - worker.started > settings.startTimeout else { continue }
                    commands.append(.log("\(describe(worker)) not ready after \(format(settings.startTimeout)) s: killing it"))
                    commands.append(.kill(pid: pid))
                    workers[index].state = .killed(.neverReady)
                default:
                    continue
                }
            }
        }
        for index in workers.indices {
            guard case .stopping(let since) = workers[index].state, let pid = workers[index].pid,
                  now - since > settings.gracefulTimeout + 5 else { continue }
            commands.append(.log("\(describe(workers[index])) did not stop in time: killing it"))
            commands.append(.kill(pid: pid))
            workers[index].state = .killed(.overstayed)
        }
        if phase != .stopping { commands += maintain(now: now) }
        return commands
    }

    /// The master started the worker it was told to spawn.
    public mutating func spawned(number: Int, pid: Int32, now: Double) -> [Command] {
        guard let index = workers.firstIndex(where: { $0.number == number }) else { return [] }
        workers[index].pid = pid
        workers[index].started = now
        workers[index].lastHeartbeat = now
        guard let ended = replacing.removeValue(forKey: number) else { return [] }
        return [.log("\(ended); replaced by \(describe(workers[index]))")]
    }

    /// The master could not start the worker (no process: a spawn or socketpair error).
    public mutating func spawnFailed(number: Int, reason: String, now: Double) -> [Command] {
        workers.removeAll { $0.number == number }
        var commands: [Command] = []
        if let ended = replacing.removeValue(forKey: number) { commands.append(.log("\(ended); its replacement did not start")) }
        commands.append(.log(reason))
        if !anyWorkerReady {
            exitStatus = 1
            commands += stopAll(now: now, immediately: false)
        } else {
            nextSpawnAt = now + 1
        }
        return commands
    }

    /// A worker said something on its link.
    public mutating func received(_ message: WorkerMessage, from pid: Int32, now: Double) -> [Command] {
        guard let index = workers.firstIndex(where: { $0.pid == pid }) else { return [] }
        switch message {
        case .ready:
            guard workers[index].state == .starting else { return [] }
            workers[index].state = .serving
            workers[index].lastHeartbeat = now
            startFailures = 0
            defer { anyWorkerReady = true }
            return anyWorkerReady ? [.log("\(describe(workers[index])) is serving")] : []
        case .heartbeat(let served, let resident):
            workers[index].lastHeartbeat = now
            workers[index].served = served
            workers[index].residentKiB = resident
            return []
        case .recycle(let reason):
            guard workers[index].state == .serving else { return [] }
            workers[index].state = .recycling(reason: reason)
            return [.log("\(describe(workers[index])) asks to be recycled (\(reason)); starting its replacement")]
        }
    }

    /// A worker process ended; `how` says how ("exited with status 1").
    public mutating func exited(pid: Int32, how: String, now: Double) -> [Command] {
        guard let index = workers.firstIndex(where: { $0.pid == pid }) else { return [] }
        let worker = workers.remove(at: index)
        switch (phase, worker.state) {
        case (.stopping, _), (_, .stopping), (_, .killed(.overstayed)), (_, .killed(.stopNow)):
            return [.log("\(describe(worker)) stopped (\(how))")]
        case (_, .starting), (_, .killed(.neverReady)):
            return failedStart(worker, how: how, now: now)
        case (_, .serving), (_, .recycling), (_, .killed(.hung)):
            restarts += 1
            let (command, number) = requestSpawn(now: now)
            replacing[number] = "\(describe(worker)) \(how)"
            return [command]
        }
    }

    /// SIGTERM, SIGINT (`immediately: false`) or SIGQUIT.
    public mutating func stop(cause: String, immediately: Bool, now: Double) -> [Command] {
        let message = immediately ? "\(cause): stopping now" : "\(cause): stopping the workers; requests in flight finish"
        return [.log(message)] + stopAll(now: now, immediately: immediately)
    }

    /// SIGHUP: a new generation from the bundle as it is on disk now.
    public mutating func reload(cause: String, now: Double) -> [Command] {
        guard phase != .stopping else { return [] }
        generation += 1
        if phase == .serving { phase = .reloading }
        startFailures = 0
        nextSpawnAt = 0
        return [.log("\(cause): starting generation \(generation) (the bundle and site configuration as they are on disk now)"),
                .notify(["RELOADING=1", "MONOTONIC_USEC=\(UInt64(max(0, now) * 1_000_000))", "STATUS=reloading"])]
    }

    /// SIGTTIN (+1) and SIGTTOU (−1); never below one worker.
    public mutating func scale(by change: Int, cause: String) -> [Command] {
        guard phase != .stopping else { return [] }
        desired = max(1, desired + change)
        return [.log("\(cause): \(desired) workers")]
    }

    // MARK: Reading

    /// sd_notify's STATUS field.
    public var status: String {
        let serving = workers.filter { $0.isServing }.count
        return "STATUS=\(serving) of \(desired) workers serving (generation \(generation))"
    }

    /// Whether systemd's watchdog may be fed: a worker serves and none serving is overdue.
    public func isHealthy(now: Double) -> Bool {
        let serving = workers.filter { $0.isServing }
        return !serving.isEmpty && !serving.contains { now - $0.lastHeartbeat > settings.heartbeatTimeout }
    }

    /// One line per worker: number, pid, generation, state, requests, RSS, age.
    public func statusLines(masterPID: Int32, now: Double) -> [String] {
        var lines = ["master pid \(masterPID): \(desired) workers wanted, generation \(generation), \(restarts) restarts"]
        for worker in workers.sorted(by: { $0.number < $1.number }) {
            let state: String
            switch worker.state {
            case .starting: state = "starting"
            case .serving: state = "serving"
            case .recycling: state = "recycling"
            case .stopping, .killed: state = "stopping"
            }
            lines.append("worker \(worker.number) pid \(worker.pid ?? 0) generation \(worker.generation) \(state): "
                         + "\(worker.served) requests, RSS \(worker.residentKiB / 1024) MiB, up \(Int(now - worker.started)) s")
        }
        return lines
    }

    // MARK: Policy

    private mutating func requestSpawn(now: Double) -> (Command, Int) {
        nextNumber += 1
        workers.append(Worker(number: nextNumber, generation: generation, pid: nil, state: .starting, started: now, lastHeartbeat: now))
        return (.spawn(number: nextNumber), nextNumber)
    }

    private mutating func failedStart(_ worker: Worker, how: String, now: Double) -> [Command] {
        startFailures += 1
        if !anyWorkerReady && startFailures >= settings.startAttempts {
            exitStatus = 1
            return [.log("\(describe(worker)) \(how) before it was ready; \(startFailures) starts failed and none succeeded: stopping")]
                + stopAll(now: now, immediately: false)
        }
        // 0.5, 1, 2, 4, 8, then 10 s.
        let delay = min(10.0, 0.5 * Double(1 << min(startFailures - 1, 5)))
        nextSpawnAt = now + delay
        var commands: [Command] = [.log("\(describe(worker)) \(how) before it was ready; retrying in \(format(delay)) s")]
        if phase == .reloading && startFailures >= settings.reloadAttempts {
            commands.append(.log("reload abandoned: the new generation does not start; the previous one keeps serving"))
            phase = .serving
            generation -= 1
            for index in workers.indices where workers[index].generation > generation {
                commands += terminate(at: index, now: now)
            }
            commands.append(.notify(["READY=1", status]))
        }
        return commands
    }

    /// Keeps `desired` workers of the current generation; retires old-generation,
    /// recycling and surplus workers once enough new ones serve.
    private mutating func maintain(now: Double) -> [Command] {
        var commands: [Command] = []
        let current = workers.indices.filter { workers[$0].generation == generation && workers[$0].holdsASlot }
        if current.count < desired, now >= nextSpawnAt {
            for _ in current.count..<desired { commands.append(requestSpawn(now: now).0) }
        }
        if current.count > desired {
            let surplus = current.filter { !isKilled(workers[$0]) }.sorted { workers[$0].number > workers[$1].number }
            for index in surplus.prefix(current.count - desired) {
                commands.append(.log("\(describe(workers[index])) is one too many: stopping it"))
                commands += terminate(at: index, now: now)
            }
        }
        let servingCount = workers.filter { $0.generation == generation && $0.state == .serving }.count
        guard servingCount >= desired else { return commands }
        for index in workers.indices {
            let worker = workers[index]
            if worker.generation != generation || { if case .recycling = worker.state { return true }; return false }() {
                commands += terminate(at: index, now: now)
            }
        }
        switch phase {
        case .starting:
            phase = .serving
            commands.append(.announce)
        case .reloading:
            phase = .serving
            commands.append(.log("reload done: generation \(generation) serves with \(servingCount) worker(s)"))
            commands.append(.notify(["READY=1", status]))
        case .serving, .stopping:
            break
        }
        return commands
    }

    private mutating func terminate(at index: Int, now: Double) -> [Command] {
        guard let pid = workers[index].pid else { return [] }
        switch workers[index].state {
        case .stopping, .killed: return []
        default:
            workers[index].state = .stopping(since: now)
            return [.terminate(pid: pid)]
        }
    }

    private mutating func stopAll(now: Double, immediately: Bool) -> [Command] {
        var commands: [Command] = []
        if phase != .stopping { commands.append(.notify(["STOPPING=1"])) }
        phase = .stopping
        for index in workers.indices {
            if immediately, let pid = workers[index].pid {
                if workers[index].state != .killed(.stopNow) { commands.append(.kill(pid: pid)) }
                workers[index].state = .killed(.stopNow)
            } else {
                commands += terminate(at: index, now: now)
            }
        }
        return commands
    }

    private func isKilled(_ worker: Worker) -> Bool {
        if case .killed = worker.state { return true }
        return false
    }

    private func describe(_ worker: Worker) -> String {
        "worker \(worker.number) (pid \(worker.pid ?? 0))"
    }
}

extension Supervision.Worker {
    /// Ready and not on its way out.
    var isServing: Bool {
        switch state {
        case .serving, .recycling: return true
        default: return false
        }
    }
}

func format(_ seconds: Double) -> String {
    let tenths = Int((seconds * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}
