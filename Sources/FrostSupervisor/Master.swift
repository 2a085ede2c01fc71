// FrostSupervisor: the process model: the master and its policy, listening sockets, the workers' links, heartbeats and connection board, sd_notify.

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
/// reads their links and reaps them. What to do about each event — replace, back off,
/// give up, recycle, swap generations, scale, stop — is `Supervision`'s decision; this
/// class owns the syscalls. It runs no Python.
public final class Master {
    /// A running worker's end of things the policy does not see: its link and board seat.
    struct Link {
        let control: Int32
        let seat: Int32
        var buffer: [UInt8] = []
    }

    private var configuration: MasterConfiguration
    private var supervision: Supervision
    private let notifier: SystemdNotifier
    private let environment: [String: String]
    private var sockets: [Int32] = []
    /// Where workers publish their connection counts (nil: it could not be made; workers
    /// then accept without looking at each other).
    private var board: ConnectionBoard?
    private var createdSocketFiles: [String] = []
    private var links: [Int32: Link] = [:]
    private var lastWatchdog = 0.0
    private var lastStats = 0.0

    public init(configuration: MasterConfiguration, environment: [String: String] = processEnvironment()) {
        self.configuration = configuration
        var settings = Supervision.Settings(workers: configuration.workers)
        settings.heartbeatTimeout = configuration.heartbeatTimeout
        settings.gracefulTimeout = configuration.gracefulTimeout
        settings.startTimeout = configuration.startTimeout
        self.supervision = Supervision(settings: settings)
        self.notifier = SystemdNotifier(environment: environment)
        self.environment = environment
    }

    /// Runs until stopped; returns the process exit status.
    public func run() -> Int32 {
        // Signals arrive through a pipe (a thread does sigwait), so the loop below can
        // poll them together with the workers' links.
        let pipe = SignalPipe(signals: [SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1])
        // A log reader that went away must not take the master with it.
        signal(SIGPIPE, SIG_IGN)
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
        execute(supervision.tick(now: monotonicSeconds()))  // the first workers start now, not after the first poll
        while true {
            let polled = Array(links.keys)
            var fds = [pollfd(fd: pipe.readFD, events: Int16(POLLIN), revents: 0)]
            fds += polled.map { pollfd(fd: links[$0]!.control, events: Int16(POLLIN), revents: 0) }
            _ = poll(&fds, nfds_t(fds.count), 200)
            if fds[0].revents != 0 {
                for signal in pipe.drain() { handle(signal: signal) }
            }
            for (pid, pfd) in zip(polled, fds.dropFirst()) where pfd.revents != 0 {
                readMessages(from: pid)
            }
            reap()
            execute(supervision.tick(now: monotonicSeconds()))
            if let status = supervision.finished { return status }
            periodic()
        }
    }

    /// Carries out the policy's commands, in order; a spawn is reported back at once.
    private func execute(_ commands: [Supervision.Command]) {
        for command in commands {
            switch command {
            case .spawn(let number):
                execute(spawn(number: number))
            case .terminate(let pid):
                kill(pid, SIGTERM)
            case .kill(let pid):
                kill(pid, SIGKILL)
            case .log(let message):
                log(message)
            case .notify(let fields):
                notifier.send(fields)
            case .announce:
                configuration.onFirstServing?()
                let addresses = sockets.map { localAddressDescription(of: $0) }.map { $0.hasPrefix("unix:") ? $0 : "http://" + $0 }
                let count = supervision.desired
                writeLine("frost: serving \(configuration.name) on \(addresses.joined(separator: ", ")) with \(count) worker process\(count == 1 ? "" : "es")", to: 1)
                notifier.send(["READY=1", supervision.status, "MAINPID=\(getpid())"])
            }
        }
    }

    // MARK: Sockets

    private func openSockets() throws {
        let inherited = ListenSockets.fromSystemd(environment: environment, pid: getpid())
        if !inherited.isEmpty {
            sockets = inherited.map { ListenSockets.moveHigh($0) }
            log("using \(sockets.count) socket(s) from systemd: \(sockets.map { localAddressDescription(of: $0) }.joined(separator: ", "))")
            return
        }
        for address in configuration.listen {
            let fd = try ListenSockets.bind(address)
            sockets.append(ListenSockets.moveHigh(fd))
            if address.hasPrefix("unix:") { createdSocketFiles.append(String(address.dropFirst(5))) }
        }
    }

