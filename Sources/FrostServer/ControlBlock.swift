import FrostHTTP
import FrostPython
import NIOCore
import NIOHTTP1
import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// IIS error numbers the control block reports in `ExtensionError.errno`.
enum WindowsError {
    static let invalidParameter = 87
    static let invalidIndex = 1413        // ERROR_INVALID_INDEX: unknown server variable
    static let connectionReset = 10054    // WSAECONNRESET
    static let invalidFunction = 1
}

/// HSE_IO_* and HSE_EXEC_URL_* flags the control block honours.
enum IOFlags {
    static let sync = 0x1
    static let async = 0x2
    static let noDelay = 0x1000
    static let disconnectAfterSend = 0x4
    static let sendHeaders = 0x8
    static let execNoHeaders = 0x2
    static let execIgnoreCurrentInterceptor = 0x4
}

/// The state behind one Python `EXTENSION_CONTROL_BLOCK`. Touched with the GIL held.
final class ControlBlock {
    let exchange: HTTPExchange
    let host: Host
    /// The site a child request of ExecURL maps to (nil: the exchange's own).
    private let childSite: SiteContext?
    /// The request's server variables, made when first asked for (a handler that asks for
    /// none does not pay for copying the site and the head into them).
    lazy var variables = ServerVariables(exchange: exchange, site: site, head: head)
    /// The request this block serves: the exchange's, or a child request of ExecURL.
    /// (Read when asked for: most handlers never ask, and a copy of a head costs.)
    var head: RequestHead { childHead ?? exchange.head }
    private let childHead: RequestHead?
    /// The head's method and target (the child request's, or the exchange's).
    var method: HTTPMethod { childHead?.method ?? exchange.method }
    var uri: String { childHead?.uri ?? exchange.uri }
    /// PATH_INFO, without making the server variables.
    var pathInfo: String { ServerVariables.pathInfo(site: site, uri: uri) }
    /// Where the request was routed (as `ServerVariables.site` has it).
    var site: SiteContext { childSite ?? exchange.site ?? host.site }

    /// Calls `body` with the request's head, read in place when nothing can rewrite it.
    func withHead<Result>(_ body: (RequestHead) throws -> Result) rethrows -> Result {
        if let childHead { return try body(childHead) }
        return try exchange.withHead(body)
    }
    var httpStatusCode = 200
    var logData = ""
    /// The body bytes already received when the request was handed over (IIS's
    /// lpbData): ReadClient continues after them.
    let preloaded: [UInt8]
    /// The callback and argument of `IOCompletion`, for asynchronous writes, TransmitFile
    /// and ExecURL.
    var ioCompletion: (callback: PythonObject, argument: PythonObject)?
    /// (status, sub-status, Win32 error) of the last ExecURL.
    var execURLStatus: (Int, Int, Int)?
    /// Set for the child request of ExecURL: its DoneWithSession ends the child only.
    let parent: ControlBlock?
    /// HSE_EXEC_URL_NO_HEADERS: the child's response headers are dropped.
    let suppressHeaders: Bool
    let depth: Int
    /// A child request's (ExecURL) end, which its parent waits for; nil for a request's own block.
    private let childMonitor: Monitor?
    private var childDone = false

    init(exchange: HTTPExchange, host: Host) throws {
        self.exchange = exchange
        self.host = host
        self.childHead = nil
        self.childSite = nil
        self.parent = nil
        self.suppressHeaders = false
        self.depth = 0
        self.childMonitor = nil
        let available = exchange.availableCount
        self.preloaded = available == 0 ? [] : try exchange.readBody(maximum: min(available, exchange.readAhead))
    }

    /// A child request (ExecURL) sharing the parent's connection and response.
    init(child head: RequestHead, site: SiteContext, of parent: ControlBlock, suppressHeaders: Bool) {
        self.exchange = parent.exchange
        self.host = parent.host
        self.childHead = head
        self.childSite = site
        self.parent = parent
        self.suppressHeaders = suppressHeaders
        self.depth = parent.depth + 1
        self.preloaded = []
        self.childMonitor = Monitor()
    }

    func markChildDone() {
        guard let childMonitor else { return }
        childMonitor.locked {
            childDone = true
            childMonitor.broadcast()
        }
    }

    /// Waits (GIL released by the caller) until the child calls DoneWithSession.
    func waitUntilChildDone() {
        guard let childMonitor else { return }
        exchange.noteWaited()
        childMonitor.locked { while !childDone { childMonitor.wait() } }
    }

