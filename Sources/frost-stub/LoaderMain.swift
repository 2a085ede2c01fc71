import FrostBundle
import FrostPython
import FrostRuntime
import FrostServer
import FrostSupervisor
#if canImport(Glibc)
import Glibc
#endif

/// The command line of the generic executable in every bundle.
///
/// `_NAME` is the loader of module NAME; `NAME` (no underscore) is the console, which
/// runs NAME as `__main__` with the remaining arguments.
public enum LoaderMain {
    public static let usage = """
        usage: _NAME [--listen HOST:PORT | --listen unix:PATH]... [--threads N] [--debug] [--no-access-log]
               _NAME --check [--module NAME]
               NAME [ARGUMENTS...]        (the console: runs module NAME as __main__)

          --listen ADDR    where to serve HTTP, repeatable (default: the bundle's listen option, else 127.0.0.1:8000;
                           port 0 picks a free port)
          --threads N      Python threads serving requests concurrently (default: the spec's threads, else 8)
          --workers N      worker processes under a master (default: the bundle's spec, else 1;
                           auto: one per core; 0: one process, no master)
          --heartbeat-timeout S  a worker silent this long is killed and replaced (30)
          --graceful-timeout S   how long stopping workers may finish requests (30)
          --max-requests N [--max-requests-jitter J]  recycle a worker after N (+0..J) requests
          --max-rss MB     recycle a worker whose resident memory exceeds MB
          --pid-file FILE  the master's pid; --stats-interval S: per-worker statistics every S s
          --trusted-proxy ADDR  believe X-Forwarded-For and X-Forwarded-Proto (REMOTE_ADDR, HTTPS)
                           from this peer: an IP address, or unix for unix-socket peers (repeatable)
          --health-path PATH  answer GET PATH with 200 "ok" without calling Python (for probes; off by default)
          --site FILE      virtual directories, script maps and filters (JSON, as `NAME install`
                           writes it; default: site.json in the bundle when present);
                           URLs no script map takes are static files
          --debug          show Python tracebacks to clients (never in production)
          --access-log FILE  append the access log to FILE instead of stdout ("-")
          --log-format F   combined (default) or w3c (W3C extended, with time-taken)
          --no-access-log  no access log
          --max-uri BYTES, --max-headers N, --max-header-bytes BYTES, --max-body BYTES
                           request limits (8192, 100, 32768, 1073741824): 414, 431, 413
          --header-timeout S, --idle-timeout S, --body-timeout S, --request-timeout S
                           time-outs (10, 60, 30, 300): slow connections are closed; a request
                           over its deadline gets 504
          --discard-max BYTES  a request body the handler left unread is read and dropped to
                           keep the connection when at most this much of it is still to come
                           (1048576); a larger or chunked one: Connection: close
          --lingering-time S, --lingering-timeout S  before closing after a response, read and
                           drop what the client still sends for at most S in all (30), and at
                           most S between its sends (5), so the response is never lost to a reset
          --timings        print where each process's start-up time goes (locate, verify, mount,
                           Python init, import, factories, listen)
          --check          mount the archive, import the entry module, run its factories
                           and Version calls, print what it provides, call Terminate*, exit
          --module NAME    load module NAME instead of the one named by this executable
          --version        print the frost and Python versions
          --help           this text
        SIGTERM or SIGINT stop the server gracefully: requests in flight finish, Terminate* runs.
        With workers: SIGHUP starts a new generation (bundle and site re-read) and retires the old
        one; SIGQUIT stops at once; SIGTTIN/SIGTTOU add/remove a worker; SIGUSR1 prints the workers.
        """

