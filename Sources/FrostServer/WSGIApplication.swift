import FrostHTTP
import FrostPython
#if canImport(Glibc)
import Glibc
#endif

// A WSGI application's request run by the control block itself (`ecb.ServeWSGI`), which
// isapi.wsgi calls for an application at the root: the environ, `start_response`,
// `write` and the result's iteration and `close()` are native, with the rules of
// isapi.wsgi's own `_Response` and `handle` (the portable path, which a control block
// without ServeWSGI and the sub-applications take). The Python frames of that adapter
// cost more than the rest of a small request (about 12,000 instructions a request).

extension ControlBlock {
    /// `ServeWSGI(application, base, input, errors, file_wrapper)`: runs `application`
    /// for this request. `base` holds the constant wsgi.* entries of the environ, `input`
    /// and `errors` are wsgi.input (None: the native one, `WSGIInput`) and wsgi.errors,
    /// `file_wrapper` the class whose regular files go out with sendfile. Whatever the
    /// application raises propagates.
    func serveWSGI(_ arguments: NativeArguments) throws -> PythonObject {
        // The arguments are read in place: the call's frame holds them until it returns.
        let application = try arguments.requiredBorrowed(0, "application")
        let input = try arguments.requiredBorrowed(2, "input")
        let nativeInput = input.isNone ? try WSGIInput.take(for: self) : nil
        defer { nativeInput.map(WSGIInput.giveBack) }
        let streams = (input: nativeInput?.object.borrowed ?? input, errors: try arguments.requiredBorrowed(3, "errors"),
                       controlBlock: arguments.borrowedSelf)
        let environ = try wsgiEnviron(base: try arguments.requiredBorrowed(1, "base"), streams: streams)
        let started = try WSGIResponse.take(for: self)
        defer { WSGIResponse.giveBack(started) }
        let response = started.response
        let result = try application.vectorcall(environ, started.startResponse)

        // The common `return [body]` (a list has no close()): headers and body, no iteration.
        if result.isExactList, result.listCount == 1, response.status != nil {
            let body = result.listItem(0)
            if body.isExactBytes {
                try response.sendHeaders()
                try response.write(body.borrowed, streamed: false)
                return .none
            }
        }
        let outcome = Result<Void, Error> {
            if let fileWrapper = arguments.optional(4, "file_wrapper"), !fileWrapper.isNone,
               try result.isInstance(of: fileWrapper), try transmit(result, response) {
                return
            }
            // A list or tuple is all there already: one write at the end. Anything else may
            // be produced slowly (a generator, server-sent events): each piece goes now.
            let streamed = !result.isList && !result.isTuple
            try result.forEachItem { try response.write($0.borrowed, streamed: streamed) }
            try response.sendHeaders()  // an empty body still sends its headers
        }
        // As a `finally:` would: close() runs whatever happened, and its own error wins.
        if let close = try result.attributeIfPresent("close") {
            try close.vectorcall()
        }
        try outcome.get()
        return .none
    }

    /// A `wsgi.file_wrapper` over a regular file: the rest of the file from its current
    /// position, zero-copy, no more than the Content-Length the application set. False
    /// (nothing sent) when the file is not a regular one: it is then iterated.
    private func transmit(_ wrapper: PythonObject, _ response: WSGIResponse) throws -> Bool {
        let regular = try wrapper.callMethod("regular_file")
        guard !regular.isNone else { return false }
        let parts = try regular.elements()
        guard parts.count == 3 else {
            throw PythonError.raise(.valueError, "regular_file() must give (descriptor, offset, size)")
        }
        let (descriptor, offset, size) = (try parts[0].asInt(), try parts[1].asInt(), try parts[2].asInt())
        try response.sendHeaders()
        var length = max(size - offset, 0)
        if let declared = response.contentLength { length = min(length, declared) }
        guard length > 0 else { return true }
        try sendFile(descriptor: Int32(truncatingIfNeeded: descriptor), start: offset, length: length)
        return true
    }
}

/// `start_response` and the body's writes of one request served by `ServeWSGI`, with
/// isapi.wsgi's rules (PEP 3333): touched with the GIL held.
///
/// Its Python object and the `start_response` bound to it cost about 1,300 instructions
/// a request to make and free (callgrind): they are kept and used again by the next
/// request when nothing else holds them (`take`, `giveBack`).
final class WSGIResponse {
    /// The request's control block; nil once the request has ended.
    private var current: ControlBlock?
    /// What start_response got, checked: the status and the header fields.
    private(set) var status: (code: Int, reason: String)?
    private var fields = ResponseFields()
    private var sent = false
    /// The Content-Length the application set, once the headers are sent.
    private(set) var contentLength: Int?
    private var written = 0

    private init() {}

    private var block: ControlBlock {
        get throws {
            guard let current else { throw PythonError.raise(.valueError, "start_response of a request that has ended") }
            return current
        }
    }

    /// A response, its Python object and its `start_response`, ready for a request.
    struct Started {
        let response: WSGIResponse
        let object: PythonObject
        let startResponse: PythonObject
    }