    /// Calls the `IOCompletion` callback as IIS would after an asynchronous operation;
    /// when it raises, the request ends with an error (as pywin32 does).
    func completeIO(_ ecb: PythonObject, bytes: Int, error: Int, callback: (PythonObject, PythonObject)? = nil) {
        guard let (function, argument) = callback ?? ioCompletion.map({ ($0.callback, $0.argument) }) else { return }
        do {
            _ = try function.call([ecb, argument, try PythonObject(bytes), try PythonObject(error)])
        } catch let failure as PythonError {
            host.logError("the IO completion callback raised \(failure)", failure.traceback)
            ioCompletion = nil
            if parent == nil { Python.withoutGIL { host.complete(self, failed: true) } } else { markChildDone() }
        } catch {}
    }

    var totalBytes: Int {
        if let length = exchange.declaredLength { return length }
        return exchange.isChunked ? 0xFFFF_FFFF : 0
    }

    /// `SendResponseHeaders` with the status parsed and the fields made (the head is
    /// buffered until the body's first flush, or the end).
    func sendResponseHeaders(code: Int, reason: String, fields: ResponseFields) throws {
        httpStatusCode = code
        if suppressHeaders { return }
        do {
            try exchange.sendHeadHoldingGIL(status: code, reason: reason, fields: fields)
        } catch let error as ExchangeError {
            throw host.extensionError(WindowsError.invalidParameter, error.message, "SendResponseHeaders")
        }
    }

    /// `WriteClient(data, flags)`: bytes (or any bytes-like object, or str as UTF-8) added
    /// to the response; `ecb` is the Python control block, for an asynchronous write's
    /// completion. Returns the count written.
    func writeClient(_ data: BorrowedObject, flags: Int, ecb: @autoclosure () -> PythonObject) throws -> Int {
        try host.sendImplicitHeadersIfNeeded(self)
        var count = 0
        do {
            // Buffered (one write with the head at the end) unless the handler asks for
            // a synchronous or immediate send, uses async I/O, or the buffer is full.
            // bytes are copied once, from the object into the buffer.
            let flush = flags & (IOFlags.sync | IOFlags.async | IOFlags.noDelay) != 0
            // A large write from a handler on the event loop goes to the socket from the
            // object itself when it can (`writeBodyDirectly`). (Nothing captured: a closure
            // that sets a local was a box allocated per call.)
            let exchange = self.exchange
            let write = { (bytes: UnsafeRawBufferPointer) throws -> (count: Int, full: Bool) in
                if bytes.count >= HTTPExchange.directWriteMinimum, try exchange.writeBodyDirectly(bytes) { return (bytes.count, false) }
                return (bytes.count, try exchange.bufferBody(bytes))
            }
            let full: Bool
            (count, full) = try data.isBytes ? data.withBytes(write) : bytesLike(data).withUnsafeBytes(write)
            if full || flush {
                try Python.withoutGIL { try exchange.flush() }
            }
        } catch let error as ExchangeError {
            if flags & IOFlags.async != 0 {
                completeIO(ecb(), bytes: 0, error: WindowsError.connectionReset)
                return 0
            }
            throw host.extensionError(WindowsError.connectionReset, error.message, "WriteClient")
        }
        if flags & IOFlags.async != 0 { completeIO(ecb(), bytes: count, error: 0) }
        return count
    }
}

