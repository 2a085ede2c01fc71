import FrostHTTP
import FrostPython
import FrostRuntime
import NIOCore
import NIOHTTP1
import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// IIS's SF_NOTIFY_* bits.
enum FilterNotification {
    static let securePort = 0x1
    static let nonsecurePort = 0x2
    static let readRawData = 0x8000
    static let preprocHeaders = 0x4000
    static let authentication = 0x2000
    static let urlMap = 0x1000
    static let accessDenied = 0x800
    static let sendResponse = 0x40
    static let sendRawData = 0x400
    static let log = 0x200
    static let endOfRequest = 0x80
    static let endOfNetSession = 0x100
}

/// IIS's SF_STATUS_REQ_* return values of HttpFilterProc.
enum FilterStatus {
    static let finished = 0x800_0000
    static let finishedKeepConnection = 0x800_0001
    static let nextNotification = 0x800_0002
    static let handledNotification = 0x800_0003
    static let error = 0x800_0004
    static let readNext = 0x800_0005
}

/// What the host does after a notification.
enum FilterOutcome: Equatable {
    /// NEXT_NOTIFICATION or HANDLED_NOTIFICATION (there is one filter, so both go on).
    case proceed
    /// The filter answered the request itself.
    case finished(keepConnection: Bool)
    /// The filter failed (ERROR, a bad return value or an exception): 500 and close.
    case error
    /// READ_RAW_DATA only: call again once more data has arrived.
    case readNext
}

/// The bundle's filter: its object, the notifications it asked for, and the thread that
/// delivers the notifications raised on the event loop (raw data in and out, end of
/// session). Request notifications run on the request's own Python thread.
final class FilterChain: @unchecked Sendable {
    // @unchecked: `filter` is read and replaced with the GIL held; `stopped` under `monitor`.
    let flags: Int
    nonisolated(unsafe) var filter: PythonObject
    let thread: PythonThread
    private let reload: (() throws -> PythonObject?)?
    private let log: (String, String?) -> Void
    private let monitor = Monitor()
    private var stopped = false
    static let httpFilterProc = InternedName("HttpFilterProc")
    private var sessions = 0

    init(filter: PythonObject, flags: Int, interpreter: Interpreter, reload: (() throws -> PythonObject?)?,
         log: @escaping (String, String?) -> Void) throws {
        self.filter = filter
        // IIS assumes both kinds of port when a filter names neither; this host serves
        // plain HTTP, so a filter that asked for secure ports only gets nothing.
        let ports = flags & (FilterNotification.securePort | FilterNotification.nonsecurePort)
        self.flags = ports == 0 || ports & FilterNotification.nonsecurePort != 0 ? flags : 0
        self.thread = try PythonThread(interpreter: interpreter, name: "filter")
        self.reload = reload
        self.log = log
    }

    func wants(_ notification: Int, _ request: FilterRequest? = nil) -> Bool {
        flags & notification != 0 && (request.map { $0.disabled & notification == 0 } ?? true)
    }

    /// Queues work for the filter thread; dropped once the host has stopped.
    func submit(_ job: @escaping () -> Void) {
        monitor.locked {
            guard !stopped else { return }
            thread.submit(job)
        }
    }

    /// Waits (up to 5 s) for the sessions of closed connections to end, then stops the
    /// filter thread once its queue is done.
    func stop() {
        let limit = deadline(afterSeconds: 5)
        monitor.locked {
            while sessions > 0 { if !monitor.wait(until: limit) { break } }
            stopped = true
        }
        thread.stop()
    }

    func sessionOpened() {
        monitor.locked { sessions += 1 }
    }

    func sessionFinished() {
        monitor.locked {
            sessions -= 1
            monitor.broadcast()
        }
    }

