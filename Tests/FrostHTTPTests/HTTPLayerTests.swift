import NIOCore
import NIOHTTP1
import Testing
@testable import FrostHTTP

@Suite struct HTTPTextTests {
    @Test func percentDecodingLeavesBadEscapesAlone() {
        #expect(percentDecoded("/a%20b/%E2%82%AC") == "/a b/€")
        #expect(percentDecoded("/100%") == "/100%")
        #expect(percentDecoded("/%zz") == "/%zz")
    }

    @Test func trimming() {
        #expect("  \tvalue \r\n".trimmingCharacters(in: " \t\r\n") == "value")
        #expect("".trimmingCharacters(in: " ") == "")
    }

    @Test func targetParts() {
        #expect(pathPart(of: "/a/b?x=1?y") == "/a/b" && queryPart(of: "/a/b?x=1?y") == "x=1?y")
        #expect(pathPart(of: "/a") == "/a" && queryPart(of: "/a") == "")
        #expect(trimmingBlanks(" \t v a \t") == "v a" && trimmingBlanks(" ") == "")
    }

    @Test func headerSyntax() {
        #expect(isHeaderName("X-Ok") && !isHeaderName("") && !isHeaderName("Bad:Name") && !isHeaderName("Sp ace"))
        #expect(isHeaderValue("a value\t") && !isHeaderValue("split\r\nX: y") && !isHeaderValue("nul\0"))
    }

    @Test func headerNamesCompareIgnoringASCIICaseOnly() {
        #expect("Content-Length".equalsIgnoringASCIICase("content-length") && "CONNECTION".equalsIgnoringASCIICase("connection"))
        #expect("close".equalsIgnoringASCIICase("close") && "".equalsIgnoringASCIICase(""))
        #expect(!"Content-Lengthy".equalsIgnoringASCIICase("content-length") && !"Connectio".equalsIgnoringASCIICase("connection"))
        // Only A-Z fold: "\r" | 0x20 is "-", "[" | 0x20 is "{".
        #expect(!"content\rlength".equalsIgnoringASCIICase("content-length") && !"[".equalsIgnoringASCIICase("{"))
        #expect(!"clos\u{e9}".equalsIgnoringASCIICase("close\u{301}"))
    }
}

extension ResponseEncoder {
    /// The buffers `encode` emits, in order.
    mutating func encode(head: ResponseHead?, body: IOData?, end: Bool, method: HTTPMethod,
                         allocator: ByteBufferAllocator) -> [IOData] {
        var out: [IOData] = []
        encode(head: head, body: body, end: end, method: method, allocator: allocator) { out.append($0) }
        return out
    }
}

/// Response fields are encoded once, with the framing fields found as they are added.
@Suite struct ResponseFieldsTests {
    func wire(_ fields: ResponseFields) -> String { String(decoding: fields.bytes, as: UTF8.self) }

    @Test func fieldsAreTheirWireLinesWithTheFramingFieldsFound() throws {
        let fields = try ResponseFields([("Content-Type", "text/plain"), ("CONTENT-LENGTH", "x"), ("content-length", "12"),
                                         ("Connection", "Close"), ("Transfer-Encoding", "gzip")])
        #expect(wire(fields) == "Content-Type: text/plain\r\nCONTENT-LENGTH: x\r\ncontent-length: 12\r\nConnection: Close\r\n"
                + "Transfer-Encoding: gzip\r\n")
        #expect(fields.hasLength && fields.hasTransferEncoding && fields.hasConnection && fields.asksClose)
        #expect(fields.contentLength == 12, "the first Content-Length that is a number")
        #expect(fields.pairs.map { $0.0 } == ["Content-Type", "CONTENT-LENGTH", "content-length", "Connection", "Transfer-Encoding"])
        let plain = try ResponseFields([("Content-Lengths", "3"), ("Connection", "keep-alive")])
        #expect(!plain.hasLength && !plain.hasTransferEncoding && plain.hasConnection && !plain.asksClose && plain.contentLength == nil)
    }

    @Test func badFieldsAreRefusedByName() {
        for bad in [("X-Split", "a\r\nSet-Cookie: b"), ("Bad Name", "v"), ("", "v"), ("X-Nul", "a\u{0}b"), ("Colon:", "v")] {
            #expect(throws: ExchangeError.self, "\(bad)") { try ResponseFields([("Fine", "ok"), bad]) }
        }
    }

    @Test func removingAndReplacingKeepTheOthersInOrder() throws {
        var fields = try ResponseFields([("A", "1"), ("Connection", "keep-alive"), ("B", "2"), ("connection", "x")])
        fields.replaceOrAdd("connection", value: "close")
        #expect(wire(fields) == "A: 1\r\nB: 2\r\nconnection: close\r\n" && fields.asksClose)
        fields.replaceOrAdd("transfer-encoding", value: "chunked")
        #expect(wire(fields.removing("a")) == "B: 2\r\nconnection: close\r\ntransfer-encoding: chunked\r\n")
        #expect(!fields.removing("connection").hasConnection && fields.removing("connection").hasTransferEncoding)
    }
}

