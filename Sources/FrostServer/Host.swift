import FrostPython
import FrostRuntime
import NIOCore
import NIOHTTP1
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// Limits that keep bad or slow clients from holding the host (defaults in parentheses).
public struct HostLimits: Sendable {
    /// Request target length (8 KiB): longer gets 414.
    public var maxURIBytes = 8 * 1024
    /// Header fields (100) and their total size (32 KiB): more gets 431.
    public var maxHeaderCount = 100
    public var maxHeaderBytes = 32 * 1024
    /// Request body (1 GiB): a larger Content-Length gets 413; a chunked body that runs
    /// over is cut off.
    public var maxBodyBytes = 1 << 30
    /// Seconds for a new connection to deliver a complete request head (10).
    public var headerTimeout = 10.0
    /// Seconds a keep-alive connection may wait for its next request (60).
    public var idleTimeout = 60.0
    /// Seconds Python waits for more body bytes before the request fails (30).
    public var bodyTimeout = 30.0
    /// Seconds a request may take from head to finished response (300): then 504, or the
    /// connection is cut if the headers already went out.
    public var requestTimeout = 300.0

    public init() {}
}

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

public struct HostError: Error, CustomStringConvertible, Sendable {
    public let message: String
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
    private var serverChannel: Channel?
    private let monitor = Monitor()
    private var inFlight = 0
    private var nextConnectionID = 0
    nonisolated(unsafe) private static var extensionErrorClass: PythonObject?