    /// Calls `HttpFilterProc(fc)` for one notification (GIL held). `data` is what
    /// `fc.GetData()` returns. The fc and data objects stop working when it returns.
    func notify(_ notification: Int, connection: FilterConnection, exchange: HTTPExchange?,
                data: PythonObject?, scope: FilterScope) -> FilterOutcome {
        defer { scope.valid = false }
        let call = FilterCall(notification: notification, connection: connection, exchange: exchange, data: data,
                              scope: scope, chain: self)
        let what = FilterChain.name(of: notification)
        do {
            let fc = try FilterChain.contextType.wrap(call)
            var result: PythonObject
            do {
                result = try filter.callMethod(FilterChain.httpFilterProc, [fc])
            } catch let error as PythonError where error.typeName.hasSuffix("InternalReloadException") {
                try reloadFilter()
                result = try filter.callMethod(FilterChain.httpFilterProc, [fc])
            }
            if result.isNone { return .proceed }
            guard result.isInt, let status = try? result.asInt() else {
                log("HttpFilterProc returned \(result.typeName) for \(what): it must return an SF_STATUS_REQ_* int or None", nil)
                return .error
            }
            switch status {
            case FilterStatus.nextNotification, FilterStatus.handledNotification: return .proceed
            case FilterStatus.finished: return .finished(keepConnection: false)
            case FilterStatus.finishedKeepConnection: return .finished(keepConnection: true)
            case FilterStatus.readNext: return notification == FilterNotification.readRawData ? .readNext : .proceed
            case FilterStatus.error: return .error
            default:
                log("HttpFilterProc returned unknown status 0x\(String(status, radix: 16)) for \(what)", nil)
                return .error
            }
        } catch let error as PythonError {
            log("HttpFilterProc raised \(error) for \(what)", error.traceback)
            return .error
        } catch {
            log("HttpFilterProc failed for \(what): \(error)", nil)
            return .error
        }
    }

    /// `InternalReloadException` from the filter: a fresh filter from the re-imported module.
    private func reloadFilter() throws {
        guard let reload else { throw PythonError.raise(.runtimeError, "this host cannot reload the filter") }
        log("InternalReloadException from the filter: reloading the entry module", nil)
        guard let fresh = try reload() else { throw PythonError.raise(.runtimeError, "the reloaded module has no filter") }
        filter = fresh
    }

    static func name(of notification: Int) -> String {
        FilterFlags.names.first { $0.0 == notification }?.1 ?? "notification 0x\(String(notification, radix: 16))"
    }

    /// `isapi.FilterError(errno, strerror, funcname)`.
    static func filterError(_ errno: Int, _ message: String?, _ function: String) -> PythonError {
        isapiError("FilterError", errno, message, function)
    }
}

/// Whether the objects of one notification may still be used.
final class FilterScope {
    var valid = true

    func check(_ what: String) throws {
        guard valid else {
            throw PythonError.raise(.runtimeError, "\(what) belongs to a notification that has finished; keep data, not the object")
        }
    }
}

/// Per connection: `fc.FilterContext` and the raw side of the connection.
final class FilterConnection: @unchecked Sendable {
    // @unchecked: `context` is touched with the GIL held; `raw` is set once on the event loop
    // before any notification.
    let chain: FilterChain
    nonisolated(unsafe) var context: PythonObject?
    var raw: RawDataHandler?
    var localAddress: SocketAddress?
    var remoteAddress: SocketAddress?
    var eventLoop: EventLoop?
    // END_OF_NET_SESSION waits for the END_OF_REQUEST of every request of the connection.
    private let monitor = Monitor()
    private var requestsOpen = 0
    private var closed = false

    init(chain: FilterChain) {
        self.chain = chain
        chain.sessionOpened()
    }

    /// A request was dispatched.
    func requestStarted() {
        monitor.locked { requestsOpen += 1 }
    }

    /// Its END_OF_REQUEST and LOG are done (any thread).
    func requestEnded() {
        let end = monitor.locked {
            requestsOpen -= 1
            return closed && requestsOpen == 0
        }
        if end { endSession() }
    }

    /// The connection closed.
    func sessionClosed() {
        let end = monitor.locked {
            closed = true
            return requestsOpen == 0
        }
        if end { endSession() }
    }

    /// END_OF_NET_SESSION, then FilterContext is released, on the filter thread with the
    /// GIL (as pywin32 releases it at the end of the session).
    private func endSession() {
        chain.submit {
            if self.chain.wants(FilterNotification.endOfNetSession) {
                _ = self.chain.notify(FilterNotification.endOfNetSession, connection: self, exchange: nil,
                                      data: nil, scope: FilterScope())
            }
            self.context = nil
            self.raw = nil
            self.chain.sessionFinished()
        }
    }
}