    /// Those of finished requests that nothing else held (GIL held).
    nonisolated(unsafe) private static var spares = SpareObjects<Started>()

    /// A response for `block`'s request: a spare one, or a new one.
    static func take(for block: ControlBlock) throws -> Started {
        let started = try spares.take {
            let response = WSGIResponse()
            let object = try type.wrap(response)
            return Started(response: response, object: object, startResponse: try object.attribute(startResponseName))
        }
        started.response.current = block
        return started
    }

    /// Ends the response's request. It is kept for another when nothing but `started`
    /// holds its objects (the bound method holds the response's object once).
    static func giveBack(_ started: Started) {
        let response = started.response
        response.current = nil
        (response.status, response.fields, response.sent, response.contentLength, response.written) = (nil, ResponseFields(), false, nil, 0)
        spares.giveBack(started, free: started.startResponse.referenceCount == 1 && started.object.referenceCount == 2)
    }

    static let startResponseName = InternedName("start_response")

    static let type: NativeType<WSGIResponse> = {
        let type = NativeType<WSGIResponse>("_isapi.WSGIResponse", doc: "start_response and write of one WSGI request.")
        type.method("start_response") { response, arguments in
            try response.start(status: try arguments.requiredBorrowed(0, "status"),
                               headers: try arguments.requiredBorrowed(1, "headers"), excInfo: arguments.optionalBorrowed(2, "exc_info"))
            // The write callable (PEP 3333) is the response itself: no bound method to make
            // for every request, when nearly no application calls it.
            return arguments.selfObject
        }
        // write(data), called as the response or as its method: each piece goes out at once.
        let write: NativeMethod<WSGIResponse> = { response, arguments in
            try response.write(try arguments.requiredBorrowed(0, "data"), streamed: true)
            return .none
        }
        type.method("write", write)
        type.callable(write)
        type.describe = { response in
            response.current.map { "<WSGI response of \($0.head.method.rawValue) \($0.head.uri)>" } ?? "<WSGI response>"
        }
        return type
    }()

    /// `start_response(status, headers, exc_info=None)`: the status line and each header
    /// are checked here (the same headers are copied: the application may change its list
    /// afterwards).
    func start(status statusObject: BorrowedObject, headers headersObject: BorrowedObject, excInfo: BorrowedObject?) throws {
        _ = try block  // a request that has ended takes no response
        if let excInfo, try excInfo.isTrue() {
            if sent {
                // Too late to replace the response: the application's error is raised again.
                let parts = try excInfo.object.elements()
                guard parts.count == 3 else { throw PythonError.raise(.typeError, "exc_info must be a 3-tuple") }
                throw PythonError.reraise(try parts[1].callMethod("with_traceback", [parts[2]]))
            }
        } else if status != nil {
            throw PythonError.raise(.assertionError, "start_response called twice without exc_info")
        }
        guard statusObject.isString, try statusObject.withUTF8Bytes({ bytes in
            bytes.count >= 4 && bytes[0...2].allSatisfy { (48...57).contains($0) } && bytes[3] == 32
        }) else {
            throw PythonError.raise(.valueError, "bad WSGI status \(try statusObject.repr())")
        }
        let checked = (status: try parseStatus(statusObject), headers: try wsgiHeaderPairs(headersObject))
        (status, fields) = checked
    }

    /// Sends the status and headers (once). The Content-Length the application set is
    /// read from them.
    func sendHeaders() throws {
        if sent { return }
        guard let status else {
            throw PythonError.raise(.assertionError, "the application wrote a body before calling start_response")
        }
        sent = true
        contentLength = fields.contentLength
        try block.sendResponseHeaders(code: status.code, reason: status.reason, fields: fields)
    }

    /// One piece of the body. A streamed piece (from `write` or an iterator) is flushed at
    /// once, as gunicorn sends it, unless it completes the Content-Length (the end of the
    /// response follows anyway).
    func write(_ data: BorrowedObject, streamed: Bool) throws {
        guard let count = data.byteCount else {
            throw PythonError.raise(.typeError, "WSGI body data must be bytes, not \(data.typeName)")
        }
        try sendHeaders()
        guard count > 0 else { return }
        written += count
        let flush = streamed && (contentLength.map { written < $0 } ?? true)
        // Never asynchronous: no completion is reported to a control block.
        _ = try block.writeClient(data, flags: flush ? IOFlags.noDelay : 0, ecb: .none)
    }
}

/// Native objects of finished requests (a wsgi.input, a response and its start_response)
/// kept for the next requests: making and freeing them cost more than the rest of their
/// glue. An object is kept only when nothing else holds it (the application did not keep
/// it), which the caller reads from reference counts; at most 16 wait. GIL held.
struct SpareObjects<Kept> {
    private var kept: [Kept] = []

    /// A kept one, or a new one from `make`.
    mutating func take(orMake make: () throws -> Kept) rethrows -> Kept {
        try kept.popLast() ?? make()
    }

    /// Keeps `item` for a later request when it is `free` and there is room.
    mutating func giveBack(_ item: Kept, free: Bool) {
        if free && kept.count < 16 { kept.append(item) }
    }
}
