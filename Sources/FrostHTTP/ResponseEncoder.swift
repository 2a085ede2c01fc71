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
    mutating func encode(head: HTTPResponseHead?, body: IOData?, end: Bool, method: HTTPMethod,
                         allocator: ByteBufferAllocator, emit: (IOData) -> Void) {
        var buffer: ByteBuffer?
        if var head {
            let code = head.status.code
            let informational = (100..<200).contains(code) && code != 101
            // The framing fields, found in one pass (NIO's `contains` is a pass per name); the
            // fields are removed only when present (NIO's `remove` copies them either way).
            var hasLength = false, hasTransferEncoding = false
            for field in head.headers {
                if field.name.equalsIgnoringASCIICase("content-length") {
                    hasLength = true
                } else if field.name.equalsIgnoringASCIICase("transfer-encoding") {
                    hasTransferEncoding = true
                }
            }
            if !head.status.mayHaveResponseBody || method.isCONNECT {
                if hasLength { head.headers.remove(name: "content-length") }
                if hasTransferEncoding { head.headers.remove(name: "transfer-encoding") }
            } else if hasLength {
                if hasTransferEncoding { head.headers.remove(name: "transfer-encoding") }
            } else if head.version.major == 1 && head.version.minor >= 1 {
                head.headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
                if !informational { chunked = true }
            }
            if !informational {
                bodyless = method.isHEAD || method.isCONNECT
                if bodyless || !head.status.mayHaveResponseBody { chunked = false }
            }
            var bytes = allocator.buffer(capacity: 256 + min(body?.readableBytes ?? 0, ResponseEncoder.coalesceLimit))
            ResponseEncoder.write(head, into: &bytes)
            buffer = bytes
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

    /// "HTTP/1.1 200 OK\r\n", the fields, and the empty line. Each line is copied in with
    /// one capacity check: ByteBuffer's writeString and writeStaticString each pass through
    /// a generic, unspecialised slice of its storage, four of them per field.
    static func write(_ head: HTTPResponseHead, into buffer: inout ByteBuffer) {
        let code = head.status.code
        var reason = head.status.reasonPhrase
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
        for (name, value) in head.headers {
            writeField(name, value, into: &buffer)
        }
        buffer.writeInteger(UInt16(0x0D0A))
    }

    /// "name: value\r\n".
    private static func writeField(_ name: String, _ value: String, into buffer: inout ByteBuffer) {
        var name = name, value = value
        name.withUTF8 { name in
            value.withUTF8 { value in
                let size = name.count + value.count + 4
                _ = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { out in
                    out.copyMemory(from: UnsafeRawBufferPointer(name))
                    out[name.count] = 0x3A
                    out[name.count + 1] = 0x20
                    UnsafeMutableRawBufferPointer(rebasing: out[(name.count + 2)...]).copyMemory(from: UnsafeRawBufferPointer(value))
                    out[size - 2] = 0x0D
                    out[size - 1] = 0x0A
                    return size
                }
            }
        }
    }
}

extension HTTPMethod {
    /// Whether this is HEAD, or CONNECT, by its case: NIO's `==` compares the methods'
    /// names as strings.
    package var isHEAD: Bool { if case .HEAD = self { true } else { false } }
    package var isCONNECT: Bool { if case .CONNECT = self { true } else { false } }
    package var isGET: Bool { if case .GET = self { true } else { false } }
}
