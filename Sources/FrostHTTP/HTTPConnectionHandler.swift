// FrostHTTP: the HTTP layer, NIO only: requests parsed, validated and limited, bodies read ahead and streamed, responses encoded, connections closed without resets; each request goes to a dispatcher, and nothing here knows ISAPI or Python.

import NIOCore
import NIOHTTP1
import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// Receives what every request needs: called on a Python-free path (the event loop).
package protocol ExchangeDispatcher: AnyObject, Sendable {
    /// A request's head has arrived; the body follows through the exchange.
    func dispatch(_ exchange: HTTPExchange)
    /// A response has been completely written.
    func completed(_ exchange: HTTPExchange)
    /// The request's deadline (`expiresAt`) has passed.
    func deadlinePassed(_ exchange: HTTPExchange)
    /// The client took nothing of a finished response for `--send-timeout`: its connection
    /// is being cut (`stalledWrite` says so).
    func sendTimedOut(_ exchange: HTTPExchange)
}

/// Sent to every connection when the host stops: finish the request in hand (or the first
/// one of a connection that has not sent any yet), then close.
package struct StopAfterCurrentRequest {
    package init() {}
}

/// One per connection, on its event loop: it reads requests out of the connection's bytes
/// (`RequestParser`), hands them over one at a time, in order, and writes their responses
/// through its `ResponseEncoder`.
///
/// Pipelined input (what arrives after a request while its response is still owed: the
/// next requests, a parse error, the client's half-close) waits in `heldEvents` and is
/// delivered when the response is out. Reading goes on while a response is owed, so a
/// client that does not pipeline costs no change of read interest (two `epoll_ctl` per
/// request, as NIO's pipelining handler does it); reading pauses only once something is
/// held.
///
/// It is an inbound handler only: reads are held back by turning the channel's `autoRead`
/// off while something waits (`holdReads`), not by intercepting each `read` (NIO passes one
/// down the pipeline after every read: about 700 instructions a request through a handler
/// that watches them).
package final class HTTPConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: all state is touched on the channel's event loop only.
    package typealias InboundIn = ByteBuffer

    private let connectionID: Int
    private let dispatcher: ExchangeDispatcher
    private let limits: HostLimits
    private var current: HTTPExchange?
    /// Both ends of this connection, made at its first request.
    private var addresses: ConnectionAddresses?
    /// The request in hand has been read to its end and its response is still owed.
    private var awaitingResponse = false
    /// What arrived while `awaitingResponse`, in order, for after the response.
    private var heldEvents: [HeldEvent] = []
    private enum HeldEvent {
        case part(RequestPart)
        case error(Error)
        case inputClosed
    }
    private var encoder = ResponseEncoder()
    /// The lock (and condition) of this connection's exchanges, one after another.
    private let exchangeMonitor = Monitor()
    private var parser: RequestParser
    /// Bytes of a request part that has not all arrived yet.
    private var unparsed: ByteBuffer?
    /// Inside `channelRead`: a response finished meanwhile on this loop (by a handler run
    /// inline) is completed once the read is handled (`runAfterRead`).
    private var reading = false
    private var afterRead: (() -> Void)?
    /// Reading waits for Python to take the body (the exchange's high-water mark).
    private var readsPaused = false
    /// `autoRead` is off (see `holdReads`).
    private var readsHeld = false
    private var rejecting = false
    private var bodyBytes = 0
    /// When the connection ends unless what it waits for (a request head, the next
    /// piece of a body being dropped) arrives first; checked by the loop's sweeper.
    private var deadline = Double.infinity
    private let sweeper: DeadlineSweeper
    /// The loop's poll after reads (nil: the loop sleeps as soon as it is idle).
    private let busyPoll: BusyPoll?
    private var requestsSeen = 0
    private var stopping = false
    /// The client ended its side (a half-close): the requests it sent are answered, then
    /// the connection closes.
    private var inputEnded = false
    /// A request failed to parse: nothing after it is read as HTTP, and the connection
    /// closes once the response owed (if any) is out.
    private var inputMalformed = false
    /// The response in hand announced the close: what the client sent after its request
    /// is not read as HTTP (NIO's pipelining handler releases a request held back behind
    /// it as soon as the response's end is written, before that write completes).
    private var closingAfterResponse = false
    /// The rest of a request body its handler left unread, being read and dropped so the
    /// connection can carry the next request: bytes left in the budget, and when it began.
    private var discarding: (budget: Int, since: Double)?
    /// What the request in hand does once its read-ahead is complete (its handler waits
    /// for `HostLimits.readAhead` body bytes or the body's end): meanwhile only this loop
    /// holds the request, and the body's pace is the connection's deadline.
    private var readAheadWaiter: (() -> Void)?
    /// What the layer above keeps with this connection (the ISAPI host: its filter's raw
    /// data handler, when the bundle has a filter).
    package let attachment: AnyObject?
    /// Closes the connection without losing a response to a reset.
    private let lingering: LingeringClose
    /// The lingering close is this handler's to call, not a handler of the pipeline's.
    private let lingeringHere: Bool
    private let trustedProxies: TrustedProxies
    /// The connection's descriptor, when it is known and only this handler writes to the
    /// connection: a response that fits the socket is written with one `send(2)` of our
    /// own (see `writeDirectly`). nil: every write goes through NIO.
    private let socket: Int32?
    /// Something was handed to NIO's writes that may still be queued there: before the
    /// next write of our own, NIO is asked whether it holds anything.
    private var nioMayHoldWrites = false
    /// The channel went inactive (`channelInactive`).
    private var channelEnded = false

    /// Whether the layer above may rewrite request heads (`HTTPExchange.rewriteHead`).
    private let headsMayBeRewritten: Bool
    /// The channel's allocator, taken once (through the channel it is a protocol
    /// witness's call, about 150 instructions, several times a request).
    private(set) var allocator = ByteBufferAllocator()
    /// The channel's event loop as an identity (`HTTPExchange.eventLoopID`).
    private(set) var eventLoopID = ObjectIdentifier(HTTPConnectionHandler.self)

    /// `socket`: the connection's descriptor, when nothing but this handler writes to it.
    /// `headsMayBeRewritten`: the layer above may rewrite request heads (a filter).
    /// `stopping`: the host is already stopping; serve one request, then close.
    package init(connectionID: Int, dispatcher: ExchangeDispatcher, limits: HostLimits, attachment: AnyObject? = nil,
                 lingering: LingeringClose, lingeringInPipeline: Bool = true, sweeper: DeadlineSweeper,
                 busyPoll: BusyPoll? = nil, trustedProxies: TrustedProxies = TrustedProxies([]),
                 socket: Int32? = nil, headsMayBeRewritten: Bool = true, stopping: Bool = false) {
        self.socket = socket
        self.lingeringHere = !lingeringInPipeline
        self.headsMayBeRewritten = headsMayBeRewritten
        self.lingering = lingering
        self.sweeper = sweeper
        self.busyPoll = busyPoll
        self.trustedProxies = trustedProxies
        self.stopping = stopping
        self.connectionID = connectionID
        self.dispatcher = dispatcher
        self.limits = limits
        self.attachment = attachment
        self.parser = RequestParser(limits: limits)
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        if lingeringHere { lingering.handlerAdded(context: context) }
        allocator = context.channel.allocator
        eventLoopID = ObjectIdentifier(context.eventLoop)
        sweeper.register(self, context)
        if context.channel.isActive { arm(context, limits.headerTimeout) }
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        sweeper.unregister(self)
    }

    package func channelActive(context: ChannelHandlerContext) {
        arm(context, limits.headerTimeout)
        context.fireChannelActive()
    }

    /// Ends the connection unless the next thing it waits for (a request head, the next
    /// piece of a body being dropped) arrives within `seconds`.
    private func arm(_ context: ChannelHandlerContext, _ seconds: Double) {
        deadline = monotonicSeconds() + seconds
    }

    private func disarm() { deadline = .infinity }

    /// Whether the connection reads on after the response in hand (event loop): not when
    /// the host stops, the client ended its input, or its input was malformed (then the
    /// response's write is waited for before the connection closes).
    package var readsOn: Bool { !(stopping || inputEnded || inputMalformed) }

    /// What NIO still held for the client when the send time-out was (re)armed for a
    /// finished response's write; nil when no such write is pending.
    private var unsentAtArming: Int?

    /// A finished response's write is on its way (event loop): the client must take some
    /// of it every `seconds` (`--send-timeout`, as nginx's send_timeout), or the
    /// connection is cut. The write's completion (`exchangeFinished`) ends the watch.
    package func watchWrite(_ context: ChannelHandlerContext, seconds: Double) {
        unsentAtArming = unsentBytes(context)
        arm(context, seconds)
    }

    private func unsentBytes(_ context: ChannelHandlerContext) -> Int {
        (try? context.channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes)) ?? 0
    }

    /// Called by the loop's sweeper: acts on a time-out that has passed.
    func sweep(_ context: ChannelHandlerContext, now: Double) {
        if let current, now >= current.expiresAt {
            current.expiresAt = .infinity
            dispatcher.deadlinePassed(current)
        }
        guard now >= deadline else { return }
        deadline = .infinity
        if let unsent = unsentAtArming, let current {
            let left = unsentBytes(context)
            if left < unsent {  // the client took some: another period
                return watchWrite(context, seconds: current.sendTimeout)
            }
            unsentAtArming = nil
            current.noteSendTimedOut()
            dispatcher.sendTimedOut(current)
            return current.cutConnection()
        }
        if readAheadWaiter != nil, let current {
            return failReadAhead(current, .requestTimeout, "Request Timeout: " + current.bodyPaceFailure(now: now))
        }
        if discarding != nil {
            stopDiscarding(context, keep: false)  // a response was sent: no reset
        } else {
            context.close(promise: nil)
        }
    }

    /// Answers a request the limits or the validation refuse, from the event loop, and closes.
    private func reject(_ context: ChannelHandlerContext, _ head: RequestHead, _ status: HTTPResponseStatus, _ text: String,
                        headers: [(String, String)] = []) {
        rejecting = true
        current = nil  // refused at its head: never dispatched, the extension never sees it
        let version = head.version.major == 1 && head.version.minor <= 1 ? head.version : .http1_1
        sendPlain(context, status, version: version, method: head.method, text: text + "\n", headers: headers)
        lingering.begin()  // the client may be sending the body it announced: read, drop, then close
    }

    /// A complete plain-text response the host writes itself, announcing the close.
    private func sendPlain(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, version: HTTPVersion,
                           method: HTTPMethod, text: String, headers extra: [(String, String)] = []) {
        var buffer = context.channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        let fields = ResponseFields(checked: [
            ("content-type", "text/plain; charset=utf-8"), ("content-length", String(buffer.readableBytes)), ("connection", "close"),
        ] + extra)
        let head = ResponseHead(version: version, status: status, fields: fields)
        send(context, head: head, body: .byteBuffer(buffer), end: true, method: method, flush: true)
    }

    /// Writes response parts (event loop): `head`, `body`, and the response's end when
    /// `end`; `promise` completes with the last of them, in order with earlier writes.
    /// `method` is the request's (HEAD and CONNECT responses carry no body).
    package func send(_ context: ChannelHandlerContext, head: ResponseHead, body: IOData? = nil, end: Bool = false,
                      method: HTTPMethod, flush: Bool = false, promise: EventLoopPromise<Void>? = nil) {
        send(context, head: ResponseEncoder.encode(head, method: method, allocator: allocator),
             body: body, end: end, flush: flush, promise: promise)
    }

    /// The same with the head encoded already (or none).
    func send(_ context: ChannelHandlerContext, head: EncodedHead?, body: IOData? = nil, end: Bool = false,
              flush: Bool = false, promise: EventLoopPromise<Void>? = nil) {
        // The promise goes with the last buffer: each is written once the next one is known.
        var last: IOData?
        encoder.encode(head: head, body: body, end: end, allocator: allocator) { buffer in
            if let previous = last { write(context, previous, flush: false, promise: nil) }
            last = buffer
        }
        if let final = last {
            write(context, final, flush: flush, promise: promise)
        } else if let promise {
            // Writes complete in order: an empty one completes after those before it.
            write(context, .byteBuffer(allocator.buffer(capacity: 0)), flush: flush, promise: promise)
        } else if flush {
            context.flush()
        }
    }

    /// Writes one buffer: ourselves when it is flushed, NIO holds nothing of this
    /// connection's and the socket takes all of it; else (and what the socket did not
    /// take) through NIO. The last buffer and the flush go down the pipeline together.
    private func write(_ context: ChannelHandlerContext, _ data: IOData, flush: Bool, promise: EventLoopPromise<Void>?) {
        var data = data
        if flush, case .byteBuffer(var buffer) = data {
            if writeDirectly(context, &buffer) {
                promise?.succeed(())
                return
            }
            data = .byteBuffer(buffer)  // what the socket did not take
        }
        nioMayHoldWrites = true
        if flush {
            context.writeAndFlush(NIOAny(data), promise: promise)
        } else {
            context.write(NIOAny(data), promise: promise)
        }
    }

    /// Sends what it can of `buffer` with one `send(2)` (event loop) and returns whether
    /// that was all of it; what is left stays in `buffer` for NIO. NIO's write path (the
    /// pipeline, its queue of pending writes, the promise, the flush) cost about 2,600
    /// instructions a response; this is a system call.
    ///
    /// Only while the channel is active: NIO marks it inactive before it closes the
    /// descriptor, whose number may then belong to another connection. Only when NIO
    /// holds none of this connection's writes, which it would send after this one. An
    /// error is left to NIO, which meets it again on its own write and fails the write and
    /// closes the connection as for any write of its own.
    private func writeDirectly(_ context: ChannelHandlerContext, _ buffer: inout ByteBuffer) -> Bool {
        guard buffer.readableBytes > 0, let socket = socketIfWritable(context) else { return false }
        let sent = buffer.withUnsafeReadableBytes { bytes in
            Glibc.send(socket, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
        }
        guard sent > 0 else { return false }
        buffer.moveReaderIndex(forwardBy: sent)
        return buffer.readableBytes == 0
    }

    /// Whether the channel takes more writes without passing NIO's high-water mark: surely
    /// so when NIO holds none of this connection's writes, without a look at the channel
    /// (a cache line of its own: with hundreds of connections, every such touch of one
    /// connection's objects missed the cache).
    func isWritable(_ context: ChannelHandlerContext) -> Bool {
        !nioMayHoldWrites || context.channel.isWritable
    }

    /// The descriptor, when this handler may write to it itself now (see `writeDirectly`).
    private func socketIfWritable(_ context: ChannelHandlerContext) -> Int32? {
        guard let socket, context.channel.isActive else { return nil }
        if nioMayHoldWrites {
            guard unsentBytes(context) == 0 else { return nil }
            nioMayHoldWrites = false
        }
        return socket
    }

    /// Sends `buffers` (a response's head, body bytes behind it) and then `bytes` with one
    /// gathered `sendmsg(2)` of our own, under the rules of `writeDirectly` (event loop): a
    /// large body goes from the handler's object to the socket without a copy. Returns how
    /// many bytes the socket took (0: none, or it could not be tried); the caller hands the
    /// rest to NIO.
    func writeDirectly(_ context: ChannelHandlerContext, _ buffers: [ByteBuffer], then bytes: UnsafeRawBufferPointer) -> Int {
        guard let socket = socketIfWritable(context) else { return 0 }
        var vectors: [iovec] = []
        vectors.reserveCapacity(buffers.count + 1)
        // The buffers' storage stays put while they are held here: ByteBuffer hands out
        // its bytes only inside a closure, so each vector is taken from one that nests
        // the next.
        func gather(_ index: Int) -> Int {
            if index == buffers.count {
                if !bytes.isEmpty { vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)) }
                return vectors.withUnsafeMutableBufferPointer { vectors in
                    var message = msghdr()
                    message.msg_iov = vectors.baseAddress
                    message.msg_iovlen = vectors.count
                    return sendmsg(socket, &message, Int32(MSG_NOSIGNAL))
                }
            }
            return buffers[index].withUnsafeReadableBytes { readable in
                if !readable.isEmpty {
                    vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: readable.baseAddress), iov_len: readable.count))
                }
                return gather(index + 1)
            }
        }
        return max(0, gather(0))
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        busyPoll?.noteRead()
        if lingeringHere && lingering.takesRead(context) { return }
        reading = true
        parse(context, unwrapInboundIn(data))
        while let work = afterRead {
            afterRead = nil
            work()
        }
        reading = false
    }

    /// Runs `work` when the read being handled is done, as a task of the loop would run
    /// after it, but without one (a task cost about 4,000 instructions a request). Event
    /// loop; false when no read is being handled (the caller schedules `work` itself).
    func runAfterRead(_ work: @escaping () -> Void) -> Bool {
        guard reading, afterRead == nil else { return false }
        afterRead = work
        return true
    }

    /// Reads the requests' parts out of `buffer` (after what was left of the last read) and
    /// hands each over, or holds it while a response is owed.
    private func parse(_ context: ChannelHandlerContext, _ buffer: ByteBuffer) {
        // Pipelined input held for later holds the reads back too.
        defer { if !heldEvents.isEmpty && !readsHeld { holdReads(context) } }
        var buffer = buffer
        if var earlier = unparsed {
            unparsed = nil
            earlier.writeBuffer(&buffer)
            buffer = earlier
        }
        while true {
            // Refused, malformed or closing: nothing more is read as HTTP.
            if rejecting || inputMalformed || closingAfterResponse { return }
            let part: RequestPart
            do {
                guard let next = try parser.next(&buffer) else { break }
                part = next
            } catch {
                deliver(context, error: error)
                return
            }
            if awaitingResponse || !heldEvents.isEmpty {
                heldEvents.append(.part(part))
            } else {
                handle(context, part)
            }
        }
        if buffer.readableBytes > 0 {
            if buffer.readerIndex > 64 * 1024 { buffer.discardReadBytes() }
            unparsed = buffer
        }
    }

    /// A request that cannot be read: answered now, or after the response in hand.
    private func deliver(_ context: ChannelHandlerContext, error: RequestParseError) {
        unparsed = nil
        if awaitingResponse || !heldEvents.isEmpty {
            heldEvents.append(.error(error))  // about what came after the request in hand
        } else {
            handle(context, error: error)
        }
    }

    private func handle(_ context: ChannelHandlerContext, _ part: consuming RequestPart) {
        if rejecting || inputMalformed || closingAfterResponse { return }
        // Consumed: the head moves into the exchange (a copy retained its strings and arrays).
        switch consume part {
        case .head(var head, let framing, let facts):
            if let current, current.responseEnded, !current.isKeepAlive {
                closingAfterResponse = true  // exchangeFinished closes without a reset
                return
            }
            disarm()
            if head.uri.utf8.count > limits.maxURIBytes {
                return reject(context, head, .uriTooLong, "URI Too Long: at most \(limits.maxURIBytes) bytes")
            }
            if head.headers.count > limits.maxHeaderCount || facts.fieldBytes > limits.maxHeaderBytes {
                return reject(context, head, .requestHeaderFieldsTooLarge,
                              "Request Header Fields Too Large: at most \(limits.maxHeaderCount) fields, \(limits.maxHeaderBytes) bytes")
            }
            if case .length(let length) = framing, length > limits.maxBodyBytes {
                return reject(context, head, .payloadTooLarge, "Payload Too Large: at most \(limits.maxBodyBytes) bytes")
            }
            if let refusal = RequestValidation.check(&head, facts: facts) {
                return reject(context, head, refusal.status, refusal.reason, headers: refusal.headers)
            }
            bodyBytes = 0
            requestsSeen += 1
            let addresses = self.addresses ?? ConnectionAddresses(local: context.channel.localAddress,
                                                                  remote: context.channel.remoteAddress)
            self.addresses = addresses
            let (version, method) = (head.version, head.method)
            let exchange = HTTPExchange(connectionID: connectionID, keepAlive: facts.isKeepAlive(version), head: consume head,
                                        framing: framing, context: context, connection: self,
                                        monitor: exchangeMonitor,
                                        addresses: addresses, limits: limits, trustedProxies: trustedProxies,
                                        headMayBeRewritten: headsMayBeRewritten)
            current = exchange
            if stopping { exchange.disableKeepAlive() }
            if facts.expectsContinue {
                send(context, head: ResponseHead(version: version, status: .continue), method: method, flush: true)
            }
            dispatcher.dispatch(exchange)
        case .body(let buffer):
            if var discarding {
                discarding.budget -= buffer.readableBytes
                self.discarding = discarding
                if discarding.budget < 0 || monotonicSeconds() - discarding.since > limits.lingeringTime {
                    return stopDiscarding(context, keep: false)
                }
                return arm(context, limits.lingeringTimeout)
            }
            bodyBytes += buffer.readableBytes
            guard let current else { return }
            if bodyBytes > limits.maxBodyBytes {
                // A chunked body over the limit: the request cannot be completed.
                if readAheadWaiter != nil {
                    return failReadAhead(current, .payloadTooLarge, "Payload Too Large: at most \(limits.maxBodyBytes) bytes")
                }
                current.bodyFailed("the request body is larger than --max-body (\(limits.maxBodyBytes) bytes)")
                return
            }
            if current.appendBody(buffer) {
                readsPaused = true
                holdReads(context)
            }
            if readAheadWaiter != nil {
                if current.isReadAhead { finishReadAhead(current) } else { deadline = current.bodyDeadline }
            }
        case .end:
            if discarding != nil { return stopDiscarding(context, keep: true) }
            guard let current else { return }
            current.endBody()
            if readAheadWaiter != nil { finishReadAhead(current) }
            if !current.responseEnded { awaitingResponse = true }
        }
    }

    /// Runs `then` once the exchange's read-ahead is complete (now, if it is). Event loop.
    package func afterReadAhead(_ exchange: HTTPExchange, _ then: @escaping () -> Void) {
        guard exchange === current, !exchange.isReadAhead else { return then() }
        readAheadWaiter = then
        exchange.waitForReadAhead()
        deadline = exchange.bodyDeadline
    }

    private func finishReadAhead(_ exchange: HTTPExchange) {
        guard let then = readAheadWaiter else { return }
        readAheadWaiter = nil
        exchange.readAheadDone()
        disarm()
        if !exchange.responseEnded { then() }  // else answered meanwhile (its deadline's 504)
    }

    /// The body failed before the handler was called: the host answers, and the
    /// connection closes (what the client still sends is read and dropped first).
    private func failReadAhead(_ exchange: HTTPExchange, _ status: HTTPResponseStatus, _ text: String) {
        readAheadWaiter = nil
        exchange.readAheadDone()
        disarm()
        exchange.bodyFailed(text)
        exchange.disableKeepAlive()
        exchange.respondOnLoop(status: status, text: text)
    }

    /// Delivers what was held while a response was owed, until the next request in it
    /// owes one again; then reading goes on.
    private func deliverHeld(_ context: ChannelHandlerContext) {
        while !awaitingResponse, !heldEvents.isEmpty {
            switch heldEvents.removeFirst() {
            case .part(let part): handle(context, part)
            case .error(let error): handle(context, error: error)
            case .inputClosed: clientEndedInput(context)
            }
        }
        holdReads(context)
    }

    /// Holds reads back while a request body waits for Python to consume it, and while
    /// pipelined input waits for a response; lets them go on otherwise. Called wherever
    /// either changes.
    private func holdReads(_ context: ChannelHandlerContext) {
        let hold = readsPaused || !heldEvents.isEmpty
        guard hold != readsHeld, let options = context.channel.syncOptions else { return }
        readsHeld = hold
        // Off: NIO stops asking for reads (and drops its read interest); on: it reads again.
        try? options.setOption(ChannelOptions.autoRead, value: !hold)
    }

    func resumeReading(_ context: ChannelHandlerContext) {
        readsPaused = false
        holdReads(context)
    }

    /// A response is out (`close`: the exchange says the connection ends with it). The
    /// connection closes without a reset, reads and drops the rest of an unread body, or
    /// waits for the next request.
    func exchangeFinished(_ exchange: HTTPExchange, context: ChannelHandlerContext, close: Bool) {
        if current === exchange {
            current = nil
            unsentAtArming = nil
            awaitingResponse = false
            if close || !readsOn {
                heldEvents.removeAll()  // nothing after this response is answered
                disarm()
                lingering.begin()
            } else if !exchange.requestComplete {
                discarding = (limits.maxDiscardBytes, monotonicSeconds())
                resumeReading(context)
                arm(context, limits.lingeringTimeout)
            } else {
                resumeReading(context)
                // Our own note of the close, not the channel's state: see `isWritable`.
                if !channelEnded { arm(context, limits.idleTimeout) }
            }
        }
        dispatcher.completed(exchange)
        if current == nil { deliverHeld(context) }
    }

    /// The unread body has been dropped to its end (`keep`), or it ran past the bounds.
    private func stopDiscarding(_ context: ChannelHandlerContext, keep: Bool) {
        discarding = nil
        if keep {
            arm(context, limits.idleTimeout)
        } else {
            disarm()
            lingering.begin()
        }
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        if lingeringHere && lingering.takesReadComplete(context) { return }
        current?.readBurstEnded()
        context.fireChannelReadComplete()
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if lingeringHere && lingering.takesInboundEvent(context, event) { return }
        if case ChannelEvent.inputClosed = event {
            if parser.isMidRequest(buffered: unparsed?.readableBytes ?? 0) && !(rejecting || inputMalformed || closingAfterResponse) {
                deliver(context, error: RequestParseError(.cutShort, "the input ended inside a request"))
            }
            if !heldEvents.isEmpty { return heldEvents.append(.inputClosed) }
            return clientEndedInput(context)
        }
        guard event is StopAfterCurrentRequest else { return context.fireUserInboundEventTriggered(event) }
        stopping = true
        if let current {
            current.disableKeepAlive()
        } else if discarding != nil {
            stopDiscarding(context, keep: false)  // answered; its body still coming: no reset
        } else if requestsSeen > 0 {
            closeAfterPendingWrites(context)  // idle keep-alive
        }
        // A connection that has sent nothing yet gets its first request served (the
        // header time-out still applies).
    }

    package func channelInactive(context: ChannelHandlerContext) {
        channelEnded = true
        if lingeringHere { lingering.connectionEnded() }
        disarm()
        current?.connectionClosed()
        if readAheadWaiter != nil, let current {
            // Gone before its handler was called: the request ends here (logged as 499).
            readAheadWaiter = nil
            current.readAheadDone()
            self.current = nil
            dispatcher.completed(current)
        }
        context.fireChannelInactive()
    }

    /// The client shut down its sending side (RFC 9112 §9.6 allows it after a request):
    /// every complete request it sent still gets its response, then the connection closes.
    /// A body cut short by it fails the handler's reads (the decoder reports it as an error).
    private func clientEndedInput(_ context: ChannelHandlerContext) {
        inputEnded = true
        if readAheadWaiter != nil, let current {
            return failReadAhead(current, .badRequest, "Bad Request: the client closed its side of the connection before sending the whole body")
        }
        if let current {
            current.disableKeepAlive()
            current.bodyFailed("the client closed its side of the connection before sending the whole body")
        } else {
            disarm()
            closeAfterPendingWrites(context)
        }
    }

    /// Closes once what NIO still holds for the client is written: the last small
    /// keep-alive response is not waited for (`HTTPExchange.finish`), and closing drops
    /// what is pending (writes complete in order: an empty one completes after it).
    private func closeAfterPendingWrites(_ context: ChannelHandlerContext) {
        let written = context.eventLoop.makePromise(of: Void.self)
        send(context, head: nil, flush: true, promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    /// An I/O error: the connection is gone.
    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        if lingeringHere && lingering.takesError(context) { return }
        handle(context, error: error)
    }

    /// A parse error, or an I/O error. No input may end the process, and a request gets at
    /// most one response: a malformed request that already went to the extension fails
    /// its body reads and gets the response its handler writes; one that did not gets its
    /// 400 (414, 431) from here. Either way the connection closes.
    private func handle(_ context: ChannelHandlerContext, error: Error) {
        guard let error = error as? RequestParseError else {
            current?.connectionClosed()
            context.close(promise: nil)
            return
        }
        if inputMalformed || rejecting { return }
        inputMalformed = true
        disarm()
        if discarding != nil { return stopDiscarding(context, keep: false) }  // its response is out
        if readAheadWaiter != nil, let current {
            let cutShort = inputEnded || error.kind == .cutShort
            return failReadAhead(current, .badRequest, cutShort
                                 ? "Bad Request: the client closed its side of the connection before sending the whole body"
                                 : "Bad Request: the request body is malformed")
        }
        if let current, !current.responseEnded {
            current.bodyFailed(error.kind == .cutShort
                               ? "the client closed its side of the connection before sending the whole body"
                               : "the request body is malformed: \(error)")
            return
        }
        if current != nil { return }  // its response is on the way; exchangeFinished closes
        rejecting = true
        sendPlain(context, error.status, version: .http1_1, method: .GET, text: error.answer + "\n")
        lingering.begin()
    }
}