    /// "127.0.0.1:8000" etc. of the listening sockets.
    public var addresses: [String] { sockets.map { localAddressDescription(of: $0) } }

    private func cleanUp() {
        for fd in sockets { close(fd) }
        for path in createdSocketFiles { unlink(path) }
        if let pidFile = configuration.pidFile { unlink(pidFile) }
    }

    // MARK: Workers

    /// Starts worker `number`: the sockets at 3, 4, …, its link right after them, then the board.
    private func spawn(number: Int) -> [Supervision.Command] {
        let now = monotonicSeconds()
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            return supervision.spawnFailed(number: number, reason: "cannot create a worker link: \(errnoDescription())", now: now)
        }
        let masterEnd = ListenSockets.moveHigh(pair[0])
        let workerEnd = ListenSockets.moveHigh(pair[1])
        defer { close(workerEnd) }
        let controlFD = Int32(3 + sockets.count)
        let seat = (0..<ConnectionBoard.seats).first { seat in !links.values.contains { $0.seat == seat } } ?? -1
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
            return supervision.spawnFailed(
                number: number, reason: "cannot start a worker (\(configuration.executable)): \(errnoDescription(status))", now: now)
        }
        links[pid] = Link(control: masterEnd, seat: Int32(seat))
        return supervision.spawned(number: number, pid: pid, now: now)
    }

    private func readMessages(from pid: Int32) {
        guard var link = links[pid] else { return }
        var chunk = [UInt8](repeating: 0, count: 4096)
        let count = recv(link.control, &chunk, chunk.count, Int32(MSG_DONTWAIT))
        guard count > 0 else { return }
        link.buffer += chunk[..<count]
        var messages: [WorkerMessage] = []
        while let newline = link.buffer.firstIndex(of: 10) {
            let line = String(decoding: link.buffer[..<newline], as: UTF8.self)
            link.buffer.removeSubrange(...newline)
            if let message = WorkerMessage(line: line) { messages.append(message) }
        }
        links[pid] = link
        for message in messages {
            execute(supervision.received(message, from: pid, now: monotonicSeconds()))
        }
    }

    /// Collects exited workers and says how each one ended.
    private func reap() {
        while true {
            var waitStatus: Int32 = 0
            let pid = waitpid(-1, &waitStatus, WNOHANG)
            guard pid > 0 else { return }
            guard let link = links.removeValue(forKey: pid) else { continue }
            close(link.control)
            board?.clear(seat: link.seat)  // a worker that crashed left its count behind
            execute(supervision.exited(pid: pid, how: describeExit(waitStatus), now: monotonicSeconds()))
        }
    }

    private func periodic() {
        let now = monotonicSeconds()
        if let interval = notifier.watchdogInterval, now - lastWatchdog >= interval / 2, supervision.isHealthy(now: now) {
            notifier.send(["WATCHDOG=1"])
            lastWatchdog = now
        }
        if configuration.statsInterval > 0, now - lastStats >= configuration.statsInterval {
            lastStats = now
            for line in statusLines() { log(line) }
        }
    }

    // MARK: Signals

    private func handle(signal: Int32) {
        let now = monotonicSeconds()
        switch signal {
        case SIGTERM: execute(supervision.stop(cause: "SIGTERM", immediately: false, now: now))
        case SIGINT: execute(supervision.stop(cause: "SIGINT", immediately: false, now: now))
        case SIGQUIT: execute(supervision.stop(cause: "SIGQUIT", immediately: true, now: now))
        case SIGHUP: execute(supervision.reload(cause: "SIGHUP", now: now))
        case SIGTTIN: execute(supervision.scale(by: 1, cause: "SIGTTIN"))
        case SIGTTOU: execute(supervision.scale(by: -1, cause: "SIGTTOU"))
        case SIGUSR1: writeLine(statusLines().joined(separator: "\n"), to: 1)
        default: break  // SIGCHLD: reaped by the loop
        }
    }

    /// One line per worker: number, pid, generation, state, requests, RSS, age.
    public func statusLines() -> [String] {
        supervision.statusLines(masterPID: getpid(), now: monotonicSeconds())
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


func describeExit(_ status: Int32) -> String {
    let signal = status & 0x7f
    if signal == 0 { return "exited with status \((status >> 8) & 0xff)" }
    let name = String(cString: strsignal(signal))
    return "was killed by signal \(signal) (\(name))" + ((status & 0x80) != 0 ? ", core dumped" : "")
}

func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
