#if canImport(Glibc)
import Glibc
#endif

/// A fixed number of dedicated Python threads taking work from one queue, each with its
/// own long-lived thread state: the next job goes to whichever thread is free.
public final class PythonThreadPool: @unchecked Sendable {
    // @unchecked: the queue is guarded by `monitor`; the rest is set before the threads start.
    public let size: Int
    private let monitor = Monitor()
    private var queue: [() -> Void] = []
    private var head = 0
    private var stopping = false
    private var threads: [pthread_t] = []
    private let interpreter: Interpreter

    public init(interpreter: Interpreter, size: Int, name: String = "python") throws {
        precondition(size > 0)
        self.interpreter = interpreter
        self.size = size
        for index in 0..<size {
            let context = Unmanaged.passRetained(self).toOpaque()
            var handle = pthread_t()
            let status = pthread_create(&handle, nil, { raw in
                let pool = Unmanaged<PythonThreadPool>.fromOpaque(raw!).takeRetainedValue()
                pool.runLoop()
                return nil
            }, context)
            guard status == 0 else {
                Unmanaged<PythonThreadPool>.fromOpaque(context).release()
                stop()
                throw InterpreterError("cannot start Python thread \(name)-\(index): \(String(cString: strerror(status)))")
            }
            threads.append(handle)
        }
    }

    /// Queues `job`; it runs on a pool thread holding the GIL.
    public func submit(_ job: @escaping () -> Void) {
        monitor.locked {
            precondition(!stopping, "work submitted to a stopped Python thread pool")
            queue.append(job)
            monitor.signal()
        }
    }

    /// Lets the queued work finish, then deletes every thread state and joins the threads.
    public func stop() {
        monitor.locked {
            stopping = true
            monitor.broadcast()
        }
        for thread in threads { pthread_join(thread, nil) }
        threads.removeAll()
    }

    private func next() -> (() -> Void)? {
        monitor.locked {
            while head == queue.count && !stopping { monitor.wait() }
            guard head < queue.count else { return nil }
            let job = queue[head]
            head += 1
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            return job
        }
    }

    private func runLoop() {
        let state = interpreter.makeThreadStateForCurrentThread()
        while let job = next() {
            state.withGIL { job() }
        }
        state.delete()
    }
}
