#if canImport(Glibc)
import Glibc
#endif

/// A mutex with one condition: the one synchronisation primitive of the Python threads
/// and of the host (state shared by an event loop and Python threads).
public final class Monitor: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()

    public init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    deinit {
        pthread_mutex_destroy(&mutex)
        pthread_cond_destroy(&condition)
    }

    public func locked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }

    /// Runs `body` with the mutex released (the caller holds it, inside `locked`).
    public func unlocked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_unlock(&mutex)
        defer { pthread_mutex_lock(&mutex) }
        return try body()
    }

    /// Waits (the mutex held by the caller, inside `locked`) until signalled.
    public func wait() { pthread_cond_wait(&condition, &mutex) }

    /// Waits at most until `deadline` (CLOCK_REALTIME); false on time-out.
    public func wait(until deadline: timespec) -> Bool {
        var d = deadline
        return pthread_cond_timedwait(&condition, &mutex, &d) == 0
    }

    /// Wakes every waiter (the caller holds the mutex).
    public func broadcast() { pthread_cond_broadcast(&condition) }

    /// Wakes one waiter (the caller holds the mutex).
    public func signal() { pthread_cond_signal(&condition) }
}

/// Seconds on the monotonic clock (for intervals; not a time of day). The one copy of
/// it for the loader's modules.
public func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// The CLOCK_REALTIME time `seconds` from now, for `Monitor.wait(until:)`.
public func deadline(afterSeconds seconds: Double) -> timespec {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    let total = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 + seconds
    return timespec(tv_sec: Int(total), tv_nsec: Int((total - total.rounded(.down)) * 1e9))
}
