// FrostServer: the ISAPI host: routing, filters, the control block, static files and the access log behind the HTTP layer (FrostHTTP).

import FrostHTTP
import FrostPython
import FrostSystem
import FrostRuntime
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How the host listens and runs.
public struct HostConfiguration: Sendable {
    /// "HOST:PORT" (port 0 picks a free one) or "unix:PATH".
    public var listen: String
    /// Python's stdout and stderr as tagged lines on the server's stderr.
    public var tagPythonOutput: Bool = true
    /// Python threads serving requests concurrently.
    public var pythonThreads: Int
    /// Show tracebacks to clients (never in production).
    public var debug: Bool
    /// The access log (nil: none).
    public var accessLog: AccessLog?
    /// How long a stop waits for requests in flight.
    public var shutdownGrace: Double
    /// The bundle directory (APPL_PHYSICAL_PATH).
    public var physicalPath: String
    public var limits: HostLimits
    /// Virtual directories and script maps; nil: the extension handles every URL.
    public var site: Site?
    /// Listening sockets bound by someone else (a master process, systemd): served
    /// instead of binding `listen`. The host owns them from `start` on.
    public var boundSockets: [Int32] = []
    /// Called (on a Python thread) when the extension calls `ReportUnhealthy`.
    public var onUnhealthy: (@Sendable (String) -> Void)?
    /// Peers whose X-Forwarded-For and X-Forwarded-Proto are believed (the reverse proxy in
    /// front): IP addresses, or "unix" for every peer of a unix socket. From anyone else
    /// those headers are ignored.
    public var trustedProxies: TrustedProxies = TrustedProxies([])
    /// A path the host answers itself with 200 "ok", without Python (orchestrators' probes:
    /// the worker accepts and its event loop runs). nil: none.
    public var healthPath: String?
    /// This worker's seat on the board where the workers sharing `boundSockets` publish
    /// their connection counts (nil: accept without looking at the others).
    public var connectionSeat: (any ConnectionBalancing)?
    /// Whether handlers that have shown they finish quickly run on the event loop that
    /// read their request instead of a Python thread (`InlineSchedule`).
    public var inlineHandlers = true
    /// How quickly, in seconds.
    public var inlineBudget = 0.002
    /// How long, in seconds, an event loop goes on polling its sockets after a read before
    /// it sleeps (`BusyPoll`; 20 µs); 0: it sleeps as soon as it is idle.
    public var busyPoll = 0.000_02

    public init(listen: String, pythonThreads: Int = 8, debug: Bool = false, accessLog: AccessLog? = nil,
                shutdownGrace: Double = 30, physicalPath: String, limits: HostLimits = HostLimits(), site: Site? = nil) {
        self.limits = limits
        self.site = site
        self.listen = listen
        self.pythonThreads = pythonThreads
        self.debug = debug
        self.accessLog = accessLog
        self.shutdownGrace = shutdownGrace
        self.physicalPath = physicalPath
    }
}

/// Why the host could not start serving.
public struct HostError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// The listen address is not HOST:PORT or unix:PATH.
        case badAddress
        /// Binding, listening or serving handed-over sockets failed.
        case cannotListen
        /// The access log file cannot be opened.
        case accessLog
        /// A pipe or thread the host needs could not be made.
        case resources
    }

    public let kind: Kind
    /// The address or file concerned.
    public let subject: String
    public let message: String

    public init(_ kind: Kind, subject: String, _ message: String) {
        self.kind = kind
        self.subject = subject
        self.message = message
    }

    public var description: String { message }
}

/// The HTTP host of one bundle: SwiftNIO in front, the extension behind it on a pool of
/// Python threads. The event loops never touch Python.
public final class Host: ExchangeDispatcher, @unchecked Sendable {
    // @unchecked: counters are guarded by `monitor`; the rest is set up before serving.
    /// HSE_STATUS_* values.
    static let statusPending = 3
    static let statusError = 4

    let configuration: HostConfiguration
    let site: SiteContext
    /// The running extension; replaced when it asks for a reload. Read and written only
    /// with the GIL held.
    nonisolated(unsafe) private var extensionObject: PythonObject?
    private let reload: (() throws -> PythonObject?)?
    private let group: MultiThreadedEventLoopGroup
    private let pool: PythonThreadPool
    private let monitor = Monitor()
    /// Requests dispatched and not yet completed, and completed: counted without `monitor`
    /// (its lock, twice a request, cost more than the counting).
    private let inFlight = Atomic<Int>(0)
    private var nextConnectionID = 0
    private let served = Atomic<Int>(0)
    private var acceptor: Acceptor?
    /// Open connections, for a graceful stop.
    private var connections: [Int: Channel] = [:]
    /// Accepted by the acceptor thread, not yet set up on an event loop.
    private var connectionsBeingSetUp = 0
    /// Set when `shutdown` begins: connections set up from then on stop after one request.
    private var stopping = false
    /// The bundle's filter, when it has one and the site configuration enables it.
    let filterChain: FilterChain?
    /// One per event loop: checks its connections' time-outs (set up before serving).
    private var sweepers: [ObjectIdentifier: DeadlineSweeper] = [:]
    /// Per event loop, its poll after reads (none with `busyPoll` 0).
    private var busyPolls: [ObjectIdentifier: BusyPoll] = [:]
    /// What a loop needs to run handlers itself: where its paths run, and a Python thread
    /// state of its own (bound to its thread).
    private struct InlineLoop {
        let schedule: InlineSchedule
        let threadState: PythonThreadState
    }
    /// One per event loop when handlers may run there (set up before serving).
    /// A list, not a dictionary: there are as many as loops (one or two), and a request
    /// looks its loop up twice (a dictionary's hashing cost 130 instructions a lookup).
    private var inlineLoops: [(loop: ObjectIdentifier, inline: InlineLoop)] = []
    /// Set while a loop runs a handler.
    private let inlineHandler = Atomic<Bool>(false)

