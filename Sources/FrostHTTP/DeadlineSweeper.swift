import NIOCore
import FrostSystem

/// Checks the time-outs of one event loop's connections a few times a second.
///
/// A time-out per connection and per request as a scheduled task costs a task allocation
/// and two heap operations on the loop's timer queue for every request (about a tenth of
/// a fast request's time, measured). Instead each connection keeps its deadlines as plain
/// times, and this one repeating task per loop looks at them every `interval` seconds:
/// a time-out fires up to `interval` late, which is why the interval follows the smallest
/// configured time-out.
package final class DeadlineSweeper: @unchecked Sendable {
    // @unchecked: `connections` is touched on `eventLoop` only.
    private let eventLoop: EventLoop
    private var connections: [ObjectIdentifier: (HTTPConnectionHandler, ChannelHandlerContext)] = [:]
    private var task: RepeatedTask?

    package init(eventLoop: EventLoop, interval: Double) {
        self.eventLoop = eventLoop
        let delay = TimeAmount.milliseconds(Int64(interval * 1000))
        task = eventLoop.scheduleRepeatedTask(initialDelay: delay, delay: delay) { [weak self] _ in self?.sweep() }
    }

    /// A quarter of the smallest time-out, between 50 ms and 1 s.
    package static func interval(for limits: HostLimits) -> Double {
        let smallest = [limits.headerTimeout, limits.idleTimeout, limits.lingeringTimeout, limits.requestTimeout].min() ?? 1
        return min(1, max(0.05, smallest / 4))
    }

    func register(_ handler: HTTPConnectionHandler, _ context: ChannelHandlerContext) {
        connections[ObjectIdentifier(handler)] = (handler, context)
    }

    func unregister(_ handler: HTTPConnectionHandler) {
        connections.removeValue(forKey: ObjectIdentifier(handler))
    }

    private func sweep() {
        guard !connections.isEmpty else { return }
        let now = monotonicSeconds()
        for (handler, context) in connections.values { handler.sweep(context, now: now) }
    }
}
