import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// How the master runs its workers.
public struct MasterConfiguration: Sendable {
    /// The executable each worker runs (the loader itself, by the path it was started as,
    /// so a redeployed bundle is what the next generation runs).
    public var executable: String
    /// The worker's arguments; the master adds `--worker-control FD --listen-fds A,B`.
    public var workerArguments: [String]
    /// Addresses to bind ("HOST:PORT", "unix:PATH"), unless systemd passed sockets.
    public var listen: [String]
    public var workers: Int
    /// A worker silent for this long (no heartbeat) is killed and replaced.
    public var heartbeatTimeout: Double = 30
    /// How long a stopping worker may finish its requests before it is killed.
    public var gracefulTimeout: Double = 30
    /// How long a new worker may take to get ready.
    public var startTimeout: Double = 120
    /// Seconds between per-worker statistics lines (0: none).
    public var statsInterval: Double = 0
    public var pidFile: String?
    /// Called once, when the first generation serves (for --timings).
    public var onFirstServing: (@Sendable () -> Void)?
    /// For log lines: the bundle's module name.
    public var name: String

    public init(executable: String, workerArguments: [String], listen: [String], workers: Int, name: String) {
        self.executable = executable
        self.workerArguments = workerArguments
        self.listen = listen
        self.workers = workers
        self.name = name
    }
}

/// The master process: binds the listening sockets once, spawns the workers (fresh
/// processes of the same executable, never forks of this one), hands them the sockets,
/// watches their heartbeats, replaces those that die or hang, recycles on request,
/// swaps generations on SIGHUP and stops them on SIGTERM. It runs no Python.
public final class Master {
    final class Worker {
        let number: Int
        let generation: Int
        /// Its seat on the connection board.
        let seat: Int32
        let pid: pid_t
        let control: Int32
        var started: Double
        var buffer: [UInt8] = []
        var ready = false
        var lastHeartbeat: Double
        var served = 0
        var residentKiB = 0
        /// SIGTERM sent (retired); when, for the kill deadline.
        var stoppingSince: Double?
        var recycleReason: String?

        init(number: Int, generation: Int, seat: Int32, pid: pid_t, control: Int32, now: Double) {
            self.number = number
            self.generation = generation
            self.seat = seat
            self.pid = pid
            self.control = control
            self.started = now
            self.lastHeartbeat = now
        }
    }

    private var configuration: MasterConfiguration
    private let notifier: SystemdNotifier
    private var sockets: [Int32] = []
    /// Where workers publish their connection counts (nil: it could not be made; workers
    /// then accept without looking at each other).
    private var board: ConnectionBoard?
    private var createdSocketFiles: [String] = []
    private var workers: [Worker] = []
    private var generation = 1
    private var nextNumber = 0
    private var desired: Int
    private var everReady = false
    private var announced = false
    private var reloading = false
    private var stopping = false
    private var startFailures = 0
    private var nextSpawnAt = 0.0
    private var restarts = 0
    private var lastWatchdog = 0.0
    private var lastStats = 0.0
    private var exitStatus: Int32 = 0
    private var signalPipe: SignalPipe?
    /// Failed starts, with backoff, before a master whose workers never started gives up.
    static let startAttempts = 3

    public init(configuration: MasterConfiguration, environment: [String: String] = processEnvironment()) {
        self.configuration = configuration
        self.desired = max(1, configuration.workers)
        self.notifier = SystemdNotifier(environment: environment)
        self.environment = environment
    }

    private let environment: [String: String]

