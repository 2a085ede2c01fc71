/// How long a request body may keep the host waiting: `timeout` seconds for each next
/// piece (nginx's client_body_timeout), and in all `timeout` plus a second for every
/// `minimumRate` bytes received (Apache's mod_reqtimeout `MinRate`), so that a client
/// trickling just faster than the time-out still ends.
///
/// Only time the host spends waiting for the client counts: the read-ahead before the
/// handler is called, and the handler's reads that find nothing. A handler that computes
/// (or writes, and a client that waits for that answer before sending more) is not the
/// client's slowness.
struct BodyPace {
    let timeout: Double
    /// Bytes per second; 0: any rate.
    let minimumRate: Int
    /// Body bytes received so far.
    private(set) var received = 0
    /// Seconds of earlier waits.
    private var waited = 0.0
    /// When the current wait began (nil: the host is not waiting for the body).
    private var waitingSince: Double?
    /// The later of the last arrival and the current wait's start.
    private var lastProgress = 0.0

    init(timeout: Double, minimumRate: Int) {
        self.timeout = timeout
        self.minimumRate = minimumRate
    }

    mutating func beginWaiting(now: Double) {
        guard waitingSince == nil else { return }
        waitingSince = now
        lastProgress = now
    }

    mutating func endWaiting(now: Double) {
        guard let since = waitingSince else { return }
        waited += now - since
        waitingSince = nil
    }

    mutating func arrived(_ bytes: Int, now: Double) {
        received += bytes
        if waitingSince != nil { lastProgress = now }
    }

    /// When the body has failed if nothing more arrives before (monotonic seconds);
    /// infinity while the host is not waiting.
    var deadline: Double {
        guard let since = waitingSince else { return .infinity }
        var limit = lastProgress + timeout
        if minimumRate > 0 {
            // waited + (t - since) <= timeout + received / rate
            limit = min(limit, since - waited + timeout + Double(received) / Double(minimumRate))
        }
        return limit
    }

    /// Why the body failed at `now` (at or past `deadline`).
    func failure(now: Double) -> String {
        if now >= lastProgress + timeout {
            return "no request body arrived for \(Int(timeout.rounded())) s (--body-timeout)"
        }
        let spent = waited + now - (waitingSince ?? now)
        let seconds = (spent * 10).rounded() / 10
        return "the request body arrived slower than --body-min-rate (\(minimumRate) bytes/s): \(received) bytes in \(seconds) s of waiting"
    }
}