extension Host {
    /// The `EXTENSION_CONTROL_BLOCK` type.
    static let controlBlockType: NativeType<ControlBlock> = {
        let type = NativeType<ControlBlock>("_isapi.EXTENSION_CONTROL_BLOCK",
                                            doc: "The request and its response, as an ISAPI extension sees them.")
        func bytes(_ text: String) throws -> PythonObject { try PythonObject(bytes: Array(text.utf8)) }
        type.attribute("Version", get: { _ in try PythonObject(0x0008_0000) })
        type.attribute("ConnID", get: { try PythonObject($0.exchange.connectionID) })
        // Read by most handlers, once or more a request: without the server variables.
        type.attribute("Method", owned: { try OwnedObject(bytesOf: $0.method.rawValue) })
        type.attribute("QueryString", owned: { try OwnedObject(bytesOf: queryPart(of: $0.uri)) })
        type.attribute("PathInfo", owned: { try OwnedObject(bytesOf: $0.pathInfo) })
        type.attribute("PathTranslated", get: { try bytes($0.variables.value("PATH_TRANSLATED") ?? "") })
        type.attribute("ContentType", get: { try bytes($0.variables.value("CONTENT_TYPE") ?? "") })
        type.attribute("TotalBytes", get: { try PythonObject($0.totalBytes) })
        type.attribute("AvailableBytes", get: { try PythonObject($0.preloaded.count) })
        type.attribute("AvailableData", get: { try PythonObject(bytes: $0.preloaded) })
        type.attribute("HttpStatusCode", get: { try PythonObject($0.httpStatusCode) },
                       set: { $0.httpStatusCode = try $1.asInt() })
        type.attribute("LogData", get: { try PythonObject($0.logData) }, set: { block, value in
            block.logData = value.isBytes ? String(decoding: try value.asBytes(), as: UTF8.self) : try value.str()
        })

        type.method("GetServerVariable") { block, arguments in
            let nameObject = try arguments.required(0, "name")
            let name = nameObject.isBytes ? String(decoding: try nameObject.asBytes(), as: UTF8.self) : try nameObject.asString()
            let unicode = name.hasPrefix("UNICODE_")
            let plain = unicode ? String(name.dropFirst("UNICODE_".count)) : name
            // Names are case-insensitive, as in IIS.
            guard let value = block.variables.value(plain.uppercased()) else {
                if let fallback = arguments.optional(1, "default") { return fallback }
                throw block.host.extensionError(WindowsError.invalidIndex, nil, "GetServerVariable")
            }
            return unicode ? try PythonObject(value) : try bytes(value)
        }
        // frost's own: GetServerVariable for several names in one call (isapi.wsgi builds
        // each request's environ with it), None for a name that is not there.
        type.method("GetServerVariables") { block, arguments in
            let names = try arguments.required(0, "names").elements()
            return try PythonObject.tuple(names.map { nameObject in
                let name = nameObject.isBytes ? String(decoding: try nameObject.asBytes(), as: UTF8.self) : try nameObject.asString()
                return try block.variables.value(name.uppercased()).map(bytes) ?? .none
            })
        }
        // frost's own: the CGI part of a WSGI environ in one call, added to a copy of the
        // dict given (isapi.wsgi's constant wsgi.* entries); with `input` and `errors`,
        // also wsgi.input, wsgi.errors and isapi.ecb (the control block itself).
        type.method("WSGIEnviron") { block, arguments in
            let streams = arguments.optionalBorrowed(1, "input").flatMap { input in
                arguments.optionalBorrowed(2, "errors").map { (input: input, errors: $0, controlBlock: arguments.borrowedSelf) }
            }
            return try block.wsgiEnviron(base: try arguments.requiredBorrowed(0, "base"), streams: streams)
        }
        // frost's own: isapi.wsgi's whole request for an application at the root (the
        // environ, start_response, the writes and close()), natively (WSGIApplication.swift).
        type.method("ServeWSGI") { block, arguments in try block.serveWSGI(arguments) }
        type.method("ReadClient") { block, arguments in
            let size = try arguments.optional(0, "size")?.asInt() ?? 65536
            guard size >= 0 else { throw PythonError.raise(.valueError, "ReadClient size must not be negative") }
            return try block.readBody("ReadClient") { try block.exchange.readBodyParts(maximum: size) }
        }
        // frost's own: ReadClient that waits for `size` bytes, or the body's end (fewer then),
        // as a file's read(size): wsgi.input's reads take one call and one copy.
        type.method("ReadBody") { block, arguments in
            let size = try arguments.required(0, "size").asInt()
            guard size >= 0 else { throw PythonError.raise(.valueError, "ReadBody size must not be negative") }
            return try block.readBody("ReadBody") {
                var parts: [ByteBuffer] = []
                var count = 0
                while count < size {
                    let more = try block.exchange.readBodyParts(maximum: size - count)
                    if more.isEmpty { break }  // the body's end
                    count += more.reduce(0) { $0 + $1.readableBytes }
                    parts += more
                }
                return parts
            }
        }
        let write: (ControlBlock, NativeArguments) throws -> OwnedObject = { block, arguments in
            let data = try arguments.requiredBorrowed(0, "data")
            let flags = try arguments.optionalBorrowed(1, "flags")?.asInt() ?? 0
            return try OwnedObject(try block.writeClient(data, flags: flags, ecb: arguments.selfObject))
        }
        type.method("WriteClient", owned: write)
        type.method("write", owned: write)
        type.method("flush") { block, _ in
            do {
                try Python.withoutGIL { try block.exchange.flush() }
            } catch let error as ExchangeError {
                throw block.host.extensionError(WindowsError.connectionReset, error.message, "flush")
            }
            return .none
        }
        type.method("SetFlushFlag") { _, _ in .none }
        type.method("SendResponseHeaders") { block, arguments in
            let (code, reason) = try parseStatus(try arguments.requiredBorrowed(0, "status"))
            let fields = try arguments.optionalBorrowed(1, "headers").map(parseHeaders) ?? ResponseFields()
            // parseHeaders checked every field as it read it.
            try block.sendResponseHeaders(code: code, reason: reason, fields: fields)
            return .none
        }
        type.method("Redirect") { block, arguments in
            let url = try textArgument(try arguments.required(0, "url"))
            block.httpStatusCode = 302
            let body = Array("<html><body>Moved to <a href=\"\(htmlEscaped(url))\">\(htmlEscaped(url))</a></body></html>\n".utf8)
            do {
                try Python.withoutGIL {
                    try block.exchange.sendHead(status: 302, reason: "Found", headers: [
                        ("Location", url), ("Content-Type", "text/html; charset=utf-8"), ("Content-Length", String(body.count)),
                    ])
                    try block.exchange.writeBody(body)
                }
            } catch let error as ExchangeError {
                throw block.host.extensionError(WindowsError.invalidParameter, error.message, "Redirect")
            }
            return .none
        }
        type.method("MapURLToPath") { block, arguments in
            let url = try textArgument(try arguments.required(0, "url"))
            return try bytes(block.host.mapURLToPath(url))
        }
        type.method("IsKeepAlive") { block, _ in PythonObject(bool: block.exchange.isKeepAlive) }
        type.method("IsKeepConn") { block, _ in PythonObject(bool: block.exchange.isKeepAlive) }
        let done: NativeMethod<ControlBlock> = { block, arguments in
            let status = try arguments.optional(0, "status")?.asInt() ?? 1
            block.ioCompletion = nil
            if block.parent != nil {
                block.markChildDone()
            } else {
                Python.withoutGIL { block.host.complete(block, failed: status == Host.statusError) }
            }
            return .none
        }
        type.method("DoneWithSession", done)
        type.method("close", done)
        type.method("ReportUnhealthy") { block, arguments in
            let reason = try arguments.optional(0, "reason").map(textArgument) ?? "(no reason given)"
            block.host.reportUnhealthy(reason)
            return .none
        }
        type.method("IOCompletion") { block, arguments in
            let callback = try arguments.required(0, "func")
            guard (try? Python.importModule("builtins").attribute("callable").call([callback]).isTrue()) == true else {
                throw PythonError.raise(.typeError, "first param must be callable")
            }
            block.ioCompletion = (callback, arguments.optional(1, "arg") ?? .none)
            return .none
        }
        type.method("TransmitFile") { block, arguments in try block.transmitFile(arguments) }
        type.method("ExecURL") { block, arguments in try block.execURL(arguments) }
        type.method("GetExecURLStatus") { block, _ in
            guard let (status, subStatus, error) = block.execURLStatus else {
                throw block.host.extensionError(WindowsError.invalidParameter, "no ExecURL has run", "GetExecURLStatus")
            }
            return try PythonObject.tuple([try PythonObject(status), try PythonObject(subStatus), try PythonObject(error)])
        }
        type.describe = { "<EXTENSION_CONTROL_BLOCK \($0.head.method.rawValue) \($0.head.uri)>" }
        return type
    }()
}