    /// `reload` re-imports the entry module and returns the new extension (it runs on a
    /// Python thread holding the GIL) for `InternalReloadException`.
    public init(interpreter: Interpreter, entry: LoadedEntry, configuration: HostConfiguration,
                reload: (() throws -> PythonObject?)? = nil) throws {
        self.configuration = configuration
        self.site = SiteContext(physicalPath: configuration.physicalPath)
        self.extensionObject = entry.extensionObject
        self.reload = reload
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, min(4, System.coreCount)))
        self.pool = try PythonThreadPool(interpreter: interpreter, size: max(1, configuration.pythonThreads), name: "request")
    }

    /// Binds and starts serving; returns the address it listens on.
    @discardableResult
    public func start() throws -> String {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 512)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withPipeliningAssistance: true, withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPConnectionHandler(connectionID: self.connectionID(), dispatcher: self,
                                              limits: self.configuration.limits))
                }
            }
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 16)
        let listen = configuration.listen
        do {
            if listen.hasPrefix("unix:") {
                serverChannel = try bootstrap.bind(unixDomainSocketPath: String(listen.dropFirst(5)),
                                                   cleanupExistingSocketFile: true).wait()
            } else {
                guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]) else {
                    throw HostError(message: "'\(listen)' is not HOST:PORT or unix:PATH")
                }
                var host = String(listen[..<colon])
                if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
                serverChannel = try bootstrap.bind(host: host, port: port).wait()
            }
        } catch let error as HostError {
            throw error
        } catch {
            throw HostError(message: "cannot listen on \(listen): \(error)")
        }
        if listen.hasPrefix("unix:") { return listen }
        guard let address = serverChannel?.localAddress, let ip = address.ipAddress, let port = address.port else { return listen }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    /// Stops accepting, lets requests in flight finish (up to the grace period), closes
    /// the connections and stops the Python threads. Terminate* is the caller's.
    public func shutdown() {
        try? serverChannel?.close().wait()
        let limit = deadline(afterSeconds: configuration.shutdownGrace)
        monitor.locked {
            while inFlight > 0 { if !monitor.wait(until: limit) { break } }
        }
        try? group.syncShutdownGracefully()
        pool.stop()
    }

    private func connectionID() -> Int {
        monitor.locked {
            nextConnectionID += 1
            return nextConnectionID
        }
    }

    // MARK: ExchangeDispatcher (event loop)

    func dispatch(_ exchange: HTTPExchange) {
        monitor.locked { inFlight += 1 }
        if let routes = configuration.site {
            let path = percentDecoded(String(exchange.head.uri.split(separator: "?", maxSplits: 1,
                                                                   omittingEmptySubsequences: false).first ?? ""))
            switch routes.route(path) {
            case .notFound:
                return exchange.respondOnLoop(status: .notFound, text: "Not Found")
            case .file(let directory, let relative):
                return StaticFiles.serve(exchange, directory: directory, relative: relative)
            case .extensionCall(let directory, let scriptName, let pathInfo):
                exchange.site = SiteContext(physicalPath: directory.path, scriptName: scriptName, pathInfo: pathInfo,
                                            secure: site.secure, serverSoftware: site.serverSoftware)
            }
        }
        let limit = configuration.limits.requestTimeout
        exchange.deadline = exchange.eventLoop.scheduleTask(in: .milliseconds(Int64(limit * 1000))) {
            if exchange.deadlineExpired() {
                self.logError("request deadline of \(Int(limit)) s passed: \(exchange.head.method.rawValue) \(exchange.head.uri) "
                              + "(the Python thread serving it is still busy)", nil)
            }
        }
        pool.submit { self.serve(exchange) }
    }

    func completed(_ exchange: HTTPExchange) {
        monitor.locked {
            inFlight -= 1
            monitor.broadcast()
        }
        configuration.accessLog?.write(exchange)
    }

    // MARK: Serving (Python thread, GIL held)

    private func serve(_ exchange: HTTPExchange) {
        guard extensionObject != nil else {
            Python.withoutGIL { respondPlain(exchange, 404, "Not Found", "Not Found\n") }
            return
        }
        let block: ControlBlock
        let ecb: PythonObject
        do {
            block = try ControlBlock(exchange: exchange, host: self)
            ecb = try Host.controlBlockType.wrap(block)
        } catch {
            Python.withoutGIL { respondPlain(exchange, 400, "Bad Request", "Bad Request\n") }
            return
        }
        do {
            var current = extensionObject!
            var result: PythonObject
            do {
                result = try current.callMethod("HttpExtensionProc", [ecb])
            } catch let error as PythonError where isReloadRequest(error) {
                current = try reloadExtension(replacing: current)
                result = try current.callMethod("HttpExtensionProc", [ecb])  // the request again
            }
            let status = result.isInt ? (try? result.asInt()) ?? 1 : 1
            if status == Host.statusPending { return }  // DoneWithSession ends it, from any thread
            Python.withoutGIL { complete(block, failed: status == Host.statusError) }
        } catch let error as PythonError {
            logError("HttpExtensionProc raised \(error) for \(exchange.head.method.rawValue) \(exchange.head.uri)", error.traceback)
            let traceback = configuration.debug ? error.traceback : nil
            Python.withoutGIL { fail(block, traceback: traceback) }
        } catch {
            Python.withoutGIL { fail(block, traceback: nil) }
        }
    }

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
        guard !block.exchange.headersSent else { return }
        try Python.withoutGIL {
            try block.exchange.sendHead(status: block.httpStatusCode, reason: HTTPReason.phrase(block.httpStatusCode),
                                        headers: [("Content-Type", "text/html")])
        }
    }

    /// The physical path a URL maps to: through the site's virtual directories, else
    /// below the bundle directory. `..` components do not climb out.
    func mapURLToPath(_ url: String) -> String {
        let path = percentDecoded(String(url.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""))
        var base = site.physicalPath
        var rest = path
        if let routes = configuration.site {
            switch routes.route(path) {
            case .extensionCall(let directory, _, let pathInfo): (base, rest) = (directory.path, pathInfo)
            case .file(let directory, let relative): (base, rest) = (directory.path, relative)
            case .notFound: break
            }
        }
        var parts: [Substring] = []
        for part in rest.split(separator: "/") where part != "." {
            if part == ".." { _ = parts.popLast() } else { parts.append(part) }
        }
        return (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/" + parts.joined(separator: "/")
    }

    func reportUnhealthy(_ reason: String) {
        logError("the extension reports itself unhealthy: \(reason)", nil)
    }

    /// `isapi.ExtensionError(errno, strerror, funcname)`, or OSError without the package.
    func extensionError(_ errno: Int, _ message: String?, _ function: String) -> PythonError {
        do {
            if Host.extensionErrorClass == nil {
                Host.extensionErrorClass = try Python.importModule("isapi").attribute("ExtensionError")
            }
            return PythonError.raise(Host.extensionErrorClass!, args: [
                try PythonObject(errno), try message.map { try PythonObject($0) } ?? .none, try PythonObject(function),
            ])
        } catch {
            return PythonError.raise(.osError, "\(function): \(message ?? "error \(errno)")")
        }
    }

    func logError(_ message: String, _ traceback: String?) {
        var text = "frost: \(message)\n"
        if let traceback { text += traceback }
        writeOut(text, to: 2)
    }
}

