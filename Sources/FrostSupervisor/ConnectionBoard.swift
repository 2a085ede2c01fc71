import CProcess
import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// How many connections each worker holds, in memory the master shares with its workers,
/// so that workers accepting from one listening socket spread the connections evenly.
///
/// Without it, the worker that wakes first takes every connection waiting in the backlog
/// (wrk's 32 connections, a proxy's pool), and the others idle while it saturates. With
/// it, a worker that holds more connections than another accepting worker leaves the
/// next connection to that one for a moment (nginx's `accept_mutex` lesson: only a short
/// while, so a busy or stuck neighbour delays nobody for long). The master gives each
/// worker a seat and clears it when the worker ends; a worker writes only its own seat.
public final class ConnectionBoard: @unchecked Sendable {
    // @unchecked: the shared memory is only read and written through relaxed atomics.
    /// Seats for workers alive at once (a generation swap runs two generations together).
    public static let seats: Int32 = 256
    /// The descriptor of the shared memory (the master's, handed to workers; closed in a
    /// worker).
    public let fd: Int32
    private let values: UnsafeMutablePointer<Int32>
    private static var size: Int { Int(seats) * 2 * MemoryLayout<Int32>.size }

    /// A new board (the master).
    public static func create() throws -> ConnectionBoard {
        let fd = frost_memfd_create("frost-connections")
        guard fd >= 0 else { throw SupervisorError(.connectionBoard, subject: "memfd", "cannot create the workers' connection board: \(errnoDescription())") }
        guard ftruncate(fd, off_t(size)) == 0 else {
            let message = errnoDescription()
            close(fd)
            throw SupervisorError(.connectionBoard, subject: "descriptor \(fd)", "cannot size the workers' connection board: \(message)")
        }
        // Above the descriptors a worker gets at 3, 4, … (see ListenSockets.moveHigh).
        return try ConnectionBoard(fd: ListenSockets.moveHigh(fd))
    }

    /// The board behind `fd` (a worker, with the descriptor the master handed over: it
    /// closes it once mapped, so no child of the application inherits it).
    public convenience init(mapping fd: Int32) throws {
        try self.init(fd: fd)
        close(fd)
    }

    private init(fd: Int32) throws {
        let memory = mmap(nil, ConnectionBoard.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let memory, memory != MAP_FAILED else {
            throw SupervisorError(.connectionBoard, subject: "descriptor \(fd)", "cannot map the workers' connection board (descriptor \(fd)): \(errnoDescription())")
        }
        self.fd = fd
        self.values = memory.bindMemory(to: Int32.self, capacity: Int(ConnectionBoard.seats) * 2)
    }

    /// Empties a seat (a worker starts or has ended). Master.
    public func clear(seat: Int32) {
        guard (0..<ConnectionBoard.seats).contains(seat) else { return }
        frost_shared_store(values + Int(seat) * 2, 0)
        frost_shared_store(values + Int(seat) * 2 + 1, 0)
    }

    /// One worker's seat.
    public struct Seat: Sendable {
        public let board: ConnectionBoard
        public let index: Int32

        public init(board: ConnectionBoard, index: Int32) {
            self.board = board
            self.index = index
        }

        /// Publishes how many connections this worker holds.
        public func setConnections(_ count: Int) {
            frost_shared_store(board.values + Int(index) * 2, Int32(clamping: count))
        }

        /// Whether this worker accepts connections now (false once it stops).
        public func setAccepting(_ accepting: Bool) {
            frost_shared_store(board.values + Int(index) * 2 + 1, accepting ? 1 : 0)
        }

        /// Whether another accepting worker holds fewer connections than this one.
        public func anotherHoldsFewer() -> Bool {
            let mine = frost_shared_load(board.values + Int(index) * 2)
            for seat in 0..<Int(ConnectionBoard.seats) where seat != Int(index) {
                if frost_shared_load(board.values + seat * 2 + 1) == 1 && frost_shared_load(board.values + seat * 2) < mine {
                    return true
                }
            }
            return false
        }
    }
}