/// The classes of `isapi`'s errors, imported once. Touched with the GIL held.
nonisolated(unsafe) private var isapiErrorClasses: [String: PythonObject] = [:]

/// `isapi.<className>(errno, strerror, funcname)` (ExtensionError, FilterError), or an
/// OSError when the package is not there.
func isapiError(_ className: String, _ errno: Int, _ message: String?, _ function: String) -> PythonError {
    do {
        let errorClass = try isapiErrorClasses[className] ?? Python.importModule("isapi").attribute(className)
        isapiErrorClasses[className] = errorClass
        return PythonError.raise(errorClass, args: [
            try PythonObject(errno), try message.map { try PythonObject($0) } ?? .none, try PythonObject(function),
        ])
    } catch {
        return PythonError.raise(.osError, "\(function): \(message ?? "error \(errno)")")
    }
}

func textArgument(_ value: PythonObject) throws -> String {
    if value.isBytes { return String(decoding: try value.asBytes(), as: UTF8.self) }
    return try value.asString()
}

/// bytes, bytearray, memoryview, or str (sent as UTF-8).
func bytesLike(_ value: BorrowedObject) throws -> [UInt8] {
    if value.isBytes { return try value.asBytes() }
    if value.isString { return Array(try value.asString().utf8) }
    // bytearray, memoryview: through bytes().
    return try Python.importModule("builtins").attribute("bytes").call([value.object]).asBytes()
}