    /// Runs until stopped; returns the process exit status.
    public func run() -> Int32 {
        // Signals arrive through a pipe (a thread does sigwait), so the loop below can
        // poll them together with the workers' links.
        let pipe = SignalPipe(signals: [SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1])
        // A log reader that went away must not take the master with it.
        signal(SIGPIPE, SIG_IGN)
        signalPipe = pipe
        do {
            try openSockets()
        } catch {
            log("\(error)")
            return 1
        }
        do { board = try ConnectionBoard.create() } catch { log("\(error); workers accept without balancing") }
        if let pidFile = configuration.pidFile {
            let text = "\(getpid())\n"
            let fd = open(pidFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if fd < 0 || write(fd, text, text.utf8.count) != text.utf8.count {
                log("cannot write the pid file \(pidFile): \(errnoDescription())")
                if fd >= 0 { close(fd) }
                return 1
            }
            close(fd)
        }
        defer { cleanUp() }
        maintain()  // the first workers start now, not after the first poll
        while true {
            var fds = [pollfd(fd: pipe.readFD, events: Int16(POLLIN), revents: 0)]
            fds += workers.map { pollfd(fd: $0.control, events: Int16(POLLIN), revents: 0) }
            _ = poll(&fds, nfds_t(fds.count), 200)
            if fds[0].revents != 0 {
                for signal in pipe.drain() {
                    handle(signal: signal)
                }
            }
            for (index, pfd) in fds.dropFirst().enumerated() where pfd.revents != 0 && index < workers.count {
                readMessages(from: workers[index])
            }
            reap()
            if stopping {
                if workers.isEmpty { return exitStatus }
                enforceStopDeadlines()
                continue
            }
            if exitStatus != 0 { stopAll(immediately: false); continue }
            checkHealth()
            maintain()
            periodic()
        }
    }

    // MARK: Sockets

    private func openSockets() throws {
        let inherited = ListenSockets.fromSystemd(environment: environment, pid: getpid())
        if !inherited.isEmpty {
            sockets = inherited.map { ListenSockets.moveHigh($0) }
            log("using \(sockets.count) socket(s) from systemd: \(sockets.map(ListenSockets.describe).joined(separator: ", "))")
            return
        }
        for address in configuration.listen {
            let fd = try ListenSockets.bind(address)
            sockets.append(ListenSockets.moveHigh(fd))
            if address.hasPrefix("unix:") { createdSocketFiles.append(String(address.dropFirst(5))) }
        }
    }

    /// "127.0.0.1:8000" etc. of the listening sockets.
    public var addresses: [String] { sockets.map(ListenSockets.describe) }

    private func cleanUp() {
        for fd in sockets { close(fd) }
        for path in createdSocketFiles { unlink(path) }
        if let pidFile = configuration.pidFile { unlink(pidFile) }
    }

    // MARK: Workers

    private func spawn() {
        let now = monotonicSeconds()
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            log("cannot create a worker link: \(errnoDescription())")
            nextSpawnAt = now + 1
            return
        }
        let masterEnd = ListenSockets.moveHigh(pair[0])
        let workerEnd = ListenSockets.moveHigh(pair[1])
        defer { close(workerEnd) }
        // The worker gets the sockets at 3, 4, …, its link right after them, then the board.
        let controlFD = Int32(3 + sockets.count)
        let seat = (0..<ConnectionBoard.seats).first { seat in !workers.contains { $0.seat == seat } } ?? -1
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (index, fd) in sockets.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, Int32(3 + index)) }
        posix_spawn_file_actions_adddup2(&actions, workerEnd, controlFD)
        var boardArguments: [String] = []
        if let board, seat >= 0 {
            board.clear(seat: seat)
            posix_spawn_file_actions_adddup2(&actions, board.fd, controlFD + 1)
            boardArguments = ["--connection-board", "\(controlFD + 1):\(seat)"]
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let fdList = (0..<sockets.count).map { String(3 + $0) }.joined(separator: ",")
        let arguments = [configuration.executable, "--worker-control", String(controlFD), "--listen-fds", fdList]
            + boardArguments + configuration.workerArguments
        let hidden: Set<String> = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                                   "FROST_WORKERS"]
        // FROST_WORKERS: how many worker processes serve (wsgi.multiprocess follows it).
        let variables = (environment.filter { !hidden.contains($0.key) }.map { "\($0.key)=\($0.value)" }
            + ["FROST_WORKERS=\(configuration.workers)"]).sorted()
        var pid: pid_t = 0
        let status = withCStrings(arguments) { argv in
            withCStrings(variables) { envp in
                posix_spawn(&pid, configuration.executable, &actions, &attributes, argv, envp)
            }
        }
        guard status == 0 else {
            close(masterEnd)
            log("cannot start a worker (\(configuration.executable)): \(errnoDescription(status))")
            exitStatus = everReady ? exitStatus : 1
            nextSpawnAt = now + 1
            return
        }
        nextNumber += 1
        let worker = Worker(number: nextNumber, generation: generation, seat: seat, pid: pid, control: masterEnd, now: now)
        workers.append(worker)
    }

    private func readMessages(from worker: Worker) {
        var chunk = [UInt8](repeating: 0, count: 4096)
        let count = recv(worker.control, &chunk, chunk.count, Int32(MSG_DONTWAIT))
        guard count > 0 else { return }
        worker.buffer += chunk[..<count]
        while let newline = worker.buffer.firstIndex(of: 10) {
            let line = String(decoding: worker.buffer[..<newline], as: UTF8.self)
            worker.buffer.removeSubrange(...newline)
            guard let message = WorkerMessage(line: line) else { continue }
            let now = monotonicSeconds()
            switch message {
            case .ready:
                worker.ready = true
                worker.lastHeartbeat = now
                startFailures = 0
                if everReady {
                    log("worker \(worker.number) (pid \(worker.pid)) is serving")
                }
                everReady = true
            case .heartbeat(let served, let resident):
                worker.lastHeartbeat = now
                worker.served = served
                worker.residentKiB = resident
            case .recycle(let reason):
                if worker.recycleReason == nil, worker.stoppingSince == nil {
                    worker.recycleReason = reason
                    log("worker \(worker.number) (pid \(worker.pid)) asks to be recycled (\(reason)); starting its replacement")
                }
            }
        }
    }

    /// Collects exited workers and says how each one ended.
    private func reap() {
        while true {
            var waitStatus: Int32 = 0
            let pid = waitpid(-1, &waitStatus, WNOHANG)
            guard pid > 0 else { return }
            guard let index = workers.firstIndex(where: { $0.pid == pid }) else { continue }
            let worker = workers.remove(at: index)
            close(worker.control)
            board?.clear(seat: worker.seat)  // a worker that crashed left its count behind
            let how = describeExit(waitStatus)
            if worker.stoppingSince != nil || stopping {
                log("worker \(worker.number) (pid \(worker.pid)) stopped (\(how))")
                continue
            }
            if !worker.ready {
                startFailures += 1
                if !everReady && startFailures >= Master.startAttempts {
                    log("worker \(worker.number) (pid \(worker.pid)) \(how) before it was ready; "
                        + "\(startFailures) starts failed and none succeeded: stopping")
                    exitStatus = 1
                    stopAll(immediately: false)
                    return
                }
                let delay = min(10.0, 0.5 * Double(1 << min(startFailures - 1, 5)))
                nextSpawnAt = monotonicSeconds() + delay
                log("worker \(worker.number) (pid \(worker.pid)) \(how) before it was ready; retrying in \(format(delay)) s")
                if reloading && startFailures >= 5 {
                    log("reload abandoned: the new generation does not start; the previous one keeps serving")
                    reloading = false
                    generation -= 1
                    for other in workers where other.generation > generation { terminate(other) }
                    notifier.send(["READY=1", status()])
                }
                continue
            }
            restarts += 1
            spawn()
            let replacement = workers.last.map { " by worker \($0.number) (pid \($0.pid))" } ?? ""
            log("worker \(worker.number) (pid \(worker.pid)) \(how); replaced\(replacement)")
        }
    }

    /// Kills workers that stopped heart-beating or do not get ready.
    private func checkHealth() {
        let now = monotonicSeconds()
        for worker in workers where worker.stoppingSince == nil {
            if worker.ready, now - worker.lastHeartbeat > configuration.heartbeatTimeout {
                log("worker \(worker.number) (pid \(worker.pid)) missed its heartbeat for \(format(now - worker.lastHeartbeat)) s: killing it")
                kill(worker.pid, SIGKILL)
                worker.lastHeartbeat = now + 3600  // once
            } else if !worker.ready, now - worker.started > configuration.startTimeout {
                log("worker \(worker.number) (pid \(worker.pid)) not ready after \(format(configuration.startTimeout)) s: killing it")
                kill(worker.pid, SIGKILL)
                worker.started = now + 3600
            }
        }
        enforceStopDeadlines()
    }

    private func enforceStopDeadlines() {
        let now = monotonicSeconds()
        for worker in workers {
            if let since = worker.stoppingSince, now - since > configuration.gracefulTimeout + 5 {
                log("worker \(worker.number) (pid \(worker.pid)) did not stop in time: killing it")
                kill(worker.pid, SIGKILL)
                worker.stoppingSince = now + 3600
            }
        }
    }

    /// Keeps `desired` workers of the current generation serving; retires old-generation,
    /// recycling and surplus workers once enough new ones are ready.
    private func maintain() {
        let now = monotonicSeconds()
        let current = workers.filter { $0.generation == generation && $0.stoppingSince == nil && $0.recycleReason == nil }
        if current.count < desired, now >= nextSpawnAt {
            for _ in current.count..<desired { spawn() }
        }
        if current.count > desired {
            for worker in current.sorted(by: { $0.number > $1.number }).prefix(current.count - desired) {
                log("worker \(worker.number) (pid \(worker.pid)) is one too many: stopping it")
                terminate(worker)
            }
        }
        let readyCount = current.filter(\.ready).count
        if readyCount >= desired {
            for worker in workers where worker.stoppingSince == nil && (worker.generation != generation || worker.recycleReason != nil) {
                terminate(worker)
            }
            if reloading {
                reloading = false
                log("reload done: generation \(generation) serves with \(readyCount) worker(s)")
                notifier.send(["READY=1", status()])
            }
            if !announced {
                announced = true
                configuration.onFirstServing?()
                let addresses = sockets.map(ListenSockets.describe).map { $0.hasPrefix("unix:") ? $0 : "http://" + $0 }
                writeLine("frost: serving \(configuration.name) on \(addresses.joined(separator: ", ")) with \(desired) worker process\(desired == 1 ? "" : "es")", to: 1)
                notifier.send(["READY=1", status(), "MAINPID=\(getpid())"])
            }
        }
    }

    private func terminate(_ worker: Worker) {
        guard worker.stoppingSince == nil else { return }
        worker.stoppingSince = monotonicSeconds()
        kill(worker.pid, SIGTERM)
    }

    private func periodic() {
        let now = monotonicSeconds()
        if let interval = notifier.watchdogInterval, now - lastWatchdog >= interval / 2 {
            let healthy = workers.contains { $0.ready && $0.stoppingSince == nil }
                && !workers.contains { $0.ready && $0.stoppingSince == nil && now - $0.lastHeartbeat > configuration.heartbeatTimeout }
            if healthy {
                notifier.send(["WATCHDOG=1"])
                lastWatchdog = now
            }
        }
        if configuration.statsInterval > 0, now - lastStats >= configuration.statsInterval {
            lastStats = now
            for line in statusLines() { log(line) }
        }
    }

    // MARK: Signals

    private func handle(signal: Int32) {
        switch signal {
        case SIGCHLD:
            break  // reaped by the loop
        case SIGTERM, SIGINT:
            log("\(signal == SIGTERM ? "SIGTERM" : "SIGINT"): stopping the workers; requests in flight finish")
            stopAll(immediately: false)
        case SIGQUIT:
            log("SIGQUIT: stopping now")
            stopAll(immediately: true)
        case SIGHUP where !stopping:
            generation += 1
            reloading = true
            startFailures = 0
            nextSpawnAt = 0
            log("SIGHUP: starting generation \(generation) (the bundle and site configuration as they are on disk now)")
            notifier.send(["RELOADING=1", "MONOTONIC_USEC=\(monotonicMicroseconds())", "STATUS=reloading"])
        case SIGTTIN where !stopping:
            desired += 1
            log("SIGTTIN: \(desired) workers")
        case SIGTTOU where !stopping:
            desired = max(1, desired - 1)
            log("SIGTTOU: \(desired) workers")
        case SIGUSR1:
            writeLine(statusLines().joined(separator: "\n"), to: 1)
        default:
            break
        }
    }

    private func stopAll(immediately: Bool) {
        if !stopping { notifier.send(["STOPPING=1"]) }
        stopping = true
        for worker in workers {
            if immediately {
                kill(worker.pid, SIGKILL)
            } else {
                terminate(worker)
            }
        }
    }

    // MARK: Reporting

    private func status() -> String {
        let serving = workers.filter { $0.ready && $0.stoppingSince == nil }.count
        return "STATUS=\(serving) of \(desired) workers serving (generation \(generation))"
    }

    /// One line per worker: number, pid, generation, state, requests, RSS, age.
    public func statusLines() -> [String] {
        let now = monotonicSeconds()
        var lines = ["master pid \(getpid()): \(desired) workers wanted, generation \(generation), \(restarts) restarts"]
        for worker in workers.sorted(by: { $0.number < $1.number }) {
            let state = worker.stoppingSince != nil ? "stopping" : worker.recycleReason != nil ? "recycling"
                : worker.ready ? "serving" : "starting"
            lines.append("worker \(worker.number) pid \(worker.pid) generation \(worker.generation) \(state): "
                         + "\(worker.served) requests, RSS \(worker.residentKiB / 1024) MiB, up \(Int(now - worker.started)) s")
        }
        return lines
    }

    private func log(_ message: String) {
        writeLine("frost: master: \(message)", to: 2)
    }
}

