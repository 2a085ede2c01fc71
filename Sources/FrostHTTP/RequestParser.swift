import NIOCore
import NIOHTTP1
#if canImport(Glibc)
import Glibc
#endif

/// Why a request could not be read: the status the host answers with, and a reason that
/// tells the client what was wrong.
package struct RequestParseError: Error, CustomStringConvertible, Sendable, Equatable {
    package enum Kind: Sendable {
        /// Not HTTP/1 as RFC 9112 writes it (or an ambiguity a smuggling attack could use).
        case malformed
        /// The client ended its input in the middle of a request.
        case cutShort
        /// The request line, or the whole head, is past what the host buffers for one.
        case uriTooLong, headTooLarge
    }

    package let kind: Kind
    package let reason: String

    init(_ kind: Kind, _ reason: String) {
        self.kind = kind
        self.reason = reason
    }

    static func malformed(_ reason: String) -> RequestParseError { RequestParseError(.malformed, reason) }

    /// The status of the host's answer.
    package var status: HTTPResponseStatus {
        switch kind {
        case .malformed, .cutShort: .badRequest
        case .uriTooLong: .uriTooLong
        case .headTooLarge: .requestHeaderFieldsTooLarge
        }
    }

    /// The answer's text.
    package var answer: String {
        switch kind {
        case .malformed: "Bad Request: " + reason
        case .cutShort: "Bad Request: the client closed its side of the connection before sending the whole request"
        case .uriTooLong: "URI Too Long: " + reason
        case .headTooLarge: "Request Header Fields Too Large: " + reason
        }
    }

    package var description: String { reason }
}

/// A part of a request, as `RequestParser` reads it.
package enum RequestPart: Equatable, Sendable {
    /// A head, how its body is framed on the wire, and what the parser saw of its fields.
    case head(RequestHead, RequestFraming, HeadFacts)
    /// Body bytes: a slice of the buffer they arrived in.
    case body(ByteBuffer)
    case end
}

/// How a request's body is framed on the wire: no body, Content-Length, or chunked.
package enum RequestFraming: Equatable, Sendable { case none, length(Int), chunked }

/// What the parser saw of a head's fields in its one pass over them, so that the checks
/// and the keep-alive decision after it do not look through them again.
package struct HeadFacts: Equatable, Sendable {
    /// How many Host fields.
    package var hostFields = 0
    /// Whether there is a Transfer-Encoding field.
    package var transferEncoding = false
    /// Bytes of the fields as they came (name, value and 4 for each), which the limits count.
    package var fieldBytes = 0
    /// An `Expect: 100-continue` field: the client waits for a 100 before its body.
    package var expectsContinue = false
    /// How many Connection tokens were `close` or `keep-alive`, and whether one was
    /// `keep-alive` (all `isKeepAlive` needs).
    var connectionTokens = 0, keepAliveSeen = false

    package init() {}

    /// The facts of `headers`, for a head that did not come from the parser.
    package init(_ headers: RequestFields) {
        headers.forEachField { _, name, value in note(name: name, value: value) }
    }

    mutating func note(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        fieldBytes += name.count + value.count + 4
        switch name.count {
        case 4 where equalsIgnoringASCIICase(bytes: name, "host"): hostFields += 1
        case 17 where equalsIgnoringASCIICase(bytes: name, "transfer-encoding"): transferEncoding = true
        case 6 where equalsIgnoringASCIICase(bytes: name, "expect"):
            expectsContinue = expectsContinue || equalsIgnoringASCIICase(bytes: value, "100-continue")
        case 10 where equalsIgnoringASCIICase(bytes: name, "connection"):
            for token in value.split(separator: UInt8(ascii: ",")) {
                let word = UnsafeRawBufferPointer(rebasing: trimmingBlanks(bytes: token))
                if equalsIgnoringASCIICase(bytes: word, "close") {
                    connectionTokens += 1
                } else if equalsIgnoringASCIICase(bytes: word, "keep-alive") {
                    keepAliveSeen = true
                    connectionTokens += 1
                }
            }
        default: break
        }
    }

    /// Whether the connection stays open after the response, as NIO's `isKeepAlive` has
    /// it: `close` closes, `keep-alive` alone keeps it, more than one of them closes;
    /// without them HTTP/1.1 keeps it and HTTP/1.0 closes.
    package func isKeepAlive(_ version: HTTPVersion) -> Bool {
        switch connectionTokens {
        case 0: version.major == 1 && version.minor >= 1
        case 1: keepAliveSeen
        default: false
        }
    }
}

