#if canImport(Glibc)
import Glibc
#endif

/// A mutex with one condition: the one synchronisation primitive of the Python threads
/// and of the host (state shared by an event loop and Python threads). The pthread
/// objects live in their own allocation: a class's stored property has no address
/// pthread may rely on.
public final class Monitor: @unchecked Sendable {
    @usableFromInline let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        // Adaptive: a thread that finds the mutex taken spins briefly before sleeping. The
        // critical sections here are a few instructions long, and an event loop put to
        // sleep on one (a futex wait, a context switch) costs more than the request.
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Monitor.adaptiveMutex)
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
        pthread_cond_init(condition, nil)
    }

    /// PTHREAD_MUTEX_ADAPTIVE_NP (a GNU extension Swift's Glibc module does not export).
    private static let adaptiveMutex: Int32 = 3

    deinit {
        pthread_mutex_destroy(mutex)
        pthread_cond_destroy(condition)
        mutex.deallocate()
        condition.deallocate()
    }

    // Inlinable: a generic call with a closure across the module boundary cost more than
    // the lock itself, on the request path that takes it a dozen times (callgrind).
    @inlinable
    public func locked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Runs `body` with the mutex released (the caller holds it, inside `locked`).
    @inlinable
    public func unlocked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_unlock(mutex)
        defer { pthread_mutex_lock(mutex) }
        return try body()
    }

    /// Waits (the mutex held by the caller, inside `locked`) until signalled.
    public func wait() { pthread_cond_wait(condition, mutex) }

    /// Waits at most until `deadline` (CLOCK_REALTIME); false on time-out.
    public func wait(until deadline: timespec) -> Bool {
        var d = deadline
        return pthread_cond_timedwait(condition, mutex, &d) == 0
    }

    /// Wakes every waiter. Called with the mutex held, or after releasing it once the state
    /// waited for is changed (the waiters then do not wake only to block on the mutex).
    public func broadcast() { pthread_cond_broadcast(condition) }

    /// Wakes one waiter (the caller holds the mutex).
    public func signal() { pthread_cond_signal(condition) }

    /// A further condition on this monitor's mutex, for waking one chosen waiter.
    public final class Condition: @unchecked Sendable {
        private let monitor: Monitor
        private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

        public init(_ monitor: Monitor) {
            self.monitor = monitor
            pthread_cond_init(condition, nil)
        }

        deinit {
            pthread_cond_destroy(condition)
            condition.deallocate()
        }

        /// Waits (the monitor's mutex held, inside `locked`) until signalled.
        public func wait() { pthread_cond_wait(condition, monitor.mutex) }

        /// Wakes the waiter. The caller may hold the monitor's mutex or not: signalling
        /// after releasing it spares the waiter waking only to block on the mutex, as long
        /// as the waiter's predicate was set under the mutex.
        public func signal() { pthread_cond_signal(condition) }
    }
}
