import NIOCore
import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// Keeps one event loop polling its sockets for a moment after a read, instead of going
/// to sleep in `epoll_wait` as soon as it has nothing to do.
///
/// A keep-alive client's next request tends to come microseconds after its response
/// left. A loop that slept in between is woken for it by the kernel, and when its CPU had
/// nothing else to run, that CPU went idle too: waking it (on a virtual machine, a halted
/// virtual CPU) costs more than serving the request. With 32 connections on 2 workers and
/// the client on the same 2 cores, the loops slept after every third request and the
/// machine stood idle 15% of the time.
///
/// So after a read the loop goes on polling: a task that queues itself again makes NIO's
/// next `epoll_wait` return at once. A poll that finds no read since the last one yields
/// the CPU (`sched_yield`) to any other thread that wants it, so the loop uses only time
/// nobody else would; once `window` has passed without a read, the task stops and the
/// loop sleeps as before. While reads keep coming the task costs one queued closure per
/// loop tick, no system call.
package final class BusyPoll: @unchecked Sendable {
    // @unchecked: everything but `eventLoop` is touched on the event loop only.
    private let eventLoop: EventLoop
    /// How long, in seconds, the loop polls without a read before it sleeps.
    package let window: Double
    /// Whether the poll task is queued (the loop does not sleep).
    package private(set) var polling = false
    /// How many polls the loop has made (for tests).
    package private(set) var polls = 0
    private var readSinceLastPoll = false
    /// When the polls began to find nothing (0: the last poll found a read).
    private var quietSince = 0.0
    private var stopped = false
    private var pollTask: (() -> Void)?

    package init(eventLoop: EventLoop, window: Double) {
        self.eventLoop = eventLoop
        self.window = window
        pollTask = { [weak self] in self?.poll() }
    }

    /// A read came in on the loop. Event loop.
    @inline(__always)
    package func noteRead() {
        readSinceLastPoll = true
        if !polling && !stopped { schedule() }
    }

    /// Stops polling for good (the host is stopping: a task that keeps queueing itself
    /// would keep NIO's shutdown from draining the loop). Event loop.
    package func stop() {
        stopped = true
    }

    private func schedule() {
        polling = true
        quietSince = 0
        eventLoop.execute(pollTask!)
    }

    private func poll() {
        polls &+= 1
        if stopped {
            polling = false
            return
        }
        if readSinceLastPoll {
            readSinceLastPoll = false
            quietSince = 0
        } else {
            let now = monotonicSeconds()
            if quietSince == 0 {
                quietSince = now
            } else if now - quietSince >= window {
                polling = false
                return
            }
            sched_yield()
        }
        eventLoop.execute(pollTask!)
    }
}
