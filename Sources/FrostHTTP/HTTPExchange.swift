import NIOCore
import NIOHTTP1
import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// Why a read or write of the exchange failed, for the control block to turn into the
/// IIS error its caller expects.
public struct ExchangeError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// The client went away (or the connection failed) before the operation finished.
        case clientClosed
        /// The request body stopped arriving, or arrived malformed.
        case bodyFailed
        /// The request body arrived too slowly (`--body-timeout`, `--body-min-rate`): the
        /// first read that finds it out; later reads fail with `bodyFailed`.
        case bodyTooSlow
        /// The handler asked for something its response's state does not allow
        /// (headers twice, writing after the end).
        case responseState
        /// A status line or header that would split the response (CR, LF, NUL).
        case badResponseHead
        /// A file the handler asked to transmit cannot be used.
        case fileUnavailable
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// One request and its response, shared by the connection's event loop (which feeds
/// the body in and writes the response out) and the thread that serves it (a Python
/// thread of the ISAPI host: every blocking call here is made without the GIL).
///
/// The body is streamed: at most `highWater` bytes wait here; above that the connection
/// stops reading until Python has consumed them. Writes block the Python thread (which
/// releases the GIL) until the connection has taken the bytes, so a slow client holds
/// back the writer instead of filling memory.
package final class HTTPExchange: @unchecked Sendable {
    // @unchecked: mutable state is guarded by `monitor`, or confined to the event loop.
    static let highWater = 256 * 1024
    static let lowWater = 64 * 1024

    package let connectionID: Int
    /// The request head; a filter may rewrite it (SF_NOTIFY_PREPROC_HEADERS). Guarded by
    /// `monitor` when it may be rewritten: never read it with `monitor` held.
    package var head: RequestHead { readHead { $0 } }
    private var requestHead: RequestHead
    /// The head's method and target, read without copying the whole head (a copy retains
    /// its strings and arrays).
    package var method: HTTPMethod { readHead { $0.method } }
    package var uri: String { readHead { $0.uri } }

    /// `read` of the head: under `monitor` only when the head may be rewritten.
    private func readHead<Value>(_ read: (RequestHead) -> Value) -> Value {
        if !headMayBeRewritten { return read(requestHead) }
        return monitor.locked { read(requestHead) }
    }

    /// Calls `body` with the head: read in place when nothing can rewrite it, else a copy
    /// taken under the lock (`body` runs without it).
    package func withHead<Result>(_ body: (RequestHead) throws -> Result) rethrows -> Result {
        if !headMayBeRewritten { return try body(requestHead) }
        return try body(monitor.locked { requestHead })
    }
    /// Whether `rewriteHead` may be called (the connection has a filter): else the head is
    /// read without the lock (it was taken twice a request).
    private let headMayBeRewritten: Bool
    /// What the layer above keeps with this request (set by the dispatcher before the
    /// request goes anywhere else; the ISAPI host's per-request state).
    package var attachment: AnyObject?
    /// Called before a head is sent (on the sending thread) so the layer above can see and
    /// change it (an ISAPI filter's SEND_RESPONSE), or answer the request itself through
    /// the raw connection instead (`.answered`; later writes are dropped).
    package var headHook: ((HTTPExchange, inout Int, inout String, inout [(String, String)]) -> HeadDecision)?
    package enum HeadDecision { case send, answered(keepConnection: Bool) }
    /// Both ends of the connection, with their text forms (made once per connection).
    package let addresses: ConnectionAddresses
    package var localAddress: SocketAddress? { addresses.local }
    package var remoteAddress: SocketAddress? { addresses.remote }
    /// The client as a trusted proxy reports it (X-Forwarded-For, X-Forwarded-Proto), or
    /// nil when the peer is not one.
    package let forwarded: TrustedProxies.Client?
    package let eventLoop: EventLoop
    /// `ObjectIdentifier(eventLoop)`, made once: the layer above finds its per-loop state by
    /// it twice a request, and reading the existential retained and released the loop.
    package let eventLoopID: ObjectIdentifier
    package let received: Double
    private let context: ChannelHandlerContext
    private let connection: HTTPConnectionHandler
    /// The channel's allocator, for buffers filled off the event loop.
    private let allocator: ByteBufferAllocator

    /// The connection's (`HTTPConnectionHandler.exchangeMonitor`), shared by its exchanges:
    /// one made per request cost two allocations and their release. Sections under it are
    /// short and never take another exchange's state; waits re-check what they wait for.
    private let monitor: Monitor
    /// When the request times out (monotonic seconds; the connection's sweep checks it,
    /// event loop only). Infinity: no deadline, or it has passed and was handled.
    package var expiresAt = Double.infinity
    /// How long the body may keep the host waiting (guarded by `monitor`).
    private var pace: BodyPace
    /// Body bytes read before the handler is called (`HostLimits.readAhead`).
    package let readAhead: Int
    /// Buffered body above which the connection stops reading: never below the read-ahead.
    private let highWater: Int
    /// Seconds a writer waits for the client to take any of what is in flight before the
    /// write fails and the connection is cut (nginx's send_timeout): a client that stops
    /// reading holds a Python thread for at most this long.
    package let sendTimeout: Double
    /// How much unread body may still be to come for the connection to be kept (it is
    /// then read and dropped after the response).
    package let maxDiscardBytes: Int
    private var chunks: [ByteBuffer] = []
    /// Body bytes that have arrived, read or not.
    private var bodyBytesReceived = 0
    private var buffered = 0
    private var bodyEnded = false
    private var closed = false
    /// Why the rest of the body will never come (malformed framing, the client's read side
    /// ended early); reads fail with it once what arrived before has been read.
    private var bodyFailure: String?
    private var readsPaused = false
    /// A handler's read waits for body: `appendBody` wakes it once this many bytes are
    /// buffered (0: none waits).
    private var bodyReaderWants = 0
    /// The socket had no more for now after body arrived: a waiting read takes what is here.
    private var bodyBurstEnded = false
    package private(set) var bodyBytesRead = 0

    // Response state, guarded by `monitor`.
    package private(set) var headersSent = false
    package private(set) var finished = false
    private var keepAlive = true
    private var suppressBody = false
    /// The response's body goes in chunks (its head had no length).
    private var responseChunked = false
    package private(set) var statusCode = 200
    /// Body bytes that reached the socket.
    package private(set) var bytesSent = 0
    /// Whether the response head reached the socket (else the access log says 499).
    private(set) var headDelivered = false
    /// The response's `.end` has gone down the pipeline (event loop only): from then on
    /// no response is owed for this request.
    private(set) var responseEnded = false
    /// The filter wrote the response itself: what the host would write is dropped.
    private(set) var answeredRaw = false
    private var keepAfterRawAnswer = false
    /// The response written so far and not yet handed to the connection: a head, then
    /// body bytes. It leaves in one write when the response finishes, when it grows past
    /// `flushThreshold`, when the handler asks (a synchronous write), or before the handler
    /// waits for request body; so a fast handler's head and body are one `write(2)`.
    private var pending = PendingParts()
    /// What was pending when the response finished: set by `finish` (under `monitor`) and
    /// taken by the event loop's end of it (held here, not copied into its closure).
    private var finalParts = PendingParts()
    static let flushThreshold = 64 * 1024
    /// Flushed response bytes not yet taken by the socket, and the most there may be
    /// before a writer waits.
    private var bytesInFlight = 0
    static let maxBytesInFlight = 256 * 1024
    /// Why a flushed write failed (the connection broke).
    private var writeFailure: String?
    /// The failure is the send time-out's (this side cut the connection).
    private var writeStalled = false
    /// A read or write of the handler's waited for the client (or, run on the event loop,
    /// would have had to): see `handlerReport`.
    private var handlerWaited = false
    /// How the layer above ran the handler (`handlerRun`).
    private var run = HandlerRun()

    /// `framing`: how the body is framed on the wire, as the parser read it; `keepAlive`:
    /// whether the client asked to keep the connection (`HeadFacts.isKeepAlive`).
    package init(connectionID: Int, keepAlive: Bool, head: consuming RequestHead, framing: RequestFraming,
                 context: ChannelHandlerContext, connection: HTTPConnectionHandler, monitor: Monitor,
                 addresses: ConnectionAddresses, limits: HostLimits, trustedProxies: TrustedProxies = TrustedProxies([]),
                 headMayBeRewritten: Bool = true) {
        self.headMayBeRewritten = headMayBeRewritten
        self.connectionID = connectionID
        self.monitor = monitor
        self.pace = BodyPace(timeout: limits.bodyTimeout, minimumRate: limits.bodyMinimumRate)
        self.readAhead = limits.readAhead
        self.highWater = max(HTTPExchange.highWater, limits.readAhead)
        self.sendTimeout = limits.sendTimeout
        self.maxDiscardBytes = limits.maxDiscardBytes
        self.requestMethod = head.method
        if case .length(let length) = framing { declaredLength = length } else { declaredLength = nil }
        self.isChunked = framing == .chunked
        self.context = context
        self.connection = connection
        self.eventLoop = context.eventLoop
        self.eventLoopID = connection.eventLoopID
        self.allocator = connection.allocator
        self.addresses = addresses
        self.forwarded = trustedProxies.isEmpty ? nil : trustedProxies.client(peer: addresses.remote, headers: head.headers)
        self.received = monotonicSeconds()
        self.keepAlive = keepAlive
        self.requestHead = head  // last: moved, not copied
    }

    /// REMOTE_ADDR: the forwarded client when a trusted proxy sent the request, else the peer.
    package var clientAddress: String { forwarded?.address ?? addresses.remoteIP }

    package func rewriteHead(_ change: (inout RequestHead) -> Void) {
        precondition(headMayBeRewritten, "the head of a request on a connection without a filter was rewritten")
        monitor.locked { change(&requestHead) }
    }

    /// Content-Length, or nil (chunked or no body), and whether the body is chunked: as the
    /// request was framed on the wire (a filter's rewrite of the head does not reframe it).
    package let declaredLength: Int?
    package let isChunked: Bool

    // MARK: Request body (event loop side)

    /// Adds a piece of body; returns whether the connection should stop reading for now.
    func appendBody(_ buffer: ByteBuffer) -> Bool {
        let (pause, wake) = monitor.locked { () -> (Bool, Bool) in
            chunks.append(buffer)
            buffered += buffer.readableBytes
            bodyBytesReceived += buffer.readableBytes
            pace.arrived(buffer.readableBytes, now: monotonicSeconds())
            if buffered >= highWater { readsPaused = true }
            return (readsPaused, bodyReaderWants > 0 && (buffered >= bodyReaderWants || readsPaused))
        }
        // Woken with the mutex released: woken under it, the reader would wake only to
        // block on it again (two switches per piece of an upload instead of one).
        if wake { monitor.broadcast() }
        return pause
    }

    /// Whether the read-ahead is complete: `readAhead` body bytes or the body's end have
    /// arrived (or there is no body).
    package var isReadAhead: Bool {
        hasNoBody || monitor.locked { bodyEnded || bodyBytesReceived >= readAhead || bodyFailure != nil }
    }

    /// Runs `then` once `readAhead` body bytes or the body's end have arrived (at once
    /// when they have, or there is no body); the request fails with 408 (too slow), 400
    /// (malformed, cut short) or 413 (too large) instead. Event loop.
    package func afterReadAhead(_ then: @escaping () -> Void) { connection.afterReadAhead(self, then) }

    /// The host waits for the body before calling the handler (the read-ahead): that time
    /// counts against the client's pace. Event loop.
    func waitForReadAhead() { monitor.locked { pace.beginWaiting(now: monotonicSeconds()) } }

    func readAheadDone() { monitor.locked { pace.endWaiting(now: monotonicSeconds()) } }

    /// When the read-ahead fails for want of body (monotonic seconds), and why at `now`.
    var bodyDeadline: Double { monitor.locked { pace.deadline } }
    func bodyPaceFailure(now: Double) -> String { monitor.locked { pace.failure(now: now) } }

    /// The connection's read of the socket is done (NIO's read complete): a handler waiting
    /// for more body than has come gets what has. Event loop.
    func readBurstEnded() {
        if hasNoBody { return }
        let wake = monitor.locked { () -> Bool in
            guard bodyReaderWants > 0, buffered > 0 else { return false }
            bodyBurstEnded = true
            return true
        }
        if wake { monitor.broadcast() }
    }

    func endBody() {
        monitor.locked {
            bodyEnded = true
            monitor.broadcast()
        }
    }

    func connectionClosed() {
        monitor.locked {
            closed = true
            monitor.broadcast()
        }
    }

    /// The rest of the body cannot be read (it failed to parse, or the client ended its
    /// side first): the handler's reads fail after what arrived, and the connection closes
    /// after the one response the handler writes. Event loop.
    func bodyFailed(_ reason: String) {
        monitor.locked {
            guard !bodyEnded, bodyFailure == nil else { return }
            bodyFailure = reason
            keepAlive = false
            monitor.broadcast()
        }
    }

    // MARK: Request body (Python side; the caller has released the GIL)

    /// Up to `maximum` bytes of body, waiting for some to arrive; empty at the end.
    package func readBody(maximum: Int) throws -> [UInt8] {
        var bytes: [UInt8] = []
        for part in try readBodyParts(maximum: maximum) { bytes += part.readableBytesView }
        return bytes
    }

    /// The same as views of the buffers the body arrived in (no copy), for a caller that
    /// copies them once into their destination.
    package func readBodyParts(maximum: Int) throws -> [ByteBuffer] {
        // A client may wait for what was written before it sends more.
        if monitor.locked({ chunks.isEmpty && !bodyEnded && !hasNoBody && !pending.isEmpty }) {
            try? flushPending()
        }
        var resume = false
        let parts: [ByteBuffer] = try monitor.locked {
            // A request without a body may be read before its end is seen: it is empty.
            if chunks.isEmpty && !bodyEnded && !hasNoBody && !closed && bodyFailure == nil {
                handlerWaited = true
                // A handler run on the event loop is only given complete bodies; waiting
                // here would stop the loop that delivers the rest.
                if eventLoop.inEventLoop { throw ExchangeError(.bodyFailed, "the body is not complete") }
                pace.beginWaiting(now: monotonicSeconds())
                // Woken for a good share of what is still to come, not for every piece: an
                // upload arrives in pieces of up to 64 KiB, and waking the handler for each
                // one was a thread switch per piece. What came in a read of the socket that
                // left it empty is handed over at once (`readBurstEnded`): a body that
                // trickles in reaches the handler as it comes.
                bodyReaderWants = max(1, declaredLength.map { min($0 - bodyBytesRead, max(maximum, highWater / 2)) } ?? 1)
                bodyBurstEnded = false
                defer {
                    bodyReaderWants = 0
                    pace.endWaiting(now: monotonicSeconds())
                }
                while buffered < bodyReaderWants && !bodyBurstEnded && !readsPaused && !bodyEnded && !closed && bodyFailure == nil {
                    let now = monotonicSeconds()
                    if now >= pace.deadline {
                        // The client is too slow: its connection closes after the handler's answer.
                        let failure = pace.failure(now: now)
                        bodyFailure = failure
                        keepAlive = false
                        throw ExchangeError(.bodyTooSlow, failure)
                    }
                    _ = monitor.wait(until: FrostSystem.deadline(afterSeconds: pace.deadline - now))
                }
            }
            if chunks.isEmpty {
                if bodyEnded || hasNoBody { return [] }
                if let bodyFailure { throw ExchangeError(.bodyFailed, bodyFailure) }
                throw ExchangeError(.clientClosed, "the client closed the connection before sending the whole body")
            }
            var out: [ByteBuffer] = []
            var count = 0
            while count < maximum, !chunks.isEmpty {
                var first = chunks[0]
                let take = min(maximum - count, first.readableBytes)
                out.append(first.readSlice(length: take)!)
                count += take
                if first.readableBytes == 0 { chunks.removeFirst() } else { chunks[0] = first }
            }
            buffered -= count
            bodyBytesRead += count
            if readsPaused && buffered <= HTTPExchange.lowWater {
                readsPaused = false
                resume = true
            }
            return out
        }
        if resume { eventLoop.execute { self.connection.resumeReading(self.context) } }
        return parts
    }

    /// How many body bytes have arrived and not been read yet.
    package var availableCount: Int { hasNoBody ? 0 : monitor.locked { buffered } }

    /// Whether the connection can stay open after this response (the caller holds
    /// `monitor`): keep-alive was asked for and the request body is complete, or what is
    /// still to come of it is known and small enough to read and drop afterwards. A chunked
    /// body cut short leaves its remainder unknown: the connection closes, announced.
    private var canKeepConnection: Bool {
        if !keepAlive || closed { return false }  // bodyFailed turned keep-alive off
        if bodyEnded || hasNoBody { return true }
        guard let declared = declaredLength else { return false }
        return declared - bodyBytesReceived <= maxDiscardBytes
    }

    /// Whether the request body has arrived in full (or there is none). Event loop.
    package var requestComplete: Bool {
        hasNoBody || monitor.locked { bodyEnded }
    }

    /// Neither a Content-Length above 0 nor chunked framing.
    var hasNoBody: Bool { (declaredLength ?? 0) == 0 && !isChunked }

    // MARK: Response (Python side)

    /// Sends the status line and headers (`headers`: "Name: value" lines). Decides the
    /// framing: Content-Length when given, else chunked (HTTP/1.1) or close-delimited.
    /// `fieldsChecked`: the caller checked every name and value already (the control
    /// block's header parsers do); what a filter's head hook changes is checked here anyway.
    package func sendHead(status: Int, reason: String, headers: [(String, String)], fieldsChecked: Bool = false) throws {
        try sendHead(status: status, reason: reason, fields: fieldsChecked ? ResponseFields(checked: headers) : ResponseFields(headers))
    }

    /// The same with fields made (and checked) already: a handler's repeated header block
    /// is the same `ResponseFields` each time (see `ResponseFields`).
    package func sendHead(status: Int, reason: String, fields: ResponseFields) throws {
        var (status, reason, fields) = (status, reason, fields)
        if let headHook {
            if monitor.locked({ headersSent }) { throw ExchangeError(.responseState, "response headers were already sent") }
            var headers = fields.pairs
            if case .answered(let keep) = headHook(self, &status, &reason, &headers) {
                markAnsweredRaw(keepConnection: keep)
                return
            }
            fields = try ResponseFields(headers)  // what the filter changed is checked too
        }
        // Every head from Python (the handler, a filter, Redirect's URL) passes here: this
        // is where header injection is refused (the pipeline has no validator of its own).
        if !isHeaderValue(reason) {
            throw ExchangeError(.badResponseHead, "the status line's reason phrase \(reason.debugDescription) holds CR, LF or NUL")
        }
        let isHead = requestMethod.isHEAD
        try monitor.locked {
            guard !headersSent else { throw ExchangeError(.responseState, "response headers were already sent") }
            guard !closed else { throw ExchangeError(.clientClosed, "the client closed the connection") }
            headersSent = true
            statusCode = status
            let version = requestHead.version
            // Decided here, so that the head announces a close the host will make.
            if !canKeepConnection { keepAlive = false }
            suppressBody = isHead || !ResponseHead.mayHaveBody(status: status)
            if !fields.hasLength && !suppressBody {
                if version.major == 1 && version.minor >= 1 {
                    if !fields.hasTransferEncoding {
                        fields.append(name: "transfer-encoding", value: "chunked")
                    }
                } else {
                    keepAlive = false
                }
            }
            if fields.asksClose { keepAlive = false }
            fields.announceConnection(close: !keepAlive, version: version)
            // Marked sent and pending at once: a flush never finds the one without the other.
            // Encoded now, with room for a small body to follow it in the same buffer.
            pending.head = ResponseEncoder.encode(ResponseHead(version: version, status: status, reason: reason, fields: fields),
                                                  method: requestMethod, allocator: allocator, reserving: 512)
            responseChunked = pending.head!.chunked
        }
    }

    /// Adds body bytes to the response. They are buffered (see `pending`) until the
    /// buffer passes `flushThreshold`: then everything pending goes to the connection (see
    /// `flushPending`). A client that is gone fails the write.
    package func writeBody(_ bytes: [UInt8]) throws {
        if try bufferBody(bytes) { try flush() }
    }

    /// Adds body bytes to the pending response without blocking (callable with the GIL
    /// held); returns whether the buffer is full and must now be flushed.
    package func bufferBody(_ bytes: [UInt8]) throws -> Bool {
        try bytes.withUnsafeBytes { try bufferBody($0) }
    }

    package func bufferBody(_ bytes: UnsafeRawBufferPointer) throws -> Bool {
        try monitor.locked {
            try requireBodyWritable()
            guard !bytes.isEmpty, !suppressBody, !answeredRaw else { return false }
            if pending.body == nil, let head = pending.head, !head.chunked, head.bytes.writableBytes >= bytes.count {
                // Behind the head in its own buffer, in the room it was made with (in place:
                // only this exchange holds it). A larger body gets a buffer of its own size:
                // grown, the head's would double to the next power of two.
                pending.head!.bytes.writeBytes(bytes)
            } else {
                if pending.body == nil { pending.body = allocator.buffer(capacity: max(bytes.count, 256)) }
                pending.body!.writeBytes(bytes)
            }
            pending.bodyCount += bytes.count
            return pending.bodyCount >= HTTPExchange.flushThreshold
        }
    }

    /// Writes of at least this many body bytes go to the socket without a copy when they
    /// can (`writeBodyDirectly`).
    package static let directWriteMinimum = 64 * 1024

    /// A large body write of a handler run on the event loop (the caller holds `bytes` for
    /// the call): what is pending and then `bytes` go to the socket at once, the bytes
    /// without a copy (a 1 MiB response spent a third of its time copying them into a new
    /// buffer and faulting its pages in). What the socket does not take is copied and
    /// handed to NIO as a flush hands it. False when this does not apply (off the loop,
    /// before the head, a chunked or bodiless response): the caller buffers the bytes.
    package func writeBodyDirectly(_ bytes: UnsafeRawBufferPointer) throws -> Bool {
        guard eventLoop.inEventLoop else { return false }
        let taken: PendingParts? = try monitor.locked {
            try requireBodyWritable()
            guard headersSent, !suppressBody, !answeredRaw, !responseChunked, writeFailure == nil else { return nil }
            return pending.take()
        }
        guard let parts = taken else { return false }
        var buffers: [ByteBuffer] = []
        if let head = parts.head { buffers.append(head.bytes) }
        if let body = parts.body { buffers.append(body) }
        let sent = connection.writeDirectly(context, buffers, then: bytes)
        let headBufferCount = parts.head?.bytes.readableBytes ?? 0
        let bodyBufferCount = parts.body?.readableBytes ?? 0
        // The head's own bytes (its buffer also holds the body bytes written behind it).
        let headLength = parts.head == nil ? 0 : headBufferCount - (parts.bodyCount - bodyBufferCount)
        let bodySent = max(0, sent - headLength)
        // What the socket left, in order: the rest of the head's buffer, of the body's, of
        // the bytes (copied).
        var left = PendingParts()
        if var head = parts.head, sent < headBufferCount {
            head.bytes.moveReaderIndex(forwardBy: sent)
            left.head = head
        }
        let bodySkipped = max(0, sent - headBufferCount)
        let bodyLeft = max(0, bodyBufferCount - bodySkipped)
        let bytesSkipped = max(0, bodySkipped - bodyBufferCount)
        let bytesLeft = bytes.count - bytesSkipped
        if bodyLeft + bytesLeft > 0 {
            var rest = allocator.buffer(capacity: bodyLeft + bytesLeft)
            if var body = parts.body, bodyLeft > 0 {
                body.moveReaderIndex(forwardBy: bodySkipped)
                rest.writeBuffer(&body)
            }
            if bytesLeft > 0 { rest.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[bytesSkipped...])) }
            left.body = rest
        }
        left.bodyCount = parts.bodyCount + bytes.count - bodySent
        monitor.locked {
            if parts.head != nil && sent >= headLength { headDelivered = true }
            bytesSent += bodySent
            pending = left
        }
        if !left.isEmpty { try flushPending() }
        return true
    }

    /// A body write is refused once the response is finished or the client is gone
    /// (`monitor` held).
    private func requireBodyWritable() throws {
        if finished { throw ExchangeError(.responseState, "the response is already finished") }
        if closed { throw ExchangeError(.clientClosed, "the client closed the connection") }
    }

    /// Sends what is pending now (see `flushPending`). (GIL released.)
    package func flush() throws { try flushPending() }

    /// Takes what is pending (event loop writes it; empty when nothing is).
    private func takePending() -> PendingParts {
        monitor.locked { pending.take() }
    }

    /// Writes pending head and body parts (and the response's end with `end`), flushed with
    /// `flush`; `promise` completes with the last of them. Event loop.
    private func writeParts(_ parts: PendingParts, end: Bool = false, flush: Bool = false,
                            promise: EventLoopPromise<Void>? = nil) {
        let hasBody = (parts.body?.readableBytes ?? 0) > 0
        if parts.head == nil && !hasBody && !end {
            if flush { context.flush() }
            promise?.succeed(())
            return
        }
        connection.send(context, head: parts.head, body: hasBody ? parts.body.map(IOData.byteBuffer) : nil, end: end,
                        flush: flush, promise: promise)
    }

    /// The method of the request this exchange answers (the original one: a filter's
    /// rewrite of the head does not change how the response is framed).
    private let requestMethod: HTTPMethod

    /// Accounting once pending parts reached the socket.
    private func noteWritten(_ parts: PendingParts) {
        monitor.locked {
            if parts.head != nil { headDelivered = true }
            bytesSent += parts.bodyCount
        }
    }

    /// Hands what is pending to the connection without waiting for it to be written. The
    /// wait comes before: while more than `maxBytesInFlight` of the earlier writes are still
    /// on their way to the socket, the writer waits for them (a slow client holds back a
    /// writer that streams, instead of filling memory). So what is queued is at most that
    /// limit plus one write, whose bytes the handler held anyway, and a handler that
    /// writes its whole response at once never waits, however large it is. A failed write
    /// fails the next one. (Python thread, the GIL released when it may wait; or the event
    /// loop, for a handler run there: it writes at once and never waits, see `handlerReport`.)
    private func flushPending() throws {
        let onLoop = eventLoop.inEventLoop
        let stalled: Bool = monitor.locked {
            guard bytesInFlight > HTTPExchange.maxBytesInFlight else { return false }
            handlerWaited = true
            // Every completed write broadcasts: a wait that times out saw no progress at all.
            while bytesInFlight > HTTPExchange.maxBytesInFlight && writeFailure == nil && !closed && !onLoop {
                if !monitor.wait(until: FrostSystem.deadline(afterSeconds: sendTimeout)) {
                    markSendTimedOut()
                    return true
                }
            }
            return false
        }
        if stalled { eventLoop.execute { self.cutConnection() } }
        try monitor.locked {
            if let writeFailure { throw ExchangeError(.clientClosed, writeFailure) }
            if closed && bytesInFlight > 0 { throw ExchangeError(.clientClosed, "the client closed the connection") }
        }
        let parts = takePending()
        guard !parts.isEmpty else { return }
        let count = parts.bodyCount
        monitor.locked { bytesInFlight += count }
        let write: @Sendable () -> Void = {
            let written = self.eventLoop.makePromise(of: Void.self)
            self.writeParts(parts, flush: true, promise: written)
            written.futureResult.whenComplete { result in
                if case .success = result { self.noteWritten(parts) }
                self.monitor.locked {
                    self.bytesInFlight -= count
                    if case .failure(let error) = result {
                        self.writeFailure = self.writeFailure ?? "the connection failed: \(error)"
                    }
                    self.monitor.broadcast()
                }
            }
        }
        if onLoop { write() } else { eventLoop.execute(write) }
    }

    /// Writes `length` bytes of the file at `path` from `start`, zero-copy (sendfile), and
    /// waits until the connection has taken them.
    package func writeFile(path: String, start: Int, length: Int) throws {
        let (suppress, alreadyFinished) = monitor.locked { (suppressBody || answeredRaw, finished) }
        if alreadyFinished { throw ExchangeError(.responseState, "the response is already finished") }
        guard length > 0, !suppress else { return }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ExchangeError(.fileUnavailable, "cannot open \(path): \(errnoDescription())") }
        try writeFile(descriptor: descriptor, start: start, length: length, closeWhenDone: true)
    }

    /// The same from an open descriptor (closed afterwards only with `closeWhenDone`).
    package func writeFile(descriptor: Int32, start: Int, length: Int, closeWhenDone: Bool) throws {
        defer { if closeWhenDone { close(descriptor) } }
        let suppress = monitor.locked { suppressBody || answeredRaw }
        guard length > 0, !suppress else { return }
        // NIO owns (and closes) a duplicate, so the caller's descriptor stays its own.
        let duplicate = dup(descriptor)
        guard duplicate >= 0 else { throw ExchangeError(.fileUnavailable, "cannot use file descriptor \(descriptor)") }
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: duplicate)
        defer { try? handle.close() }
        let region = FileRegion(fileHandle: handle, readerIndex: start, endIndex: start + length)
        let parts = takePending()
        try submit { promise in
            self.writeParts(parts)
            self.connection.send(self.context, head: nil, body: .fileRegion(region), flush: true, promise: promise)
        }
        noteWritten(parts)
        monitor.locked { bytesSent += length }
    }

    /// The layer above answered through the raw connection (a filter's ACCESS_DENIED or
    /// SEND_RESPONSE): later writes are dropped.
    package func markAnsweredRaw(keepConnection: Bool) {
        monitor.locked {
            headersSent = true
            headDelivered = true
            answeredRaw = true
            keepAfterRawAnswer = keepConnection
        }
    }

    /// Bytes the filter wrote itself, for the access log.
    package func countRawBytes(_ count: Int) {
        monitor.locked { bytesSent += count }
    }

    /// The status of a response head a filter sent itself.
    package func noteRawStatus(_ code: Int) {
        monitor.locked { statusCode = code }
    }

    /// Ends the response (once); afterwards the connection reads the next request or closes.
    /// Returns false when it had already been finished.
    @discardableResult
    package func finish() -> Bool {
        typealias Ending = (close: Bool, answered: Bool)
        let ending: Ending? = monitor.locked {
            guard !finished else { return nil }
            finished = true
            monitor.broadcast()
            finalParts = pending.take()
            if answeredRaw { return (!keepAfterRawAnswer || !canKeepConnection, true) }
            return (!keepAlive, false)
        }
        guard let (close, answered) = ending else { return false }
        let complete: @Sendable () -> Void = {
            self.responseEnded = true
            let parts = self.finalParts.take()
            if !close && !answered && parts.bodyCount <= HTTPExchange.unwaitedResponseBytes
                && self.connection.readsOn && self.connection.isWritable(self.context) {
                // A keep-alive response into a channel under NIO's high-water mark goes on
                // its way without a promise to wait for: the next request is read at once,
                // and what can pile up for a client that does not read stays bounded (the
                // channel stops being writable, and the next response waits for its write).
                // A write that fails closes the connection; the access log counts it sent.
                self.writeParts(parts, end: true, flush: true, promise: nil)
                self.noteWritten(parts)
                self.connection.exchangeFinished(self, context: self.context, close: false)
                return
            }
            let end = self.context.eventLoop.makePromise(of: Void.self)
            if answered {
                end.succeed(())  // the filter wrote the response itself
            } else {
                self.connection.watchWrite(self.context, seconds: self.sendTimeout)
                self.writeParts(parts, end: true, flush: true, promise: end)
            }
            end.futureResult.whenComplete { result in
                if case .success = result { self.noteWritten(parts) }
                self.connection.exchangeFinished(self, context: self.context, close: close)
            }
        }
        // A handler run inline finishes inside the connection's read: completed after it.
        if !(eventLoop.inEventLoop && connection.runAfterRead(complete)) { eventLoop.execute(complete) }
        return true
    }

    package var isKeepAlive: Bool { monitor.locked { keepAlive } }

    /// Closes the connection with a reset (event loop), as nginx's reset_timedout_connection
    /// does: what the kernel still holds for a client that reads nothing is dropped now, not
    /// kept until TCP gives up.
    func cutConnection() {
        let channel = context.channel
        guard let options = channel as? SocketOptionProvider else { return channel.close(promise: nil) }
        options.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// The client took nothing of the finished response for `sendTimeout` (event loop).
    func noteSendTimedOut() { monitor.locked { markSendTimedOut() } }

    /// Why the writes end: the send time-out passed without progress (lock held).
    private func markSendTimedOut() {
        writeFailure = "the client took nothing of the response for \(Int(sendTimeout)) s (--send-timeout)"
        writeStalled = true
    }

    /// The largest final response `finish` does not wait to see written (a response
    /// larger than this, or one that closes the connection, waits for its write).
    static let unwaitedResponseBytes = 64 * 1024

    /// The handler waits for something outside this exchange (a child request it started).
    package func noteWaited() { monitor.locked { handlerWaited = true } }

    /// How the layer above runs the handler: set on the event loop before any other
    /// thread sees the exchange.
    package func beginHandlerRun(_ run: HandlerRun) { self.run = run }

    /// How long the handler's call took: noted by the thread that ran it, before it
    /// finishes the response (a handler that returns pending may be finished by another
    /// thread meanwhile: the lock orders the two).
    package func noteHandlerSeconds(_ seconds: Double) { monitor.locked { run.seconds = seconds } }

    /// How the handler ran, and whether it waited for the client: for more body, or for
    /// the socket to take what it wrote (or, run on the event loop, would have had to);
    /// such a handler is better run where waiting stops nobody else. Read back on the
    /// event loop when the exchange completes.
    package var handlerReport: (run: HandlerRun, waited: Bool) { monitor.locked { (run, handlerWaited) } }

    /// The connection is gone (the client closed it, or it failed).
    package var clientClosed: Bool { monitor.locked { closed } }

    /// Set when a write gave up on a client that read nothing (`sendTimeout`): why the
    /// connection was cut, for the log.
    package var stalledWrite: String? { monitor.locked { writeStalled ? writeFailure : nil } }

    /// The connection closes after this response (HSE_IO_DISCONNECT_AFTER_SEND).
    package func disableKeepAlive() {
        monitor.locked { keepAlive = false }
    }

    /// What the layer above keeps with this connection (`HTTPConnectionHandler.attachment`).
    package var connectionAttachment: AnyObject? { connection.attachment }

    /// A complete response written from the event loop (static files, errors before
    /// Python): head, optional body, end; then keep-alive or close like any response.
    package func respondOnLoop(status: HTTPResponseStatus, headers: [(String, String)] = [], text: String?) {
        var all = headers
        var body: IOData?
        var length = 0
        if let text {
            let bytes = Array((text + "\n").utf8)
            var buffer = context.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            body = .byteBuffer(buffer)
            length = bytes.count
            all += [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", String(length))]
        }
        respondOnLoop(status: status, headers: all, body: body, bodyLength: length)
    }

    package func respondOnLoop(status: HTTPResponseStatus, headers: [(String, String)], body: IOData?, bodyLength: Int,
                               onWritten: (@Sendable () -> Void)? = nil) {
        var fields = ResponseFields(checked: headers)
        let close: Bool = monitor.locked {
            headersSent = true
            finished = true
            statusCode = Int(status.code)
            if !canKeepConnection { keepAlive = false }
            return !keepAlive
        }
        fields.announceConnection(close: close, version: head.version)
        responseEnded = true
        let sendsBody = body != nil && !head.method.isHEAD
        let written = context.eventLoop.makePromise(of: Void.self)
        connection.send(context, head: ResponseHead(version: head.version, status: status, fields: fields),
                        body: sendsBody ? body : nil, end: true, method: requestMethod, flush: true, promise: written)
        written.futureResult.whenComplete { result in
            if case .success = result { self.noteDelivered(bodyBytes: sendsBody ? bodyLength : 0) }
            onWritten?()
            self.connection.exchangeFinished(self, context: self.context, close: close)
        }
    }

    /// The request deadline passed (event loop): answers 504 if nothing was sent, else
    /// cuts the connection. Returns whether the request was still running.
    package func deadlineExpired() -> Bool {
        let headers: Bool? = monitor.locked {
            guard !finished else { return nil }
            finished = true
            let sent = headersSent
            headersSent = true
            statusCode = sent ? statusCode : 504
            monitor.broadcast()
            return sent
        }
        guard let headersWereSent = headers else { return false }
        responseEnded = true
        if headersWereSent {
            context.close(promise: nil)  // cut: the response cannot be completed
            connection.exchangeFinished(self, context: context, close: true)
            return true
        }
        let body = Array("Gateway Timeout: the application did not answer in time\n".utf8)
        var buffer = context.channel.allocator.buffer(capacity: body.count)
        buffer.writeBytes(body)
        let responseHead = ResponseHead(version: head.version, status: .gatewayTimeout, fields: [
            "content-type": "text/plain; charset=utf-8", "content-length": String(body.count), "connection": "close",
        ])
        let written = context.eventLoop.makePromise(of: Void.self)
        connection.send(context, head: responseHead, body: .byteBuffer(buffer), end: true, method: requestMethod, flush: true,
                        promise: written)
        written.futureResult.whenComplete { result in
            if case .success = result { self.noteDelivered(bodyBytes: body.count) }
            self.connection.exchangeFinished(self, context: self.context, close: true)
        }
        return true
    }

    /// A response written from the event loop reached the socket.
    private func noteDelivered(bodyBytes: Int) {
        monitor.locked {
            headDelivered = true
            bytesSent = bodyBytes
        }
    }

    /// The status for the access log: what was sent, or 499 (as nginx logs it) when no
    /// response head reached the client.
    package var loggedStatus: Int { monitor.locked { headDelivered ? statusCode : 499 } }

    private func submit(_ operation: @escaping @Sendable (EventLoopPromise<Void>) -> Void) throws {
        let promise = eventLoop.makePromise(of: Void.self)
        if eventLoop.inEventLoop {
            // A handler run on the event loop: the operation is under way, and waiting for
            // it here would stop the loop that carries it out.
            monitor.locked { handlerWaited = true }
            return operation(promise)
        }
        eventLoop.execute { operation(promise) }
        do {
            try promise.futureResult.wait()
        } catch {
            throw ExchangeError(.clientClosed, "the connection failed: \(error)")
        }
    }
}

/// The two ends of a connection and their text forms, made once per connection: printing
/// the peer's address for every request cost more than the rest of a WSGI environ.
package final class ConnectionAddresses: Sendable {
    package let local: SocketAddress?
    package let remote: SocketAddress?
    /// The addresses and ports as CGI variables give them ("" when unknown).
    package let localIP: String
    package let localPort: String
    package let remoteIP: String
    package let remotePort: String

    package init(local: SocketAddress?, remote: SocketAddress?) {
        self.local = local
        self.remote = remote
        localIP = local?.ipAddress ?? ""
        localPort = local?.port.map(String.init) ?? ""
        remoteIP = remote?.ipAddress ?? ""
        remotePort = remote?.port.map(String.init) ?? ""
    }
}

/// What the layer above noted about running a request's handler, for its scheduling to
/// learn from when the exchange completes.
package struct HandlerRun: Sendable {
    /// The layer's own key for what was run (-1: none).
    package var key = -1
    /// Whether the handler ran on the connection's event loop.
    package var onEventLoop = false
    /// How long the handler's call took, in seconds.
    package var seconds = 0.0

    package init() {}
}

/// Response bytes the handler wrote that are not yet handed to the connection: a head,
/// then body bytes. A body that follows its head before a flush is written behind it in
/// the head's buffer (unless it is chunked: each flush is one chunk), so a small response
/// is one buffer from the start.
struct PendingParts: Sendable {
    var head: EncodedHead?
    /// Body bytes not in the head's buffer.
    var body: ByteBuffer?
    /// Body bytes in all (behind the head, and `body`).
    var bodyCount = 0

    var isEmpty: Bool { head == nil && body == nil }

    /// These parts, leaving none: moved out, not copied (a copy retained and released
    /// each buffer, about 400 instructions a response).
    mutating func take() -> PendingParts {
        var taken = PendingParts()
        swap(&taken, &self)
        return taken
    }
}