    /// `reload` re-imports the entry module and returns the new extension (it runs on a
    /// Python thread holding the GIL) for `InternalReloadException`; `reloadFilter` the
    /// same for the filter.
    public init(interpreter: Interpreter, entry: LoadedEntry, configuration: HostConfiguration,
                reload: (() throws -> PythonObject?)? = nil, reloadFilter: (() throws -> PythonObject?)? = nil) throws {
        self.configuration = configuration
        self.site = SiteContext(physicalPath: configuration.physicalPath)
        self.extensionObject = entry.extensionObject
        self.reload = reload
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: Host.automaticEventLoops())
        self.pool = try PythonThreadPool(interpreter: interpreter, size: max(1, configuration.pythonThreads), name: "request")
        let interval = DeadlineSweeper.interval(for: configuration.limits)
        for loop in group.makeIterator() {
            sweepers[ObjectIdentifier(loop)] = DeadlineSweeper(eventLoop: loop, interval: interval)
            if configuration.busyPoll > 0 {
                busyPolls[ObjectIdentifier(loop)] = BusyPoll(eventLoop: loop, window: configuration.busyPoll)
            }
            if configuration.inlineHandlers {
                // A thread state of the loop's own, made on it (it is bound to its thread).
                let state = try loop.submit { interpreter.makeThreadStateForCurrentThread() }.wait()
                inlineLoops.append((ObjectIdentifier(loop), InlineLoop(schedule: InlineSchedule(budget: configuration.inlineBudget),
                                                                       threadState: state)))
            }
        }
        if let filter = entry.filterObject, let info = entry.filterInfo, configuration.site?.filtersEnabled ?? true {
            filterChain = try FilterChain(filter: filter, flags: info.flags, interpreter: interpreter, reload: reloadFilter,
                                          log: { message, traceback in Host.log(message, traceback) })
        } else {
            filterChain = nil
        }
    }

    /// The cores this process may use: its CPU affinity, capped by its cgroup's CPU quota
    /// (NIO's count), so `auto` in a container with `--cpus 2` means two.
    public static var coreCount: Int { System.coreCount }

    /// One event loop per core this process gets (the cores divided among the worker
    /// processes, FROST_WORKERS), at least one and at most 4: more loops than that only
    /// compete with each other for the cores (on 2 cores with 2 workers, one loop each
    /// served as much as two each, with fewer threads).
    static func automaticEventLoops() -> Int {
        let workers = getenv("FROST_WORKERS").flatMap { Int(String(cString: $0)) } ?? 1
        return max(1, min(4, coreCount / max(1, workers)))
    }

    /// The extension and filter objects now serving (they change on a reload), for
    /// Terminate* at shutdown. GIL held.
    public var currentObjects: (extensionObject: PythonObject?, filterObject: PythonObject?) {
        (extensionObject, filterChain?.filter)
    }

    /// Binds `listen` (unless sockets were handed over) and starts serving; returns the
    /// addresses it listens on.
    ///
    /// Connections are accepted by the host's own thread (`Acceptor`) and handed to the
    /// event loops, on sockets it bound itself as on sockets shared with other processes
    /// (NIO's server channel assumes it is the only one accepting): one way in, and each
    /// connection's descriptor known to its handler, which writes a response that fits the
    /// socket itself (`HTTPConnectionHandler.send`).
    @discardableResult
    public func start() throws -> String {
        var sockets = configuration.boundSockets
        if sockets.isEmpty {
            do {
                sockets = [try bindListeningSocket(configuration.listen, backlog: 512)]
            } catch {
                throw HostError(error.kind == .badAddress ? .badAddress : .cannotListen, subject: configuration.listen, error.message)
            }
        }
        do {
            acceptor = try Acceptor(sockets: sockets, seat: configuration.connectionSeat) { fd in self.accepted(fd) }
        } catch {
            for fd in sockets { close(fd) }
            throw HostError(.cannotListen, subject: configuration.listen, "cannot serve \(configuration.listen): \(error)")
        }
        return sockets.map { localAddressDescription(of: $0) }.joined(separator: ", ")
    }

    /// A connection the acceptor took (its thread): set up on an event loop.
    private func accepted(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        monitor.locked {
            connectionsBeingSetUp += 1
            publishConnectionCount()
        }
        // A bootstrap per connection, so that its handler knows the descriptor.
        ClientBootstrap(group: group)
            .channelOption(ChannelOptions.maxMessagesPerRead, value: 16)
            // A client may half-close after its request; it still gets its responses.
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in self.initializeConnection(channel, socket: fd) }
            .withConnectedSocket(fd)
            .whenComplete { _ in
                self.monitor.locked {
                    self.connectionsBeingSetUp -= 1
                    self.publishConnectionCount()
                    self.monitor.broadcast()
                }
            }
    }

    /// The pipeline of one connection: the raw-data handler when there is a filter, NIO's
    /// HTTP/1.1 server handlers, and ours.
    private func initializeConnection(_ channel: Channel, socket: Int32) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            let id = self.connectionID()
            self.monitor.locked {
                self.connections[id] = channel
                self.publishConnectionCount()
            }
            channel.closeFuture.whenComplete { _ in
                self.monitor.locked {
                    self.connections.removeValue(forKey: id)
                    self.publishConnectionCount()
                    self.monitor.broadcast()
                }
            }
            let lingering = LingeringClose(time: self.configuration.limits.lingeringTime,
                                           timeout: self.configuration.limits.lingeringTimeout)
            var raw: RawDataHandler?
            if let chain = self.filterChain {
                // The raw-data handler must not see what lingering drops: the lingering
                // close goes first. Without it, the connection handler runs it itself.
                try channel.pipeline.syncOperations.addHandler(lingering)
                let connection = FilterConnection(chain: chain)
                raw = RawDataHandler(connection: connection)
                connection.raw = raw
                try channel.pipeline.syncOperations.addHandler(raw!)
            }
            // No NIO HTTP handlers: HTTPConnectionHandler parses requests (RequestParser),
            // orders pipelined ones and encodes responses itself (a response in one buffer,
            // no change of read interest per request), and decides what a malformed request
            // gets while the extension may still owe an earlier one its response. NIO's
            // outbound header validator is replaced by HTTPExchange.sendHead's check of every
            // head that does not come from the host itself, where a bad one can still be
            // reported to the handler.
            try channel.pipeline.syncOperations.addHandler(
                HTTPConnectionHandler(connectionID: id, dispatcher: self, limits: self.configuration.limits, attachment: raw,
                                      lingering: lingering, lingeringInPipeline: raw != nil,
                                      sweeper: self.sweepers[ObjectIdentifier(channel.eventLoop)]!,
                                      busyPoll: self.busyPolls[ObjectIdentifier(channel.eventLoop)],
                                      trustedProxies: self.configuration.trustedProxies,
                                      // The filter's raw-data handler writes too: then every write goes through NIO.
                                      socket: raw == nil ? socket : nil,
                                      // Only a filter rewrites request heads (PREPROC_HEADERS).
                                      headsMayBeRewritten: raw != nil,
                                      stopping: self.monitor.locked { self.stopping }))
        }
    }

    /// Tells the other workers how many connections this one holds (`monitor` held).
    private func publishConnectionCount() {
        configuration.connectionSeat?.setConnections(connections.count + connectionsBeingSetUp)
    }

    /// What a worker reports to its master.
    public struct Statistics: Sendable {
        /// Requests answered since start.
        public var served: Int
        /// Requests not yet answered.
        public var inFlight: Int
        /// Seconds the longest-running Python job has been busy (0: none).
        public var oldestBusySeconds: Double
        /// Python threads busy now, and how many there are.
        public var busyThreads: Int
        public var pythonThreads: Int
    }

    public var statistics: Statistics {
        let busy = pool.busy
        return monitor.locked {
            Statistics(served: served.load(ordering: .relaxed), inFlight: inFlight.load(ordering: .relaxed),
                       oldestBusySeconds: busy.oldestSeconds, busyThreads: busy.count, pythonThreads: pool.size)
        }
    }

    /// Whether a Python thread picks up new work within `seconds` (false: all of them are
    /// busy, or the GIL is not coming back).
    public func respondsWithin(seconds: Double) -> Bool {
        let probe = Monitor()
        var done = false
        pool.submit {
            probe.locked {
                done = true
                probe.broadcast()
            }
        }
        let limit = deadline(afterSeconds: seconds)
        return probe.locked {
            while !done { if !probe.wait(until: limit) { break } }
            return done
        }
    }

    /// Stops accepting, lets requests in flight finish (up to the grace period), closes
    /// the connections and stops the Python threads. Terminate* is the caller's.
    public func shutdown() {
        acceptor?.stop()
        // Connections finish what they have: idle keep-alive ones close now, busy ones
        // after their response, and one just accepted serves its first request.
        // A connection accepted but not yet set up is waited for like the others.
        let open = monitor.locked {
            stopping = true
            return Array(connections.values)
        }
        for channel in open { channel.pipeline.fireUserInboundEventTriggered(StopAfterCurrentRequest()) }
        let limit = monotonicSeconds() + configuration.shutdownGrace
        monitor.locked {
            // A completed request does not signal (it takes no lock): its connection's close
            // does, and the wait looks again every 50 ms for one that stays open.
            while inFlight.load(ordering: .acquiring) > 0 || !connections.isEmpty || connectionsBeingSetUp > 0 {
                let now = monotonicSeconds()
                if now >= limit { break }
                _ = monitor.wait(until: deadline(afterSeconds: min(0.05, limit - now)))
            }
        }
        for loop in group.makeIterator() {
            // Queued before the shutdown's drain, so a poll in flight sees it and ends.
            if let poll = busyPolls[ObjectIdentifier(loop)] { loop.execute { poll.stop() } }
        }
        try? group.syncShutdownGracefully()
        pool.stop()
        filterChain?.stop()
        configuration.accessLog?.close()  // what is buffered reaches the log
    }

    private func connectionID() -> Int {
        monitor.locked {
            nextConnectionID += 1
            return nextConnectionID
        }
    }

    // MARK: ExchangeDispatcher (event loop)

    package func dispatch(_ exchange: HTTPExchange) {
        inFlight.wrappingAdd(1, ordering: .relaxed)
        if exchange.connectionAttachment != nil {  // the filter's raw-data handler: the request gets its filter view
            exchange.attachment = IsapiRequestState(filterRequest: FilterRequest())
        }
        let uri = exchange.uri
        if let healthPath = configuration.healthPath, exchange.method.isGET || exchange.method.isHEAD, pathPart(of: uri) == healthPath {
            return exchange.respondOnLoop(status: .ok, headers: [("Cache-Control", "no-store")], text: "ok")
        }
        if let chain = filterChain, exchange.filterRequest != nil {
            // With a filter, routing waits for PREPROC_HEADERS, AUTHENTICATION and URL_MAP,
            // which run on the request's Python thread.
            exchange.headHook = { [unowned self] exchange, status, reason, headers in
                self.filterResponseHead(exchange, chain, &status, &reason, &headers)
            }
            exchange.filterConnection?.requestStarted()
            armDeadline(exchange)
            pool.submit { self.runFilterPipeline(exchange, chain) }
            return
        }
        // Without a site every URL goes to the extension.
        let route = configuration.site.map { $0.route(percentDecoded(pathPart(of: uri))) }
        switch destination(of: exchange, route: route) {
        case .answer(let response):
            return StaticFiles.respondOnLoop(exchange, response)
        case .extensionCall(let context):
            exchange.site = context
        }
        // Python is called once the body is read ahead: a slow upload holds this loop's
        // connection, not a Python thread. (No closure to make when it is already here.)
        if exchange.isReadAhead {
            call(exchange, uri: uri)
        } else {
            exchange.afterReadAhead { [self] in call(exchange, uri: uri) }
        }
    }

    /// Runs the extension for a request whose body is read ahead: on the loop when its
    /// path has shown it is fast, else on a Python thread. Event loop.
    /// The inline state of the loop serving `exchange` (nil when handlers do not run there).
    private func inlineLoop(of exchange: HTTPExchange) -> InlineLoop? {
        let loop = exchange.eventLoopID
        // By index: iterating the entries copied (retained and released) each one.
        for index in inlineLoops.indices where inlineLoops[index].loop == loop { return inlineLoops[index].inline }
        return nil
    }

    private func call(_ exchange: HTTPExchange, uri: String) {
        armDeadline(exchange)
        guard let inline = inlineLoop(of: exchange) else {
            return pool.submit { self.serve(exchange) }
        }
        var run = HandlerRun()
        run.key = InlineSchedule.slot(of: uri)
        // On the loop only with the whole body here (the handler's reads must not wait)
        // and no Python thread in a long job (it may hold the GIL the loop would wait for).
        // One loop at a time runs handlers (another would wait for its GIL).
        run.onEventLoop = inline.schedule.runsInline(run.key) && exchange.requestComplete
            && !pool.hasJob(runningLongerThan: inline.schedule.budget)
            && inlineHandler.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
        exchange.beginHandlerRun(run)
        if run.onEventLoop {
            inline.threadState.withGIL { serve(exchange) }
            inlineHandler.store(false, ordering: .releasing)
        } else {
            pool.submit { self.serve(exchange) }
        }
    }

    /// What the exchange's handler call tells its loop's schedule; a slow call on the loop
    /// is logged (the loop's other connections waited for it). Event loop.
    private func learn(_ schedule: InlineSchedule, from exchange: HTTPExchange) {
        let (run, waited) = exchange.handlerReport
        guard run.key >= 0 else { return }
        if let hold = schedule.learn(run.key, seconds: run.seconds, waited: waited, onEventLoop: run.onEventLoop) {
            let head = exchange.head
            logError("\(head.method.rawValue) \(pathPart(of: head.uri)) took \(Int(run.seconds * 1000)) ms on the event loop "
                     + "(its other connections waited): its path now runs on the Python threads for \(Int(hold)) s", nil)
        }
    }

    private func armDeadline(_ exchange: HTTPExchange) {
        exchange.expiresAt = exchange.received + configuration.limits.requestTimeout
    }

    package func deadlinePassed(_ exchange: HTTPExchange) {
        if exchange.deadlineExpired() {
            logError("request deadline of \(Int(configuration.limits.requestTimeout)) s passed: \(exchange.head.method.rawValue) "
                     + "\(exchange.head.uri) (the Python thread serving it is still busy)", nil)
        }
    }

    package func sendTimedOut(_ exchange: HTTPExchange) {
        let why = exchange.stalledWrite ?? "--send-timeout"
        logError("\(why): connection cut after \(exchange.head.method.rawValue) \(exchange.head.uri)", nil)
    }

    package func completed(_ exchange: HTTPExchange) {
        served.wrappingAdd(1, ordering: .relaxed)
        inFlight.wrappingSubtract(1, ordering: .releasing)
        if let inline = inlineLoop(of: exchange) {
            learn(inline.schedule, from: exchange)
        }
        let log = configuration.accessLog
        if let chain = filterChain, let request = exchange.filterRequest, let connection = exchange.filterConnection,
           chain.wants(FilterNotification.endOfRequest, request) || chain.wants(FilterNotification.log, request) {
            let record = AccessRecord(exchange)
            chain.submit {
                defer { connection.requestEnded() }
                if chain.wants(FilterNotification.endOfRequest, request) {
                    _ = chain.notify(FilterNotification.endOfRequest, connection: connection, exchange: exchange,
                                     data: nil, scope: FilterScope())
                }
                var record = record
                if chain.wants(FilterNotification.log, request) {
                    let scope = FilterScope()
                    let data = LogData(scope: scope, record: record)
                    _ = chain.notify(FilterNotification.log, connection: connection, exchange: exchange,
                                     data: try? LogData.type.wrap(data), scope: scope)
                    record = data.record
                }
                log?.write(record)
            }
        } else {
            exchange.filterConnection?.requestEnded()
            if let log { log.write(AccessRecord(exchange)) }  // nothing is built without a log
        }
    }

    // MARK: Filters (Python thread)

    /// The request side of the filter pipeline, in IIS order: PREPROC_HEADERS,
    /// AUTHENTICATION, routing, URL_MAP; then the extension or a static file. GIL held.
    private func runFilterPipeline(_ exchange: HTTPExchange, _ chain: FilterChain) {
        guard let request = exchange.filterRequest, let connection = exchange.filterConnection else { return serve(exchange) }
        /// Whether the outcome ends the request here.
        func ended(_ outcome: FilterOutcome) -> Bool {
            switch outcome {
            case .proceed, .readNext:
                return false
            case .finished(let keep):
                exchange.markAnsweredRaw(keepConnection: keep)
                Python.withoutGIL { _ = exchange.finish() }
                return true
            case .error:
                Python.withoutGIL { respondPlain(exchange, 500, "Internal Server Error", "Internal Server Error\n") }
                return true
            }
        }
        func notify<D>(_ notification: Int, _ type: NativeType<D>, _ make: (FilterScope) -> D) -> (FilterOutcome, D) {
            let scope = FilterScope()
            let data = make(scope)
            let object = try? type.wrap(data)
            return (chain.notify(notification, connection: connection, exchange: exchange, data: object, scope: scope), data)
        }

        if chain.wants(FilterNotification.preprocHeaders, request) {
            let (outcome, _) = notify(FilterNotification.preprocHeaders, PreprocHeadersData.type) {
                PreprocHeadersData(scope: $0, exchange: exchange)
            }
            if ended(outcome) { return }
        }
        if chain.wants(FilterNotification.authentication, request) {
            let (user, password) = basicCredentials(exchange.head.headers.first(name: "authorization"))
            let (outcome, data) = notify(FilterNotification.authentication, AuthenticationData.type) {
                AuthenticationData(scope: $0, user: user, password: password)
            }
            if ended(outcome) { return }
            request.user = data.user.isEmpty ? nil : data.user
            request.password = data.password.isEmpty ? nil : data.password
        }
        let uri = exchange.head.uri
        let path = percentDecoded(pathPart(of: uri))
        let route = self.route(path)
        let physical = physicalPath(of: route, path: path)
        if chain.wants(FilterNotification.urlMap, request) {
            let (outcome, data) = notify(FilterNotification.urlMap, URLMapData.mapType) {
                URLMapData(scope: $0, url: path, physicalPath: physical)
            }
            if ended(outcome) { return }
            if data.physicalPath != physical { request.physicalPath = data.physicalPath }
        }
        switch Python.withoutGIL({ destination(of: exchange, route: route, mappedFile: request.physicalPath) }) {
        case .answer(let response):
            Python.withoutGIL { sendStatic(exchange, response) }
        case .extensionCall(let context):
            exchange.site = context
            if exchange.isReadAhead { return serve(exchange) }
            // The filters ran at the head, as IIS's do; the extension waits for the body's
            // read-ahead without holding this thread.
            exchange.eventLoop.execute { [self] in
                exchange.afterReadAhead { self.pool.submit { self.serve(exchange) } }
            }
        }
    }

    /// ACCESS_DENIED (for a 401) and SEND_RESPONSE, just before a head goes out; the
    /// headers of AddResponseHeaders join it first. Called with the GIL released.
    private func filterResponseHead(_ exchange: HTTPExchange, _ chain: FilterChain, _ status: inout Int, _ reason: inout String,
                                    _ headers: inout [(String, String)]) -> HTTPExchange.HeadDecision {
        guard let request = exchange.filterRequest, let connection = exchange.filterConnection else { return .send }
        let (code, phrase, fields) = (status, reason, headers)
        let result: (HTTPExchange.HeadDecision, Int, String, [(String, String)]) = Python.withGIL {
            var (code, phrase, fields) = (code, phrase, fields + request.additionalHeaders)
            request.additionalHeaders = []
            func failed() -> HTTPExchange.HeadDecision {
                connection.raw?.writeRaw(Array(("HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                    + "Content-Length: 22\r\nConnection: close\r\n\r\nInternal Server Error\n").utf8))
                exchange.noteRawStatus(500)
                return .answered(keepConnection: false)
            }
            if code == 401 && chain.wants(FilterNotification.accessDenied, request) {
                let uri = exchange.head.uri
                let scope = FilterScope()
                let data = URLMapData(scope: scope, url: pathPart(of: uri),
                                      physicalPath: request.physicalPath ?? mapURLToPath(uri), reason: 0x8)  // SF_DENIED_APPLICATION
                switch chain.notify(FilterNotification.accessDenied, connection: connection, exchange: exchange,
                                    data: try? URLMapData.deniedType.wrap(data), scope: scope) {
                case .finished(let keep): return (.answered(keepConnection: keep), code, phrase, fields)
                case .error: return (failed(), code, phrase, fields)
                case .proceed, .readNext: break
                }
            }
            if chain.wants(FilterNotification.sendResponse, request) {
                let scope = FilterScope()
                let data = ResponseHeadData(scope: scope, status: code, reason: phrase, headers: fields)
                switch chain.notify(FilterNotification.sendResponse, connection: connection, exchange: exchange,
                                    data: try? ResponseHeadData.type.wrap(data), scope: scope) {
                case .finished(let keep): return (.answered(keepConnection: keep), code, phrase, fields)
                case .error: return (failed(), code, phrase, fields)
                case .proceed, .readNext: (code, phrase, fields) = (data.status, data.reason, data.headers)
                }
            }
            return (.send, code, phrase, fields)
        }
        (status, reason, headers) = (result.1, result.2, result.3)
        return result.0
    }

    // MARK: Routing (once, for requests with and without a filter)

    /// What a request's URL leads to.
    private enum Destination {
        /// The host answers: not found, or a static file (prepared, not sent yet).
        case answer(StaticFiles.Response)
        /// The extension, with the site context it sees (nil: the host's own).
        case extensionCall(SiteContext?)
    }

    /// Where a routed request goes (`route` nil: no site, the extension): a static file is
    /// the one a filter's URL_MAP chose when it chose one (`mappedFile`). May touch the
    /// file system (a static file's checks): called without the GIL.
    private func destination(of exchange: HTTPExchange, route: Site.Route?, mappedFile: String? = nil) -> Destination {
        switch route {
        case nil:
            return .extensionCall(nil)
        case .notFound:
            return .answer(.plain(.notFound, "Not Found"))
        case .file(let directory, let relative):
            if let mapped = mappedFile, let slash = mapped.lastIndex(of: "/") {
                // The filter mapped the URL elsewhere: that file, and nothing beside it.
                let root = slash == mapped.startIndex ? "/" : String(mapped[..<slash])
                return .answer(StaticFiles.prepare(exchange.head, root: root, relative: String(mapped[mapped.index(after: slash)...])))
            }
            return .answer(StaticFiles.prepare(exchange.head, root: directory.path, relative: relative))
        case .extensionCall(let directory, let scriptName, let pathInfo):
            return .extensionCall(SiteContext(physicalPath: directory.path, scriptName: scriptName, pathInfo: pathInfo,
                                              secure: site.secure, serverSoftware: site.serverSoftware))
        }
    }

    /// A static response from a Python thread (GIL released), through the same head
    /// filter as everything else.
    private func sendStatic(_ exchange: HTTPExchange, _ response: StaticFiles.Response) {
        do {
            try exchange.sendHead(status: Int(response.status.code), reason: response.status.reasonPhrase, headers: response.headers)
            switch response.body {
            case .none: break
            case .text(let text): try exchange.writeBody(Array(text.utf8))
            case .file(let path, let start, let length): try exchange.writeFile(path: path, start: start, length: length)
            }
        } catch {
            logError("sending a static file failed: \(error)", nil)
        }
        exchange.finish()
    }

    // MARK: Serving (Python thread, GIL held)

    private func serve(_ exchange: HTTPExchange) {
        guard extensionObject != nil else {
            Python.withoutGIL { respondPlain(exchange, 404, "Not Found", "Not Found\n") }
            return
        }
        let block: ControlBlock
        // Owned, not wrapped: the control block and the handler's result are made and
        // dropped per request (see OwnedObject).
        let ecb: OwnedObject
        do {
            block = try ControlBlock(exchange: exchange, host: self)
            ecb = try Host.controlBlockType.wrapOwned(block)
        } catch {
            Python.withoutGIL { respondPlain(exchange, 400, "Bad Request", "Bad Request\n") }
            return
        }
        let started = monotonicSeconds()
        /// The handler's return value: nil when it raised (`failure`).
        var result: OwnedObject?
        var failure: Error?
        let current = extensionObject!
        do {
            result = try current.callMethod(Host.httpExtensionProc, borrowing: ecb.borrowed)
        } catch let error as PythonError where isReloadRequest(error) {
            do {
                result = try reloadExtension(replacing: current).callMethod(Host.httpExtensionProc, borrowing: ecb.borrowed)  // the request again
            } catch {
                failure = error
            }
        } catch {
            failure = error
        }
        // Noted before the response can finish: the loop's schedule reads it then.
        exchange.noteHandlerSeconds(monotonicSeconds() - started)
        do {
            if let failure { throw failure }
            // Read at once: the result is not used after this.
            let (status, isInt) = { (returned: BorrowedObject) in
                // None (no return statement) counts as HSE_STATUS_SUCCESS.
                (returned.isNone ? 1 : returned.isInt ? (try? returned.asInt()) ?? 0 : 0, returned.isInt)
            }(result!.borrowed)
            if status == Host.statusPending { return }  // DoneWithSession ends it, from any thread
            guard (1...Host.statusError).contains(status) else {
                logError("HttpExtensionProc returned \(isInt ? String(status) : "a non-integer") for \(exchange.head.method.rawValue) "
                         + "\(exchange.head.uri), not an HSE_STATUS_* value: answered as HSE_STATUS_ERROR", nil)
                return Python.withoutGIL { complete(block, failed: true) }
            }
            // The common end: the head is out and finishing waits for nothing, so the GIL is
            // not handed over for it (that costs more than the finish).
            if status != Host.statusError && exchange.headersSent {
                exchange.finish()
                return
            }
            Python.withoutGIL { complete(block, failed: status == Host.statusError) }
        } catch let error as PythonError {
            if exchange.clientClosed {
                // Not the application's fault: the client went away mid-response.
                let why = exchange.stalledWrite.map { "\($0): connection cut" } ?? "the client closed the connection"
                logError("\(why) during \(exchange.head.method.rawValue) \(exchange.head.uri)", nil)
                Python.withoutGIL { fail(block, traceback: nil) }
                return
            }
            logError("HttpExtensionProc raised \(error) for \(exchange.head.method.rawValue) \(exchange.head.uri)", error.traceback)
            let traceback = configuration.debug ? error.traceback : nil
            Python.withoutGIL { fail(block, traceback: traceback) }
        } catch {
            logError("HttpExtensionProc failed for \(exchange.head.method.rawValue) \(exchange.head.uri): \(error)", nil)
            Python.withoutGIL { fail(block, traceback: nil) }
        }
    }

    static let httpExtensionProc = InternedName("HttpExtensionProc")

    private func isReloadRequest(_ error: PythonError) -> Bool {
        error.typeName == "isapi.InternalReloadException" || error.typeName.hasSuffix(".InternalReloadException")
    }

    /// `InternalReloadException`: the extension that raised it is replaced, unless another
    /// request already did that (then the current one serves). GIL held throughout.
    private func reloadExtension(replacing failed: PythonObject) throws -> PythonObject {
        guard let current = extensionObject else { throw PythonError.raise(.runtimeError, "no extension to reload") }
        if !(current === failed) { return current }
        guard let reload else { throw PythonError.raise(.runtimeError, "this host cannot reload the extension") }
        logError("InternalReloadException: reloading the entry module", nil)
        guard let fresh = try reload() else { throw PythonError.raise(.runtimeError, "the reloaded module has no extension") }
        extensionObject = fresh
        return fresh
    }

    /// Ends a request: headers first if the extension never sent any.
    func complete(_ block: ControlBlock, failed: Bool) {
        let exchange = block.exchange
        if !exchange.headersSent {
            if failed {
                respondPlain(exchange, 500, "Internal Server Error", "Internal Server Error\n")
                return
            }
            try? exchange.sendHead(status: block.httpStatusCode, reason: HTTPReason.phrase(block.httpStatusCode),
                                   headers: [("Content-Length", "0")])
        }
        exchange.finish()
    }

    private func fail(_ block: ControlBlock, traceback: String?) {
        let exchange = block.exchange
        guard !exchange.headersSent else {
            exchange.finish()
            return
        }
        var body = "<!doctype html><title>500 Internal Server Error</title><h1>Internal Server Error</h1>"
            + "<p>The server could not complete the request.</p>\n"
        if let traceback { body += "<pre>\(htmlEscaped(traceback))</pre>\n" }
        respondPlain(exchange, 500, "Internal Server Error", body, contentType: "text/html; charset=utf-8")
    }

    private func respondPlain(_ exchange: HTTPExchange, _ status: Int, _ reason: String, _ body: String,
                              contentType: String = "text/plain; charset=utf-8") {
        let bytes = Array(body.utf8)
        try? exchange.sendHead(status: status, reason: reason,
                               headers: [("Content-Type", contentType), ("Content-Length", String(bytes.count))])
        try? exchange.writeBody(bytes)
        exchange.finish()
    }

    /// A body written before any headers gets a plain 200 (or HttpStatusCode) head.
    func sendImplicitHeadersIfNeeded(_ block: ControlBlock) throws {
        let exchange = block.exchange
        guard !exchange.headersSent else { return }
        try exchange.sendHeadHoldingGIL(status: block.httpStatusCode, reason: HTTPReason.phrase(block.httpStatusCode),
                                        fields: ["Content-Type": "text/html"])
    }

    /// The extension now serving. GIL held.
    var currentExtension: PythonObject? { extensionObject }

    /// What serves a decoded URL path: the site's routing, or the extension for all.
    func route(_ path: String) -> Site.Route {
        configuration.site?.route(path)
            ?? .extensionCall(directory: .init(name: "/", path: site.physicalPath, scriptMaps: ["*"]), scriptName: "", pathInfo: path)
    }

    /// The physical path a URL maps to: through the site's virtual directories, else
    /// below the bundle directory. `..` components do not climb out.
    func mapURLToPath(_ url: String) -> String {
        let path = percentDecoded(pathPart(of: url))
        return physicalPath(of: route(path), path: path)
    }

    /// Where a routed path lies on disk.
    func physicalPath(of route: Site.Route, path: String) -> String {
        var (base, rest) = (site.physicalPath, path)
        switch route {
        case .extensionCall(let directory, _, let pathInfo): (base, rest) = (directory.path, pathInfo)
        case .file(let directory, let relative): (base, rest) = (directory.path, relative)
        case .notFound: break
        }
        var parts: [Substring] = []
        for part in rest.split(separator: "/") where part != "." {
            if part == ".." { _ = parts.popLast() } else { parts.append(part) }
        }
        return (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/" + parts.joined(separator: "/")
    }

    func reportUnhealthy(_ reason: String) {
        logError("the extension reports itself unhealthy: \(reason)", nil)
        configuration.onUnhealthy?(reason)
    }

    /// `isapi.ExtensionError(errno, strerror, funcname)`, or OSError without the package.
    func extensionError(_ errno: Int, _ message: String?, _ function: String) -> PythonError {
        isapiError("ExtensionError", errno, message, function)
    }

    func logError(_ message: String, _ traceback: String?) {
        Host.log(message, traceback)
    }

    static func log(_ message: String, _ traceback: String?) {
        var text = "frost: \(message)\n"
        if let traceback { text += traceback }
        writeOut(text, to: 2)
    }
}

/// One access log entry; a filter's SF_NOTIFY_LOG may change its fields.
struct AccessRecord: Sendable {
    var clientHost: String
    var user: String
    var serverName: String
    var method: String
    /// The path of the request target, as sent.
    var target: String
    /// The query string.
    var parameters: String
    var version: String
    var status: Int
    var win32Status = 0
    var bytesSent: Int
    var bytesReceived: Int
    var milliseconds: Int
    var referer: String?
    var agent: String?

    init(_ exchange: HTTPExchange) {
        let head = exchange.head
        clientHost = exchange.clientAddress.isEmpty ? "-" : exchange.clientAddress
        user = exchange.filterRequest?.user ?? ""
        serverName = head.headers.first(name: "host") ?? exchange.localAddress?.ipAddress ?? "-"
        method = head.method.rawValue
        target = pathPart(of: head.uri)
        parameters = queryPart(of: head.uri)
        version = "HTTP/\(head.version.major).\(head.version.minor)"
        status = exchange.loggedStatus
        bytesSent = exchange.bytesSent
        bytesReceived = exchange.bodyBytesRead
        milliseconds = Int((monotonicSeconds() - exchange.received) * 1000)
        referer = head.headers.first(name: "referer")
        agent = head.headers.first(name: "user-agent")
    }
}

/// User and password of an `Authorization: Basic` header ("" when there is none).
func basicCredentials(_ header: String?) -> (String, String) {
    guard let header, header.lowercased().hasPrefix("basic ") else { return ("", "") }
    let encoded = String(header.dropFirst(6)).trimmingCharacters(in: " ")
    guard let decoded = base64Decoded(encoded), let colon = decoded.firstIndex(of: UInt8(ascii: ":")) else { return ("", "") }
    return (String(decoding: decoded[..<colon], as: UTF8.self), String(decoding: decoded[(colon + 1)...], as: UTF8.self))
}

func base64Decoded(_ text: String) -> [UInt8]? {
    var values: [UInt8] = []
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): values.append(byte - 65)
        case UInt8(ascii: "a")...UInt8(ascii: "z"): values.append(byte - 97 + 26)
        case UInt8(ascii: "0")...UInt8(ascii: "9"): values.append(byte - 48 + 52)
        case UInt8(ascii: "+"): values.append(62)
        case UInt8(ascii: "/"): values.append(63)
        case UInt8(ascii: "="): break
        default: return nil
        }
    }
    var out: [UInt8] = []
    var index = 0
    while index + 1 < values.count {
        let chunk = values[index..<min(index + 4, values.count)]
        let a = chunk[chunk.startIndex], b = chunk[chunk.startIndex + 1]
        out.append(a << 2 | b >> 4)
        if chunk.count > 2 { out.append((b & 0xF) << 4 | chunk[chunk.startIndex + 2] >> 2) }
        if chunk.count > 3 { out.append((chunk[chunk.startIndex + 2] & 0x3) << 6 | chunk[chunk.startIndex + 3]) }
        index += 4
    }
    return out
}

