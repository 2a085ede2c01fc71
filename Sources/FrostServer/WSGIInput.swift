import FrostPython
import NIOCore

/// `wsgi.input` of a request `ServeWSGI` serves: isapi.wsgi's `ISAPIInputWrapper`
/// natively (read, readline, readlines, iteration), reading the body as the application
/// asks. The Python wrapper cost an instance, its `__init__` frame and their release,
/// about 1,900 instructions a request (callgrind), for a stream most applications never
/// touch: these objects are kept and used again by the next request when nothing else
/// holds them (`take`, `giveBack`). Touched with the GIL held.
final class WSGIInput {
    /// The request's control block; nil once the request has ended.
    private var block: ControlBlock?
    /// What was read from the body and not yet by the application: `pending[position...]`
    /// (a read takes its bytes by moving `position`, not by copying the rest).
    private var pending: [UInt8] = []
    private var position = 0
    private var started = false
    /// The body's end has been read.
    private var ended = false

    private init() {}

    /// Objects of finished requests that nothing else held (GIL held).
    nonisolated(unsafe) private static var spares = SpareObjects<(object: PythonObject, input: WSGIInput)>()

    /// A wsgi.input for `block`'s request: a spare one, or a new one.
    static func take(for block: ControlBlock) throws -> (object: PythonObject, input: WSGIInput) {
        let taken = try spares.take {
            let input = WSGIInput()
            return (try type.wrap(input), input)
        }
        taken.input.block = block
        return taken
    }

    /// Ends the stream's request. It is kept for another when `object` is the only
    /// reference left (the application did not keep it, nor the environ holding it).
    static func giveBack(_ taken: (object: PythonObject, input: WSGIInput)) {
        let input = taken.input
        input.block = nil
        input.pending.removeAll()
        (input.position, input.started, input.ended) = (0, false, false)
        spares.giveBack(taken, free: taken.object.referenceCount == 1)
    }

    private var unread: Int { pending.count - position }

    /// At least `wanted` unread bytes, or all that is left of the body. Not `whole`: what
    /// has arrived will do (a line is looked for in it). Reads wait without the GIL.
    private func fill(_ wanted: Int, whole: Bool) throws {
        guard let block else { throw PythonError.raise(.valueError, "wsgi.input of a request that has ended") }
        if !started {
            // Nothing is asked of the body until the application reads; then first what the
            // host read ahead (AvailableData).
            started = true
            pending = block.preloaded
        }
        while unread < wanted && !ended {
            // What is missing, so that nothing is left over to copy at the next read; a
            // small read asks for 64 KiB, for the small reads after it.
            let missing = wanted - unread
            let size = missing >= 8192 ? missing : 65536
            let parts = try block.readBodyParts("wsgi.input") { try block.exchange.readBodyParts(maximum: size) }
            if parts.isEmpty {
                ended = true
                break
            }
            if position > 0 {
                pending.removeFirst(position)
                position = 0
            }
            for part in parts { pending.append(contentsOf: part.readableBytesView) }
            if !whole { break }  // a line may be in it: no waiting for more
        }
    }

    /// The next `count` unread bytes (fewer at the end) as a bytes object.
    private func take(_ count: Int) throws -> PythonObject {
        let end = position + min(count, unread)
        let bytes = try pending.withUnsafeBytes { source in
            try PythonObject.bytes(count: end - position) {
                $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[position..<end]))
            }
        }
        position = end
        if position == pending.count {
            pending.removeAll(keepingCapacity: true)
            position = 0
        }
        return bytes
    }

    /// `read(size=-1)`: `size` bytes, waiting for them as a file's read does, or all that
    /// is left of the body (fewer at its end; all of it for a negative size).
    func read(_ size: Int) throws -> PythonObject {
        let wanted = size < 0 ? Int.max : size
        try fill(0, whole: false)
        guard size >= 0, unread < size, !ended, let block else {
            try fill(wanted, whole: true)
            return try take(wanted)
        }
        // What is missing goes from the buffers the body arrived in straight into the
        // bytes object (one copy, not two through `pending`): an upload is read this way.
        var parts: [ByteBuffer] = []
        var count = unread
        do {
            while count < size {
                let more = try block.readBodyParts("wsgi.input") { try block.exchange.readBodyParts(maximum: size - count) }
                if more.isEmpty {
                    ended = true
                    break
                }
                for part in more { count += part.readableBytes }
                parts += more
            }
        } catch {
            // Nothing read is lost: a later read gets it.
            for part in parts { pending.append(contentsOf: part.readableBytesView) }
            throw error
        }
        let bytes = try PythonObject.bytes(count: count) { destination in
            pending.withUnsafeBytes { source in
                destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[position...]))
            }
            block.copy(parts, into: destination, at: unread)
        }
        pending.removeAll(keepingCapacity: true)
        position = 0
        return bytes
    }

    /// `readline(size=-1)`: up to and with the next newline, as soon as it has arrived; at
    /// most `size` bytes when it is not negative; empty at the end.
    func readline(_ size: Int) throws -> PythonObject {
        try fill(0, whole: false)
        let limit = size < 0 ? Int.max : size
        var searched = 0
        while true {
            if let newline = pending[(position + searched)...].firstIndex(of: 10) {
                return try take(min(newline + 1 - position, limit))
            }
            searched = unread
            if ended || searched >= limit { return try take(min(searched, limit)) }
            try fill(searched + 8192, whole: false)
        }
    }

    /// `readlines(hint=-1)`: the lines left, or those that reach `hint` bytes in all.
    func readlines(_ hint: Int) throws -> PythonObject {
        var lines: [PythonObject] = []
        var total = 0
        while true {
            let line = try readline(-1)
            let count = line.byteCount ?? 0
            if count == 0 { break }
            lines.append(line)
            total += count
            if hint > 0 && total >= hint { break }
        }
        return try PythonObject.list(lines)
    }

    /// The next line, nil at the end (iteration).
    func nextLine() throws -> PythonObject? {
        let line = try readline(-1)
        return line.byteCount == 0 ? nil : line
    }

    static let type: NativeType<WSGIInput> = {
        let type = NativeType<WSGIInput>("_isapi.WSGIInput", doc: "wsgi.input: the request body, read as the application asks.")
        /// An optional size argument; None or absent is -1.
        func size(_ arguments: NativeArguments, _ name: String) throws -> Int {
            guard let value = arguments.optionalBorrowed(0, name), !value.isNone else { return -1 }
            return try value.asInt()
        }
        type.method("read") { input, arguments in try input.read(try size(arguments, "size")) }
        type.method("readline") { input, arguments in try input.readline(try size(arguments, "size")) }
        type.method("readlines") { input, arguments in try input.readlines(try size(arguments, "hint")) }
        type.iterator { input in try input.nextLine() }
        type.describe = { input in input.block.map { "<wsgi.input of \($0.head.method.rawValue) \($0.head.uri)>" } ?? "<wsgi.input>" }
        return type
    }()
}
