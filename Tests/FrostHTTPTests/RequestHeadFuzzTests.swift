import NIOCore
import NIOHTTP1
import Testing
@testable import FrostHTTP
import FrostTestSupport

/// A property-based fuzzer over the request head: seeded mutations of valid requests go
/// through the host's request parser and its validation, for a bounded count. Nothing crashes; every head that passes validation is
/// one the extension can be handed (origin-form target, UTF-8 path, a Host in HTTP/1.1).
@Suite struct RequestHeadFuzzTests {

    static let shapes = [
        "GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: fuzz\r\n\r\n",
        "POST http://example.org/p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
        "PUT /%C3%A9 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "OPTIONS * HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, close\r\n\r\n",
    ].map { Array($0.utf8) }

    @Test func mutatedHeadsNeverPassValidationMalformed() throws {
        var random = SeededRandom(seed: 20261202)
        let alphabet = Array(" :/?%\r\n\t\0AZaz09-.*@#".utf8) + [0x80, 0xFF]
        var heads = 0, passed = 0, parseErrors = 0
        for _ in 0..<5000 {
            var bytes = Self.shapes.randomElement(using: &random)!
            random.mutate(&bytes, maxEdits: 5, alphabet: alphabet)
            var parser = RequestParser(limits: HostLimits())
            var buffer = ByteBuffer(bytes: bytes)
            var parts: [RequestPart] = []
            do {
                while let part = try parser.next(&buffer) { parts.append(part) }
            } catch {
                parseErrors += 1
            }
            for part in parts {
                guard case .head(var head, _, let facts) = part else { continue }
                heads += 1
                // What the parser saw in its pass is what a look through the fields' bytes
                // finds, and its keep-alive decision is NIO's.
                #expect(facts == HeadFacts(head.headers), "\(head)")
                #expect(facts.isKeepAlive(head.version) == head.nioHead.isKeepAlive, "\(head.headers)")
                if RequestValidation.check(&head, facts: facts) == nil {
                    passed += 1
                    #expect(head.uri.hasPrefix("/") || (head.uri == "*" && head.method == .OPTIONS), "\(head.uri)")
                    #expect(head.version.major == 1 && head.version.minor <= 1)
                    #expect(head.version.minor == 0 || head.headers["host"].count == 1)
                    #expect(String(validating: percentDecodedBytes(pathPart(of: head.uri)), as: UTF8.self) != nil)
                    #expect(!percentDecodedBytes(pathPart(of: head.uri)).contains(0))
                }
            }
        }
        #expect(heads > 500 && passed > 100 && parseErrors > 500, "heads \(heads), passed \(passed), parse errors \(parseErrors)")
    }
}
