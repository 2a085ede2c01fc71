@preconcurrency import CPython
import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// A long-lived Python thread state bound to one OS thread.
///
/// Taking the GIL through it costs well under a microsecond, against about 11 µs for
/// `PyGILState_Ensure` per call. It must only be used on the thread it belongs to.
public final class PythonThreadState: @unchecked Sendable {
    // @unchecked: confined to its owner thread, which `withGIL` checks.
    let state: OpaquePointer
    let owner: pthread_t
    private let owned: Bool
    private var deleted = false

    init(adopting state: OpaquePointer, owned: Bool = false) {
        self.state = state
        self.owner = pthread_self()
        self.owned = owned
        // The GIL check compares with this state directly from now on, as long as it is the
        // one libpython binds to this thread (what it would look up); until `delete()`.
        if PyGILState_GetThisThreadState() == state { frost_set_own_thread_state(state) }
    }

    /// Runs `body` holding the GIL. Nested calls on the same thread just run `body`.
    public func withGIL<R>(_ body: () throws -> R) rethrows -> R {
        precondition(pthread_equal(owner, pthread_self()) != 0, "a Python thread state used on a foreign thread")
        precondition(!deleted, "a deleted Python thread state was used")
        if frost_gil_held_by_this_thread() != 0 { return try body() }
        PyEval_RestoreThread(state)
        defer { _ = PyEval_SaveThread() }
        return try body()
    }

    /// Runs `body` with the GIL released (for blocking work inside a Python call), then
    /// takes it back.
    public func withoutGIL<R>(_ body: () throws -> R) rethrows -> R {
        precondition(frost_gil_held_by_this_thread() != 0, "withoutGIL needs the GIL held")
        let saved = PyEval_SaveThread()
        defer { PyEval_RestoreThread(saved) }
        return try body()
    }

    func acquire() {
        if frost_gil_held_by_this_thread() == 0 { PyEval_RestoreThread(state) }
    }

    /// Deletes a thread state made by `makeThreadStateForCurrentThread`.
    public func delete() {
        guard owned, !deleted, Py_IsInitialized() != 0 else { return }
        precondition(pthread_equal(owner, pthread_self()) != 0, "a Python thread state deleted on a foreign thread")
        deleted = true
        if frost_gil_held_by_this_thread() == 0 { PyEval_RestoreThread(state) }
        frost_set_own_thread_state(nil)
        PyThreadState_Clear(state)
        PyThreadState_DeleteCurrent()  // also releases the GIL
    }
}

/// A dedicated OS thread that runs Python work, with one thread state for its life.
///
/// Work comes in as closures; each runs holding the GIL. Python never runs on the NIO
/// event loop or in Swift's cooperative pool: callers hand it to one of these. It is a
/// `PythonThreadPool` of one thread, plus `perform`, which waits for the result.
public final class PythonThread: @unchecked Sendable {
    // @unchecked: immutable; the pool synchronises itself.
    public let name: String
    private let pool: PythonThreadPool

    public init(interpreter: Interpreter, name: String) throws {
        self.name = name
        self.pool = try PythonThreadPool(interpreter: interpreter, size: 1, name: name)
    }

    /// Runs `body` on this thread with the GIL held and returns its result; the caller
    /// waits. Must not be called from this thread itself.
    public func perform<R>(_ body: @escaping () throws -> R) throws -> R {
        let box = ResultBox<R>()
        pool.submit {
            do { box.result = .success(try body()) } catch { box.result = .failure(error) }
            box.signal()
        }
        return try box.wait().get()
    }

    /// Queues `body` to run with the GIL held, without waiting for it.
    public func submit(_ body: @escaping () -> Void) {
        pool.submit(body)
    }

    /// Finishes the queued work, deletes the thread state and joins the thread.
    public func stop() {
        pool.stop()
    }
}

/// A one-shot result handed from a Python thread to a waiting caller.
final class ResultBox<R>: @unchecked Sendable {
    // @unchecked: `result` is written before `signal` and read after `wait`.
    var result: Result<R, Error>?
    private let monitor = Monitor()
    private var done = false

    func signal() {
        monitor.locked {
            done = true
            monitor.broadcast()
        }
    }

    func wait() -> Result<R, Error> {
        monitor.locked { while !done { monitor.wait() } }
        return result!
    }
}