    /// Runs the command line and returns the process exit status: 0 success, 1 a
    /// failure while loading (printed as one line and a traceback), 2 a usage error.
    public static func run(_ arguments: [String]) -> Int32 {
        StartupTimings.begin()
        guard let executablePath = FileSystem.currentExecutablePath() else {
            printError("frost: cannot find this executable's path (/proc/self/exe)")
            return 1
        }
        let layout = BundleLayout(executablePath: executablePath)
        let label = layout.executableName
        let rest = Array(arguments.dropFirst())

        if layout.role == .console, BundleLayout.problemWithModuleName(layout.name) != nil {
            // The generic stub itself (frost-stub), not yet copied into a bundle.
            if rest.first == "--version" {
                printLine(versionLine(layout))
                return 0
            }
            printError("\(label): this is the generic frost loader; frost build copies it into a bundle as _NAME and NAME")
            return 2
        }
        if layout.role == .console {
            return runConsole(executablePath: executablePath, label: label, arguments: rest)
        }

        var check = false
        var module: String?
        var listens: [String] = []
        var threads: Int?  // default: the spec's threads, else 8
        var trustedProxies: [String] = []
        var healthPath: String?
        var debug = false
        var accessLog = true
        var limits = HostLimits()
        var siteFile: String?
        var accessLogPath: String?
        var logFormat = AccessLog.Format.combined
        var process = ProcessOptions()
        var index = 0
        func value(_ option: String) -> String? {
            if rest[index].hasPrefix(option + "=") { return String(rest[index].dropFirst(option.count + 1)) }
            guard index + 1 < rest.count else { return nil }
            index += 1
            return rest[index]
        }
        while index < rest.count {
            let argument = rest[index]
            switch argument {
            case "--check": check = true
            case "--timings": StartupTimings.enabled = true
            case "--debug": debug = true
            case "--no-access-log": accessLog = false
            case _ where argument == "--listen" || argument.hasPrefix("--listen="):
                guard let address = value("--listen") else { return usageError(label, "--listen needs an address") }
                listens.append(address)  // repeatable: one socket each
            case _ where ["--max-uri", "--max-headers", "--max-header-bytes", "--max-body", "--discard-max"].contains(argument.split(separator: "=").first.map(String.init) ?? ""):
                let option = String(argument.split(separator: "=").first!)
                guard let text = value(option), let number = Int(text), number > 0 else {
                    return usageError(label, "\(option) needs a positive number")
                }
                switch option {
                case "--max-uri": limits.maxURIBytes = number
                case "--max-headers": limits.maxHeaderCount = number
                case "--max-header-bytes": limits.maxHeaderBytes = number
                case "--discard-max": limits.maxDiscardBytes = number
                default: limits.maxBodyBytes = number
                }
            case _ where ["--header-timeout", "--idle-timeout", "--body-timeout", "--request-timeout", "--lingering-time",
                          "--lingering-timeout"].contains(argument.split(separator: "=").first.map(String.init) ?? ""):
                let option = String(argument.split(separator: "=").first!)
                guard let text = value(option), let seconds = Double(text), seconds > 0 else {
                    return usageError(label, "\(option) needs a positive number of seconds")
                }
                switch option {
                case "--header-timeout": limits.headerTimeout = seconds
                case "--idle-timeout": limits.idleTimeout = seconds
                case "--body-timeout": limits.bodyTimeout = seconds
                case "--lingering-time": limits.lingeringTime = seconds
                case "--lingering-timeout": limits.lingeringTimeout = seconds
                default: limits.requestTimeout = seconds
                }
            case _ where argument == "--access-log" || argument.hasPrefix("--access-log="):
                guard let path = value("--access-log") else { return usageError(label, "--access-log needs a file or -") }
                accessLogPath = path
            case _ where argument == "--log-format" || argument.hasPrefix("--log-format="):
                guard let name = value("--log-format"), let format = AccessLog.Format(rawValue: name) else {
                    return usageError(label, "--log-format is combined or w3c")
                }
                logFormat = format
            case _ where argument == "--trusted-proxy" || argument.hasPrefix("--trusted-proxy="):
                guard let address = value("--trusted-proxy"), !address.isEmpty else {
                    return usageError(label, "--trusted-proxy needs an IP address, or unix")
                }
                trustedProxies.append(address)
            case _ where argument == "--health-path" || argument.hasPrefix("--health-path="):
                guard let path = value("--health-path"), path.hasPrefix("/") else {
                    return usageError(label, "--health-path needs a path that starts with /")
                }
                healthPath = path
            case _ where argument == "--site" || argument.hasPrefix("--site="):
                guard let file = value("--site") else { return usageError(label, "--site needs a file") }
                siteFile = file
            case _ where argument == "--threads" || argument.hasPrefix("--threads="):
                guard let text = value("--threads"), let count = Int(text), (1...256).contains(count) else {
                    return usageError(label, "--threads needs a number from 1 to 256")
                }
                threads = count
            case _ where ProcessOptions.names.contains(argument.split(separator: "=").first.map(String.init) ?? ""):
                let option = String(argument.split(separator: "=").first!)
                guard let text = value(option) else { return usageError(label, "\(option) needs a value") }
                if let problem = process.set(option, text) { return usageError(label, problem) }
            case "--help", "-h":
                printLine(usage)
                return 0
            case "--version":
                printLine(versionLine(layout))
                return 0
            case "--module":
                guard index + 1 < rest.count else { return usageError(label, "--module needs a module name") }
                module = rest[index + 1]
                index += 1
            default:
                if argument.hasPrefix("--module=") {
                    module = String(argument.dropFirst("--module=".count))
                } else {
                    return usageError(label, "unknown option '\(argument)'")
                }
            }
            index += 1
        }
        if check {
            return runCheck(executablePath: executablePath, label: label, module: module)
        }
        let listen = listens.first
        let serve = { (worker: WorkerSetup?) in
            runServer(executablePath: executablePath, label: label, module: module, listens: listens,
                      threads: threads, debug: debug, accessLog: accessLog ? (accessLogPath ?? "-", logFormat) : nil,
                      limits: limits, siteFile: siteFile, trustedProxies: trustedProxies, healthPath: healthPath, worker: worker)
        }
        if let control = process.workerControl {
            return serve(WorkerSetup(link: MasterLink(fd: control), sockets: process.listenFDs, options: process))
        }
        // The worker count: --workers, else the bundle's spec, else one worker process.
        let manifest = try? BundleManifest.load(bundleDirectory: layout.directory)
        let specWorkers = manifest?.options["workers"].flatMap { $0.string ?? $0.int.map(String.init) }
        guard let workers = ProcessOptions.workerCount(process.workers ?? specWorkers ?? "1") else {
            return usageError(label, "--workers is a number (0: no master) or auto")
        }
        if workers == 0 { return serve(nil) }
        var configuration = MasterConfiguration(
            executable: executablePath, workerArguments: rest,
            listen: listen == nil ? [manifest?.options["listen"]?.string ?? "127.0.0.1:8000"] : listens, workers: workers,
            name: BundleLayout.problemWithModuleName(module ?? layout.name) == nil ? (module ?? layout.name) : layout.name)
        configuration.heartbeatTimeout = process.heartbeatTimeout
        configuration.gracefulTimeout = process.gracefulTimeout
        configuration.statsInterval = process.statsInterval
        configuration.pidFile = process.pidFile
        if StartupTimings.enabled {
            configuration.onFirstServing = {
                StartupTimings.mark("workers serving")
                printError("frost: start-up of the master: \(StartupTimings.summary)")
            }
        }
        return Master(configuration: configuration).run()
    }

