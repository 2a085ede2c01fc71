import NIOCore
import NIOHTTP1
import Testing
@testable import FrostHTTP
import FrostTestSupport

/// The host's HTTP/1 request parser: what it reads does not depend on how the bytes are
/// split into reads, and every malformed shape is refused with its reason.
@Suite struct RequestParserTests {
    /// What a sequence of parts says, in a form that does not depend on how the body was
    /// sliced: each head as "METHOD uri HTTP/x.y [name=value...]", the body's bytes joined,
    /// and "end".
    static func summary(_ parts: [RequestPart]) -> [String] {
        var out: [String] = []
        var body = ""
        for part in parts {
            switch part {
            case .head(let head, _, _):
                let fields = head.headers.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
                out.append("\(head.method.rawValue) \(head.uri) HTTP/\(head.version.major).\(head.version.minor) [\(fields)]")
            case .body(let buffer):
                body += String(buffer: buffer)
            case .end:
                if !body.isEmpty { out.append("body " + body) }
                body = ""
                out.append("end")
            }
        }
        return out
    }

    /// The parser's keep-alive decision is NIO's `isKeepAlive`, for every Connection field
    /// shape and both versions; its field counts are those of a look through the fields.
    @Test func theHeadsFactsAreWhatALookThroughItsFieldsFinds() throws {
        let connections: [[String]] = [[], ["close"], ["keep-alive"], ["Keep-Alive"], [" CLOSE "], ["upgrade"],
                                       ["keep-alive, close"], ["keep-alive", "keep-alive"], ["upgrade, keep-alive"],
                                       ["te,close"], [""], ["keep-alive,"], ["closed"]]
        for version in ["1.0", "1.1"] {
            for values in connections {
                let fields = values.map { "Connection: \($0)\r\n" }.joined()
                let parts = try Self.parse(Array("GET / HTTP/\(version)\r\nHost: h\r\n\(fields)X-A: 1\r\n\r\n".utf8))
                guard case .head(let head, _, let facts) = parts.first else { Issue.record("no head"); continue }
                #expect(facts.isKeepAlive(head.version) == head.nioHead.isKeepAlive, "HTTP/\(version) \(values)")
                #expect(facts == HeadFacts(head.headers) && facts.hostFields == 1 && !facts.transferEncoding)
                #expect(facts.fieldBytes == head.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 })
                #expect(!facts.expectsContinue)
            }
        }
        for (expect, continues) in [("100-continue", true), ("100-Continue ", true), ("100-continue, foo", false), ("", false)] {
            let parts = try Self.parse(Array("POST / HTTP/1.1\r\nHost: h\r\nExpect: \(expect)\r\nContent-Length: 0\r\n\r\n".utf8))
            guard case .head(_, _, let facts) = parts.first else { Issue.record("no head"); continue }
            #expect(facts.expectsContinue == continues, "Expect: \(expect)")
        }
    }

