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
    /// The encoded lines.
    package private(set) var bytes: [UInt8] = []
    /// The same as pairs, for the few that need them (a filter's head hook, ExecURL).
    package private(set) var pairs: [(String, String)] = []
    package private(set) var hasLength = false
    package private(set) var hasTransferEncoding = false
    package private(set) var hasConnection = false
    /// A `Connection: close` field is among them.
    package private(set) var asksClose = false
    /// The first Content-Length, when it is a number.
    package private(set) var contentLength: Int?

    package init() {}

    /// Fields the caller checked (each name a token, no CR, LF or NUL in a value).
    package init(checked fields: [(String, String)]) {
        bytes.reserveCapacity(fields.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 4 })
        for (name, value) in fields { append(name: name, value: value) }
    }

    /// Fields checked here: the first bad one throws `badResponseHead` naming it.
    package init(_ fields: [(String, String)]) throws {
        for (name, value) in fields where !isHeaderName(name) || !isHeaderValue(value) {
            throw ExchangeError(.badResponseHead, "bad response header \(name.debugDescription): \(value.debugDescription)")
        }
        self.init(checked: fields)
    }

    /// Adds a field the caller checked.
    package mutating func append(name: String, value: String) {
        pairs.append((name, value))
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

    /// The same fields without those named `lowercaseName` (any case).
    package func removing(_ lowercaseName: StaticString) -> ResponseFields {
        ResponseFields(checked: pairs.filter { !$0.0.equalsIgnoringASCIICase(lowercaseName) })
    }

    /// `name: value` in place of any field of that name, at the end (NIO's `replaceOrAdd`).
    package mutating func replaceOrAdd(_ lowercaseName: StaticString, value: String) {
        let present: Bool
        switch lowercaseName.description {
        case "connection": present = hasConnection
        case "transfer-encoding": present = hasTransferEncoding
        case "content-length": present = hasLength
        default: present = pairs.contains { $0.0.equalsIgnoringASCIICase(lowercaseName) }
        }
        if present { self = removing(lowercaseName) }
        append(name: lowercaseName.description, value: value)
    }

    package var isEmpty: Bool { bytes.isEmpty }
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
    package var mayHaveBody: Bool { !(100..<200).contains(status) && status != 204 && status != 304 }
}