/// Reads HTTP/1 requests (RFC 9112) out of a connection's bytes: heads, bodies framed by
/// Content-Length or chunked, pipelined requests one after another. One per connection,
/// on its event loop.
///
/// It replaces NIO's `HTTPRequestDecoder` (llhttp behind `ByteToMessageHandler`), which
/// called back into Swift for every token of the head and passed each request through two
/// more pipeline steps: about a fifth of a keep-alive request's instructions. Here a head
/// is found with one scan for its end (resumed, not restarted, as bytes trickle in) and
/// parsed in one pass once complete; body bytes are slices of the buffer they came in.
///
/// It is strict where leniency lets two parsers disagree about where a request ends
/// (request smuggling): CRLF line endings only, no obs-fold, no whitespace before a
/// field's colon, one Content-Length of digits only, never with Transfer-Encoding, control
/// characters nowhere. Heads pass the host's own checks afterwards (`RequestValidation`,
/// the limits of `HTTPConnectionHandler`); the parser bounds only what it buffers.
struct RequestParser {
    private enum State {
        /// Between requests: the next head is being gathered.
        case head
        /// A head without a body was returned: its end is next.
        case end
        /// Content-Length body bytes still to come.
        case body(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        /// The CRLF after a chunk's data.
        case chunkDataEnd
        /// The trailer fields after the last chunk, up to an empty line.
        case trailers(bytes: Int)
        /// Nothing more is read: the input was malformed.
        case failed
    }

    private var state = State.head
    /// How much of the buffered head has been searched for its end.
    private var scanned = 0
    /// The most bytes a head may take before the host refuses it: generous next to the
    /// limits checked on the parsed head (`HostLimits`), which give the exact answer.
    private let maxHeadBytes: Int
    /// The most a request line may take.
    private let maxRequestLineBytes: Int
    /// The most a chunk-size line (with its extensions) may take.
    static let maxChunkLineBytes = 4096

    init(limits: HostLimits) {
        maxRequestLineBytes = limits.maxURIBytes + 1024
        maxHeadBytes = limits.maxURIBytes + limits.maxHeaderBytes + 1024 + 4 * limits.maxHeaderCount
    }

    /// Whether the input ending now would cut a request short (`buffered`: bytes of the
    /// input not yet returned as parts).
    func isMidRequest(buffered: Int) -> Bool {
        switch state {
        case .head: return buffered > 0
        case .failed: return false
        default: return true
        }
    }

    /// The next part of the request in `buffer`, consumed from it; nil when more bytes are
    /// needed. After an error, nothing more is returned.
    mutating func next(_ buffer: inout ByteBuffer) throws(RequestParseError) -> RequestPart? {
        do {
            return try nextPart(&buffer)
        } catch let error as RequestParseError {
            state = .failed
            throw error
        } catch {
            state = .failed
            throw RequestParseError.malformed("\(error)")
        }
    }

