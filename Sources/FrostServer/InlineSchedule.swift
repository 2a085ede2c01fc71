import FrostSystem

/// Where an event loop's requests run their handler: on the loop itself, or on the
/// Python threads. Learned per URL path, one schedule per loop (touched only there).
///
/// Handing a request to a Python thread and its response back costs two thread switches,
/// more than a fast handler itself: a handler known to finish quickly runs on the loop
/// that read its request, holding the GIL there, and its response leaves without a hop.
/// While it runs, the loop's other connections wait, so only handlers that have shown
/// they are fast run there:
/// - a path's first requests run on the Python threads, where their time is measured;
///   one that took under the budget (2 ms, `--inline-budget`) and did not wait for the
///   client makes the path inline;
/// - a path whose handler took longer or waited (for more body, for a slow client, for a
///   child request) runs on the Python threads for `hold` (10 s), then is measured there
///   again; the hold doubles each time the path's handler was slow on the loop (up to an
///   hour);
/// - once a path is inline, its calls that still run on the Python threads (queued
///   before, or while another loop ran a handler) wait for the GIL behind the loop's
///   handlers: only a wait for the client or a stall holds the path;
/// - a call on the loop over the budget may only have been preempted (the time is wall
///   time: these machines run more threads than cores, and a virtual machine's CPU can
///   be taken away for milliseconds): one such call is forgiven, and the path's next call
///   over the budget in a row sends it to be measured on the Python threads again. One
///   that took `stall` (0.1 s, or the budget if longer) or more, or waited, made the loop's
///   other connections wait: the path is held at once, and the host logs it.
/// Paths share 256 slots by hash: two paths in one slot count as one.
final class InlineSchedule {
    /// The longest a handler may take to be run on the loop.
    let budget: Double
    /// A call on the loop this long is no preemption: the path is held without a retry.
    let stall: Double
    /// How long a slow path runs on the Python threads before it is measured again.
    static let hold = 10.0
    static let slotCount = 256

    /// Per slot: 0 not known (run on the Python threads, measured), -1 inline, or the
    /// time (monotonic seconds) until which the slot's paths run on the Python threads.
    private var state = [Double](repeating: 0, count: InlineSchedule.slotCount)
    /// Per slot: how many times its handler stalled the loop (the hold's doubling).
    private var strikes = [UInt8](repeating: 0, count: InlineSchedule.slotCount)
    /// Per slot: its last call on the loop ran over the budget (without stalling it).
    private var overBudget = [Bool](repeating: false, count: InlineSchedule.slotCount)

    init(budget: Double) {
        self.budget = budget
        self.stall = max(0.1, budget)
    }

    /// The slot of a request target's path (FNV-1a of its bytes up to the query).
    static func slot(of uri: String) -> Int {
        var hash: UInt32 = 2_166_136_261
        for byte in uri.utf8 {
            if byte == UInt8(ascii: "?") { break }
            hash = (hash ^ UInt32(byte)) &* 16_777_619
        }
        return Int(hash % UInt32(slotCount))
    }

    /// Whether the handler for `slot`'s paths runs on the loop.
    func runsInline(_ slot: Int) -> Bool { state[slot] == -1 }

    /// Learns from a handler's call: `seconds` it took, whether it `waited` for the client,
    /// and where it ran (`now`: the monotonic clock). Returns the hold when the call
    /// stalled the loop (for the log).
    func learn(_ slot: Int, seconds: Double, waited: Bool, onEventLoop: Bool, now: Double = monotonicSeconds()) -> Double? {
        let fast = seconds < budget && !waited
        if onEventLoop {
            let forgiven = overBudget[slot]
            overBudget[slot] = false
            if fast { return nil }
            guard waited || seconds >= stall else {
                if forgiven {
                    state[slot] = 0  // measured again on the Python threads
                } else {
                    overBudget[slot] = true
                }
                return nil
            }
            strikes[slot] = min(strikes[slot] &+ 1, 9)
            return holdSlot(slot, now: now)
        }
        if fast {
            // Inline, unless a hold is still running (other calls were slow).
            if state[slot] == 0 || (state[slot] > 0 && now >= state[slot]) { state[slot] = -1 }
            return nil
        }
        if state[slot] == -1 && !waited && seconds < stall {
            // An inline path's call that ran on a Python thread (queued while the path was
            // being measured, or while another loop ran a handler) competed for the GIL
            // with the loop's handlers: its time is partly theirs. The loop's calls decide.
            return nil
        }
        _ = holdSlot(slot, now: now)
        return nil
    }

    private func holdSlot(_ slot: Int, now: Double) -> Double {
        let hold = min(InlineSchedule.hold * Double(1 << Int(strikes[slot])), 3600)
        state[slot] = now + hold
        return hold
    }
}