    /// What `--version` prints: the loader, and the Python the bundle runs (from its
    /// manifest; the generic loader runs whichever supported version a bundle carries).
    static func versionLine(_ layout: BundleLayout) -> String {
        let range = PythonLibrary.supportedMinorVersions
        let generic = "frost loader for CPython 3.\(range.lowerBound) to 3.\(range.upperBound)"
        guard let manifest = try? BundleManifest.load(bundleDirectory: layout.directory) else { return generic }
        return "\(generic); this bundle: Python \(manifest.pythonVersion) (lib/\(manifest.pythonLibraryName))"
    }

    static func runCheck(executablePath: String, label: String, module: String?) -> Int32 {
        do {
            let loader = try Loader(executablePath: executablePath, moduleOverride: module)
            printLine("bundle: \(loader.layout.directory) (loader \(label), module \(loader.moduleName))")
            printLine("archive: \(loader.archivePath) (\(loader.archive.entries.count) entries)")
            printLine("python: \(Python.version) (\(PythonLibrary.loaded?.path ?? "?")), standard library from \(loader.standardLibrary.summary)")
            if let manifest = loader.manifest {
                printLine("manifest: archives match bundle.json (\(manifest.files.count) files recorded)")
            } else {
                printLine("manifest: none (a hand-assembled bundle: not verified)")
            }
            let entry = try loader.loadEntry()
            printLine("module: \(loader.moduleName) from \(entry.file)")
            if let info = entry.extensionInfo {
                printLine("extension: \(info.extensionDescription.isEmpty ? "(no description)" : info.extensionDescription)")
            }
            if let info = entry.filterInfo {
                printLine("filter: \(info.filterDescription.isEmpty ? "(no description)" : info.filterDescription); "
                          + "flags 0x\(String(info.flags, radix: 16)) (\(FilterFlags.describe(info.flags)))")
            }
            let terminated = try loader.terminate(entry)
            printLine("terminated: \(terminated.joined(separator: ", "))")
            guard loader.finalize() else {
                printError("\(label): error: Python could not flush its output at shutdown")
                return 1
            }
            printLine("check: ok")
            return 0
        } catch {
            return report(label, error)
        }
    }