/// "200 OK", b"404 Not Found" or 200.
func parseStatus(_ value: BorrowedObject) throws -> (Int, String) {
    if value.isInt {
        let code = try value.asInt()
        return (code, HTTPReason.phrase(code))
    }
    // Read in place (CPython's UTF-8 of a str, or the bytes): this runs for every response.
    return try value.withUTF8Bytes { bytes in
        func isSpace(_ byte: UInt8) -> Bool { byte == 32 || byte == 9 || byte == 13 || byte == 10 }
        var start = 0, end = bytes.count
        while start < end && isSpace(bytes[start]) { start += 1 }
        while end > start && isSpace(bytes[end - 1]) { end -= 1 }
        var index = start, code = 0
        while index < end && index - start < 4, (48...57).contains(bytes[index]) {
            code = code * 10 + Int(bytes[index] - 48)
            index += 1
        }
        guard index - start == 3, index == end || bytes[index] == 32, code >= 100 else {
            let text = String(decoding: bytes[start..<end], as: UTF8.self)
            throw PythonError.raise(.valueError, "status must look like '200 OK', not \(text.debugDescription)")
        }
        while index < end && bytes[index] == 32 { index += 1 }
        return (code, index < end ? String(decoding: bytes[index..<end], as: UTF8.self) : HTTPReason.phrase(code))
    }
}

/// frost's own form of SendResponseHeaders' headers: a sequence of (name, value) pairs of
/// str, as WSGI's start_response gets them (isapi.wsgi passes them on as they are).
func headerPairs(_ value: PythonObject) throws -> [(String, String)] {
    // A list of (str, str) tuples, as WSGI gives them: read in place, one Swift string
    // per name and value.
    var headers: [(String, String)] = []
    let read = try value.withStringPairs { name, headerValue in
        headers.append(try headerField(name: name, value: headerValue))
    }
    if read { return headers }
    return try value.elements().map { pair in
        let parts = try pair.elements()
        guard parts.count == 2, parts[0].isString, parts[1].isString else {
            throw PythonError.raise(.typeError, "response headers must be a str of lines or (name, value) pairs of str")
        }
        // Trimmed as the "Name: value" lines are.
        let name = trimmingBlanks(try parts[0].asString())
        let headerValue = trimmingBlanks(try parts[1].asString())
        guard isHeaderName(name) else {
            throw PythonError.raise(.valueError, "bad response header name \(name.debugDescription)")
        }
        guard isHeaderValue(headerValue) else {
            throw PythonError.raise(.valueError, "bad value for response header \(name.debugDescription)")
        }
        return (name, headerValue)
    }
}

/// start_response's headers (PEP 3333): a sequence of (name, value) pairs of str with no
/// CR or LF in a value (else ValueError, as isapi.wsgi raises it), each checked as a
/// response header field too.
func wsgiHeaderPairs(_ value: BorrowedObject) throws -> ResponseFields {
    // Most responses repeat the headers of the last one: when the pairs' bytes are those
    // checked last time, so are the fields (compared in place, nothing made).
    var comparison = MemoComparison(memo: HeaderMemo.pairs.bytes)
    let shaped = try value.withStringPairs { name, headerValue in
        comparison.compare(name)
        comparison.compare(headerValue)
    }
    if shaped && comparison.matched { return HeaderMemo.pairs.fields }

    func bad(_ name: String, _ value: String) -> PythonError {
        PythonError.raise(.valueError, "bad WSGI header \(name.debugDescription): \(value.debugDescription)")
    }
    var headers: [(String, String)] = []
    headers.reserveCapacity(8)
    var bytes: [UInt8] = []
    // A list or tuple of (str, str) tuples, as applications give them: read in place.
    let read = try shaped && value.withStringPairs { name, headerValue in
        guard !headerValue.contains(10) && !headerValue.contains(13) else {
            throw bad(String(decoding: name, as: UTF8.self), String(decoding: headerValue, as: UTF8.self))
        }
        headers.append(try headerField(name: name, value: headerValue))
        bytes += name
        bytes.append(0)
        bytes += headerValue
        bytes.append(0)
    }
    if read {
        let fields = ResponseFields(checked: headers)
        HeaderMemo.pairs = (bytes, fields)
        return fields
    }
    return ResponseFields(checked: try value.object.elements().map { pair in
        let parts = try pair.elements()
        guard parts.count == 2 else {
            throw PythonError.raise(.valueError, "a WSGI header is a (name, value) pair, not \(try pair.repr())")
        }
        guard parts[0].isString, parts[1].isString else { throw bad(try parts[0].repr(), try parts[1].repr()) }
        return try parts[1].withUTF8Bytes { headerValue in
            guard !headerValue.contains(10) && !headerValue.contains(13) else { throw bad(try parts[0].str(), try parts[1].str()) }
            return try parts[0].withUTF8Bytes { name in try headerField(name: name, value: headerValue) }
        }
    })
}

/// The header fields read last, with the bytes they came from: most responses repeat the
/// headers of the one before, whose fields are then reused. Touched with the GIL held.
/// Compares the parts of header pairs, one after the other, with a memo's bytes (each
/// part followed by a NUL).
private struct MemoComparison {
    let memo: [UInt8]
    private var offset = 0
    private var same = true