    private mutating func nextPart(_ buffer: inout ByteBuffer) throws -> RequestPart? {
        switch state {
        case .head:
            return try nextHead(&buffer)
        case .end:
            state = .head
            return .end
        case .body(let remaining):
            guard buffer.readableBytes > 0 else { return nil }
            let take = min(remaining, buffer.readableBytes)
            state = take == remaining ? .end : .body(remaining: remaining - take)
            return .body(buffer.readSlice(length: take)!)
        case .chunkSize:
            guard let line = try nextLine(buffer, limit: Self.maxChunkLineBytes, what: "a chunk size line") else { return nil }
            let size = try buffer.withUnsafeReadableBytes { bytes throws in
                try Self.chunkSize(UnsafeRawBufferPointer(rebasing: bytes[..<line]))
            }
            buffer.moveReaderIndex(forwardBy: line + 2)
            state = size == 0 ? .trailers(bytes: 0) : .chunkData(remaining: size)
            return try nextPart(&buffer)
        case .chunkData(let remaining):
            guard buffer.readableBytes > 0 else { return nil }
            let take = min(remaining, buffer.readableBytes)
            state = take == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - take)
            return .body(buffer.readSlice(length: take)!)
        case .chunkDataEnd:
            guard buffer.readableBytes >= 2 else { return nil }
            guard buffer.readInteger(as: UInt16.self) == 0x0D0A else {
                throw RequestParseError.malformed("a chunk's data is longer than its size")
            }
            state = .chunkSize
            return try nextPart(&buffer)
        case .trailers(let bytes):
            guard let line = try nextLine(buffer, limit: maxHeadBytes - bytes, what: "the trailer fields") else { return nil }
            if line == 0 {
                buffer.moveReaderIndex(forwardBy: 2)
                state = .head
                return .end
            }
            try buffer.withUnsafeReadableBytes { bytes throws in
                _ = try Self.field(UnsafeRawBufferPointer(rebasing: bytes[..<line]))
            }
            buffer.moveReaderIndex(forwardBy: line + 2)
            state = .trailers(bytes: bytes + line + 2)
            return try nextPart(&buffer)
        case .failed:
            return nil
        }
    }

