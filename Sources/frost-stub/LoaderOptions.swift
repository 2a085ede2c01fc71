import FrostHTTP
import FrostRuntime
import FrostServer
import FrostSupervisor
#if canImport(Glibc)
import Glibc
#endif

/// Everything the loader's command line sets.
struct LoaderSettings {
    var check = false
    var help = false
    var version = false
    var module: String?
    /// Repeatable: one socket each.
    var listens: [String] = []
    /// Default: the spec's threads, else 8.
    var threads: Int?
    var trustedProxies: [String] = []
    var healthPath: String?
    var debug = false
    var accessLog = true
    /// Whether fast handlers may run on the event loop (`--no-inline`: never).
    var inline = true
    /// The longest a handler's call may take for its path to run on the event loop.
    var inlineBudget = 0.002
    /// How long an event loop polls after a read before it sleeps (`--busy-poll`).
    var busyPoll = 0.000_02
    /// Bind each worker to a CPU of its own (`--cpu-affinity`).
    var cpuAffinity = false
    var accessLogPath: String?
    var logFormat = AccessLog.Format.combined
    var limits = HostLimits()
    var siteFile: String?
    var process = ProcessOptions()
    /// Run Python as this user (started as root).
    var user: String?
}

/// One option of the loader: its name, its value's placeholder (nil: a flag), its help,
/// and what it does to the settings (a problem to report, or nil).
struct LoaderOption: Sendable {
    let name: String
    let value: String?
    let help: String
    /// Set by the master for its workers; not in `--help`.
    var isInternal = false
    let apply: @Sendable (inout LoaderSettings, String) -> String?

    static func flag(_ name: String, _ help: String, _ apply: @escaping @Sendable (inout LoaderSettings) -> Void) -> LoaderOption {
        LoaderOption(name: name, value: nil, help: help) { settings, _ in apply(&settings); return nil }
    }

    static func value(_ name: String, _ placeholder: String, _ help: String,
                      _ apply: @escaping @Sendable (inout LoaderSettings, String) -> String?) -> LoaderOption {
        LoaderOption(name: name, value: placeholder, help: help, apply: apply)
    }

    static func positive(_ name: String, _ placeholder: String, _ help: String,
                         _ set: @escaping @Sendable (inout LoaderSettings, Int) -> Void) -> LoaderOption {
        value(name, placeholder, help) { settings, text in
            guard let number = Int(text), number > 0 else { return "\(name) needs a positive number" }
            set(&settings, number)
            return nil
        }
    }

    /// A count that may be 0; `meaning` completes "needs a number" ("(0: no limit)").
    static func count(_ name: String, _ placeholder: String, _ help: String, meaning: String = "",
                      _ set: @escaping @Sendable (inout LoaderSettings, Int) -> Void) -> LoaderOption {
        value(name, placeholder, help) { settings, text in
            guard let number = Int(text), number >= 0 else { return "\(name) needs a number\(meaning)" }
            set(&settings, number)
            return nil
        }
    }

    static func seconds(_ name: String, _ help: String, _ set: @escaping @Sendable (inout LoaderSettings, Double) -> Void) -> LoaderOption {
        value(name, "S", help) { settings, text in
            guard let seconds = Double(text), seconds > 0 else { return "\(name) needs a positive number of seconds" }
            set(&settings, seconds)
            return nil
        }
    }

    /// Set by the master for its workers; not in `--help`.
    static func internalValue(_ name: String, _ placeholder: String, _ help: String,
                              _ apply: @escaping @Sendable (inout LoaderSettings, String) -> String?) -> LoaderOption {
        LoaderOption(name: name, value: placeholder, help: help, isInternal: true, apply: apply)
    }
}