// MARK: - Helpers

/// Signals as bytes on a pipe: they are blocked in every thread and one thread takes
/// them with sigwait, so the master's poll loop sees them like any other input.
final class SignalPipe: @unchecked Sendable {
    // @unchecked: the descriptors are immutable; the thread only writes to the pipe.
    let readFD: Int32
    let writeFD: Int32
    var set = sigset_t()

    init(signals: [Int32]) {
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        var fds: [Int32] = [0, 0]
        pipe(&fds)
        readFD = ListenSockets.moveHigh(fds[0])
        writeFD = ListenSockets.moveHigh(fds[1])
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        pthread_create(&thread, nil, { raw in
            let pipe = Unmanaged<SignalPipe>.fromOpaque(raw!).takeRetainedValue()
            while true {
                var received: Int32 = 0
                if sigwait(&pipe.set, &received) == 0 {
                    var byte = UInt8(truncatingIfNeeded: received)
                    _ = write(pipe.writeFD, &byte, 1)
                }
            }
        }, context)
        pthread_detach(thread)
    }

    func drain() -> [Int32] {
        var bytes = [UInt8](repeating: 0, count: 64)
        var flags = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
        var result: [Int32] = []
        while poll(&flags, 1, 0) > 0 {
            let count = read(readFD, &bytes, bytes.count)
            guard count > 0 else { break }
            result += bytes[..<count].map { Int32($0) }
        }
        return result
    }
}


func format(_ seconds: Double) -> String {
    let tenths = Int((seconds * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}

func describeExit(_ status: Int32) -> String {
    let signal = status & 0x7f
    if signal == 0 { return "exited with status \((status >> 8) & 0xff)" }
    let name = String(cString: strsignal(signal))
    return "was killed by signal \(signal) (\(name))" + ((status & 0x80) != 0 ? ", core dumped" : "")
}

/// One write(2) per line, so lines from several processes never interleave.
func writeLine(_ text: String, to fd: Int32) {
    writeAll(Array((text + "\n").utf8), to: fd)
}

func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
