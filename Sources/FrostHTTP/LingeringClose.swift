import NIOCore

/// The first handler of every connection: closes it the way nginx's lingering close does.
///
/// Closing a socket that still has unread bytes from the client makes the kernel send a
/// reset, and a reset can destroy a response the client has not read yet (or fail the
/// client's next write before it reads). So once the connection is to close after a
/// response, `begin` shuts down our sending side (the client sees the end of the
/// response) and from then on reads and drops everything the client still sends, until
/// the client closes its side, it stays silent for `timeout`, or `time` has passed.
///
/// Inbound only: NIO passes a connection's writes, flushes and reads by the handlers that
/// do not handle outbound events, and every response would otherwise pass through here.
/// On a connection without a filter it is not in the pipeline at all: the connection
/// handler passes it its events (`takesRead` and the others), and every read passes one
/// handler fewer (about 250 instructions a request).
package final class LingeringClose: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: all state is touched on the channel's event loop only.
    package typealias InboundIn = ByteBuffer
    package typealias InboundOut = ByteBuffer

    private let time: Double
    private let timeout: Double
    private var context: ChannelHandlerContext?
    private var lingering = false
    private var totalTimer: Scheduled<Void>?
    private var silenceTimer: Scheduled<Void>?

    package init(time: Double, timeout: Double) {
        self.time = time
        self.timeout = timeout
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// Whether the connection is on its way out.
    var isLingering: Bool { lingering }

    /// Shuts down the sending side once what was written so far is out, then drops input
    /// until the client is done; the connection closes then (or at the bounds).
    package func begin() {
        guard !lingering, let context else { return }
        lingering = true
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.flush()
        context.close(mode: .output).whenFailure { _ in bound.value.close(promise: nil) }  // no half-close: plain close
        totalTimer = context.eventLoop.scheduleTask(in: .milliseconds(Int64(time * 1000))) {
            bound.value.close(promise: nil)
        }
        armSilenceTimer(context)
        context.read()
    }

    private func armSilenceTimer(_ context: ChannelHandlerContext) {
        silenceTimer?.cancel()
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        silenceTimer = context.eventLoop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) {
            bound.value.close(promise: nil)
        }
    }

    /// Takes a read while lingering (its bytes are dropped); false when not lingering.
    func takesRead(_ context: ChannelHandlerContext) -> Bool {
        guard lingering else { return false }
        armSilenceTimer(context)
        return true
    }

    /// The end of a read while lingering: reading goes on (the connection handler may hold
    /// reads back; nothing reaches it now).
    func takesReadComplete(_ context: ChannelHandlerContext) -> Bool {
        guard lingering else { return false }
        context.read()
        return true
    }

    /// While lingering, the client's end of its input closes the connection.
    func takesInboundEvent(_ context: ChannelHandlerContext, _ event: Any) -> Bool {
        guard lingering, case ChannelEvent.inputClosed = event else { return false }
        context.close(promise: nil)
        return true
    }

    /// While lingering, an error closes the connection.
    func takesError(_ context: ChannelHandlerContext) -> Bool {
        guard lingering else { return false }
        context.close(promise: nil)
        return true
    }

    /// The connection is closed: the bounds' timers go.
    func connectionEnded() {
        totalTimer?.cancel()
        silenceTimer?.cancel()
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !takesRead(context) { context.fireChannelRead(data) }
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        if !takesReadComplete(context) { context.fireChannelReadComplete() }
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if !takesInboundEvent(context, event) { context.fireUserInboundEventTriggered(event) }
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        if !takesError(context) { context.fireErrorCaught(error) }
    }

    package func channelInactive(context: ChannelHandlerContext) {
        connectionEnded()
        context.fireChannelInactive()
    }
}