/// The loader's command line: one table drives both parsing and `--help`.
enum LoaderOptions {
    static let table: [LoaderOption] = [
        .value("--listen", "ADDR", "where to serve HTTP, repeatable (default: the bundle's listen option, else 127.0.0.1:8000; port 0 picks a free port)") {
            $0.listens.append($1)
            return nil
        },
        .value("--threads", "N", "Python threads serving requests concurrently (default: the spec's threads, else 8)") { settings, text in
            guard let count = Int(text), (1...256).contains(count) else { return "--threads needs a number from 1 to 256" }
            settings.threads = count
            return nil
        },
        .flag("--no-inline", "run every handler on the Python threads (by default a URL path whose handler has shown it finishes in under 2 ms without waiting runs on the event loop that read the request)") {
            $0.inline = false
        },
        .value("--inline-budget", "MS", "the longest a handler's call may take, in milliseconds, for its path to run on the event loop (2)") { settings, text in
            guard let milliseconds = Double(text), milliseconds > 0, milliseconds <= 10_000 else {
                return "--inline-budget needs a number of milliseconds above 0 and at most 10000"
            }
            settings.inlineBudget = milliseconds / 1000
            return nil
        },
        .value("--busy-poll", "US", "how long an event loop goes on polling its connections after a read before it sleeps, in microseconds, yielding the CPU to any thread that wants it (20; 0: sleep at once)") { settings, text in
            guard let microseconds = Double(text), microseconds >= 0, microseconds <= 10_000 else {
                return "--busy-poll needs a number of microseconds from 0 to 10000"
            }
            settings.busyPoll = microseconds / 1_000_000
            return nil
        },
        .flag("--cpu-affinity", "bind each worker process to one of the CPUs the server may use (worker i to the i-th, wrapping), as nginx's worker_cpu_affinity auto; off by default") {
            $0.cpuAffinity = true
        },
        .value("--workers", "N", "worker processes under a master (default: the bundle's spec, else auto: one per core this process may use; 0: one process, no master)") { settings, text in
            guard ProcessOptions.workerCount(text) != nil else { return "--workers is a number (0: no master) or auto" }
            settings.process.workers = text
            return nil
        },
        .seconds("--heartbeat-timeout", "a worker silent this long is killed and replaced (30)") { $0.process.heartbeatTimeout = $1 },
        .seconds("--graceful-timeout", "how long stopping workers may finish requests (30)") { $0.process.gracefulTimeout = $1 },
        .count("--max-requests", "N", "recycle a worker after N requests (0: never)", meaning: " (0: no limit)") { $0.process.maxRequests = $1 },
        .count("--max-requests-jitter", "J", "plus a random 0..J, so workers do not recycle together") { $0.process.maxRequestsJitter = $1 },
        .count("--max-rss", "MB", "recycle a worker whose resident memory exceeds MB", meaning: " of MiB (0: no limit)") { $0.process.maxRSSMiB = $1 },
        .value("--pid-file", "FILE", "the master's pid") {
            $0.process.pidFile = $1
            return nil
        },
        .value("--user", "NAME", "started as root, run Python as NAME (its groups too): the master keeps root to bind and spawn, each worker (or the single process) changes user before Python starts") { settings, text in
            guard !text.isEmpty else { return "--user needs a user name" }
            settings.user = text
            return nil
        },
        .value("--stats-interval", "S", "per-worker statistics every S seconds (0: none)") { settings, text in
            guard let seconds = Double(text), seconds >= 0 else { return "--stats-interval needs a number of seconds (0: off)" }
            settings.process.statsInterval = seconds
            return nil
        },
        .value("--trusted-proxy", "ADDR", "believe X-Forwarded-For and X-Forwarded-Proto (REMOTE_ADDR, HTTPS) from this peer: an IP address, or unix for unix-socket peers (repeatable)") { settings, text in
            guard !text.isEmpty else { return "--trusted-proxy needs an IP address, or unix" }
            settings.trustedProxies.append(text)
            return nil
        },
        .value("--health-path", "PATH", "answer GET PATH with 200 \"ok\" without calling Python (for probes; off by default)") { settings, text in
            guard text.hasPrefix("/") else { return "--health-path needs a path that starts with /" }
            settings.healthPath = text
            return nil
        },
        .value("--site", "FILE", "virtual directories, script maps and filters (JSON, as `NAME install` writes it; default: site.json in the bundle when present); URLs no script map takes are static files") {
            $0.siteFile = $1
            return nil
        },
        .flag("--debug", "show Python tracebacks to clients (never in production)") { $0.debug = true },
        .value("--access-log", "FILE", "append the access log to FILE instead of stdout (\"-\")") {
            $0.accessLogPath = $1
            return nil
        },
        .value("--log-format", "F", "combined (default) or w3c (W3C extended, with time-taken)") { settings, text in
            guard let format = AccessLog.Format(rawValue: text) else { return "--log-format is combined or w3c" }
            settings.logFormat = format
            return nil
        },
        .flag("--no-access-log", "no access log") { $0.accessLog = false },
        .positive("--max-uri", "BYTES", "longest request target (8192): 414") { $0.limits.maxURIBytes = $1 },
        .positive("--max-headers", "N", "most request header fields (100): 431") { $0.limits.maxHeaderCount = $1 },
        .positive("--max-header-bytes", "BYTES", "largest request head (32768): 431") { $0.limits.maxHeaderBytes = $1 },
        .positive("--max-body", "BYTES", "largest request body (1073741824): 413") { $0.limits.maxBodyBytes = $1 },
        .seconds("--header-timeout", "time for a request head to arrive (10); then the connection is closed") { $0.limits.headerTimeout = $1 },
        .seconds("--idle-timeout", "time a keep-alive connection may wait for its next request (60)") { $0.limits.idleTimeout = $1 },
        .seconds("--body-timeout", "time between parts of a request body (30); then 408 before the handler runs, a failed read after") { $0.limits.bodyTimeout = $1 },
        .count("--body-min-rate", "BYTES", "slowest request body, bytes per second (500): a body may take --body-timeout plus a second per BYTES received", meaning: " (0: any rate)") {
            $0.limits.bodyMinimumRate = $1
        },
        .value("--read-ahead", "BYTES", "request body read before the handler is called (49152, IIS's uploadReadAheadSize; at most 16 MiB): a body this small never holds a Python thread while it arrives") { settings, text in
            guard let bytes = Int(text), (0...HostLimits.maxReadAhead).contains(bytes) else {
                return "--read-ahead needs a number of bytes from 0 to \(HostLimits.maxReadAhead)"
            }
            settings.limits.readAhead = bytes
            return nil
        },
        .seconds("--send-timeout", "time a response may wait for a client that reads none of it (60); then the connection is cut and the handler's write fails") { $0.limits.sendTimeout = $1 },
        .seconds("--request-timeout", "time a handler may take (300); a request over its deadline gets 504") { $0.limits.requestTimeout = $1 },
        .positive("--discard-max", "BYTES", "a request body the handler left unread is read and dropped to keep the connection when at most this much of it is still to come (1048576); a larger or chunked one: Connection: close") { $0.limits.maxDiscardBytes = $1 },
        .seconds("--lingering-time", "before closing after a response, read and drop what the client still sends for at most S in all (30), so the response is never lost to a reset") { $0.limits.lingeringTime = $1 },
        .seconds("--lingering-timeout", "while lingering, the longest wait between two of the client's sends (5)") { $0.limits.lingeringTimeout = $1 },
        .flag("--timings", "print where each process's start-up time goes (locate, verify, mount, Python init, import, factories, listen)") { _ in
            StartupTimings.enabled = true
        },
        .flag("--check", "mount the archive, import the entry module, run its factories and Version calls, print what it provides, call Terminate*, exit") {
            $0.check = true
        },
        .value("--module", "NAME", "load module NAME instead of the one named by this executable") {
            $0.module = $1
            return nil
        },
        .flag("--version", "print the frost and Python versions") { $0.version = true },
        .flag("--help", "this text") { $0.help = true },
        .internalValue("--worker-control", "FD", "the worker's link to its master") { settings, text in
            guard let fd = Int32(text), fd > 2 else { return "--worker-control needs a descriptor" }
            settings.process.workerControl = fd
            return nil
        },
        .internalValue("--listen-fds", "FD,...", "the listening sockets the master handed over") { settings, text in
            let fds = text.split(separator: ",").compactMap { Int32($0) }
            guard !fds.isEmpty, fds.allSatisfy({ $0 > 2 }) else { return "--listen-fds needs descriptors" }
            settings.process.listenFDs = fds
            return nil
        },
        .internalValue("--connection-board", "FD:SEAT", "the shared connection board and this worker's seat") { settings, text in
            let parts = text.split(separator: ":")
            guard parts.count == 2, let fd = Int32(parts[0]), fd > 2, let seat = Int32(parts[1]),
                  (0..<ConnectionBoard.seats).contains(seat) else { return "--connection-board needs DESCRIPTOR:SEAT" }
            settings.process.connectionBoard = (fd, seat)
            return nil
        },
    ]