    init(memo: [UInt8]) { self.memo = memo }

    /// Every part compared so far was the memo's, and they were all of it.
    var matched: Bool { same && offset == memo.count }

    mutating func compare(_ part: UnsafeBufferPointer<UInt8>) {
        guard same else { return }
        let end = offset + part.count
        // A NUL inside a part (refused after a mismatch) could line up with the separators.
        same = end < memo.count && memo[end] == 0 && (part.isEmpty
            || memchr(part.baseAddress!, 0, part.count) == nil
            && memo.withUnsafeBufferPointer { memcmp($0.baseAddress! + offset, part.baseAddress!, part.count) == 0 })
        offset = end + 1
    }
}

private enum HeaderMemo {
    /// SendResponseHeaders' "Name: value\r\n" block (`parseHeaders`).
    nonisolated(unsafe) static var block: (bytes: [UInt8], fields: ResponseFields) = ([], ResponseFields())
    /// start_response's pairs (`wsgiHeaderPairs`): each name and value followed by a NUL,
    /// which no field that passed the checks contains.
    nonisolated(unsafe) static var pairs: (bytes: [UInt8], fields: ResponseFields) = ([], ResponseFields())
}

/// "Name: value\r\n" lines, up to an empty line (lines may also end in a bare LF or CR).
/// Read as UTF-8 bytes: this runs for every response.
func parseHeaders(_ value: BorrowedObject) throws -> ResponseFields {
    if value.isNone { return ResponseFields() }
    if !value.isBytes && !value.isString { return ResponseFields(checked: try headerPairs(value.object)) }
    return try value.withUTF8Bytes { block in
        // Most handlers send the same header block with every response: when these bytes
        // are the last block parsed, so are the fields.
        let memo = HeaderMemo.block
        if block.count > 0, block.count == memo.bytes.count,
           memo.bytes.withUnsafeBytes({ memcmp($0.baseAddress!, block.baseAddress!, block.count) == 0 }) {
            return memo.fields
        }
        let bytes = block.bindMemory(to: UInt8.self)
        var headers: [(String, String)] = []
        var start = 0
        while start <= bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != 10 && bytes[end] != 13 { end += 1 }
            let next = end < bytes.count && bytes[end] == 13 && end + 1 < bytes.count && bytes[end + 1] == 10 ? end + 2 : end + 1
            defer { start = next }
            if start == end { if headers.isEmpty { continue } else { break } }
            let line = bytes[start..<end]
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon != start else {
                let text = String(decoding: line, as: UTF8.self)
                throw PythonError.raise(.valueError, "bad response header line \(text.debugDescription): expected 'Name: value'")
            }
            headers.append(try headerField(name: line[..<colon], value: line[(colon + 1)...]))
        }
        let fields = ResponseFields(checked: headers)
        HeaderMemo.block = (Array(bytes), fields)
        return fields
    }
}

/// One response header from its name's and value's bytes: trimmed of blanks at either
/// end and checked (a token for the name; no CR, LF or NUL in the value).
private func headerField<Bytes: BidirectionalCollection>(name: Bytes, value: Bytes) throws -> (String, String)
where Bytes.Element == UInt8 {
    let name = trimmingBlanks(bytes: name), value = trimmingBlanks(bytes: value)
    guard isHeaderName(bytes: name) else {
        throw PythonError.raise(.valueError, "bad response header name \(String(decoding: name, as: UTF8.self).debugDescription)")
    }
    let nameText = String(decoding: name, as: UTF8.self)
    guard isHeaderValue(bytes: value) else {
        throw PythonError.raise(.valueError, "bad value for response header \(nameText.debugDescription)")
    }
    return (nameText, String(decoding: value, as: UTF8.self))
}

func htmlEscaped(_ text: String) -> String {
    var out = ""
    for character in text {
        switch character {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(character)
        }
    }
    return out
}

/// Reason phrases: NIOHTTP1's, for the codes it knows.
enum HTTPReason {
    static func phrase(_ code: Int) -> String {
        let phrase = HTTPResponseStatus(statusCode: code).reasonPhrase
        return phrase.isEmpty ? "Status \(code)" : phrase
    }
}

// MARK: - TransmitFile and ExecURL