/// The host's own response encoder frames responses as NIO's HTTPResponseEncoder does.
@Suite struct ResponseEncoderTests {
    let allocator = ByteBufferAllocator()

    func text(_ parts: [IOData]) -> String {
        parts.map { part -> String in
            guard case .byteBuffer(let buffer) = part else { return "<file>" }
            return String(buffer: buffer)
        }.joined()
    }

    func head(_ status: HTTPResponseStatus, _ headers: HTTPHeaders = [:], version: HTTPVersion = .http1_1) -> ResponseHead {
        ResponseHead(version: version, status: status, fields: ResponseFields(checked: headers.map { ($0.name, $0.value) }))
    }

    func body(_ text: String) -> IOData { .byteBuffer(ByteBuffer(string: text)) }

    @Test func aHeadWithItsBodyAndEndIsOneBuffer() {
        var encoder = ResponseEncoder()
        let parts = encoder.encode(head: head(.ok, ["Content-Length": "5"]), body: body("hello"), end: true, method: .GET,
                                   allocator: allocator)
        #expect(parts.count == 1)
        #expect(text(parts) == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    }

    @Test func withoutALengthHTTP11IsChunkedAndHTTP10IsNot() {
        var encoder = ResponseEncoder()
        var out = text(encoder.encode(head: head(.ok), body: body("abc"), end: false, method: .GET, allocator: allocator))
        out += text(encoder.encode(head: nil, body: body("0123456789abcdefg"), end: true, method: .GET, allocator: allocator))
        #expect(out == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n11\r\n0123456789abcdefg\r\n0\r\n\r\n")
        var old = ResponseEncoder()
        let plain = text(old.encode(head: head(.ok, version: .http1_0), body: body("abc"), end: true, method: .GET, allocator: allocator))
        #expect(plain == "HTTP/1.0 200 OK\r\n\r\nabc")
    }

    @Test func headAndBodilessStatusesCarryNoBody() {
        var encoder = ResponseEncoder()
        let headResponse = text(encoder.encode(head: head(.ok, ["Content-Length": "5"]), body: body("hello"), end: true,
                                               method: .HEAD, allocator: allocator))
        #expect(headResponse == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD keeps the length, drops the body")
        let chunkedHead = text(encoder.encode(head: head(.ok), body: nil, end: true, method: .HEAD, allocator: allocator))
        #expect(chunkedHead == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", "no 0-chunk after a HEAD response")
        let noContent = text(encoder.encode(head: head(.noContent, ["Content-Length": "0", "Transfer-Encoding": "chunked"]),
                                            body: nil, end: true, method: .GET, allocator: allocator))
        #expect(noContent == "HTTP/1.1 204 No Content\r\n\r\n")
        let interim = text(encoder.encode(head: head(.continue), body: nil, end: false, method: .POST, allocator: allocator))
        #expect(interim == "HTTP/1.1 100 Continue\r\n\r\n")
        let final = text(encoder.encode(head: head(.ok), body: body("x"), end: true, method: .POST, allocator: allocator))
        #expect(final == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", "a 100 does not end the framing")
    }

    @Test func theHeadIsWrittenByteForByte() {
        var encoder = ResponseEncoder()
        let custom = head(HTTPResponseStatus(statusCode: 599, reasonPhrase: "Café Closed"),
                          ["X-Empty": "", "X-Text": "naïve ünïcode", "Content-Length": "0"], version: .http1_0)
        #expect(text(encoder.encode(head: custom, body: nil, end: true, method: .GET, allocator: allocator))
                == "HTTP/1.0 599 Café Closed\r\nX-Empty: \r\nX-Text: naïve ünïcode\r\nContent-Length: 0\r\n\r\n")
        let noReason = head(HTTPResponseStatus(statusCode: 299, reasonPhrase: ""), ["Content-Length": "0"])
        #expect(text(encoder.encode(head: noReason, body: nil, end: true, method: .GET, allocator: allocator))
                == "HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n")
        let other = head(.ok, ["Content-Length": "0"], version: HTTPVersion(major: 2, minor: 0))
        #expect(text(encoder.encode(head: other, body: nil, end: true, method: .GET, allocator: allocator))
                == "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")
        let long = String(repeating: "v", count: 1000)
        let many = head(.ok, HTTPHeaders((0..<20).map { ("X-\($0)", long) } + [("Content-Length", "0")]))
        let written = text(encoder.encode(head: many, body: nil, end: true, method: .GET, allocator: allocator))
        #expect(written.hasPrefix("HTTP/1.1 200 OK\r\nX-0: \(long)\r\nX-1: \(long)\r\n") && written.utf8.count == 17 + 10 * 1007 + 10 * 1008 + 21)
    }

    @Test func largeBodiesAreNotCopied() {
        var encoder = ResponseEncoder()
        let large = String(repeating: "z", count: ResponseEncoder.coalesceLimit + 1)
        let parts = encoder.encode(head: head(.ok, ["Content-Length": String(large.count)]), body: body(large), end: true,
                                   method: .GET, allocator: allocator)
        #expect(parts.count == 2, "the head, then the body buffer as it is")
        #expect(text(parts).hasSuffix(large))
    }
}