    /// Serves HTTP until SIGTERM or SIGINT, then stops gracefully. As a worker it serves
    /// the sockets its master handed over and reports to it every second.
    static func runServer(executablePath: String, label: String, module: String?, listens: [String],
                          threads: Int?, debug: Bool, accessLog: (path: String, format: AccessLog.Format)?,
                          limits: HostLimits, siteFile: String?, trustedProxies: [String] = [], healthPath: String? = nil,
                          worker: WorkerSetup?) -> Int32 {
        // Block the stop signals in every thread (threads inherit the mask); the main
        // thread waits for them with sigwait. A worker ignores SIGHUP (the master's).
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        // SIGHUP is the master's: a worker ignores it, a single process says so.
        if worker == nil { sigaddset(&signals, SIGHUP) }
        var blocked = signals
        sigaddset(&blocked, SIGHUP)
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
        // Writes to a closed log pipe or socket fail with EPIPE instead of killing the server.
        signal(SIGPIPE, SIG_IGN)
        ProcessLimits.raiseOpenFileLimit()
        let environment = processEnvironment()
        let notifier = SystemdNotifier(environment: environment)
        let systemdSockets = worker == nil ? ListenSockets.fromSystemd(environment: environment, pid: getpid()) : []
        do {
            let log: AccessLog?
            do { log = try accessLog.map { try AccessLog(path: $0.path, format: $0.format) } } catch {
                throw LoaderError(.usage, "\(error)")
            }
            var site: Site?
            // The site configuration `NAME install` recorded, unless --site names another.
            let installed = BundleLayout(executablePath: executablePath).directory + "/site.json"
            if let siteFile = siteFile ?? (FileSystem.isRegularFile(installed) ? installed : nil) {
                do { site = try Site.load(siteFile) } catch {
                    throw LoaderError(.usage, "bad site configuration: \(error)")
                }
            }
            let loader = try Loader(executablePath: executablePath, moduleOverride: module)
            try loader.withGIL {
                do { try PythonOutput.install() } catch { throw LoaderError(.run, "cannot redirect Python's output: \(error)") }
            }
            let entry = try loader.loadEntry()
            let address = listens.first ?? loader.manifest?.options["listen"]?.string ?? "127.0.0.1:8000"
            var extraSockets: [Int32] = []
            if worker == nil, systemdSockets.isEmpty, listens.count > 1 {
                // Several addresses in one process: bound here, served like handed-over sockets.
                do { extraSockets = try listens.map { try ListenSockets.bind($0) } } catch {
                    throw LoaderError(.run, "\(error)")
                }
            }
            let pythonThreads = threads ?? loader.manifest?.options["threads"]?.int ?? 8
            let host: Host
            do {
                var current = entry.extensionObject
                var currentFilter = entry.filterObject
                var configuration = HostConfiguration(
                    listen: address, pythonThreads: pythonThreads,
                    debug: debug, accessLog: log,
                    physicalPath: loader.layout.directory, limits: limits, site: site)
                configuration.trustedProxies = TrustedProxies(trustedProxies)
                configuration.healthPath = healthPath
                configuration.boundSockets = worker?.sockets ?? (systemdSockets.isEmpty ? extraSockets : systemdSockets)
                if let worker {
                    configuration.shutdownGrace = worker.options.gracefulTimeout
                    if let (fd, seat) = worker.options.connectionBoard {
                        do {
                            configuration.connectionSeat = ConnectionBoard.Seat(board: try ConnectionBoard(mapping: fd), index: seat)
                        } catch {
                            printError("\(label): \(error); accepting without balancing")
                        }
                    }
                    // IIS recycles a worker process whose extension reports itself unhealthy.
                    let link = worker.link
                    configuration.onUnhealthy = { reason in link.send(.recycle(reason: "the extension reports itself unhealthy: \(reason)")) }
                }
                host = try Host(interpreter: loader.interpreter, entry: entry, configuration: configuration, reload: {
                        current = try loader.reloadExtension(current)
                        return current
                    }, reloadFilter: {
                        currentFilter = try loader.reloadFilter(currentFilter)
                        return currentFilter
                    })
            } catch {
                throw LoaderError(.run, "cannot start the server: \(error)")
            }
            let bound: String
            do { bound = try host.start() } catch { throw LoaderError(.run, "\(error)") }
            StartupTimings.mark("listen")
            if StartupTimings.enabled {
                printError("frost: start-up of \(worker == nil ? "the server" : "worker \(getpid())"): \(StartupTimings.summary)")
            }
            let scheme = bound.hasPrefix("unix:") ? "" : "http://"
            var received: Int32 = 0
            if let worker {
                worker.link.send(.ready)
                received = worker.serve(host, limits: limits, signals: &signals)
                printError("frost: worker \(getpid()): stopping; requests in flight finish")
            } else {
                printLine("frost: serving \(loader.moduleName) on \(scheme)\(bound) with \(pythonThreads) Python threads")
                notifier.send(["READY=1", "STATUS=serving with \(pythonThreads) Python threads", "MAINPID=\(getpid())"])
                while true {
                    guard sigwait(&signals, &received) == 0 else { continue }
                    if received != SIGHUP { break }
                    printError("frost: SIGHUP ignored: reloading needs a master (--workers 1 or more)")
                }
                notifier.send(["STOPPING=1"])
                printLine("frost: \(received == SIGTERM ? "SIGTERM" : "SIGINT"): stopping; requests in flight finish")
            }
            host.shutdown()
            let serving = loader.withGIL { host.currentObjects }
            _ = try loader.terminate(extensionObject: serving.extensionObject, filterObject: serving.filterObject)
            loader.finalize()
            if worker == nil { printLine("frost: stopped") }
            return 0
        } catch {
            return report(label, error)
        }
    }