    /// The length of the CRLF-terminated line at the start of `buffer` (without its CRLF),
    /// or nil when it is not complete yet.
    private func nextLine(_ buffer: ByteBuffer, limit: Int, what: String) throws -> Int? {
        let found: Int? = buffer.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress, let lf = memchr(base, 0x0A, bytes.count) else { return nil }
            return base.distance(to: UnsafeRawPointer(lf))
        }
        guard let lf = found else {
            if buffer.readableBytes > limit { throw RequestParseError.malformed("\(what) is too long") }
            return nil
        }
        guard lf > 0, buffer.getInteger(at: buffer.readerIndex + lf - 1, as: UInt8.self) == 0x0D else {
            throw RequestParseError.malformed("a line ends with a bare LF (HTTP lines end with CRLF)")
        }
        if lf - 1 > limit { throw RequestParseError.malformed("\(what) is too long") }
        return lf - 1
    }

    /// A head, once all of it has arrived.
    private mutating func nextHead(_ buffer: inout ByteBuffer) throws -> RequestPart? {
        // RFC 9112 §2.2: empty lines before a request line are ignored.
        while buffer.readableBytes >= 2, buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A {
            buffer.moveReaderIndex(forwardBy: 2)
            scanned = 0
        }
        let end: Int? = try buffer.withUnsafeReadableBytes { bytes throws in try findHeadEnd(bytes) }
        guard let end else {
            scanned = buffer.readableBytes
            if buffer.readableBytes > maxHeadBytes {
                throw RequestParseError(.headTooLarge, "the request head is larger than \(maxHeadBytes) bytes")
            }
            let lineComplete = buffer.withUnsafeReadableBytes { memchr($0.baseAddress!, 0x0A, $0.count) != nil }
            if !lineComplete && buffer.readableBytes > maxRequestLineBytes {
                throw RequestParseError(.uriTooLong, "the request line is longer than \(maxRequestLineBytes) bytes")
            }
            return nil
        }
        scanned = 0
        let (head, framing, facts) = try buffer.withUnsafeReadableBytes { bytes throws in
            try Self.parseHead(UnsafeRawBufferPointer(rebasing: bytes[..<end]))
        }
        buffer.moveReaderIndex(forwardBy: end)
        switch framing {
        case .none: state = .end
        case .length(let length): state = length == 0 ? .end : .body(remaining: length)
        case .chunked: state = .chunkSize
        }
        return .head(head, framing, facts)
    }

    /// Where the head in `bytes` ends (after its empty line), or nil when it has not all
    /// arrived: resumes the search where the last one stopped. Every LF must follow a CR.
    private func findHeadEnd(_ bytes: UnsafeRawBufferPointer) throws -> Int? {
        guard let base = bytes.baseAddress else { return nil }
        var from = scanned
        while from < bytes.count, let found = memchr(base + from, 0x0A, bytes.count - from) {
            let lf = base.distance(to: UnsafeRawPointer(found))
            guard lf > 0, bytes[lf - 1] == 0x0D else {
                throw RequestParseError.malformed("a line ends with a bare LF (HTTP lines end with CRLF)")
            }
            if lf >= 3, bytes[lf - 2] == 0x0A { return lf + 1 }
            if lf > maxHeadBytes { break }
            from = lf + 1
        }
        return nil
    }

    /// The request line and the fields of a complete head (`bytes` ends with its empty line).
    static func parseHead(_ bytes: UnsafeRawBufferPointer) throws -> (RequestHead, RequestFraming, HeadFacts) {
        // Lines end with CRLF (findHeadEnd saw to it): each ends at the next LF, minus one.
        let base = bytes.baseAddress!
        func lineEnd(from start: Int) -> Int {
            let lf = memchr(base + start, 0x0A, bytes.count - start)!
            return base.distance(to: UnsafeRawPointer(lf)) - 1
        }
        let requestLineEnd = lineEnd(from: 0)
        let (method, uri, version) = try requestLine(UnsafeRawBufferPointer(rebasing: bytes[..<requestLineEnd]))
        let linesStart = requestLineEnd + 2
        let lines = UnsafeRawBufferPointer(rebasing: bytes[linesStart...])
        var headers = RequestFields(lines: lines)
        var contentLength: Int?
        var facts = HeadFacts()
        var start = linesStart
        while start < bytes.count - 2 {
            let end = lineEnd(from: start)
            let line = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
            let (name, value) = try field(line)
            if equalsIgnoringASCIICase(bytes: name, "content-length") {
                guard contentLength == nil else { throw RequestParseError.malformed("more than one Content-Length field") }
                contentLength = try length(value)
            }
            facts.note(name: name, value: value)
            headers.appendSpan(name: name, value: value, lines: lines.baseAddress!)
            start = end + 2
        }
        let framing: RequestFraming
        if facts.transferEncoding {
            // RFC 9112 §6.3: both is a smuggling attempt; the host refuses it.
            if contentLength != nil { throw RequestParseError.malformed("Content-Length together with Transfer-Encoding") }
            framing = .chunked  // else RequestValidation refuses the head
        } else if let contentLength {
            framing = .length(contentLength)
        } else {
            framing = .none
        }
        return (RequestHead(version: version, method: method, uri: uri, headers: headers), framing, facts)
    }

    /// "METHOD target HTTP/1.x".
    static func requestLine(_ line: UnsafeRawBufferPointer) throws -> (HTTPMethod, String, HTTPVersion) {
        guard let firstSpace = index(of: 0x20, in: line, from: 0), firstSpace > 0 else {
            throw RequestParseError.malformed("the request line is not \"METHOD target HTTP/1.1\"")
        }
        let method = try Self.method(UnsafeRawBufferPointer(rebasing: line[..<firstSpace]))
        let targetStart = firstSpace + 1
        guard let secondSpace = index(of: 0x20, in: line, from: targetStart), secondSpace > targetStart else {
            throw RequestParseError.malformed("the request line is not \"METHOD target HTTP/1.1\"")
        }
        let target = UnsafeRawBufferPointer(rebasing: line[targetStart..<secondSpace])
        // Visible ASCII only: no controls, no raw bytes of other encodings (RFC 3986).
        guard !containsByte(target, where: { $0 <= 0x20 || $0 >= 0x7F }, wordHasOne: hasNonVisibleByte) else {
            throw RequestParseError.malformed("the request target has a character that must be percent-encoded")
        }
        let version = UnsafeRawBufferPointer(rebasing: line[(secondSpace + 1)...])
        // "HTTP/1." and a digit.
        guard version.count == 8, version.loadUnaligned(as: UInt64.self) & 0x00FF_FFFF_FFFF_FFFF == 0x2E_312F_5054_5448,
              (0x30...0x39).contains(version[7]) else {
            throw RequestParseError.malformed("the request's HTTP version is not HTTP/1.x")
        }
        return (method, String(decoding: target, as: UTF8.self), HTTPVersion(major: 1, minor: Int(version[7] - 0x30)))
    }

    /// The first `byte` in `bytes` at or after `start`.
    private static func index(of byte: UInt8, in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard start < bytes.count, let base = bytes.baseAddress, let found = memchr(base + start, Int32(byte), bytes.count - start) else {
            return nil
        }
        return base.distance(to: UnsafeRawPointer(found))
    }

    /// The methods llhttp (NIO's parser) knows, as `HTTPMethod` names them; the common ones
    /// without making a string.
    static func method(_ bytes: UnsafeRawBufferPointer) throws -> HTTPMethod {
        if bytes.count == 3 && bytes[0] == UInt8(ascii: "G") && bytes[1] == UInt8(ascii: "E") && bytes[2] == UInt8(ascii: "T") {
            return .GET
        }
        if bytes.count == 4 && bytes.loadUnaligned(as: UInt32.self) == 0x5453_4F50 { return .POST }  // "POST", little-endian
        if bytes.count == 4 && bytes.loadUnaligned(as: UInt32.self) == 0x4441_4548 { return .HEAD }
        let name = String(decoding: bytes, as: UTF8.self)
        let method = HTTPMethod(rawValue: name == "M-SEARCH" ? "MSEARCH" : name)
        if case .RAW = method { throw RequestParseError.malformed("unknown method \"\(name.prefix(32))\"") }
        return method
    }

    /// "name: value" (the value without the blanks around it).
    static func field(_ line: UnsafeRawBufferPointer) throws -> (UnsafeRawBufferPointer, UnsafeRawBufferPointer) {
        guard let colon = index(of: UInt8(ascii: ":"), in: line, from: 0) else {
            if let first = line.first, first == 0x20 || first == 0x09 {
                throw RequestParseError.malformed("a header line is folded (obs-fold); send it on one line")
            }
            throw RequestParseError.malformed("a header line has no colon")
        }
        let name = UnsafeRawBufferPointer(rebasing: line[..<colon])
        guard !name.isEmpty, isToken(name) else {
            if let first = line.first, first == 0x20 || first == 0x09 {
                throw RequestParseError.malformed("a header line is folded (obs-fold); send it on one line")
            }
            throw RequestParseError.malformed("a header name is empty or has a character a token cannot have (a space before its colon?)")
        }
        let value = trimmingBlanks(bytes: UnsafeRawBufferPointer(rebasing: line[(colon + 1)...]))
        // Field values are visible characters, blanks and obs-text: no controls (a CR alone,
        // NUL) that other parsers would read differently.
        guard !containsByte(UnsafeRawBufferPointer(rebasing: value), where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F },
                            wordHasOne: hasControlByte) else {
            throw RequestParseError.malformed("a header value has a control character")
        }
        return (name, UnsafeRawBufferPointer(rebasing: value))
    }

    /// A Content-Length value: digits only (no sign, no list), at most 18 of them.
    static func length(_ value: UnsafeRawBufferPointer) throws -> Int {
        guard !value.isEmpty, value.count <= 18, value.allSatisfy({ (0x30...0x39).contains($0) }) else {
            throw RequestParseError.malformed("Content-Length is not a number of bytes")
        }
        return value.reduce(0) { $0 * 10 + Int($1 - 0x30) }
    }

    /// A chunk-size line: hex digits, then nothing or chunk extensions (ignored).
    static func chunkSize(_ line: UnsafeRawBufferPointer) throws -> Int {
        var size = 0
        var index = 0
        while index < line.count, let digit = hexValue(line[index]) {
            guard index < 15 else { throw RequestParseError.malformed("a chunk size is too large") }
            size = size << 4 | digit
            index += 1
        }
        guard index > 0 else { throw RequestParseError.malformed("a chunk size is not hexadecimal") }
        var rest = UnsafeRawBufferPointer(rebasing: line[index...])
        while let first = rest.first, first == 0x20 || first == 0x09 { rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst()) }
        guard rest.isEmpty || (rest.first == UInt8(ascii: ";") && !rest.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F })) else {
            throw RequestParseError.malformed("a chunk size line has something after the size that is not a chunk extension")
        }
        return size
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 0x30...0x39: Int(byte - 0x30)
        case 0x41...0x46: Int(byte - 0x41 + 10)
        case 0x61...0x66: Int(byte - 0x61 + 10)
        default: nil
        }
    }

    /// Whether every byte is a tchar (RFC 9110 §5.6.2): DIGIT, ALPHA or one of
    /// ``!#$%&'*+-.^_`|~``, looked up in a bit set of the 128 ASCII bytes (a switch per
    /// byte was about 25 instructions a byte of a browser's field names).
    private static func isToken(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let below64: UInt64 = 0x03FF_6CFA_0000_0000, from64: UInt64 = 0x57FF_FFFF_C7FF_FFFE
        for byte in bytes {
            let set = byte < 64 ? below64 : byte < 128 ? from64 : 0
            if (set >> (byte & 63)) & 1 == 0 { return false }
        }
        return true
    }

    /// Whether a byte of `bytes` is one `isBad` finds: eight at a time, by `wordHasOne`
    /// (which must find every such byte of a word, and may find others: the word's bytes
    /// are then looked at one by one), the rest one by one. Field values and targets are
    /// most of a head's bytes; a test per byte was about 10 instructions a byte.
    private static func containsByte(_ bytes: UnsafeRawBufferPointer, where isBad: (UInt8) -> Bool,
                                     wordHasOne: (UInt64) -> Bool) -> Bool {
        var index = 0
        while index + 8 <= bytes.count {
            if wordHasOne(bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)) {
                for byte in UnsafeRawBufferPointer(rebasing: bytes[index..<index + 8]) where isBad(byte) { return true }
            }
            index += 8
        }
        while index < bytes.count {
            if isBad(bytes[index]) { return true }
            index += 1
        }
        return false
    }

    /// Each byte of a word at 0x01.
    private static let ones: UInt64 = 0x0101_0101_0101_0101
    /// Each byte's top bit.
    private static let tops: UInt64 = 0x8080_8080_8080_8080

    /// Whether a byte of `word` is below `limit` (at most 128): exact (the classic
    /// "hasless" of Bit Twiddling Hacks).
    private static func hasByte(_ word: UInt64, below limit: UInt8) -> Bool {
        (word &- ones &* UInt64(limit)) & ~word & tops != 0
    }

    /// A byte below 0x20 (a tab among them: the caller looks closer) or 0x7F.
    private static func hasControlByte(_ word: UInt64) -> Bool {
        hasByte(word, below: 0x20) || hasByte(word ^ (ones &* 0x7F), below: 1)
    }

    /// A byte that is not visible ASCII: 0x20 or below, 0x7F, or 0x80 and above.
    private static func hasNonVisibleByte(_ word: UInt64) -> Bool {
        word & tops != 0 || hasByte(word, below: 0x21) || hasByte(word ^ (ones &* 0x7F), below: 1)
    }
}