/// Per request: what the filter changed or asked for.
final class FilterRequest: @unchecked Sendable {
    // @unchecked: touched with the GIL held (filter calls, server variables).
    var disabled = 0
    var additionalHeaders: [(String, String)] = []
    var user: String?
    var password: String?
    var physicalPath: String?
}

/// The state behind one `HTTP_FILTER_CONTEXT`.
final class FilterCall {
    let notification: Int
    let connection: FilterConnection
    let exchange: HTTPExchange?
    let data: PythonObject?
    let scope: FilterScope
    let chain: FilterChain

    init(notification: Int, connection: FilterConnection, exchange: HTTPExchange?, data: PythonObject?,
         scope: FilterScope, chain: FilterChain) {
        self.notification = notification
        self.connection = connection
        self.exchange = exchange
        self.data = data
        self.scope = scope
        self.chain = chain
    }

    func writeRaw(_ bytes: [UInt8]) throws {
        guard let raw = connection.raw else { throw FilterChain.filterError(WindowsError.connectionReset, "no connection", "WriteClient") }
        raw.writeRaw(bytes)
        exchange?.countRawBytes(bytes.count)
    }
}

// MARK: - Python objects

extension FilterChain {
    /// `HTTP_FILTER_CONTEXT`, as pywin32 has it.
    static let contextType: NativeType<FilterCall> = {
        let type = NativeType<FilterCall>("_isapi.HTTP_FILTER_CONTEXT", doc: "One filter notification.")
        type.attribute("NotificationType", get: { try PythonObject($0.notification) })
        type.attribute("Revision", get: { _ in try PythonObject(8 << 16) })
        type.attribute("fIsSecurePort", get: { _ in .false })
        type.attribute("FilterContext", get: { call in
            try call.scope.check("HTTP_FILTER_CONTEXT")
            return call.connection.context ?? .none
        }, set: { call, value in
            try call.scope.check("HTTP_FILTER_CONTEXT")
            call.connection.context = value.isNone ? nil : value
        })
        type.method("GetData") { call, _ in
            try call.scope.check("HTTP_FILTER_CONTEXT")
            guard let data = call.data else {
                throw PythonError.raise(.valueError, "\(FilterChain.name(of: call.notification)) has no data")
            }
            return data
        }
        type.method("GetServerVariable") { call, arguments in
            try call.scope.check("HTTP_FILTER_CONTEXT")
            let name = try textArgument(try arguments.required(0, "name"))
            let unicode = name.hasPrefix("UNICODE_")
            let plain = (unicode ? String(name.dropFirst(8)) : name).uppercased()
            let value: String?
            if let exchange = call.exchange {
                value = ServerVariables(exchange: exchange, site: exchange.site ?? SiteContext(physicalPath: "/")).value(plain)
            } else {
                value = ServerVariables.connectionValue(plain, local: call.connection.localAddress,
                                                        remote: call.connection.remoteAddress)
            }
            guard let value else {
                if let fallback = arguments.optional(1, "default") { return fallback }
                throw FilterChain.filterError(WindowsError.invalidIndex, nil, "GetServerVariable")
            }
            return unicode ? try PythonObject(value) : try PythonObject(bytes: Array(value.utf8))
        }
        let write: NativeMethod<FilterCall> = { call, arguments in
            try call.scope.check("HTTP_FILTER_CONTEXT")
            let data = try arguments.required(0, "data")
            let bytes: [UInt8] = try bytesLike(data.borrowed)
            try call.writeRaw(bytes)
            return .none
        }
        type.method("WriteClient", write)
        type.method("write", write)
        type.method("AddResponseHeaders") { call, arguments in
            try call.scope.check("HTTP_FILTER_CONTEXT")
            let headers = try parseHeaders(try arguments.requiredBorrowed(0, "headers")).pairs
            guard let request = call.exchange?.filterRequest else {
                throw FilterChain.filterError(WindowsError.invalidParameter, "no request to add headers to", "AddResponseHeaders")
            }
            request.additionalHeaders += headers
            return .none
        }
        type.method("SendResponseHeader") { call, arguments in
            try call.scope.check("HTTP_FILTER_CONTEXT")
            let statusObject = try arguments.required(0, "status")
            let (code, reason) = statusObject.isNone ? (200, "OK") : try parseStatus(statusObject.borrowed)
            let headers = try arguments.optionalBorrowed(1, "headers").map(parseHeaders)?.pairs ?? []
            let version = call.exchange.map { "HTTP/\($0.head.version.major).\($0.head.version.minor)" } ?? "HTTP/1.1"
            var text = "\(version) \(code) \(reason)\r\n"
            for (name, value) in headers { text += "\(name): \(value)\r\n" }
            text += "\r\n"
            call.exchange?.noteRawStatus(code)
            try call.writeRaw(Array(text.utf8))
            return .none
        }
        type.method("DisableNotifications") { call, arguments in
            try call.scope.check("HTTP_FILTER_CONTEXT")
            let flags = try arguments.required(0, "flags").asInt()
            call.exchange?.filterRequest?.disabled |= flags
            return .none
        }
        type.describe = { "<HTTP_FILTER_CONTEXT \(FilterChain.name(of: $0.notification))>" }
        return type
    }()
}