    static func runConsole(executablePath: String, label: String, arguments: [String]) -> Int32 {
        do {
            let loader = try Loader(executablePath: executablePath, arguments: arguments, console: true)
            let status = try loader.runAsMain()
            return loader.finalize() ? status : (status == 0 ? 1 : status)
        } catch {
            return report(label, error)
        }
    }

    static func report(_ label: String, _ error: Error) -> Int32 {
        if let error = error as? LoaderError {
            printError("\(label): error: \(error.message)")
            if let traceback = error.traceback { writeOut(traceback, to: 2) }
            return error.stage == .usage ? 2 : 1
        }
        printError("\(label): error: \(error)")
        return 1
    }

    static func usageError(_ label: String, _ message: String) -> Int32 {
        printError("\(label): \(message)\n\(usage)")
        return 2
    }
}

/// The process model's options: the master's and what it hands to its workers.
struct ProcessOptions {
    static let names: Set<String> = ["--workers", "--heartbeat-timeout", "--graceful-timeout", "--max-requests",
                                     "--max-requests-jitter", "--max-rss", "--pid-file", "--stats-interval",
                                     "--worker-control", "--listen-fds", "--connection-board"]
    var workers: String?
    var heartbeatTimeout = 30.0
    var gracefulTimeout = 30.0
    var maxRequests = 0
    var maxRequestsJitter = 0
    var maxRSSMiB = 0
    var pidFile: String?
    var statsInterval = 0.0
    /// Internal (set by the master): the worker's link and its listening sockets.
    var workerControl: Int32?
    var listenFDs: [Int32] = []
    /// Internal (set by the master): the shared connection board's descriptor and this
    /// worker's seat on it.
    var connectionBoard: (fd: Int32, seat: Int32)?

