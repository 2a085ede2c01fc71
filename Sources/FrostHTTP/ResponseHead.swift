import NIOCore
import NIOHTTP1

/// Response header fields as they go on the wire ("name: value\r\n" each, in order),
/// checked once when made, with what the framing depends on found in the same pass.
///
/// A handler usually sends the header block of its last response again: the layer above
/// keeps the fields it made for it and hands over the same ones, so such a response costs
/// no parsing, no strings, no header array and no framing scan (NIO's `HTTPHeaders` and
/// `HTTPResponseHead` cost all of them, each response: about 2,500 instructions of a
/// hello's 33,000, callgrind).
package struct ResponseFields: Sendable {
    /// Made once, never changed: a copy of the fields is one reference (they are handed
    /// from the memo through the exchange to the encoder).
    private final class Storage: Sendable {
        let bytes: [UInt8]
        let pairs: [(String, String)]
        let hasLength: Bool
        let hasTransferEncoding: Bool
        let hasConnection: Bool
        let asksClose: Bool
        let contentLength: Int?

        init(_ pairs: [(String, String)]) {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(pairs.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 4 })
            var hasLength = false, hasTransferEncoding = false, hasConnection = false, asksClose = false
            var contentLength: Int?
            for (name, value) in pairs {
                bytes += name.utf8
                bytes += [0x3A, 0x20]
                bytes += value.utf8
                bytes += [0x0D, 0x0A]
                // Only the lengths of the names framing depends on are compared further.
                switch name.utf8.count {
                case 14 where name.equalsIgnoringASCIICase("content-length"):
                    hasLength = true
                    if contentLength == nil, !value.isEmpty, value.utf8.allSatisfy({ (48...57).contains($0) }) {
                        contentLength = Int(value)
                    }
                case 17 where name.equalsIgnoringASCIICase("transfer-encoding"):
                    hasTransferEncoding = true
                case 10 where name.equalsIgnoringASCIICase("connection"):
                    hasConnection = true
                    asksClose = asksClose || value.equalsIgnoringASCIICase("close")
                default:
                    break
                }
            }
            (self.bytes, self.pairs) = (bytes, pairs)
            (self.hasLength, self.hasTransferEncoding, self.hasConnection, self.asksClose) =
                (hasLength, hasTransferEncoding, hasConnection, asksClose)
            self.contentLength = contentLength
        }

        static let empty = Storage([])
    }

    private var storage: Storage

    /// The encoded lines.
    package var bytes: [UInt8] { storage.bytes }
    /// The same as pairs, for the few that need them (a filter's head hook, ExecURL).
    package var pairs: [(String, String)] { storage.pairs }
    package var hasLength: Bool { storage.hasLength }
    package var hasTransferEncoding: Bool { storage.hasTransferEncoding }
    package var hasConnection: Bool { storage.hasConnection }
    /// A `Connection: close` field is among them.
    package var asksClose: Bool { storage.asksClose }
    /// The first Content-Length, when it is a number.
    package var contentLength: Int? { storage.contentLength }

    package init() { storage = .empty }

    /// Fields the caller checked (each name a token, no CR, LF or NUL in a value).
    package init(checked fields: [(String, String)]) {
        storage = fields.isEmpty ? .empty : Storage(fields)
    }

    /// Fields checked here: the first bad one throws `badResponseHead` naming it.
    package init(_ fields: [(String, String)]) throws {
        for (name, value) in fields where !isHeaderName(name) || !isHeaderValue(value) {
            throw ExchangeError(.badResponseHead, "bad response header \(name.debugDescription): \(value.debugDescription)")
        }
        self.init(checked: fields)
    }

    /// Adds a field the caller checked (the fields are made again: this is for the host's
    /// own additions, which few responses need).
    package mutating func append(name: String, value: String) {
        self = ResponseFields(checked: pairs + [(name, value)])
    }

    /// The same fields without those named `lowercaseName` (any case).
    package func removing(_ lowercaseName: StaticString) -> ResponseFields {
        ResponseFields(checked: pairs.filter { !$0.0.equalsIgnoringASCIICase(lowercaseName) })
    }

    /// The Connection field that announces what the host does with the connection after a
    /// response to an HTTP/`version` request: `close` when it closes; `keep-alive` when an
    /// HTTP/1.0 client's connection stays open (HTTP/1.1 keeps it without saying so).
    package mutating func announceConnection(close: Bool, version: HTTPVersion) {
        if close {
            replaceOrAdd("connection", value: "close")
        } else if version.major == 1 && version.minor == 0 {
            replaceOrAdd("connection", value: "keep-alive")
        }
    }

    /// `name: value` in place of any field of that name, at the end (NIO's `replaceOrAdd`).
    package mutating func replaceOrAdd(_ lowercaseName: StaticString, value: String) {
        self = ResponseFields(checked: pairs.filter { !$0.0.equalsIgnoringASCIICase(lowercaseName) }
                              + [(lowercaseName.description, value)])
    }
}

extension ResponseFields: ExpressibleByDictionaryLiteral {
    /// Literal fields, which the host writes itself (checked by its tests, not at run time).
    package init(dictionaryLiteral elements: (String, String)...) { self.init(checked: elements) }
}

/// A response's status line and fields, as the host writes them.
package struct ResponseHead: Sendable {
    package var version: HTTPVersion
    package var status: Int
    package var reason: String
    package var fields: ResponseFields

    package init(version: HTTPVersion, status: Int, reason: String, fields: ResponseFields = ResponseFields()) {
        (self.version, self.status, self.reason, self.fields) = (version, status, reason, fields)
    }

    /// A status NIO names, with its standard reason phrase.
    package init(version: HTTPVersion, status: HTTPResponseStatus, fields: ResponseFields = ResponseFields()) {
        self.init(version: version, status: Int(status.code), reason: status.reasonPhrase, fields: fields)
    }

    /// Whether a response with this status may have a body (RFC 9112 §6.3: 1xx, 204 and
    /// 304 never do).
    package var mayHaveBody: Bool { ResponseHead.mayHaveBody(status: status) }

    package static func mayHaveBody(status: Int) -> Bool { !(100..<200).contains(status) && status != 204 && status != 304 }
}