extension ControlBlock {
    /// `TransmitFile(callback, param, hFile, statusCode, BytesToWrite, Offset, head, tail, flags)`
    /// as pywin32 has it; `hFile` is a file descriptor or an object with `fileno()`. The
    /// file goes out zero-copy (sendfile); the callback runs when everything was sent.
    func transmitFile(_ arguments: NativeArguments) throws -> PythonObject {
        let ecb = arguments.selfObject
        let callback = try arguments.required(0, "callback")
        let parameter = arguments.optional(1, "param") ?? .none
        let file = try arguments.required(2, "hFile")
        let statusObject = arguments.optional(3, "statusCode")
        let bytesToWrite = try arguments.optional(4, "BytesToWrite")?.asInt() ?? 0
        let offset = try arguments.optional(5, "Offset")?.asInt() ?? 0
        let headObject = arguments.optional(6, "head")
        let tailObject = arguments.optional(7, "tail")
        let flags = try arguments.optional(8, "flags")?.asInt() ?? 0

        let descriptor = Int32(truncatingIfNeeded: file.isInt ? try file.asInt() : try file.callMethod("fileno").asInt())
        var info = stat()
        guard fstat(descriptor, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw host.extensionError(WindowsError.invalidParameter, "hFile \(descriptor) is not an open regular file", "TransmitFile")
        }
        let size = Int(info.st_size)
        guard offset >= 0, offset <= size, bytesToWrite >= 0 else {
            throw host.extensionError(WindowsError.invalidParameter, "Offset \(offset) is outside the file (\(size) bytes)", "TransmitFile")
        }
        let length = bytesToWrite == 0 ? size - offset : min(bytesToWrite, size - offset)
        func bytesOf(_ object: PythonObject?) throws -> [UInt8] {
            guard let object, !object.isNone else { return [] }
            return try bytesLike(object.borrowed)
        }
        let head = try bytesOf(headObject)
        let tail = try bytesOf(tailObject)
        var sent = 0
        do {
            if flags & IOFlags.sendHeaders != 0 {
                let (code, reason) = try statusObject.flatMap { $0.isNone ? nil : try parseStatus($0.borrowed) }
                    ?? (httpStatusCode, HTTPReason.phrase(httpStatusCode))
                let fields = try parseHeaders(try PythonObject(bytes: head).borrowed)
                httpStatusCode = code
                if !suppressHeaders {
                    try Python.withoutGIL { try exchange.sendHead(status: code, reason: reason, fields: fields) }
                }
            } else {
                try host.sendImplicitHeadersIfNeeded(self)
                try Python.withoutGIL { try exchange.writeBody(head) }
                sent += head.count
            }
        } catch let error as ExchangeError {
            throw host.extensionError(WindowsError.connectionReset, error.message, "TransmitFile")
        }
        try sendFile(descriptor: descriptor, start: offset, length: length, tail: tail)
        sent += length + tail.count
        if flags & IOFlags.disconnectAfterSend != 0 { exchange.disableKeepAlive() }
        completeIO(ecb, bytes: sent, error: 0, callback: callback.isNone ? nil : (callback, parameter))
        return .none
    }

    /// The body bytes `read` takes from the exchange (GIL released meanwhile) as one bytes
    /// object: one copy, from the buffers the body arrived in. A failed read is errno 10054,
    /// raised by `method`.
    func readBody(_ method: String, _ read: () throws -> [ByteBuffer]) throws -> PythonObject {
        let parts = try readBodyParts(method, read)
        return try PythonObject.bytes(count: parts.reduce(0) { $0 + $1.readableBytes }) { copy(parts, into: $0, at: 0) }
    }

    /// Copies `parts` one after another into `destination` from `offset` (which has room).
    func copy(_ parts: [ByteBuffer], into destination: UnsafeMutableRawBufferPointer, at offset: Int) {
        var offset = offset
        for part in parts {
            part.withUnsafeReadableBytes { source in
                UnsafeMutableRawBufferPointer(rebasing: destination[offset..<offset + source.count]).copyMemory(from: source)
            }
            offset += part.readableBytes
        }
    }

    /// The same as the buffers the body arrived in.
    func readBodyParts(_ method: String, _ read: () throws -> [ByteBuffer]) throws -> [ByteBuffer] {
        do {
            return try Python.withoutGIL { try read() }
        } catch let error as ExchangeError {
            if error.kind == .bodyTooSlow {
                host.logError("\(error.message): \(head.method.rawValue) \(head.uri) from "
                              + "\(exchange.clientAddress); \(method) fails and the connection closes", nil)
            }
            throw host.extensionError(WindowsError.connectionReset, error.message, method)
        }
    }

    /// `length` bytes of the open file `descriptor` from `start`, zero-copy, then `tail`
    /// (GIL held; released while writing). A client that went away is errno 10054, as
    /// TransmitFile reports it.
    func sendFile(descriptor: Int32, start: Int, length: Int, tail: [UInt8] = []) throws {
        do {
            try Python.withoutGIL {
                try exchange.writeFile(descriptor: descriptor, start: start, length: length, closeWhenDone: false)
                try exchange.writeBody(tail)
            }
        } catch let error as ExchangeError {
            throw host.extensionError(WindowsError.connectionReset, error.message, "TransmitFile")
        }
    }