    /// Sets an option from its text; returns a problem to report, or nil.
    mutating func set(_ option: String, _ text: String) -> String? {
        func seconds() -> Double? { Double(text).flatMap { $0 > 0 ? $0 : nil } }
        func count() -> Int? { Int(text).flatMap { $0 >= 0 ? $0 : nil } }
        switch option {
        case "--workers":
            guard ProcessOptions.workerCount(text) != nil else { return "--workers is a number (0: no master) or auto" }
            workers = text
        case "--heartbeat-timeout":
            guard let value = seconds() else { return "\(option) needs a positive number of seconds" }
            heartbeatTimeout = value
        case "--graceful-timeout":
            guard let value = seconds() else { return "\(option) needs a positive number of seconds" }
            gracefulTimeout = value
        case "--stats-interval":
            guard let value = Double(text), value >= 0 else { return "\(option) needs a number of seconds (0: off)" }
            statsInterval = value
        case "--max-requests":
            guard let value = count() else { return "\(option) needs a number (0: no limit)" }
            maxRequests = value
        case "--max-requests-jitter":
            guard let value = count() else { return "\(option) needs a number" }
            maxRequestsJitter = value
        case "--max-rss":
            guard let value = count() else { return "\(option) needs a number of MiB (0: no limit)" }
            maxRSSMiB = value
        case "--pid-file":
            pidFile = text
        case "--worker-control":
            guard let fd = Int32(text), fd > 2 else { return "\(option) needs a descriptor" }
            workerControl = fd
        case "--connection-board":
            let parts = text.split(separator: ":")
            guard parts.count == 2, let fd = Int32(parts[0]), fd > 2, let seat = Int32(parts[1]),
                  (0..<ConnectionBoard.seats).contains(seat) else { return "\(option) needs DESCRIPTOR:SEAT" }
            connectionBoard = (fd, seat)
        case "--listen-fds":
            let fds = text.split(separator: ",").compactMap { Int32($0) }
            guard !fds.isEmpty, fds.allSatisfy({ $0 > 2 }) else { return "\(option) needs descriptors" }
            listenFDs = fds
        default:
            return "unknown option \(option)"
        }
        return nil
    }

    /// "auto" is one per core.
    static func workerCount(_ text: String) -> Int? {
        if text == "auto" { return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
        guard let count = Int(text), (0...1024).contains(count) else { return nil }
        return count
    }
}

/// A worker's side of the process model: its link to the master and its limits.
struct WorkerSetup {
    let link: MasterLink
    let sockets: [Int32]
    let options: ProcessOptions

    /// Waits for SIGTERM/SIGINT, reporting every second (or a quarter of the heartbeat
    /// time-out when that is shorter): a heartbeat while no handler is
    /// stuck past its deadline and a Python thread takes new work (or all are busy), and a request
    /// to be recycled after --max-requests (plus jitter) or over --max-rss. Returns the
    /// signal that stopped it (SIGTERM when the master went away).
    func serve(_ host: Host, limits: HostLimits, signals: inout sigset_t) -> Int32 {
        let jitter = options.maxRequestsJitter > 0 ? Int.random(in: 0...options.maxRequestsJitter) : 0
        let maxRequests = options.maxRequests > 0 ? options.maxRequests + jitter : 0
        var recycleAsked = false
        // Several reports within one heartbeat time-out, so that a short time-out (tests,
        // impatient operators) is not missed by the reporting cadence itself.
        let interval = max(0.05, min(1.0, options.heartbeatTimeout / 4))
        var wait = timespec(tv_sec: Int(interval), tv_nsec: Int((interval - interval.rounded(.down)) * 1e9))
        while true {
            let received = sigtimedwait(&signals, nil, &wait)
            if received == SIGTERM || received == SIGINT { return received }
            guard link.masterAlive else { return SIGTERM }
            let statistics = host.statistics
            let resident = MasterLink.residentKiB()
            // Hung: a handler still busy past its deadline. Otherwise alive if a Python
            // thread takes new work, or all of them are busy with requests within their
            // deadlines (a saturated worker is not a hung one).
            let stuck = statistics.oldestBusySeconds > limits.requestTimeout
            let saturated = statistics.busyThreads >= statistics.pythonThreads
            if !stuck, saturated || host.respondsWithin(seconds: min(1, options.heartbeatTimeout / 2)) {
                link.send(.heartbeat(served: statistics.served, residentKiB: resident))
            }
            if !recycleAsked {
                if maxRequests > 0, statistics.served >= maxRequests {
                    recycleAsked = link.send(.recycle(reason: "served \(statistics.served) requests, --max-requests \(maxRequests)"))
                } else if options.maxRSSMiB > 0, resident / 1024 > options.maxRSSMiB {
                    recycleAsked = link.send(.recycle(reason: "RSS \(resident / 1024) MiB over --max-rss \(options.maxRSSMiB)"))
                }
            }
        }
    }
}