@Suite struct RequestValidationTests {
    func check(_ uri: String, method: HTTPMethod = .GET, version: HTTPVersion = .http1_1,
               _ headers: [(String, String)] = [("Host", "h")]) -> (RequestValidation.Refusal?, RequestHead) {
        var head = RequestHead(version: version, method: method, uri: uri, headers: RequestFields(headers))
        let refusal = RequestValidation.check(&head)
        return (refusal, head)
    }

    @Test func originFormAndAsteriskPass() {
        #expect(check("/a?b=1").0 == nil)
        #expect(check("*", method: .OPTIONS).0 == nil)
        #expect(check("*", method: .GET).0?.status == .badRequest)
        #expect(check("/", version: .http1_0, []).0 == nil, "HTTP/1.0 needs no Host")
    }

    @Test func absoluteFormBecomesThePathWithItsAuthorityAsHost() {
        let (refusal, head) = check("HTTP://Example.org:8080/x/y?q=1#f", [("Host", "ignored")])
        #expect(refusal == nil)
        #expect(head.uri == "/x/y?q=1#f")
        #expect(head.headers["host"] == ["Example.org:8080"])
        #expect(check("https://example.org").1.uri == "/")
        #expect(check("http://example.org?x").1.uri == "/?x")
        #expect(check("http:///path").0?.status == .badRequest)
        #expect(check("http://u:p@example.org/").0?.status == .badRequest)
        #expect(check("ftp://example.org/").0?.status == .badRequest)
        #expect(check("example.org:443").0?.status == .badRequest)
    }

    @Test func hostIsRequiredOnceInHTTP11() {
        #expect(check("/", []).0?.status == .badRequest)
        #expect(check("/", [("Host", "a"), ("Host", "b")]).0?.status == .badRequest)
        #expect(check("/", version: .http1_0, [("Host", "a"), ("Host", "b")]).0?.status == .badRequest)
    }

    @Test func connectAndOtherVersionsAreRefused() {
        let connect = check("example.org:443", method: .CONNECT).0
        #expect(connect?.status == .methodNotAllowed)
        #expect(connect?.headers.contains { $0.0 == "Allow" } == true)
        #expect(check("/", version: HTTPVersion(major: 2, minor: 0)).0?.status == .httpVersionNotSupported)
        #expect(check("/", version: HTTPVersion(major: 1, minor: 2)).0?.status == .httpVersionNotSupported)
    }

    @Test func transferCodingsFollowRFC9112() {
        func te(_ value: String, version: HTTPVersion = .http1_1) -> HTTPResponseStatus? {
            check("/", method: .POST, version: version, [("Host", "h"), ("Transfer-Encoding", value)]).0?.status
        }
        #expect(te("chunked") == nil)
        #expect(te("Chunked ") == nil)
        #expect(te("gzip") == .badRequest, "chunked must come last")
        #expect(te("chunked, gzip") == .badRequest)
        #expect(te("gzip, chunked") == .notImplemented)
        #expect(te("chunked, chunked") == .badRequest)
        #expect(te("chunked", version: .http1_0) == .badRequest)
    }

    @Test func decodedPathsMustBeUTF8WithoutNUL() {
        #expect(check("/caf%C3%A9?x=%ff").0 == nil, "the query is the application's business")
        #expect(check("/%ff").0?.status == .badRequest)
        #expect(check("/a%00b").0?.status == .badRequest)
        #expect(check("/100%").0 == nil, "a lone % stays as it is")
        #expect(percentDecodedBytes("/a%2Fb%zz") == Array("/a/b%zz".utf8))
    }
}
