import Testing
import NIOCore
import NIOPosix
import Glibc
@testable import FrostHTTP

/// An event loop's poll after reads, on a real NIO loop: it polls after a read, sleeps
/// once the window has passed without one, and stops for good when told.
@Suite struct BusyPollTests {
    @Test func theLoopPollsAfterAReadAndSleepsOnceTheWindowHasPassed() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let poll = BusyPoll(eventLoop: loop, window: 0.005)
        #expect(try loop.submit { poll.noteRead(); return poll.polling }.wait())
        usleep(300_000)  // far past the 5 ms window, even on a loaded machine
        let (pollingAfter, pollsAfter) = try loop.submit { (poll.polling, poll.polls) }.wait()
        #expect(!pollingAfter)
        #expect(pollsAfter > 2, "it polled again and again before sleeping: \(pollsAfter)")
        // Asleep: nothing polls while no read comes.
        usleep(100_000)
        #expect(try loop.submit { poll.polls }.wait() == pollsAfter)
        // A new read wakes the poll again.
        #expect(try loop.submit { poll.noteRead(); return poll.polling }.wait())
    }

    @Test func withinTheWindowTheLoopNeverSleeps() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let poll = BusyPoll(eventLoop: loop, window: 10)
        try loop.submit { poll.noteRead() }.wait()
        usleep(50_000)
        // Within the window the loop never slept: the same poll task is still going.
        let (polling, polls) = try loop.submit { (poll.polling, poll.polls) }.wait()
        #expect(polling && polls > 2)
        try loop.submit { poll.stop() }.wait()
    }

    @Test func aStoppedPollEndsAndNeverStartsAgainSoTheLoopShutsDown() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        // A window far longer than the test: only stop() ends this poll.
        let poll = BusyPoll(eventLoop: loop, window: 3600)
        try loop.submit { poll.noteRead() }.wait()
        try loop.submit { poll.stop() }.wait()
        usleep(20_000)
        #expect(try loop.submit { poll.noteRead(); return poll.polling }.wait() == false)
        // NIO drains a loop's tasks at shutdown: a poll still queueing itself would never let it.
        try group.syncShutdownGracefully()
    }
}