    /// `ExecURL(url, method, clientHeaders, info, entity, flags)`: runs a child request
    /// inside the host (a static file, or the extension again) whose output becomes part of
    /// this response; then `GetExecURLStatus()` tells how it ended and the `IOCompletion`
    /// callback runs. `HSE_EXEC_URL_NO_HEADERS` drops the child's headers;
    /// `HSE_EXEC_URL_IGNORE_CURRENT_INTERCEPTOR` serves a URL the extension would take
    /// as a static file instead.
    func execURL(_ arguments: NativeArguments) throws -> PythonObject {
        let ecb = arguments.selfObject
        func text(_ index: Int, _ name: String) throws -> String? {
            guard let value = arguments.optional(index, name), !value.isNone else { return nil }
            return try textArgument(value)
        }
        let url = try text(0, "url") ?? head.uri
        let method = try text(1, "method").map { HTTPMethod(rawValue: $0.uppercased()) } ?? head.method
        let clientHeaders = arguments.optional(2, "clientHeaders")
        for (index, name) in [(3, "info"), (4, "entity")] {
            if let value = arguments.optional(index, name), !value.isNone {
                throw PythonError.raise(.valueError, "info and entity params must be None")
            }
        }
        let flags = try arguments.optional(5, "flags")?.asInt() ?? 0
        guard url.hasPrefix("/"), !url.utf8.contains(where: { $0 <= 32 }) else {
            throw host.extensionError(WindowsError.invalidParameter, "ExecURL needs a URL path, not \(url.debugDescription)", "ExecURL")
        }
        guard depth < 8 else {
            throw host.extensionError(WindowsError.invalidParameter, "ExecURL nested more than 8 deep", "ExecURL")
        }
        var headers = head.headers
        if let clientHeaders, !clientHeaders.isNone { headers = RequestFields(try parseHeaders(clientHeaders.borrowed).pairs) }
        let child = RequestHead(version: head.version, method: method, uri: url, headers: headers)
        let noHeaders = flags & IOFlags.execNoHeaders != 0
        let path = percentDecoded(pathPart(of: url))
        var route = host.route(path)
        if flags & IOFlags.execIgnoreCurrentInterceptor != 0, case .extensionCall(let directory, _, let pathInfo) = route {
            route = .file(directory: directory, relative: pathInfo)
        }
        var status = 200
        do {
            switch route {
            case .notFound:
                status = 404
                try sendChildResponse(.plain(.notFound, "Not Found"), noHeaders: noHeaders)
            case .file(let directory, let relative):
                let response = Python.withoutGIL { StaticFiles.prepare(child, root: directory.path, relative: relative) }
                status = Int(response.status.code)
                try sendChildResponse(response, noHeaders: noHeaders)
            case .extensionCall(let directory, let scriptName, let pathInfo):
                guard let extensionObject = host.currentExtension else {
                    throw host.extensionError(WindowsError.invalidFunction, "no extension to run the child request", "ExecURL")
                }
                let site = SiteContext(physicalPath: directory.path, scriptName: scriptName, pathInfo: pathInfo,
                                       secure: variables.site.secure, serverSoftware: variables.site.serverSoftware)
                let block = ControlBlock(child: child, site: site, of: self, suppressHeaders: noHeaders)
                let result = try extensionObject.callMethod(Host.httpExtensionProc, [try Host.controlBlockType.wrap(block)])
                if result.isInt, (try? result.asInt()) == Host.statusPending {
                    Python.withoutGIL { block.waitUntilChildDone() }
                }
                status = block.httpStatusCode
            }
        } catch let error as ExchangeError {
            execURLStatus = (500, 0, WindowsError.connectionReset)
            throw host.extensionError(WindowsError.connectionReset, error.message, "ExecURL")
        }
        execURLStatus = (status, 0, 0)
        completeIO(ecb, bytes: 0, error: 0)
        return .none
    }

    /// A static child response written into this one (GIL held on entry).
    private func sendChildResponse(_ response: StaticFiles.Response, noHeaders: Bool) throws {
        if noHeaders {
            try host.sendImplicitHeadersIfNeeded(self)
        } else {
            try Python.withoutGIL {
                try exchange.sendHead(status: Int(response.status.code), reason: response.status.reasonPhrase,
                                      headers: response.headers)
            }
        }
        try Python.withoutGIL {
            switch response.body {
            case .none: break
            case .text(let text): try exchange.writeBody(Array(text.utf8))
            case .file(let path, let start, let length): try exchange.writeFile(path: path, start: start, length: length)
            }
        }
    }
}