/// Request headers before they are processed: the special names `method`, `url` and
/// `version` are the request line; others are header names (a trailing ':' is allowed).
final class PreprocHeadersData {
    let scope: FilterScope
    let exchange: HTTPExchange

    init(scope: FilterScope, exchange: HTTPExchange) {
        self.scope = scope
        self.exchange = exchange
    }

    static let type: NativeType<PreprocHeadersData> = {
        let type = NativeType<PreprocHeadersData>("_isapi.HTTP_FILTER_PREPROC_HEADERS",
                                                  doc: "The request headers, before the host processes them.")
        type.attribute("HttpStatus", get: { _ in try PythonObject(0) })
        type.method("GetHeader") { data, arguments in
            try data.scope.check("HTTP_FILTER_PREPROC_HEADERS")
            let name = headerName(try textArgument(try arguments.required(0, "name")))
            let head = data.exchange.head
            let value: String?
            switch name.lowercased() {
            case "method": value = head.method.rawValue
            case "url": value = head.uri
            case "version": value = "HTTP/\(head.version.major).\(head.version.minor)"
            default:
                let values = head.headers[canonicalForm: name].map(String.init)
                value = values.isEmpty ? nil : values.joined(separator: ",")
            }
            guard let value else {
                if let fallback = arguments.optional(1, "default") { return fallback }
                throw FilterChain.filterError(WindowsError.invalidIndex, "no header \(name)", "GetHeader")
            }
            return try PythonObject(bytes: Array(value.utf8))
        }
        let set: (Bool) -> NativeMethod<PreprocHeadersData> = { adding in { data, arguments in
            try data.scope.check("HTTP_FILTER_PREPROC_HEADERS")
            let name = headerName(try textArgument(try arguments.required(0, "name")))
            let value = try textArgument(try arguments.required(1, "value"))
            let function = adding ? "AddHeader" : "SetHeader"
            guard isHeaderValue(value) else {
                throw FilterChain.filterError(WindowsError.invalidParameter, "header values cannot hold CR, LF or NUL", function)
            }
            var problem: String?
            data.exchange.rewriteHead { head in
                switch name.lowercased() {
                case "method":
                    guard !value.isEmpty, value.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else { problem = "bad method"; return }
                    head.method = HTTPMethod(rawValue: value)
                case "url":
                    guard value.hasPrefix("/") || value == "*", !value.utf8.contains(where: { $0 <= 32 || $0 == 127 }) else {
                        problem = "a URL must start with '/' and hold no spaces"; return
                    }
                    head.uri = value
                case "version":
                    switch value.uppercased() {
                    case "HTTP/1.0": head.version = .http1_0
                    case "HTTP/1.1": head.version = .http1_1
                    default: problem = "version must be HTTP/1.0 or HTTP/1.1"
                    }
                default:
                    guard isHeaderName(name) else {
                        problem = "bad header name"; return
                    }
                    if adding {
                        head.headers.add(name: name, value: value)
                    } else if value.isEmpty {
                        head.headers.remove(name: name)  // as IIS: an empty value deletes the header
                    } else {
                        head.headers.replaceOrAdd(name: name, value: value)
                    }
                }
            }
            if let problem { throw FilterChain.filterError(WindowsError.invalidParameter, problem, function) }
            return .none
        } }
        type.method("SetHeader", set(false))
        type.method("AddHeader", set(true))
        type.describe = { "<HTTP_FILTER_PREPROC_HEADERS \($0.exchange.head.method.rawValue) \($0.exchange.head.uri)>" }
        return type
    }()
}

