#if canImport(Glibc)
import Glibc
#endif

/// A mutex with one condition, for state shared by an event loop and Python threads.
final class Monitor: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    deinit {
        pthread_mutex_destroy(&mutex)
        pthread_cond_destroy(&condition)
    }

    func locked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }

    /// Waits (the mutex held by the caller, inside `locked`) until signalled.
    func wait() { pthread_cond_wait(&condition, &mutex) }

    /// Waits at most until `deadline` (CLOCK_REALTIME); false on time-out.
    func wait(until deadline: timespec) -> Bool {
        var d = deadline
        return pthread_cond_timedwait(&condition, &mutex, &d) == 0
    }

    func broadcast() { pthread_cond_broadcast(&condition) }
}

func deadline(afterSeconds seconds: Double) -> timespec {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    let total = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 + seconds
    return timespec(tv_sec: Int(total), tv_nsec: Int((total - total.rounded(.down)) * 1e9))
}