    /// Parses `bytes` handed over in reads of `size` bytes (the rest kept between reads, as
    /// the connection handler does).
    static func parse(_ bytes: [UInt8], readSize size: Int = .max) throws(RequestParseError) -> [RequestPart] {
        var parser = RequestParser(limits: HostLimits())
        var parts: [RequestPart] = []
        var pending = ByteBuffer()
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset &+ size)
            pending.writeBytes(bytes[offset..<end])
            offset = end
            while let part = try parser.next(&pending) { parts.append(part) }
        }
        return parts
    }

    static let pipelined = Array((
        "\r\nGET /a?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent:  spaced out \t\r\nX-Empty:\r\n\r\n"
        + "POST /p HTTP/1.0\r\ncontent-length: 5\r\n\r\nhello"
        + "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        + "3;name=value\r\nabc\r\nA\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\n"
        + "M-SEARCH * HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
    ).utf8)

    static let expected = [
        "GET /a?x=1 HTTP/1.1 [Host=h User-Agent=spaced out X-Empty=]", "end",
        "POST /p HTTP/1.0 [content-length=5]", "body hello", "end",
        "PUT /c HTTP/1.1 [Host=h Transfer-Encoding=chunked]", "body abc0123456789", "end",
        "MSEARCH * HTTP/1.1 [Host=h Content-Length=0]", "end",
    ]

    @Test func pipelinedRequestsReadTheSameWhateverTheReads() throws {
        #expect(Self.summary(try Self.parse(Self.pipelined)) == Self.expected)
        for size in [1, 2, 3, 7, 64] {
            #expect(Self.summary(try Self.parse(Self.pipelined, readSize: size)) == Self.expected, "reads of \(size)")
        }
    }

    @Test func aBodyIsSlicedNotCopiedAndStopsAtItsLength() throws {
        var parser = RequestParser(limits: HostLimits())
        var buffer = ByteBuffer(string: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET")
        guard case .head = try parser.next(&buffer), case .body(let body) = try parser.next(&buffer),
              case .end = try parser.next(&buffer) else { Issue.record("head, body, end"); return }
        #expect(String(buffer: body) == "abc")
        #expect(try parser.next(&buffer) == nil && String(buffer: buffer) == "GET", "the next request waits for its end")
        #expect(parser.isMidRequest(buffered: buffer.readableBytes))
        #expect(!parser.isMidRequest(buffered: 0))
    }

    @Test func malformedInputIsRefusedWithItsReason() {
        let host = "Host: h\r\n"
        let cases: [(String, String, RequestParseError.Kind, String)] = [
            ("bare LF", "GET / HTTP/1.1\nHost: h\n\n", .malformed, "bare LF"),
            ("bare CR", "GET / HTTP/1.1\r\n\(host)X-A: a\rb\r\n\r\n", .malformed, "control character"),
            ("NUL in a value", "GET / HTTP/1.1\r\n\(host)X-A: a\0b\r\n\r\n", .malformed, "control character"),
            ("obs-fold", "GET / HTTP/1.1\r\n\(host)X-A: a\r\n  folded\r\n\r\n", .malformed, "folded"),
            ("space before the colon", "GET / HTTP/1.1\r\n\(host)X-A : a\r\n\r\n", .malformed, "space before its colon"),
            ("no colon", "GET / HTTP/1.1\r\n\(host)NoColon\r\n\r\n", .malformed, "no colon"),
            ("unknown method", "FROB / HTTP/1.1\r\n\(host)\r\n", .malformed, "unknown method \"FROB\""),
            ("lower-case method", "get / HTTP/1.1\r\n\(host)\r\n", .malformed, "unknown method"),
            ("no target", "GET HTTP/1.1\r\n\(host)\r\n", .malformed, "request line"),
            ("raw byte in the target", "GET /\u{e9} HTTP/1.1\r\n\(host)\r\n", .malformed, "percent-encoded"),
            ("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", .malformed, "unknown method"),
            ("HTTP/3.0", "GET / HTTP/3.0\r\n\(host)\r\n", .malformed, "HTTP/1.x"),
            ("HTTP/0.9", "GET /\r\n\r\n", .malformed, "request line"),
            ("two Content-Lengths", "POST / HTTP/1.1\r\n\(host)Content-Length: 2\r\nContent-Length: 2\r\n\r\nhi", .malformed, "more than one"),
            ("Content-Length list", "POST / HTTP/1.1\r\n\(host)Content-Length: 2, 3\r\n\r\nhey", .malformed, "not a number"),
            ("signed Content-Length", "POST / HTTP/1.1\r\n\(host)Content-Length: +2\r\n\r\nhi", .malformed, "not a number"),
            ("Content-Length and chunked", "POST / HTTP/1.1\r\n\(host)Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
             .malformed, "together"),
            ("chunk size not hex", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\nzz\r\n", .malformed, "not hexadecimal"),
            ("chunk size overflow", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", .malformed, "too large"),
            ("chunk size then junk", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n3 x\r\nabc\r\n", .malformed, "not a chunk extension"),
            ("chunk data too long", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n", .malformed, "longer than its size"),
            ("bad trailer", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer\r\n\r\n", .malformed, "no colon"),
        ]
        for (name, request, kind, reason) in cases {
            do {
                _ = try Self.parse(Array(request.utf8))
                Issue.record("\(name): accepted")
            } catch {
                #expect(error.kind == kind && error.reason.contains(reason), "\(name): \(error.kind) \(error.reason)")
            }
            // Byte by byte, the same verdict.
            #expect(throws: RequestParseError.self, "\(name), byte by byte") { try Self.parse(Array(request.utf8), readSize: 1) }
        }
    }

    @Test func whatIsBufferedForOneHeadIsBounded() {
        let limits = HostLimits()
        let endless = "GET /" + String(repeating: "a", count: limits.maxURIBytes + 2000)
        #expect(throws: RequestParseError(.uriTooLong, "the request line is longer than \(limits.maxURIBytes + 1024) bytes")) {
            try Self.parse(Array(endless.utf8), readSize: 4096)
        }
        let fields = "GET / HTTP/1.1\r\n" + String(repeating: "X-Field: " + String(repeating: "v", count: 100) + "\r\n", count: 500)
        do {
            _ = try Self.parse(Array(fields.utf8), readSize: 4096)
            Issue.record("an endless head was buffered")
        } catch {
            #expect(error.kind == .headTooLarge && error.status == .requestHeaderFieldsTooLarge)
        }
        // A head within the bounds but over the host's limits is parsed: the host answers it exactly.
        let big = "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + String(repeating: "v", count: limits.maxHeaderBytes) + "\r\n\r\n"
        #expect((try? Self.parse(Array(big.utf8)))?.count == 2)
    }

    /// Seeded mutations of the pipelined requests: whether the bytes come in one read or in
    /// small ones, the same parts come out, or the same error.
    @Test func aMutatedInputReadsTheSameWhateverTheReads() {
        var random = SeededRandom(seed: 20261203)
        let alphabet = Array(" :;/\r\n\t0aAfZ-".utf8)
        var parsed = 0, refused = 0
        for index in 0..<2000 {
            var bytes = Self.pipelined
            random.mutate(&bytes, maxEdits: 4, alphabet: alphabet)
            let size = Int.random(in: 1...9, using: &random)
            let whole = Result { () throws(RequestParseError) in try Self.parse(bytes) }
            let pieces = Result { () throws(RequestParseError) in try Self.parse(bytes, readSize: size) }
            switch (whole, pieces) {
            case (.success(let one), .success(let other)):
                parsed += 1
                #expect(Self.summary(one) == Self.summary(other), "case \(index), reads of \(size)")
            case (.failure(let one), .failure(let other)):
                refused += 1
                #expect(one == other, "case \(index), reads of \(size): \(one) / \(other)")
            default:
                Issue.record("case \(index), reads of \(size): \(whole) / \(pieces)")
            }
        }
        #expect(parsed > 200 && refused > 200, "parsed \(parsed), refused \(refused)")
    }

}

extension RequestHead {
    /// The same head as NIO's type, whose decisions (`isKeepAlive`) the parser's must match.
    var nioHead: HTTPRequestHead {
        HTTPRequestHead(version: version, method: method, uri: uri, headers: HTTPHeaders(headers.map { ($0.name, $0.value) }))
    }
}

@Suite struct RequestFieldsTests {
    /// The fields as parsed answer as NIO's `HTTPHeaders` with the same fields do: by name
    /// without regard to case, in order, and after the changes a filter makes.
    @Test func parsedFieldsAnswerAsHTTPHeadersDo() throws {
        let wire = "GET / HTTP/1.1\r\nHost: h\r\nAccept: text/html\r\nX-Long-Name-Of-A-Field: \(String(repeating: "v", count: 40))\r\n"
            + "accept: */*\r\nEmpty:\r\nCookie: a=1; b=2\r\n\r\n"
        let parts = try RequestParserTests.parse(Array(wire.utf8))
        guard case .head(var head, _, _) = parts.first else { Issue.record("no head"); return }
        var nio = head.nioHead.headers
        func agree(_ note: String) {
            #expect(head.headers.count == nio.count, "\(note)")
            #expect(head.headers.map { "\($0.name)=\($0.value)" } == nio.map { "\($0.name)=\($0.value)" }, "\(note)")
            for name in ["host", "ACCEPT", "x-long-name-of-a-field", "empty", "cookie", "missing", "X-Added"] {
                #expect(head.headers.first(name: name) == nio.first(name: name), "\(note): \(name)")
                #expect(head.headers[name] == nio[name], "\(note): \(name)")
                #expect(head.headers.contains(name: name) == nio.contains(name: name), "\(note): \(name)")
                #expect(head.headers[canonicalForm: name] == nio[canonicalForm: name], "\(note): \(name)")
            }
        }
        agree("as parsed")
        #expect(head.headers.first(name: "Empty") == "")
        var seen: [String] = []
        head.headers.forEachField { index, name, value in
            seen.append("\(index):\(String(decoding: name, as: UTF8.self))=\(String(decoding: value, as: UTF8.self))")
        }
        #expect(seen.first == "0:Host=h" && seen.count == 6 && seen[2].hasSuffix(String(repeating: "v", count: 40)))
        head.headers.add(name: "X-Added", value: "1")
        nio.add(name: "X-Added", value: "1")
        agree("added")
        head.headers.replaceOrAdd(name: "accept", value: "image/png")
        nio.replaceOrAdd(name: "accept", value: "image/png")
        agree("replaced")
        head.headers.remove(name: "COOKIE")
        nio.remove(name: "COOKIE")
        agree("removed")
        head.headers.replaceOrAdd(name: "X-New", value: "n")
        nio.replaceOrAdd(name: "X-New", value: "n")
        agree("replaced, absent")
    }
}