func headerName(_ name: String) -> String {
    name.hasSuffix(":") ? String(name.dropLast()) : name
}

/// The response head about to be sent (SF_NOTIFY_SEND_RESPONSE): its headers and `HttpStatus`.
final class ResponseHeadData {
    let scope: FilterScope
    var status: Int
    var reason: String
    var headers: [(String, String)]

    init(scope: FilterScope, status: Int, reason: String, headers: [(String, String)]) {
        self.scope = scope
        self.status = status
        self.reason = reason
        self.headers = headers
    }

    static let type: NativeType<ResponseHeadData> = {
        let type = NativeType<ResponseHeadData>("_isapi.HTTP_FILTER_SEND_RESPONSE", doc: "The response head about to be sent.")
        type.attribute("HttpStatus", get: { try PythonObject($0.status) }, set: { data, value in
            try data.scope.check("HTTP_FILTER_SEND_RESPONSE")
            let code = try value.asInt()
            guard (100...999).contains(code) else { throw PythonError.raise(.valueError, "HttpStatus must be 100-999, not \(code)") }
            if code != data.status { data.reason = HTTPReason.phrase(code) }
            data.status = code
        })
        type.method("GetHeader") { data, arguments in
            try data.scope.check("HTTP_FILTER_SEND_RESPONSE")
            let name = headerName(try textArgument(try arguments.required(0, "name"))).lowercased()
            let values = data.headers.filter { $0.0.lowercased() == name }.map(\.1)
            guard !values.isEmpty else {
                if let fallback = arguments.optional(1, "default") { return fallback }
                throw FilterChain.filterError(WindowsError.invalidIndex, "no header \(name)", "GetHeader")
            }
            return try PythonObject(bytes: Array(values.joined(separator: ",").utf8))
        }
        let set: (Bool) -> NativeMethod<ResponseHeadData> = { adding in { data, arguments in
            try data.scope.check("HTTP_FILTER_SEND_RESPONSE")
            let name = headerName(try textArgument(try arguments.required(0, "name")))
            let value = try textArgument(try arguments.required(1, "value"))
            let function = adding ? "AddHeader" : "SetHeader"
            guard isHeaderName(name), isHeaderValue(value) else {
                throw FilterChain.filterError(WindowsError.invalidParameter, "bad header \(name.debugDescription)", function)
            }
            if !adding { data.headers.removeAll { $0.0.lowercased() == name.lowercased() } }
            if adding || !value.isEmpty { data.headers.append((name, value)) }
            return .none
        } }
        type.method("SetHeader", set(false))
        type.method("AddHeader", set(true))
        type.describe = { "<HTTP_FILTER_SEND_RESPONSE \($0.status)>" }
        return type
    }()
}

/// SF_NOTIFY_AUTHENTICATION: the user and password of a Basic Authorization header.
final class AuthenticationData {
    let scope: FilterScope
    var user: String
    var password: String

    init(scope: FilterScope, user: String, password: String) {
        self.scope = scope
        self.user = user
        self.password = password
    }

    static let type: NativeType<AuthenticationData> = {
        let type = NativeType<AuthenticationData>("_isapi.HTTP_FILTER_AUTHENT", doc: "The user and password of the request.")
        type.attribute("User", get: { try PythonObject(bytes: Array($0.user.utf8)) }, set: { data, value in
            try data.scope.check("HTTP_FILTER_AUTHENT")
            data.user = try textArgument(value)
        })
        type.attribute("Password", get: { try PythonObject(bytes: Array($0.password.utf8)) }, set: { data, value in
            try data.scope.check("HTTP_FILTER_AUTHENT")
            data.password = try textArgument(value)
        })
        return type
    }()
}

/// SF_NOTIFY_URL_MAP and SF_NOTIFY_ACCESS_DENIED: a URL and the physical path it maps to.
final class URLMapData {
    let scope: FilterScope
    let url: String
    var physicalPath: String
    let reason: Int

    init(scope: FilterScope, url: String, physicalPath: String, reason: Int = 0) {
        self.scope = scope
        self.url = url
        self.physicalPath = physicalPath
        self.reason = reason
    }

