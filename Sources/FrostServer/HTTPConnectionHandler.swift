import NIOCore
import NIOHTTP1

/// Receives what every request needs: called on a Python-free path (the event loop).
protocol ExchangeDispatcher: AnyObject, Sendable {
    /// A request's head has arrived; the body follows through the exchange.
    func dispatch(_ exchange: HTTPExchange)
    /// A response has been completely written.
    func completed(_ exchange: HTTPExchange)
}

/// One per connection, on its event loop. The pipelining handler in front of it hands
/// requests over one at a time, in order.
final class HTTPConnectionHandler: ChannelDuplexHandler, @unchecked Sendable {
    // @unchecked: all state is touched on the channel's event loop only.
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let connectionID: Int
    private let dispatcher: ExchangeDispatcher
    private var current: HTTPExchange?
    private var readsPaused = false
    private var readPending = false

    init(connectionID: Int, dispatcher: ExchangeDispatcher) {
        self.connectionID = connectionID
        self.dispatcher = dispatcher
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            let exchange = HTTPExchange(connectionID: connectionID, head: head, context: context, connection: self)
            current = exchange
            if head.headers["expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                let interim = HTTPResponseHead(version: head.version, status: .continue)
                context.writeAndFlush(wrapOutboundOut(.head(interim)), promise: nil)
            }
            dispatcher.dispatch(exchange)
        case .body(let buffer):
            if let current, current.appendBody(buffer) { readsPaused = true }
        case .end:
            current?.endBody()
        }
    }

    /// Holds reads back while a request body waits for Python to consume it.
    func read(context: ChannelHandlerContext) {
        if readsPaused {
            readPending = true
        } else {
            context.read()
        }
    }

    func resumeReading(_ context: ChannelHandlerContext) {
        readsPaused = false
        if readPending {
            readPending = false
            context.read()
        }
    }

    func exchangeFinished(_ exchange: HTTPExchange, context: ChannelHandlerContext) {
        if current === exchange {
            current = nil
            resumeReading(context)
        }
        dispatcher.completed(exchange)
    }

    func channelInactive(context: ChannelHandlerContext) {
        current?.connectionClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        current?.connectionClosed()
        context.close(promise: nil)
    }
}
