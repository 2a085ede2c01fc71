import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The corpus of malformed and adversarial requests: each with the answer it must get,
/// the extension never called for it, and the same connection (when the answer keeps it)
/// or the next one still served by the same worker.
enum HostileRequests {
    /// An extension that counts the requests it is called with (`/calls` answers the
    /// count without counting itself) and echoes what it saw of the others.
    static let module = #"""
    import os
    from isapi import isapicon
    from isapi.simple import SimpleExtension

    calls = 0

    \#(PythonFixture.reply)

    class Extension(SimpleExtension):
        "hostile requests"

        def HttpExtensionProc(self, ecb):
            global calls
            path = ecb.PathInfo.decode()
            if path == "/calls":
                return reply(ecb, f"{calls} pid {os.getpid()}")
            calls += 1
            body = ecb.AvailableData
            while len(body) < ecb.TotalBytes:
                more = ecb.ReadClient(65536)
                if not more:
                    break
                body += more
            host = ecb.GetServerVariable("HTTP_HOST", b"").decode()
            return reply(ecb, f"{ecb.Method.decode()} {path!r} host={host} body={len(body)}")

    def __ExtensionFactory__():
        return Extension()
    """#

    struct Case {
        let name: String
        let request: [UInt8]
        /// The status the host must answer; nil: the host closes without an answer.
        let status: Int?
        /// Whether the extension sees it (a valid request the corpus keeps for contrast).
        var reachesExtension = false

        init(_ name: String, _ request: String, _ status: Int?, reachesExtension: Bool = false) {
            self.init(name, Array(request.utf8), status, reachesExtension: reachesExtension)
        }

        init(_ name: String, _ request: [UInt8], _ status: Int?, reachesExtension: Bool = false) {
            self.name = name
            self.request = request
            self.status = status
            self.reachesExtension = reachesExtension
        }
    }

    /// `--max-body` below the read-ahead (48 KiB), so a chunked body over it is refused
    /// before dispatch.
    static let limits = ["--max-uri", "1024", "--max-headers", "20", "--max-header-bytes", "4096", "--max-body", "40000"]

    static var corpus: [Case] {
        let host = "Host: h\r\n"
        return [
            // For contrast: what the corpus's attacks are variations of.
            Case("a valid GET", "GET /ok HTTP/1.1\r\n\(host)\r\n", 200, reachesExtension: true),
            Case("absolute-form target", "GET http://example.org/abs?x=1 HTTP/1.1\r\nHost: other\r\n\r\n", 200, reachesExtension: true),
            Case("percent-encoded UTF-8 in the path", "GET /caf%C3%A9 HTTP/1.1\r\n\(host)\r\n", 200, reachesExtension: true),
            Case("a chunked body", "POST /c HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", 200,
                 reachesExtension: true),
            Case("OPTIONS *", "OPTIONS * HTTP/1.1\r\n\(host)\r\n", 200, reachesExtension: true),

            // Request lines.
            Case("garbage request line", "GARBAGE\r\n\r\n", 400),
            Case("invalid method characters", "G(T / HTTP/1.1\r\n\(host)\r\n", 400),
            Case("unknown method", "FROBNICATE / HTTP/1.1\r\n\(host)\r\n", 400),
            Case("lower-case method", "get / HTTP/1.1\r\n\(host)\r\n", 400),
            Case("no target", "GET HTTP/1.1\r\n\(host)\r\n", 400),
            Case("space in the target", "GET /a b HTTP/1.1\r\n\(host)\r\n", 400),
            Case("raw invalid UTF-8 in the target", [UInt8]("GET /".utf8) + [0xFF, 0xFE] + [UInt8](" HTTP/1.1\r\n\(host)\r\n".utf8), 400),
            Case("NUL in the target", [UInt8]("GET /a".utf8) + [0] + [UInt8](" HTTP/1.1\r\n\(host)\r\n".utf8), 400),
            Case("HTTP/0.9 request", "GET /\r\n", 400),
            Case("HTTP/2 preface on the HTTP/1 port", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
            Case("unsupported version", "GET / HTTP/3.0\r\n\(host)\r\n", 400),
            Case("percent-encoded invalid UTF-8 in the path", "GET /%ff%fe HTTP/1.1\r\n\(host)\r\n", 400),
            Case("percent-encoded NUL in the path", "GET /secret.txt%00.png HTTP/1.1\r\n\(host)\r\n", 400),
            Case("authority-form target outside CONNECT", "GET example.org:80 HTTP/1.1\r\n\(host)\r\n", 400),
            Case("absolute-form with credentials", "GET http://user:pw@example.org/ HTTP/1.1\r\n\(host)\r\n", 400),
            Case("CONNECT", "CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n", 405),
            Case("target over --max-uri", "GET /" + String(repeating: "a", count: 2000) + " HTTP/1.1\r\n\(host)\r\n", 414),

            // Header fields.
            Case("HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400),
            Case("two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            Case("space in a header name", "GET / HTTP/1.1\r\n\(host)Bad Name: x\r\n\r\n", 400),
            Case("space before the colon", "GET / HTTP/1.1\r\n\(host)X-Name : x\r\n\r\n", 400),
            Case("NUL in a header value", [UInt8]("GET / HTTP/1.1\r\n\(host)X-A: a".utf8) + [0] + [UInt8]("b\r\n\r\n".utf8), 400),
            Case("obs-fold", "GET / HTTP/1.1\r\n\(host)X-A: a\r\n  folded\r\n\r\n", 400),
            Case("bare LF line endings", "GET /lf HTTP/1.1\nHost: h\n\n", 400),
            Case("bare CR in a header", "GET / HTTP/1.1\r\n\(host)X-A: a\rb\r\n\r\n", 400),
            Case("header line without a colon", "GET / HTTP/1.1\r\n\(host)NoColon\r\n\r\n", 400),
            Case("too many header fields", "GET / HTTP/1.1\r\n\(host)" + (0..<30).map { "X-\($0): v\r\n" }.joined() + "\r\n", 431),
            Case("header fields too large", "GET / HTTP/1.1\r\n\(host)X-Big: " + String(repeating: "v", count: 5000) + "\r\n\r\n", 431),

            // Framing and smuggling.
            Case("identical duplicate Content-Length", "POST /d HTTP/1.1\r\n\(host)Content-Length: 2\r\nContent-Length: 2\r\n\r\nhi", 400),            Case("conflicting Content-Length", "POST / HTTP/1.1\r\n\(host)Content-Length: 2\r\nContent-Length: 3\r\n\r\nhey", 400),
            Case("Content-Length list", "POST / HTTP/1.1\r\n\(host)Content-Length: 2, 3\r\n\r\nhey", 400),
            Case("negative Content-Length", "POST / HTTP/1.1\r\n\(host)Content-Length: -1\r\n\r\n", 400),
            Case("Content-Length with Transfer-Encoding", "POST / HTTP/1.1\r\n\(host)Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            Case("Transfer-Encoding not ending in chunked", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip\r\n\r\nabc", 400),
            Case("a transfer coding the server does not decode", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
            Case("chunked twice", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
            Case("Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            Case("chunk size not hex", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
            Case("chunk size overflowing", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nx\r\n0\r\n\r\n", 400),
            Case("chunk data longer than its size", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400),
            Case("malformed trailer", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer\r\n\r\n", 400),
            Case("body over --max-body", "POST / HTTP/1.1\r\n\(host)Content-Length: 100000\r\n\r\n", 413),
            Case("chunked body over --max-body", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\nafc8\r\n"
                 + String(repeating: "x", count: 45000) + "\r\n0\r\n\r\n", 413),
        ]
    }
}

@Suite(.serialized) struct HostileRequestTests {
    /// The extension's call count and the worker's pid, over a fresh connection.
    static func calls(_ server: RunningServer) throws -> (count: Int, pid: String) {
        let text = try server.get("/calls").text
        let parts = text.split(separator: " ", maxSplits: 1)
        return (Int(parts.first ?? "") ?? -1, parts.count > 1 ? String(parts[1]) : "")
    }

    @Test func everyHostileRequestGetsItsAnswerAndNothingElseIsDisturbed() throws {
        let scratch = ScratchDirectory("hostile")
        let loader = try makeBundle(in: scratch, name: "hostile", files: ["hostile.py": HostileRequests.module],
                                    stub: Products.releaseStub ?? Products.stub)
        let server = try RunningServer(loader: loader, arguments: ["--workers", "1"] + HostileRequests.limits)
        var (calls, pid) = try Self.calls(server)
        var failures: [String] = []
        for testCase in HostileRequests.corpus {
            // The case, then a valid request on the same connection: served when the
            // answer kept the connection open, never answered after a close.
            let follow = Array("GET /calls HTTP/1.1\r\nHost: h\r\n\r\n".utf8)
            let exchange = try WireExchange.run(port: server.port, testCase.request + follow, halfClose: false, quiet: 0.3)
            guard let responses = exchange.responses else {
                failures.append("\(testCase.name): not HTTP: \(String(decoding: exchange.received, as: UTF8.self).debugDescription)")
                continue
            }
            let first = responses.first
            if first?.status != testCase.status {
                failures.append("\(testCase.name): \(first.map { "\($0.status) \($0.body.prefix(80))" } ?? "no answer"), "
                                + "expected \(testCase.status.map(String.init) ?? "a close")")
            }
            if let first, first.status >= 400 {
                #expect(first.headers["connection"] == "close" || responses.count == 2, "\(testCase.name): closes or serves on")
                #expect(responses.count == 1 || first.headers["connection"] != "close", "\(testCase.name): nothing after a close")
            }
            let now = try Self.calls(server)
            let expected = calls + (testCase.reachesExtension ? 1 : 0)
            if now.count != expected {
                failures.append("\(testCase.name): the extension was called \(now.count - calls) times, expected \(expected - calls)")
            }
            #expect(now.pid == pid, "\(testCase.name): the same worker serves on")
            (calls, pid) = now
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        let stopped = server.stop()
        #expect(stopped.status == 0)
        #expect(!stopped.stderr.contains("replaced by"), "\(stopped.stderr)")
    }

    /// What a valid but unusual request looks like to the extension: the absolute-form
    /// target becomes the path and the Host, and percent-escapes reach it decoded.
    @Test func unusualValidTargetsReachTheExtensionNormalised() throws {
        let scratch = ScratchDirectory("hostile-valid")
        let loader = try makeBundle(in: scratch, name: "hostile", files: ["hostile.py": HostileRequests.module],
                                    stub: Products.releaseStub ?? Products.stub)
        let server = try RunningServer(loader: loader, arguments: ["--workers", "0"])
        let absolute = try WireExchange.run(port: server.port, Array("GET http://example.org:8080/abs?x=1 HTTP/1.1\r\nHost: other\r\n\r\n".utf8),
                                            halfClose: true)
        #expect(absolute.responses?.first?.body == "GET '/abs' host=example.org:8080 body=0", "\(absolute.responses?.first?.body ?? "")")
        let escaped = try WireExchange.run(port: server.port, Array("GET /caf%C3%A9/x HTTP/1.1\r\nHost: h\r\n\r\n".utf8), halfClose: true)
        #expect(escaped.responses?.first?.body == "GET '/café/x' host=h body=0", "\(escaped.responses?.first?.body ?? "")")
        // A small body is read ahead: the handler's first look (AvailableData) holds all of it.
        let posted = try WireExchange.run(port: server.port, Array("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello".utf8),
                                          halfClose: true)
        #expect(posted.responses?.first?.body == "POST '/p' host=h body=5")
        _ = server.stop()
    }
}