    static let mapType: NativeType<URLMapData> = {
        let type = NativeType<URLMapData>("_isapi.HTTP_FILTER_URL_MAP", doc: "A URL and the physical path it maps to.")
        type.attribute("URL", get: { try PythonObject(bytes: Array($0.url.utf8)) })
        type.attribute("PhysicalPath", get: { try PythonObject(bytes: Array($0.physicalPath.utf8)) }, set: { data, value in
            try data.scope.check("HTTP_FILTER_URL_MAP")
            let path = try textArgument(value)
            guard path.hasPrefix("/"), !path.utf8.contains(0) else {
                throw PythonError.raise(.valueError, "PhysicalPath must be an absolute path, not \(path.debugDescription)")
            }
            data.physicalPath = path
        })
        return type
    }()

    static let deniedType: NativeType<URLMapData> = {
        let type = NativeType<URLMapData>("_isapi.HTTP_FILTER_ACCESS_DENIED", doc: "A request about to be answered 401.")
        type.attribute("URL", get: { try PythonObject(bytes: Array($0.url.utf8)) })
        type.attribute("PhysicalPath", get: { try PythonObject(bytes: Array($0.physicalPath.utf8)) })
        type.attribute("Reason", get: { try PythonObject($0.reason) })
        return type
    }()
}

/// SF_NOTIFY_READ_RAW_DATA and SF_NOTIFY_SEND_RAW_DATA: bytes as they cross the socket.
final class RawData {
    let scope: FilterScope
    var bytes: [UInt8]

    init(scope: FilterScope, bytes: [UInt8]) {
        self.scope = scope
        self.bytes = bytes
    }

    static let type: NativeType<RawData> = {
        let type = NativeType<RawData>("_isapi.HTTP_FILTER_RAW_DATA", doc: "Bytes read from or sent to the client.")
        type.attribute("InData", get: { try PythonObject(bytes: $0.bytes) }, set: { data, value in
            try data.scope.check("HTTP_FILTER_RAW_DATA")
            data.bytes = try bytesLike(value.borrowed)
        })
        type.describe = { "<HTTP_FILTER_RAW_DATA \($0.bytes.count) bytes>" }
        return type
    }()
}

/// SF_NOTIFY_LOG: the access log line's fields, which the filter may change.
final class LogData {
    let scope: FilterScope
    var record: AccessRecord

    init(scope: FilterScope, record: AccessRecord) {
        self.scope = scope
        self.record = record
    }

    static let type: NativeType<LogData> = {
        let type = NativeType<LogData>("_isapi.HTTP_FILTER_LOG", doc: "The access log entry of a finished request.")
        func text(_ name: String, _ path: WritableKeyPath<AccessRecord, String>) {
            type.attribute(name, get: { try PythonObject(bytes: Array($0.record[keyPath: path].utf8)) }, set: { data, value in
                try data.scope.check("HTTP_FILTER_LOG")
                let text = try textArgument(value)
                guard !text.utf8.contains(where: { $0 < 32 }) else {
                    throw PythonError.raise(.valueError, "\(name) cannot hold control characters")
                }
                data.record[keyPath: path] = text
            })
        }
        func number(_ name: String, _ path: WritableKeyPath<AccessRecord, Int>, settable: Bool) {
            type.attribute(name, get: { try PythonObject($0.record[keyPath: path]) }, set: settable ? { data, value in
                try data.scope.check("HTTP_FILTER_LOG")
                data.record[keyPath: path] = try value.asInt()
            } : nil)
        }
        text("ClientHostName", \.clientHost)
        text("ClientUserName", \.user)
        text("ServerName", \.serverName)
        text("Operation", \.method)
        text("Target", \.target)
        text("Parameters", \.parameters)
        number("HttpStatus", \.status, settable: true)
        number("Win32Status", \.win32Status, settable: true)
        number("BytesSent", \.bytesSent, settable: false)
        number("BytesRecvd", \.bytesReceived, settable: false)
        number("msTimeForProcessing", \.milliseconds, settable: false)
        return type
    }()
}

// MARK: - Raw bytes

