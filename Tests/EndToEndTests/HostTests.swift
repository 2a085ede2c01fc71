import Foundation
import Testing
import FrostBundle

enum HostFixture {
    static let module = #"""
    """hosttest: one behaviour of the host per path."""
    import hashlib, json, sys, threading, time
    from isapi import ExtensionError, isapicon
    from isapi.simple import SimpleExtension

    gate = threading.Event()
    calls = []
    import builtins
    builtins.frost_loads = getattr(builtins, "frost_loads", 0) + 1
    builtins.frost_versions = getattr(builtins, "frost_versions", [])

    def reply(ecb, body, status="200 OK", content_type="application/json"):
        if isinstance(body, str):
            body = body.encode()
        ecb.SendResponseHeaders(status, f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n", False)
        ecb.WriteClient(body)
        return isapicon.HSE_STATUS_SUCCESS

    class Extension(SimpleExtension):
        "host test"

        def GetExtensionVersion(self, vi):
            builtins.frost_versions.append("vi" if vi is not None else None)
            SimpleExtension.GetExtensionVersion(self, vi)

        def HttpExtensionProc(self, ecb):
            path = ecb.PathInfo.decode()
            if path == "/vars":
                out = {}
                for name in ecb.QueryString.decode().split(","):
                    try:
                        value = ecb.GetServerVariable(name)
                        out[name] = [type(value).__name__, value.decode() if isinstance(value, bytes) else value]
                    except ExtensionError as error:
                        out[name] = ["error", error.errno, error.funcname]
                out["default"] = ecb.GetServerVariable("NO_SUCH_VARIABLE", b"fallback").decode()
                return reply(ecb, json.dumps(out))
            if path == "/attrs":
                return reply(ecb, json.dumps({
                    "Method": repr(ecb.Method), "QueryString": repr(ecb.QueryString), "PathInfo": repr(ecb.PathInfo),
                    "ContentType": repr(ecb.ContentType), "TotalBytes": ecb.TotalBytes, "Version": ecb.Version,
                    "ConnID": type(ecb.ConnID).__name__, "KeepAlive": ecb.IsKeepAlive()}))
            if path == "/echo":
                digest, total, reads, largest = hashlib.sha256(), 0, 0, 0
                data = ecb.AvailableData
                while True:
                    if data:
                        digest.update(data); total += len(data); largest = max(largest, len(data)); reads += 1
                    if ecb.TotalBytes != 0xFFFFFFFF and total >= ecb.TotalBytes:
                        break
                    data = ecb.ReadClient(65536)
                    if not data:
                        break
                return reply(ecb, json.dumps({"bytes": total, "sha256": digest.hexdigest(), "reads": reads, "largest": largest}))
            if path == "/chunked":
                ecb.SendResponseHeaders("200 OK", "Content-Type: text/plain\r\n\r\n", False)
                for i in range(3):
                    print("line", i, file=ecb)
                return isapicon.HSE_STATUS_SUCCESS
            if path == "/fail":
                raise ValueError("secret detail")
            if path == "/pending":
                def later():
                    time.sleep(0.2)
                    reply(ecb, "finished on another thread", content_type="text/plain")
                    ecb.DoneWithSession()
                threading.Thread(target=later).start()
                return isapicon.HSE_STATUS_PENDING
            if path == "/block":
                released = gate.wait(20)
                gate.clear()
                return reply(ecb, "released" if released else "timed out", content_type="text/plain")
            if path == "/release":
                gate.set()
                return reply(ecb, "ok", content_type="text/plain")
            if path == "/slow":
                time.sleep(1.0)
                return reply(ecb, "slow done", content_type="text/plain")
            if path == "/redirect":
                ecb.Redirect("/target")
                return isapicon.HSE_STATUS_SUCCESS
            refused = {
                "/badheader": lambda: ecb.SendResponseHeaders("200 OK", "X-Bad: a\x00b\r\n\r\n", False),
                "/badreason": lambda: ecb.SendResponseHeaders("200 OK\r\nX-Injected: 1", "Content-Length: 0\r\n\r\n", False),
                "/badredirect": lambda: ecb.Redirect("/target\r\nX-Injected: 1"),
                "/badpair": lambda: ecb.SendResponseHeaders("200 OK", [("X-Bad", "a\r\nX-Injected: 1")], False),
                "/badname": lambda: ecb.SendResponseHeaders("200 OK", (("Bad Name", "v"),), False),
            }
            if path in refused:
                try:
                    refused[path]()
                except (ValueError, ExtensionError) as error:
                    return reply(ecb, "refused: " + str(error), status="400 Bad Request", content_type="text/plain")
                return reply(ecb, "accepted", content_type="text/plain")
            if path == "/print":
                print("from the handler")
                print("no newline yet", end="")
                sys.stdout.flush()
                print("to stderr", file=sys.stderr)
                return reply(ecb, "printed", content_type="text/plain")
            if path == "/map":
                return reply(ecb, ecb.MapURLToPath("/a/../b/c.txt"), content_type="text/plain")
            if path == "/reload":
                import builtins
                if builtins.frost_loads == 1:
                    from isapi import InternalReloadException
                    raise InternalReloadException
                return reply(ecb, f"loads={builtins.frost_loads} versions={builtins.frost_versions}", content_type="text/plain")
            if path == "/status":
                ecb.HttpStatusCode = 201
                return isapicon.HSE_STATUS_SUCCESS
            if path == "/transmit":
                # The whole file with headers, then the completion callback ends the request.
                name = ecb.MapURLToPath("/transmit.txt").decode()
                f = open(name, "rb")
                size = len(open(name, "rb").read())
                def done(ecb, arg, cbIO, error):
                    calls.append([arg, cbIO, error])
                    f.close()
                    ecb.DoneWithSession()
                ecb.TransmitFile(done, "tf-arg", f.fileno(), "200 OK", 0, 0,
                                 f"Content-Type: text/plain\r\nContent-Length: {size}\r\n\r\n", None,
                                 isapicon.HSE_IO_ASYNC | isapicon.HSE_IO_SEND_HEADERS)
                return isapicon.HSE_STATUS_PENDING
            if path == "/transmit-part":
                # A slice of the file between head and tail bytes, as the body; then close.
                name = ecb.MapURLToPath("/transmit.txt").decode()
                with open(name, "rb") as f:
                    ecb.SendResponseHeaders("200 OK", "Content-Type: text/plain\r\n\r\n", False)
                    ecb.TransmitFile(lambda *a: calls.append(list(a[1:])), "part", f.fileno(), None, 5, 3,
                                     b"[", b"]", isapicon.HSE_IO_ASYNC | isapicon.HSE_IO_DISCONNECT_AFTER_SEND)
                return isapicon.HSE_STATUS_SUCCESS
            if path == "/calls":
                return reply(ecb, json.dumps(calls))
            if path == "/async-write":
                ecb.IOCompletion(lambda ecb, arg, cbIO, error: calls.append([arg, cbIO, error]), "io-arg")
                ecb.SendResponseHeaders("200 OK", "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n", False)
                ecb.WriteClient(b"async", isapicon.HSE_IO_ASYNC)
                return isapicon.HSE_STATUS_SUCCESS
            if path == "/exec":
                def finished(ecb, arg, cbIO, error):
                    status = ecb.GetExecURLStatus()
                    ecb.WriteClient(f"|after {arg} {status[0]}".encode())
                    ecb.DoneWithSession()
                ecb.IOCompletion(finished, "exec")
                ecb.ExecURL("/child/part?x=1", "POST", None, None, None, 0)
                return isapicon.HSE_STATUS_PENDING
            if path == "/child/part":
                ecb.SendResponseHeaders("202 Accepted", "Content-Type: text/plain\r\n\r\n", False)
                ecb.WriteClient(f"child {ecb.Method.decode()} {ecb.QueryString.decode()} {ecb.GetServerVariable('URL').decode()}".encode())
                return isapicon.HSE_STATUS_SUCCESS
            if path == "/exec-static":
                ecb.SendResponseHeaders("200 OK", "Content-Type: text/plain\r\n\r\n", False)
                ecb.WriteClient(b"before|")
                ecb.ExecURL("/transmit.txt", None, None, None, None,
                            isapicon.HSE_EXEC_URL_NO_HEADERS | isapicon.HSE_EXEC_URL_IGNORE_CURRENT_INTERCEPTOR)
                ecb.WriteClient(b"|after " + str(ecb.GetExecURLStatus()).encode())
                return isapicon.HSE_STATUS_SUCCESS
            if path == "/exec-bad":
                try:
                    ecb.ExecURL("/x", None, None, "info", None, 0)
                except ValueError as error:
                    return reply(ecb, str(error), content_type="text/plain")
            if path == "/done-error":
                ecb.DoneWithSession(isapicon.HSE_STATUS_ERROR)
                return isapicon.HSE_STATUS_PENDING
            return reply(ecb, "hello " + path, content_type="text/plain")

        def TerminateExtension(self, status):
            print("TERMINATED", status, flush=True)

    def __ExtensionFactory__():
        return Extension()
    """#

    static func start(_ scratch: ScratchDirectory, arguments: [String] = []) throws -> RunningServer {
        let loader = try makeBundle(in: scratch, name: "hosttest", files: ["hosttest.py": module])
        // One worker: the fixture's handlers share state across requests (a blocked request
        // released by another, call counters), which lives in one process.
        return try RunningServer(loader: loader, arguments: (arguments.contains("--workers") ? [] : ["--workers", "1"]) + arguments)
    }
}

func json(_ response: RawConnection.Response) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
}

@Suite struct HostEndToEndTests {
    @Test func keepAliveAndPipelinedRequestsAnswerInOrder() throws {
        let scratch = ScratchDirectory("host-basic")
        let server = try HostFixture.start(scratch)
        let connection = try RawConnection(port: server.port)
        try connection.send("GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n")
        let first = try connection.readResponse(), second = try connection.readResponse()
        #expect(first.status == 200 && first.text == "hello /one")
        #expect(second.text == "hello /two")
        try connection.send("HEAD /three HTTP/1.1\r\nHost: a\r\n\r\n")
        let head = try connection.readResponse(forHead: true)
        #expect(head.status == 200 && head.header("content-length") == "12")
        let old = try server.request("GET /old HTTP/1.0\r\n\r\n")
        #expect(old.text == "hello /old")
        let stopped = server.stop()
        #expect(stopped.status == 0)
        #expect(stopped.stdout.contains("\"GET /one HTTP/1.1\" 200 10"))
        #expect(stopped.stderr.contains("python stdout: TERMINATED 2"))
    }

    @Test func serverVariablesAndAttributesFollowIIS() throws {
        let scratch = ScratchDirectory("host-vars")
        let server = try HostFixture.start(scratch)
        defer { _ = server.stop() }
        let names = "REQUEST_METHOD,QUERY_STRING,PATH_INFO,URL,SERVER_PROTOCOL,SERVER_PORT,SERVER_NAME,REMOTE_ADDR,"
            + "HTTP_X_CUSTOM,HEADER_X-Custom,ALL_HTTP,CONTENT_LENGTH,HTTPS,SERVER_SOFTWARE,UNICODE_PATH_INFO,BOGUS_NAME"
        let response = try server.get("/vars?\(names)", headers: "X-Custom: yes\r\n")
        let vars = try json(response)
        func value(_ name: String) -> [Any]? { vars[name] as? [Any] }
        #expect(value("REQUEST_METHOD")?[1] as? String == "GET")
        #expect(value("REQUEST_METHOD")?[0] as? String == "bytes")
        #expect(value("QUERY_STRING")?[1] as? String == names)
        #expect(value("PATH_INFO")?[1] as? String == "/vars")
        #expect(value("URL")?[1] as? String == "/vars")
        #expect(value("SERVER_PROTOCOL")?[1] as? String == "HTTP/1.1")
        #expect(value("SERVER_PORT")?[1] as? String == String(server.port))
        #expect(value("SERVER_NAME")?[1] as? String == "test.local")
        #expect(value("REMOTE_ADDR")?[1] as? String == "127.0.0.1")
        #expect(value("HTTP_X_CUSTOM")?[1] as? String == "yes")
        #expect(value("HEADER_X-Custom")?[1] as? String == "yes")
        #expect((value("ALL_HTTP")?[1] as? String)?.contains("HTTP_X_CUSTOM:yes\n") == true)
        #expect(value("HTTPS")?[1] as? String == "off")
        #expect(value("UNICODE_PATH_INFO")?[0] as? String == "str")
        #expect(value("BOGUS_NAME")?[0] as? String == "error")
        #expect(value("BOGUS_NAME")?[1] as? Int == 1413)
        #expect(vars["default"] as? String == "fallback")

        let attrs = try json(try server.request(
            "POST /attrs?a=1 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"))
        #expect(attrs["Method"] as? String == "b'POST'")
        #expect(attrs["QueryString"] as? String == "b'a=1'")
        #expect(attrs["PathInfo"] as? String == "b'/attrs'")
        #expect(attrs["ContentType"] as? String == "b'text/plain'")
        #expect(attrs["TotalBytes"] as? Int == 3)
        #expect((attrs["Version"] as? Int ?? 0) >= 0x60000)
        #expect(attrs["ConnID"] as? String == "int")
    }

    @Test func largeUploadIsReadInPiecesWithBoundedMemory() throws {
        let scratch = ScratchDirectory("host-upload")
        let server = try HostFixture.start(scratch)
        defer { _ = server.stop() }
        let size = 100 * 1024 * 1024
        let connection = try RawConnection(port: server.port)
        try connection.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \(size)\r\nConnection: close\r\n\r\n")
        var hasher = SHA256()
        let piece = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        for _ in 0..<100 {
            try connection.send(piece)
            hasher.update(piece)
        }
        let result = try json(try connection.readResponse())
        #expect(result["bytes"] as? Int == size)
        #expect(result["sha256"] as? String == SHA256.hexString(hasher.finalize()))
        #expect((result["reads"] as? Int ?? 0) > 100)
        #expect((result["largest"] as? Int ?? Int.max) <= 65536 * 2)
        // The body never sat in memory whole: the loader's peak resident size stays far
        // below the 100 MiB it received.
        let status = try String(contentsOfFile: "/proc/\(server.process.processIdentifier)/status", encoding: .utf8)
        let peak = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
            .flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true)[1]) } ?? Int.max
        #expect(peak < 80 * 1024, "peak RSS \(peak) kB")

        let chunked = try server.request("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                         + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        #expect(try json(chunked)["bytes"] as? Int == 11)
    }

    @Test func responsesWithoutLengthAreChunkedAndStatusOnlyWorks() throws {
        let scratch = ScratchDirectory("host-chunked")
        let server = try HostFixture.start(scratch)
        defer { _ = server.stop() }
        let chunked = try server.get("/chunked")
        #expect(chunked.header("transfer-encoding") == "chunked")
        #expect(chunked.text == "line 0\nline 1\nline 2\n")
        let status = try server.get("/status")
        #expect(status.status == 201)
        #expect(status.body.isEmpty)
        let redirect = try server.get("/redirect")
        #expect(redirect.status == 302)
        #expect(redirect.header("location") == "/target")
        let bad = try server.get("/badheader")
        #expect(bad.status == 400)
        #expect(bad.text.hasPrefix("refused: bad value for response header"))
        // No header injection through the status line or a redirect's URL: the handler is
        // told, and the connection still carries a well-formed answer.
        // (name, value) pairs are checked as a header block is.
        let badPair = try server.get("/badpair")
        #expect(badPair.status == 400 && badPair.text.hasPrefix("refused: bad value for response header"), "\(badPair.text)")
        #expect(badPair.header("x-injected") == nil)
        let badName = try server.get("/badname")
        #expect(badName.status == 400 && badName.text.hasPrefix("refused: bad response header name"), "\(badName.text)")
        for path in ["/badreason", "/badredirect"] {
            let injected = try server.get(path)
            #expect(injected.status == 400 && injected.text.hasPrefix("refused:"), "\(path): \(injected.text)")
            #expect(injected.header("x-injected") == nil)
        }
    }

    @Test func exceptionsGiveAGeneric500AndALoggedTraceback() throws {
        let scratch = ScratchDirectory("host-fail")
        let server = try HostFixture.start(scratch)
        let response = try server.get("/fail")
        #expect(response.status == 500)
        #expect(response.text.contains("Internal Server Error"))
        #expect(!response.text.contains("secret detail"))
        let after = try server.get("/still-alive")
        #expect(after.text == "hello /still-alive")
        let stopped = server.stop()
        #expect(stopped.stderr.contains("HttpExtensionProc raised ValueError: secret detail for GET /fail"))
        #expect(stopped.stderr.contains("Traceback (most recent call last):"))

        let debugScratch = ScratchDirectory("host-debug")
        let debugServer = try HostFixture.start(debugScratch, arguments: ["--debug"])
        defer { _ = debugServer.stop() }
        let debug = try debugServer.get("/fail")
        #expect(debug.status == 500)
        #expect(debug.text.contains("ValueError: secret detail"))
    }

    @Test func pendingRequestsEndWithDoneWithSessionFromAnotherThread() throws {
        let scratch = ScratchDirectory("host-pending")
        let server = try HostFixture.start(scratch)
        defer { _ = server.stop() }
        let response = try server.get("/pending")
        #expect(response.text == "finished on another thread")
    }

    @Test func requestsOnDifferentConnectionsRunConcurrently() throws {
        let scratch = ScratchDirectory("host-concurrent")
        let server = try HostFixture.start(scratch, arguments: ["--threads", "2"])
        defer { _ = server.stop() }
        // /block waits for /release: served one at a time, it would time out.
        let blocked = try RawConnection(port: server.port)
        try blocked.send("GET /block HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        usleep(200_000)
        #expect(try server.get("/release").text == "ok")
        #expect(try blocked.readResponse().text == "released")
    }

    @Test func sigtermLetsTheRequestInFlightFinish() throws {
        let scratch = ScratchDirectory("host-sigterm")
        // The single-process mode (the master's stop is in WorkerProcessTests).
        let server = try HostFixture.start(scratch, arguments: ["--workers", "0"])
        let connection = try RawConnection(port: server.port)
        try connection.send("GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        usleep(300_000)
        kill(server.process.processIdentifier, SIGTERM)
        let response = try connection.readResponse()
        #expect(response.status == 200)
        #expect(response.text == "slow done")
        let stopped = server.stop()
        #expect(stopped.status == 0)
        #expect(stopped.stdout.contains("SIGTERM: stopping"))
        #expect(stopped.stderr.contains("python stdout: TERMINATED 2"))
        #expect(stopped.stdout.hasSuffix("frost: stopped\n"))
    }

    @Test func expectContinueIsAnsweredBeforeTheBody() throws {
        let scratch = ScratchDirectory("host-continue")
        let server = try HostFixture.start(scratch)
        defer { _ = server.stop() }
        let connection = try RawConnection(port: server.port)
        try connection.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        var interim = [UInt8](repeating: 0, count: 64)
        let n = recv(connection.fd, &interim, interim.count, 0)
        #expect(String(decoding: interim[..<max(n, 0)], as: UTF8.self).hasPrefix("HTTP/1.1 100 Continue"))
        try connection.send("data")
        #expect(try json(try connection.readResponse())["bytes"] as? Int == 4)
    }

    @Test func unixSocketListening() throws {
        let scratch = ScratchDirectory("host-unix")
        let loader = try makeBundle(in: scratch, name: "hosttest", files: ["hosttest.py": HostFixture.module])
        let socketPath = scratch.path("frost.sock")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: loader)
        process.arguments = ["--listen", "unix:" + socketPath]
        process.standardOutput = Pipe()
        try process.run()
        defer { kill(process.processIdentifier, SIGTERM); process.waitUntilExit() }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: socketPath) { usleep(50_000) }
        let curl = try runProcess("/usr/bin/curl", ["-s", "--unix-socket", socketPath, "http://localhost/over-unix"])
        #expect(curl.stdout == "hello /over-unix")
    }

    @Test func builtSamplesAnswerOverHTTP() throws {
        let scratch = ScratchDirectory("host-samples")
        for name in ["hello", "flask_site"] {
            let build = try frostBuild([Repository.root.appendingPathComponent("Bundles/\(name).toml").path, "--quiet"],
                                       dist: scratch.path)
            #expect(build.status == 0, "\(build.output)")
        }
        let hello = try RunningServer(loader: scratch.path("hello/_hello"))
        #expect(try hello.get("/").text == "Hello, world!\n")
        #expect(hello.stop().status == 0)
        let flask = try RunningServer(loader: scratch.path("flask_site/_flask_site"))
        let page = try flask.get("/")
        #expect(page.status == 200)
        #expect(page.text.contains("<h1>Frozen Flask</h1>"))
        let css = try flask.get("/static/style.css")
        #expect(css.status == 200 && css.header("content-type")?.hasPrefix("text/css") == true)
        #expect(try flask.get("/hello/frost").text.contains("Hello, frost!"))
        #expect(try flask.get("/missing").status == 404)
        #expect(flask.stop().status == 0)
    }
}

@Suite struct HostLimitTests {
    @Test func oversizedRequestsAreRefusedWithoutReachingPython() throws {
        let scratch = ScratchDirectory("host-limits")
        let server = try HostFixture.start(scratch, arguments: ["--max-uri", "100", "--max-headers", "10",
                                                                "--max-body", "1000"])
        defer { _ = server.stop() }
        let longURI = try server.get("/" + String(repeating: "a", count: 200))
        #expect(longURI.status == 414)
        let manyHeaders = try server.get("/h", headers: (0..<20).map { "X-H\($0): v\r\n" }.joined())
        #expect(manyHeaders.status == 431)
        let bigBody = try server.request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        #expect(bigBody.status == 413)
        #expect(bigBody.text.hasPrefix("Payload Too Large"))
        #expect(try server.get("/fine").text == "hello /fine")
    }

    @Test func slowClientsAreDroppedAndOthersStillServed() throws {
        let scratch = ScratchDirectory("host-slow")
        let server = try HostFixture.start(scratch, arguments: ["--header-timeout", "1", "--idle-timeout", "1",
                                                                "--body-timeout", "1", "--threads", "2"])
        defer { _ = server.stop() }
        // A head that never completes.
        let slowloris = try RawConnection(port: server.port)
        try slowloris.send("GET /never HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        // A keep-alive connection that goes quiet after one request.
        let idle = try RawConnection(port: server.port)
        try idle.send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try idle.readResponse().text == "hello /one")
        // A body that stops arriving before the handler is called: the host answers 408.
        let stalled = try RawConnection(port: server.port)
        try stalled.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        #expect(try server.get("/meanwhile").text == "hello /meanwhile")
        usleep(2_500_000)
        #expect(slowloris.isClosedByServer())
        #expect(idle.isClosedByServer())
        let stalledResponse = try? stalled.readResponse()
        #expect(stalledResponse?.status == 408 && stalledResponse?.header("connection") == "close")
        // The Python threads are free again.
        #expect(try server.get("/after").text == "hello /after")
        #expect(try server.get("/after2").text == "hello /after2")
    }

    @Test func aHungHandlerGets504AtItsDeadline() throws {
        let scratch = ScratchDirectory("host-deadline")
        let server = try HostFixture.start(scratch, arguments: ["--request-timeout", "1"])
        defer { _ = server.stop() }
        let response = try server.get("/block")  // waits 20 s for a release that never comes
        #expect(response.status == 504)
        #expect(response.text.hasPrefix("Gateway Timeout"))
        #expect(try server.get("/release").status == 200)  // frees the blocked thread
    }
}

@Suite struct SiteAndStaticFileTests {
    @Test func virtualDirectoriesScriptMapsAndStaticFiles() throws {
        let scratch = ScratchDirectory("host-site")
        let loader = try makeBundle(in: scratch, name: "hosttest", files: ["hosttest.py": HostFixture.module])
        let www = scratch.path("www"), py = scratch.path("py")
        for directory in [www + "/sub", www + "/withindex", py] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let content = (0..<1000).map { "line \($0)\n" }.joined()
        try content.write(toFile: www + "/page.txt", atomically: true, encoding: .utf8)
        try "<p>index</p>".write(toFile: www + "/withindex/index.html", atomically: true, encoding: .utf8)
        try "body{}".write(toFile: www + "/sub/style.css", atomically: true, encoding: .utf8)
        try "secret".write(toFile: scratch.path("secret.txt"), atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: www + "/escape.txt", withDestinationPath: scratch.path("secret.txt"))
        try "plain".write(toFile: py + "/readme.txt", atomically: true, encoding: .utf8)
        let siteFile = scratch.path("site.json")
        try """
            {"virtual_directories": [
              {"name": "/", "path": "\(www)", "script_maps": []},
              {"name": "/app", "path": "\(www)", "script_maps": ["*"]},
              {"name": "/py", "path": "\(py)", "script_maps": [".py"]}]}
            """.write(toFile: siteFile, atomically: true, encoding: .utf8)
        let server = try RunningServer(loader: loader, arguments: ["--site", siteFile])
        defer { _ = server.stop() }

        let file = try server.get("/page.txt")
        #expect(file.status == 200)
        #expect(file.text == content)
        #expect(file.header("content-type") == "text/plain; charset=utf-8")
        let etag = try #require(file.header("etag"))
        let modified = try #require(file.header("last-modified"))
        #expect(file.header("accept-ranges") == "bytes")
        #expect(try server.get("/page.txt", headers: "If-None-Match: \(etag)\r\n").status == 304)
        #expect(try server.get("/page.txt", headers: "If-Modified-Since: \(modified)\r\n").status == 304)
        let part = try server.get("/page.txt", headers: "Range: bytes=7-13\r\n")
        #expect(part.status == 206)
        #expect(part.text == "line 1\n")
        #expect(part.header("content-range") == "bytes 7-13/\(content.utf8.count)")
        #expect(try server.get("/page.txt", headers: "Range: bytes=999999-\r\n").status == 416)
        let head = try server.request("HEAD /sub/style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(head.status == 200 && head.header("content-length") == "6" && head.header("content-type") == "text/css; charset=utf-8")
        #expect(try server.get("/withindex/").text == "<p>index</p>")
        #expect(try server.get("/sub/").status == 403)
        #expect(try server.request("POST /page.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").status == 405)
        for attempt in ["/../secret.txt", "/%2e%2e/secret.txt", "/sub/..%2f..%2fsecret.txt", "/sub/%2E%2E/%2E%2E/secret.txt",
                        "/escape.txt", "/./page.txt", "/nothing.txt"] {
            let response = try server.get(attempt)
            #expect(response.status == 404, "\(attempt)")
            #expect(!response.text.contains("secret"), "\(attempt)")
        }
        // Keep-alive across static responses.
        let connection = try RawConnection(port: server.port)
        try connection.send("GET /page.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /sub/style.css HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try connection.readResponse().text == content)
        #expect(try connection.readResponse().text == "body{}")

        // The extension behind /app (wildcard) and /py (.py script map).
        let vars = try json(try server.get("/app/vars?SCRIPT_NAME,PATH_INFO,URL,APPL_PHYSICAL_PATH,PATH_TRANSLATED"))
        #expect((vars["SCRIPT_NAME"] as? [Any])?[1] as? String == "/app")
        #expect((vars["PATH_INFO"] as? [Any])?[1] as? String == "/vars")
        #expect((vars["URL"] as? [Any])?[1] as? String == "/app/vars")
        #expect((vars["APPL_PHYSICAL_PATH"] as? [Any])?[1] as? String == www + "/")
        #expect((vars["PATH_TRANSLATED"] as? [Any])?[1] as? String == www + "/vars")
        #expect(try server.get("/py/run.py").text == "hello /run.py")
        #expect(try server.get("/py/readme.txt").text == "plain")
    }
}


@Suite struct HostRuntimeTests {
    @Test func pythonOutputGoesToTheLogTaggedLineByLine() throws {
        let scratch = ScratchDirectory("host-print")
        let server = try HostFixture.start(scratch)
        #expect(try server.get("/print").text == "printed")
        let stopped = server.stop()
        #expect(stopped.stderr.contains("python stdout: from the handler\n"))
        #expect(stopped.stderr.contains("python stdout: no newline yet\n"))
        #expect(stopped.stderr.contains("python stderr: to stderr\n"))
        #expect(!stopped.stdout.contains("from the handler"))
    }

    @Test func internalReloadExceptionReloadsAndReissuesTheRequest() throws {
        let scratch = ScratchDirectory("host-reload")
        let server = try HostFixture.start(scratch)
        let response = try server.get("/reload")
        #expect(response.status == 200)
        #expect(response.text == "loads=2 versions=['vi', None]")
        #expect(try server.get("/after").text == "hello /after")
        let stopped = server.stop()
        #expect(stopped.stderr.contains("InternalReloadException: reloading the entry module"))
    }

    @Test func transmitFileExecURLAndIOCompletion() throws {
        let scratch = ScratchDirectory("host-io")
        let content = (0..<5000).map { "row \($0)\n" }.joined()
        try content.write(toFile: scratch.path("transmit.txt"), atomically: true, encoding: .utf8)
        let server = try HostFixture.start(scratch)
        let whole = try server.get("/transmit")
        #expect(whole.status == 200 && whole.text == content)
        #expect(whole.header("content-type") == "text/plain")
        let part = try RawConnection(port: server.port)
        try part.send("GET /transmit-part HTTP/1.1\r\nHost: x\r\n\r\n")
        let partial = try part.readResponse()
        #expect(partial.text == "[ 0\nro]", "\(partial.text)")
        #expect(part.isClosedByServer(), "HSE_IO_DISCONNECT_AFTER_SEND")
        #expect(try server.get("/async-write").text == "async")
        // The completion callback runs once the bytes are out, which is also when the client
        // has its whole response: the next request can get there first, so ask until it is in.
        var calls: [[Any]] = []
        eventually(5) {
            calls = (try? JSONSerialization.jsonObject(with: Data(try server.get("/calls").body)) as? [[Any]]) ?? []
            return calls.count >= 3
        }
        try #require(calls.count == 3, "\(calls)")
        // (arg, bytes, error) per callback; they may land in any order, for the same reason.
        func call(_ argument: String) -> [Any]? { calls.first { $0.first as? String == argument } }
        #expect(call("tf-arg")?[1] as? Int == content.utf8.count && call("tf-arg")?[2] as? Int == 0, "\(calls)")
        #expect(call("part")?[1] as? Int == 7 && call("part")?[2] as? Int == 0, "\(calls)")
        #expect(call("io-arg")?[1] as? Int == 5 && call("io-arg")?[2] as? Int == 0, "\(calls)")
        // ExecURL: a child request through the extension, then the completion callback.
        let exec = try server.get("/exec")
        #expect(exec.status == 202)
        #expect(exec.text == "child POST x=1 /child/part|after exec 202")
        // A static child with no headers, inside the parent's response.
        let statics = try server.get("/exec-static")
        #expect(statics.text == "before|" + content + "|after (200, 0, 0)")
        #expect(try server.get("/exec-bad").text == "info and entity params must be None")
        #expect(try server.get("/done-error").status == 500)
        #expect(server.stop().status == 0)
    }

    @Test func mapURLToPathFollowsTheBundleDirectory() throws {
        let scratch = ScratchDirectory("host-map")
        let server = try HostFixture.start(scratch)
        defer { _ = server.stop() }
        let real = URL(fileURLWithPath: scratch.path).resolvingSymlinksInPath().path
        let mapped = try server.get("/map").text
        #expect(mapped == scratch.path + "/b/c.txt" || mapped == real + "/b/c.txt")
    }

    @Test func frostRunBuildsAndServesASpec() throws {
        let scratch = ScratchDirectory("frost-run")
        let server = try RunningServer(command: Products.frost, arguments: [
            "run", Repository.root.appendingPathComponent("Bundles/hello.toml").path, "--dist", scratch.path,
            "--stub", Products.stub, "--", "--listen", "127.0.0.1:0"])
        #expect(try server.get("/").text == "Hello, world!\n")
        #expect(server.stop().status == 0)
    }
}

@Suite struct RedirectorSampleTests {
    @Test func redirectorProxiesToItsUpstream() throws {
        let scratch = ScratchDirectory("redirector")
        for name in ["hello", "redirector"] {
            let build = try frostBuild([Repository.root.appendingPathComponent("Bundles/\(name).toml").path, "--quiet"],
                                       dist: scratch.path)
            #expect(build.status == 0, "\(build.output)")
        }
        let upstream = try RunningServer(loader: scratch.path("hello/_hello"))
        defer { _ = upstream.stop() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: scratch.path("redirector/_redirector"))
        process.arguments = ["--listen", "127.0.0.1:0"]
        process.environment = ["FROST_REDIRECTOR_UPSTREAM": "http://127.0.0.1:\(upstream.port)"]
        let proxy = try RunningServer(process: process)
        defer { _ = proxy.stop() }
        let response = try proxy.get("/anything?x=1")
        #expect(response.status == 200)
        #expect(response.text == "Hello, world!\n")
        #expect(response.header("content-type") == "text/plain")
        let posted = try proxy.request("POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        #expect(posted.text == "Hello, world!\n")
        let stopped = upstream.stop()
        #expect(stopped.stdout.contains("\"GET /anything?x=1 HTTP/1.1\" 200"))
        #expect(stopped.stdout.contains("\"POST /form HTTP/1.1\" 200"))
        #expect(try proxy.get("/down").status == 502)
    }
}

@Suite struct AccessLogTests {
    @Test func accessLogToAFileInW3CAndCombinedFormat() throws {
        let scratch = ScratchDirectory("access-log")
        let w3cFile = scratch.path("access-w3c.log"), combinedFile = scratch.path("access.log")
        let w3c = try HostFixture.start(scratch, arguments: ["--access-log", w3cFile, "--log-format", "w3c"])
        #expect(try w3c.get("/x?y=1", headers: "User-Agent: Test Agent\r\n").text == "hello /x")
        let w3cStopped = w3c.stop()
        #expect(!w3cStopped.stdout.contains("GET /x"))
        let w3cText = try String(contentsOfFile: w3cFile, encoding: .utf8)
        #expect(w3cText.hasPrefix("#Software: frost/0.1\n#Version: 1.0\n#Date: "))
        #expect(w3cText.contains("#Fields: date time c-ip cs-method cs-uri-stem cs-uri-query sc-status sc-bytes time-taken cs(User-Agent) cs(Referer)\n"))
        let entry = try #require(w3cText.split(separator: "\n").last)
        let fields = entry.split(separator: " ")
        #expect(fields.count == 11)
        #expect(Array(fields[2...7]) == ["127.0.0.1", "GET", "/x", "y=1", "200", "8"])
        #expect(Int(fields[8]) != nil)
        #expect(Array(fields[9...10]) == ["Test+Agent", "-"])

        let combinedScratch = ScratchDirectory("access-log-2")
        let combined = try HostFixture.start(combinedScratch, arguments: ["--access-log", combinedFile])
        #expect(try combined.get("/y").status == 200)
        #expect(combined.stop().status == 0)
        let combinedText = try String(contentsOfFile: combinedFile, encoding: .utf8)
        #expect(combinedText.contains("\"GET /y HTTP/1.1\" 200 8 \"-\" \"-\"\n"))
        #expect(combinedText.hasPrefix("127.0.0.1 - - ["))
    }
}
