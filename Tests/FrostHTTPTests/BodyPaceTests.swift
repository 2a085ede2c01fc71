import Testing
@testable import FrostHTTP

/// The body's pace without a socket: the gap between pieces, the minimum rate, and that
/// only the host's waiting counts.
@Suite struct BodyPaceTests {
    @Test func nothingIsDueWhileTheHostIsNotWaiting() {
        var pace = BodyPace(timeout: 30, minimumRate: 500)
        #expect(pace.deadline == .infinity)
        pace.arrived(1000, now: 5)
        #expect(pace.deadline == .infinity)
    }

    @Test func aGapLongerThanTheTimeoutFails() {
        var pace = BodyPace(timeout: 10, minimumRate: 0)
        pace.beginWaiting(now: 100)
        #expect(pace.deadline == 110)
        pace.arrived(1, now: 108)
        #expect(pace.deadline == 118)  // from the last arrival
        #expect(pace.failure(now: 118).contains("--body-timeout"))
    }

    @Test func aTrickleFasterThanTheTimeoutIsCutAtTheMinimumRate() {
        // One byte a second never leaves a 10 s gap; at 100 bytes/s it may take 10 s + 0.01 s per byte.
        var pace = BodyPace(timeout: 10, minimumRate: 100)
        pace.beginWaiting(now: 0)
        var now = 0.0
        while now < pace.deadline {
            now += 1
            if now < pace.deadline { pace.arrived(1, now: now) }
        }
        #expect(now >= 10 && now <= 11, "cut after \(now) s")
        #expect(pace.failure(now: now).contains("--body-min-rate (100 bytes/s)"))
    }

    @Test func bytesReceivedBuyTimeAtTheMinimumRate() {
        var pace = BodyPace(timeout: 2, minimumRate: 1000)
        pace.beginWaiting(now: 0)
        pace.arrived(8000, now: 0.5)
        // 2 s plus 8 s for 8,000 bytes, but never more than the gap after the last piece.
        #expect(pace.deadline == 2.5)
        pace.arrived(1, now: 2)
        #expect(pace.deadline == 4)
        var fast = BodyPace(timeout: 30, minimumRate: 1000)
        fast.beginWaiting(now: 0)
        fast.arrived(1000, now: 1)
        #expect(fast.deadline == 31)  // the total (30 + 1) and the gap (1 + 30) agree
    }

    @Test func timeTheHandlerSpendsElsewhereDoesNotCount() {
        var pace = BodyPace(timeout: 5, minimumRate: 100)
        pace.beginWaiting(now: 0)
        pace.arrived(100, now: 4)  // allowance: 5 + 1 = 6 s of waiting
        pace.endWaiting(now: 4)
        // The handler computes for a minute; the client waits for its answer.
        pace.beginWaiting(now: 64)
        #expect(pace.deadline == 66)  // 2 s of the allowance left
        #expect(pace.failure(now: 66).contains("100 bytes in 6.0 s of waiting"))
    }
}