    /// Parses `--name VALUE`, `--name=VALUE` and flags; nil and a problem for anything else.
    static func parse(_ arguments: [String]) -> (settings: LoaderSettings?, problem: String?) {
        var settings = LoaderSettings()
        var index = 0
        while index < arguments.count {
            let argument = arguments[index] == "-h" ? "--help" : arguments[index]
            let parts = argument.split(separator: "=", maxSplits: 1)
            let name = parts.first.map(String.init) ?? argument
            guard argument.hasPrefix("--"), let option = table.first(where: { $0.name == name }) else {
                return (nil, "unknown option '\(argument)'")
            }
            var text = ""
            if option.value == nil {
                guard parts.count == 1 else { return (nil, "\(name) takes no value") }
            } else if parts.count == 2 {
                text = String(parts[1])
            } else {
                guard index + 1 < arguments.count else { return (nil, "\(name) needs a value (\(option.value!))") }
                index += 1
                text = arguments[index]
            }
            if let problem = option.apply(&settings, text) { return (nil, problem) }
            index += 1
        }
        return (settings, nil)
    }

    /// The `--help` text: the table's public options, with their help wrapped beside them.
    static var help: String {
        let column = 24, width = 100
        var lines = ["usage: _NAME [OPTIONS]                  serve HTTP",
                     "       _NAME --check [--module NAME]",
                     "       NAME [ARGUMENTS...]              the console: runs module NAME as __main__",
                     ""]
        for option in table where !option.isInternal {
            var head = "  " + option.name + (option.value.map { " " + $0 } ?? "")
            head += head.count < column - 1 ? String(repeating: " ", count: column - head.count) : "\n" + String(repeating: " ", count: column)
            var line = head
            for word in option.help.split(separator: " ") {
                let lastLine = line.split(separator: "\n", omittingEmptySubsequences: false).last ?? ""
                if lastLine.count + word.count + 1 > width, lastLine.count > column {
                    line += "\n" + String(repeating: " ", count: column) + word
                } else {
                    line += (lastLine.count > column ? " " : "") + word
                }
            }
            lines.append(line)
        }
        lines += ["",
                  "SIGTERM or SIGINT stop the server gracefully: requests in flight finish, Terminate* runs.",
                  "With workers: SIGHUP starts a new generation (bundle and site re-read) and retires the old",
                  "one; SIGQUIT stops at once; SIGTTIN/SIGTTOU add/remove a worker; SIGUSR1 prints the workers."]
        return lines.joined(separator: "\n")
    }
}

/// The process model's options: the master's and what it hands to its workers (parsed by
/// their rows of `LoaderOptions.table`).
struct ProcessOptions {
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

    /// "auto" is one per core the process may use (affinity and cgroup quota).
    static func workerCount(_ text: String) -> Int? {
        if text == "auto" { return max(1, Host.coreCount) }
        guard let count = Int(text), (0...1024).contains(count) else { return nil }
        return count
    }
}

/// The host as the worker's heartbeat sees it.
extension Host: WorkerServer {
    public var health: WorkerHealth {
        let statistics = statistics
        return WorkerHealth(served: statistics.served, oldestBusySeconds: statistics.oldestBusySeconds,
                            busyThreads: statistics.busyThreads, threads: statistics.pythonThreads)
    }
}

/// The workers' connection board balances the host's accepting.
extension ConnectionBoard.Seat: ConnectionBalancing {}