/// The handler next to the socket: bytes in before HTTP parsing (SF_NOTIFY_READ_RAW_DATA)
/// and out after encoding (SF_NOTIFY_SEND_RAW_DATA), plus the filter's own raw writes.
/// Notifications run on the filter thread; this handler keeps the order of the bytes and
/// holds reads back while one is in progress.
final class RawDataHandler: ChannelDuplexHandler, @unchecked Sendable {
    // @unchecked: all state is touched on the channel's event loop only.
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private enum Outgoing {
        case encoded(IOData, EventLoopPromise<Void>?)
        case raw(ByteBuffer)
    }

    let connection: FilterConnection
    private var context: ChannelHandlerContext?
    private var incoming: [ByteBuffer] = []
    private var heldIn: [UInt8] = []
    private var inBusy = false
    private var readPending = false
    private var outgoing: [Outgoing] = []
    private var outBusy = false
    private var closing = false
    /// The client's half-close, held until the bytes before it have been through the filter.
    private var inputClosedPending = false

    init(connection: FilterConnection) {
        self.connection = connection
    }

    private var chain: FilterChain { connection.chain }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        connection.eventLoop = context.eventLoop
        connection.localAddress = context.channel.localAddress
        connection.remoteAddress = context.channel.remoteAddress
    }

    func channelActive(context: ChannelHandlerContext) {
        connection.localAddress = context.channel.localAddress
        connection.remoteAddress = context.channel.remoteAddress
        context.fireChannelActive()
    }

    // MARK: In

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard chain.wants(FilterNotification.readRawData) || !incoming.isEmpty || inBusy else {
            return context.fireChannelRead(data)
        }
        incoming.append(buffer)
        pumpIn()
    }

    private func pumpIn() {
        guard let context, !inBusy, !closing, !incoming.isEmpty else {
            if !inBusy, incoming.isEmpty, let context {
                if inputClosedPending {
                    inputClosedPending = false
                    context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
                } else if readPending {
                    readPending = false
                    context.read()
                }
            }
            return
        }
        var buffer = incoming.removeFirst()
        let bytes = heldIn + (buffer.readBytes(length: buffer.readableBytes) ?? [])
        heldIn = []
        inBusy = true
        let connection = self.connection
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        chain.submit {
            let scope = FilterScope()
            let data = RawData(scope: scope, bytes: bytes)
            let object = try? RawData.type.wrap(data)
            let outcome = connection.chain.notify(FilterNotification.readRawData, connection: connection, exchange: nil,
                                                  data: object, scope: scope)
            let result = data.bytes
            loop.execute { bound.value.readFiltered(outcome, result) }
        }
    }

    private func readFiltered(_ outcome: FilterOutcome, _ bytes: [UInt8]) {
        inBusy = false
        guard let context else { return }
        switch outcome {
        case .proceed:
            if !bytes.isEmpty {
                var buffer = context.channel.allocator.buffer(capacity: bytes.count)
                buffer.writeBytes(bytes)
                context.fireChannelRead(wrapInboundOut(buffer))
                context.fireChannelReadComplete()
            }
        case .readNext:
            heldIn = bytes
        case .finished(let keep):
            if !keep { closeAfterWrites() }
        case .error:
            // Queued here, on the loop, before the close (writeRaw would queue it after).
            let answer = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 22\r\nConnection: close\r\n\r\nInternal Server Error\n"
            var buffer = context.channel.allocator.buffer(capacity: answer.utf8.count)
            buffer.writeString(answer)
            outgoing.append(.raw(buffer))
            closing = true
            pumpOut()
        }
        pumpIn()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event, inBusy || !incoming.isEmpty {
            inputClosedPending = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func read(context: ChannelHandlerContext) {
        if inBusy || !incoming.isEmpty {
            readPending = true
        } else {
            context.read()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.sessionClosed()
        context.fireChannelInactive()
    }

    // MARK: Out

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let payload = unwrapOutboundIn(data)
        if outgoing.isEmpty && !outBusy && !chain.wants(FilterNotification.sendRawData) {
            return context.write(data, promise: promise)
        }
        outgoing.append(.encoded(payload, promise))
        pumpOut()
    }

    func flush(context: ChannelHandlerContext) {
        if outgoing.isEmpty && !outBusy { context.flush() }
        // Otherwise every filtered write is flushed as it goes out.
    }

    /// The filter's own bytes (fc.WriteClient, SendResponseHeader), in order with the rest.
    /// Callable from any thread.
    func writeRaw(_ bytes: [UInt8]) {
        guard let loop = connection.eventLoop else { return }
        loop.execute {
            let handler = self
            guard let context = handler.context else { return }
            var buffer = context.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            handler.outgoing.append(.raw(buffer))
            handler.pumpOut()
        }
    }

    private func closeAfterWrites() {
        closing = true
        if outgoing.isEmpty && !outBusy { context?.close(promise: nil) }
    }

    private func pumpOut() {
        guard let context else { return }
        while !outBusy, !outgoing.isEmpty {
            let item = outgoing.removeFirst()
            switch item {
            case .raw(let buffer):
                context.writeAndFlush(wrapOutboundOut(.byteBuffer(buffer)), promise: nil)
            case .encoded(let payload, let promise):
                guard chain.wants(FilterNotification.sendRawData) else {
                    context.writeAndFlush(wrapOutboundOut(payload), promise: promise)
                    continue
                }
                outBusy = true
                sendFiltered(payload, promise: promise, context: context)
            }
        }
        if closing && outgoing.isEmpty && !outBusy { context.close(promise: nil) }
    }

    /// SF_NOTIFY_SEND_RAW_DATA for one write: a buffer in one notification, a file region
    /// in pieces of 64 KiB read on the filter thread (each written before the next is read).
    private func sendFiltered(_ payload: IOData, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        let connection = self.connection
        let channel = context.channel
        switch payload {
        case .byteBuffer(var buffer):
            let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
            chain.submit {
                let (outcome, result) = RawDataHandler.filterOutgoing(bytes, connection)
                loop.execute { bound.value.sentFiltered(outcome, result, promise: promise) }
            }
        case .fileRegion(let region):
            let (descriptor, start, end) = ((try? region.fileHandle.withUnsafeFileDescriptor { $0 }) ?? -1, region.readerIndex, region.endIndex)
            chain.submit {
                var offset = start
                var outcome = FilterOutcome.proceed
                while offset < end, outcome == .proceed {
                    var piece = [UInt8](repeating: 0, count: min(64 * 1024, end - offset))
                    let count = piece.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, off_t(offset)) }
                    guard count > 0 else { outcome = .error; break }
                    piece.removeLast(piece.count - count)
                    offset += count
                    let (result, filtered) = RawDataHandler.filterOutgoing(piece, connection)
                    outcome = result
                    guard outcome == .proceed || outcome == .finished(keepConnection: true) else { break }
                    if outcome == .finished(keepConnection: true) { outcome = .proceed; continue }
                    let written = loop.makePromise(of: Void.self)
                    loop.execute {
                        var out = channel.allocator.buffer(capacity: filtered.count)
                        out.writeBytes(filtered)
                        bound.value.context?.writeAndFlush(bound.value.wrapOutboundOut(.byteBuffer(out)), promise: written)
                    }
                    if (try? Python.withoutGIL({ try written.futureResult.wait() })) == nil { outcome = .error }
                }
                let final = outcome
                loop.execute { bound.value.sentFiltered(final, nil, promise: promise) }
            }
        }
    }

    private static func filterOutgoing(_ bytes: [UInt8], _ connection: FilterConnection) -> (FilterOutcome, [UInt8]) {
        let scope = FilterScope()
        let data = RawData(scope: scope, bytes: bytes)
        let object = try? RawData.type.wrap(data)
        let outcome = connection.chain.notify(FilterNotification.sendRawData, connection: connection, exchange: nil,
                                              data: object, scope: scope)
        return (outcome, data.bytes)
    }

    private func sentFiltered(_ outcome: FilterOutcome, _ bytes: [UInt8]?, promise: EventLoopPromise<Void>?) {
        outBusy = false
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        switch outcome {
        case .proceed, .readNext:
            if let bytes, !bytes.isEmpty {
                var buffer = context.channel.allocator.buffer(capacity: bytes.count)
                buffer.writeBytes(bytes)
                context.writeAndFlush(wrapOutboundOut(.byteBuffer(buffer)), promise: promise)
            } else {
                promise?.succeed(())
            }
        case .finished(let keep):
            promise?.succeed(())  // the filter took over this data
            if !keep { closing = true }
        case .error:
            promise?.fail(ChannelError.ioOnClosedChannel)
            closing = true
        }
        pumpOut()
    }
}
