import NIOCore
import NIOHTTP1

/// Turns a connection's response parts into bytes: NIO's `HTTPResponseEncoder` framing
/// rules, but a head and what follows it in the same call leave as one buffer, written
/// once, instead of one pass down the pipeline per part (the profile's largest share of
/// a small response on the event loop). One per connection, on its event loop.
///
/// Framing (RFC 9112 §6): a status that has no body (1xx, 204, 304) loses Content-Length
/// and Transfer-Encoding; a head with Content-Length loses Transfer-Encoding; otherwise
/// HTTP/1.1 responses are chunked and HTTP/1.0 ones end with the connection. Responses to
/// HEAD and CONNECT keep their headers and carry no body.
struct ResponseEncoder {
    /// The response in progress is chunked: body parts are framed and its end is `0\r\n\r\n`.
    private var chunked = false
    /// The response in progress answers HEAD or CONNECT: body parts are dropped.
    private var bodyless = false
    /// Body bytes up to this size are copied behind the head into one buffer; larger
    /// ones are written as they are (a write of several buffers is still one `writev`).
    static let coalesceLimit = 16 * 1024

    /// The buffers to write for `head` (if any), `body` (if any) and the end (`end`), each
    /// handed to `emit` in order (no array to allocate per response). `method` is the
    /// request's.
    mutating func encode(head: ResponseHead?, body: IOData?, end: Bool, method: HTTPMethod,
                         allocator: ByteBufferAllocator, emit: (IOData) -> Void) {
        let encoded = head.map { ResponseEncoder.encode($0, method: method, allocator: allocator) }
        encode(head: encoded, body: body, end: end, allocator: allocator, emit: emit)
    }

    /// `head` in wire bytes, with its fields framed by the rules above; `reserving`: room
    /// for body bytes to follow it in the same buffer. Any thread.
    static func encode(_ head: ResponseHead, method: HTTPMethod, allocator: ByteBufferAllocator,
                       reserving: Int = 0) -> EncodedHead {
        var head = head
        let code = head.status
        let informational = (100..<200).contains(code) && code != 101
        var chunked = false
        // The framing fields were found when the fields were made; they are removed only
        // when present.
        if !head.mayHaveBody || method.isCONNECT {
            if head.fields.hasLength { head.fields = head.fields.removing("content-length") }
            if head.fields.hasTransferEncoding { head.fields = head.fields.removing("transfer-encoding") }
        } else if head.fields.hasLength {
            if head.fields.hasTransferEncoding { head.fields = head.fields.removing("transfer-encoding") }
        } else if head.version.major == 1 && head.version.minor >= 1 {
            head.fields.replaceOrAdd("transfer-encoding", value: "chunked")
            chunked = !informational
        }
        let bodyless = method.isHEAD || method.isCONNECT
        if bodyless || !head.mayHaveBody { chunked = false }
        var bytes = allocator.buffer(capacity: 32 + head.reason.utf8.count + head.fields.bytes.count + reserving)
        write(head, into: &bytes)
        return EncodedHead(bytes: bytes, chunked: chunked, bodyless: bodyless, informational: informational)
    }

    /// The same for a head encoded already (`encode(_:method:allocator:reserving:)`).
    mutating func encode(head: EncodedHead?, body: IOData?, end: Bool, allocator: ByteBufferAllocator,
                         emit: (IOData) -> Void) {
        var buffer: ByteBuffer?
        if let head {
            if !head.informational {
                (chunked, bodyless) = (head.chunked, head.bodyless)
            }
            buffer = head.bytes
        }
        if let body, body.readableBytes > 0, !bodyless {
            if chunked {
                if buffer == nil { buffer = allocator.buffer(capacity: 16) }
                buffer!.writeString(String(body.readableBytes, radix: 16))
                buffer!.writeStaticString("\r\n")
            }
            switch body {
            case .byteBuffer(var bytes) where bytes.readableBytes <= ResponseEncoder.coalesceLimit:
                if buffer == nil { buffer = allocator.buffer(capacity: bytes.readableBytes + 8) }
                buffer!.writeBuffer(&bytes)
            default:
                if let pending = buffer { emit(.byteBuffer(pending)) }
                buffer = nil
                emit(body)
            }
            if chunked {
                if buffer == nil { buffer = allocator.buffer(capacity: 8) }
                buffer!.writeStaticString("\r\n")
            }
        }
        if end {
            if chunked {
                if buffer == nil { buffer = allocator.buffer(capacity: 8) }
                buffer!.writeStaticString("0\r\n\r\n")
            }
            chunked = false
            bodyless = false
        }
        if let buffer { emit(.byteBuffer(buffer)) }
    }

    /// "HTTP/1.1 200 OK\r\n", the fields, and the empty line. The status line is copied in
    /// with one capacity check (ByteBuffer's writeString and writeStaticString each pass
    /// through a generic, unspecialised slice of its storage), the fields with one more.
    static func write(_ head: ResponseHead, into buffer: inout ByteBuffer) {
        let code = head.status
        var reason = head.reason
        if head.version.major == 1 && head.version.minor <= 1 && (100...999).contains(code) {
            let minor = UInt8(truncatingIfNeeded: head.version.minor)
            reason.withUTF8 { reason in
                _ = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 15 + reason.count) { out in
                    // "HTTP/1.x NNN " is 13 bytes.
                    let line: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
                        (0x48, 0x54, 0x54, 0x50, 0x2F, 0x31, 0x2E, 0x30 + minor, 0x20,
                         0x30 + UInt8(code / 100), 0x30 + UInt8(code / 10 % 10), 0x30 + UInt8(code % 10), 0x20)
                    withUnsafeBytes(of: line) { out.copyMemory(from: $0) }
                    UnsafeMutableRawBufferPointer(rebasing: out[13...]).copyMemory(from: UnsafeRawBufferPointer(reason))
                    out[13 + reason.count] = 0x0D
                    out[14 + reason.count] = 0x0A
                    return 15 + reason.count
                }
            }
        } else {
            buffer.writeString("HTTP/\(head.version.major).\(head.version.minor) \(code) \(reason)\r\n")
        }
        head.fields.bytes.withUnsafeBytes { fields in
            _ = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: fields.count + 2) { out in
                out.copyMemory(from: fields)
                out[fields.count] = 0x0D
                out[fields.count + 1] = 0x0A
                return fields.count + 2
            }
        }
    }
}

/// A response head in wire bytes, and how the body after it is framed.
package struct EncodedHead: Sendable {
    var bytes: ByteBuffer
    /// The body goes in chunks, ended by `0\r\n\r\n`.
    var chunked: Bool
    /// The response answers HEAD or CONNECT: body parts are dropped.
    var bodyless: Bool
    /// An interim response (1xx but 101): the framing of the response still to come is
    /// not its.
    var informational: Bool
}

extension HTTPMethod {
    /// Whether this is HEAD, or CONNECT, by its case: NIO's `==` compares the methods'
    /// names as strings.
    package var isHEAD: Bool { if case .HEAD = self { true } else { false } }
    package var isCONNECT: Bool { if case .CONNECT = self { true } else { false } }
    package var isGET: Bool { if case .GET = self { true } else { false } }
}
