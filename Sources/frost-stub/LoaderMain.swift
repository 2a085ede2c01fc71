import FrostHTTP
import FrostBundle
import FrostPython
import FrostRuntime
import FrostServer
import FrostSupervisor
import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// The command line of the generic executable in every bundle.
///
/// `_NAME` is the loader of module NAME; `NAME` (no underscore) is the console, which
/// runs NAME as `__main__` with the remaining arguments.
public enum LoaderMain {
    /// The `--help` text, from the options table.
    public static var usage: String { LoaderOptions.help }

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

        let (parsed, problem) = LoaderOptions.parse(rest)
        guard let settings = parsed else { return usageError(label, problem ?? "bad arguments") }
        if settings.help {
            printLine(usage)
            return 0
        }
        if settings.version {
            printLine(versionLine(layout))
            return 0
        }
        let module = settings.module, listens = settings.listens, process = settings.process
        if settings.check {
            return runCheck(executablePath: executablePath, label: label, module: module)
        }
        let listen = listens.first
        let serve = { (worker: WorkerSetup?) in
            runServer(executablePath: executablePath, label: label, settings: settings, worker: worker)
        }
        if let control = process.workerControl {
            return serve(WorkerSetup(link: MasterLink(fd: control), sockets: process.listenFDs, options: process))
        }
        // The worker count: --workers, else the bundle's spec, else one worker per core: the
        // GIL lets one process use one core for Python (measured: the Flask page serves 1.8×
        // with two workers on two cores; hello, bound by the network thread, the same).
        let manifest = try? BundleManifest.load(bundleDirectory: layout.directory)
        let specWorkers = manifest?.options["workers"].flatMap { $0.string ?? $0.int.map(String.init) }
        guard let workers = ProcessOptions.workerCount(process.workers ?? specWorkers ?? "auto") else {
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
    static func runServer(executablePath: String, label: String, settings: LoaderSettings, worker: WorkerSetup?) -> Int32 {
        let listens = settings.listens, limits = settings.limits
        if let user = settings.user {
            do { try Privileges.drop(to: user) } catch {
                printError("\(label): error: \(error)")
                return 2
            }
        }
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
        // Before any thread starts (the access log's, the event loops, Python's): they inherit it.
        if settings.cpuAffinity, let seat = worker?.options.connectionBoard?.1 {
            let cpus = CPUAffinity.allowedCPUs()
            if !cpus.isEmpty {
                do { try CPUAffinity.bind(to: cpus[Int(seat) % cpus.count]) } catch {
                    printError("frost: worker \(getpid()): --cpu-affinity: \(error); running on any CPU")
                }
            }
        }
        do {
            let log: AccessLog?
            do { log = settings.accessLog ? try AccessLog(path: settings.accessLogPath ?? "-", format: settings.logFormat) : nil } catch {
                throw LoaderError(.usage, "\(error)")
            }
            var site: Site?
            // The site configuration `NAME install` recorded, unless --site names another.
            let installed = BundleLayout(executablePath: executablePath).directory + "/site.json"
            if let siteFile = settings.siteFile ?? (FileSystem.isRegularFile(installed) ? installed : nil) {
                do { site = try Site.load(siteFile) } catch {
                    throw LoaderError(.usage, "bad site configuration: \(error)")
                }
            }
            let loader = try Loader(executablePath: executablePath, moduleOverride: settings.module)
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
            let pythonThreads = settings.threads ?? loader.manifest?.options["threads"]?.int ?? 8
            let host: Host
            do {
                var current = entry.extensionObject
                var currentFilter = entry.filterObject
                var configuration = HostConfiguration(
                    listen: address, pythonThreads: pythonThreads,
                    debug: settings.debug, accessLog: log,
                    physicalPath: loader.layout.directory, limits: limits, site: site)
                configuration.trustedProxies = TrustedProxies(settings.trustedProxies)
                configuration.healthPath = settings.healthPath
                configuration.inlineHandlers = settings.inline
                configuration.inlineBudget = settings.inlineBudget
                configuration.busyPoll = settings.busyPoll
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
                var heartbeat = WorkerHeartbeat(link: worker.link, heartbeatTimeout: worker.options.heartbeatTimeout,
                                                requestTimeout: limits.requestTimeout)
                heartbeat.maxRequests = worker.options.maxRequests
                heartbeat.maxRequestsJitter = worker.options.maxRequestsJitter
                heartbeat.maxResidentMiB = worker.options.maxRSSMiB
                received = heartbeat.run(host, signals: &signals)
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

/// A worker's side of the process model: its link to the master and its limits.
struct WorkerSetup {
    let link: MasterLink
    let sockets: [Int32]
    let options: ProcessOptions
}