/// How a worker learns whether to leave a waiting connection to another worker, and
/// tells the others how many it holds. The process model's connection board provides it
/// (FrostSupervisor); the host only needs these three calls.
public protocol ConnectionBalancing: Sendable {
    /// This worker now holds `count` connections.
    func setConnections(_ count: Int)
    /// This worker is (not) accepting.
    func setAccepting(_ accepting: Bool)
    /// Another accepting worker holds fewer connections than this one.
    func anotherHoldsFewer() -> Bool
}

/// Accepts connections on the host's listening sockets (its own, or shared with other
/// processes): it waits with poll and accepts without blocking, so losing a connection to
/// another worker is just EAGAIN. Stopping closes this process's copies of the sockets only.
///
/// With a seat on the workers' connection board it accepts one connection at a time and
/// leaves a waiting connection to a worker that holds fewer, for at most
/// `maxDeferral` (that worker may be busy): the first to wake no longer takes them all.
final class Acceptor: @unchecked Sendable {
    // @unchecked: the descriptors are immutable; `accepted` is called on the thread only.
    private let sockets: [Int32]
    private let seat: (any ConnectionBalancing)?
    static let maxDeferral = 0.002
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private var thread = pthread_t()
    private let accepted: (Int32) -> Void

    init(sockets: [Int32], seat: (any ConnectionBalancing)? = nil, accepted: @escaping (Int32) -> Void) throws {
        self.sockets = sockets
        self.seat = seat
        self.accepted = accepted
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw HostError(.resources, subject: "pipe", "cannot create a pipe: \(errnoDescription())") }
        (wakeRead, wakeWrite) = (fds[0], fds[1])
        for fd in [wakeRead, wakeWrite] + sockets { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        // Non-blocking accept (the flag is shared with the other processes, which accept
        // the same way).
        for fd in sockets { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        let context = Unmanaged.passRetained(self).toOpaque()
        let status = pthread_create(&thread, nil, { raw in
            let acceptor = Unmanaged<Acceptor>.fromOpaque(raw!).takeRetainedValue()
            acceptor.run()
            return nil
        }, context)
        guard status == 0 else {
            Unmanaged<Acceptor>.fromOpaque(context).release()
            throw HostError(.resources, subject: "accepting thread", "cannot start the accepting thread: \(errnoDescription(status))")
        }
    }

    private func run() {
        var fds = sockets.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        fds.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
        seat?.setAccepting(true)
        defer { seat?.setAccepting(false) }
        // When this worker began leaving waiting connections to others; after such a
        // pause the sockets are polled without waiting, and nothing there ends the pause.
        var deferringSince: Double?
        while true {
            let ready = poll(&fds, nfds_t(fds.count), deferringSince == nil ? -1 : 0)
            guard ready >= 0 || errno == EINTR else { return }
            if ready <= 0 {
                if ready == 0 { deferringSince = nil }  // another worker took them
                continue
            }
            if fds.last!.revents != 0 { return }
            if let seat, seat.anotherHoldsFewer() {
                let now = monotonicSeconds()
                if now - (deferringSince ?? now) < Acceptor.maxDeferral {
                    if deferringSince == nil { deferringSince = now }
                    usleep(200)
                    continue
                }
            }
            deferringSince = nil
            for index in 0..<sockets.count where fds[index].revents != 0 {
                let fd = accept(sockets[index], nil, nil)
                if fd < 0 {
                    // EAGAIN: another process took it. EMFILE and the like: try again later.
                    if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { usleep(10_000) }
                    continue
                }
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                accepted(fd)
            }
        }
    }

    /// Stops accepting (connections already accepted go on) and closes the sockets.
    func stop() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        pthread_join(thread, nil)
        for fd in sockets + [wakeRead, wakeWrite] { close(fd) }
    }
}