/// One line per finished request, in Combined Log Format or W3C extended format, to
/// stdout or a file opened for appending (each line one write, so lines never interleave).
public final class AccessLog: @unchecked Sendable {
    // @unchecked: immutable after init; write(2) with O_APPEND is atomic per line.
    public enum Format: String, Sendable { case combined, w3c }

    let format: Format
    let fd: Int32

    /// `path` nil or "-" is stdout.
    public init(path: String?, format: Format) throws {
        self.format = format
        if let path, path != "-" {
            let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                throw HostError(message: "cannot open the access log \(path): \(String(cString: strerror(errno)))")
            }
            self.fd = fd
        } else {
            self.fd = 1
        }
        if format == .w3c {
            writeOut("#Software: frost/0.1\n#Version: 1.0\n#Date: \(AccessLog.timestamp(time(nil), w3c: true))\n"
                     + "#Fields: date time c-ip cs-method cs-uri-stem cs-uri-query sc-status sc-bytes time-taken "
                     + "cs(User-Agent) cs(Referer)\n", to: fd)
        }
    }

    deinit { if fd != 1 { close(fd) } }

    func write(_ exchange: HTTPExchange) {
        let head = exchange.head
        let remote = exchange.remoteAddress?.ipAddress ?? "-"
        let referer = head.headers.first(name: "referer")
        let agent = head.headers.first(name: "user-agent")
        let line: String
        switch format {
        case .combined:
            line = "\(remote) - - [\(AccessLog.timestamp(time(nil), w3c: false))] \"\(head.method.rawValue) \(head.uri) "
                + "HTTP/\(head.version.major).\(head.version.minor)\" \(exchange.statusCode) \(exchange.bytesSent) "
                + "\"\(referer ?? "-")\" \"\(agent ?? "-")\"\n"
        case .w3c:
            let parts = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
            let milliseconds = Int((monotonicSeconds() - exchange.received) * 1000)
            func field(_ value: String?) -> String {
                guard let value, !value.isEmpty else { return "-" }
                return String(value.map { $0 == " " ? "+" : $0 })
            }
            line = [AccessLog.timestamp(time(nil), w3c: true), remote, head.method.rawValue, field(String(parts[0])),
                    field(parts.count > 1 ? String(parts[1]) : nil), String(exchange.statusCode), String(exchange.bytesSent),
                    String(milliseconds), field(agent), field(referer)].joined(separator: " ") + "\n"
        }
        writeOut(line, to: fd)
    }

    /// "21/Nov/2026:06:18:03 +0000" (combined) or "2026-11-21 06:18:03" (W3C, UTC).
    static func timestamp(_ now: time_t, w3c: Bool) -> String {
        var now = now
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let length = strftime(&buffer, buffer.count, w3c ? "%Y-%m-%d %H:%M:%S" : "%d/%b/%Y:%H:%M:%S +0000", &parts)
        return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
