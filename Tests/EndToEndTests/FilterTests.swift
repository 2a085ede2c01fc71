import Foundation
import Testing

enum FilterFixture {
    /// A filter that asks for every notification and does one thing per URL, and an
    /// extension that shows what reached it.
    static let module = #"""
    """filtertest: every filter notification and return code."""
    import json
    from isapi import isapicon
    from isapi.simple import SimpleExtension, SimpleFilter

    ALL = (isapicon.SF_NOTIFY_READ_RAW_DATA | isapicon.SF_NOTIFY_PREPROC_HEADERS | isapicon.SF_NOTIFY_AUTHENTICATION
           | isapicon.SF_NOTIFY_URL_MAP | isapicon.SF_NOTIFY_ACCESS_DENIED | isapicon.SF_NOTIFY_SEND_RESPONSE
           | isapicon.SF_NOTIFY_SEND_RAW_DATA | isapicon.SF_NOTIFY_END_OF_REQUEST | isapicon.SF_NOTIFY_LOG
           | isapicon.SF_NOTIFY_END_OF_NET_SESSION | isapicon.SF_NOTIFY_ORDER_DEFAULT)
    kept = []

    def raw_response(status, body):
        return (f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    class Filter(SimpleFilter):
        "every notification"
        filter_flags = ALL

        def HttpFilterProc(self, fc):
            nt = fc.NotificationType
            if nt == isapicon.SF_NOTIFY_READ_RAW_DATA:
                raw = fc.GetData()
                data = raw.InData
                if b"X-Raw-Block" in data:
                    fc.WriteClient(raw_response("403 Forbidden", b"blocked raw\n"))
                    return isapicon.SF_STATUS_REQ_FINISHED
                if b"X-Split" in data and not data.endswith(b"\r\n\r\n"):
                    return isapicon.SF_STATUS_REQ_READ_NEXT
                if b"X-Split" in data:
                    raw.InData = data.replace(b"/ext/split", b"/ext/joined")
                    return isapicon.SF_STATUS_REQ_NEXT_NOTIFICATION
                if b"X-Raw-Rewrite" in data:
                    raw.InData = data.replace(b"/raw-original", b"/ext/raw-rewritten")
                return isapicon.SF_STATUS_REQ_NEXT_NOTIFICATION
            if nt == isapicon.SF_NOTIFY_PREPROC_HEADERS:
                headers = fc.GetData()
                url = headers.GetHeader("url")
                fc.FilterContext = (fc.FilterContext or 0) + 1
                fc.AddResponseHeaders(f"X-Count: {fc.FilterContext}\r\n")
                if url == b"/rewrite":
                    headers.SetHeader("url", "/ext/rewritten?q=1")
                    headers.SetHeader("X-Added:", "yes")
                    headers.AddHeader("X-Multi", "two")
                    headers.SetHeader("User-Agent", "")
                    override = headers.GetHeader("X-Method:", None)
                    if override:
                        headers.SetHeader("method", override)
                    return isapicon.SF_STATUS_REQ_HANDLED_NOTIFICATION
                if url == b"/finish-keep":
                    fc.SendResponseHeader("200 OK", "Content-Type: text/plain\r\nContent-Length: 12\r\n")
                    fc.WriteClient(b"from filter\n")
                    return isapicon.SF_STATUS_REQ_FINISHED_KEEP_CONN
                if url == b"/finish-close":
                    fc.WriteClient(raw_response("200 OK", b"closing\n"))
                    return isapicon.SF_STATUS_REQ_FINISHED
                if url == b"/error":
                    return isapicon.SF_STATUS_REQ_ERROR
                if url == b"/raise":
                    raise ValueError("filter secret")
                if url == b"/stale":
                    kept.append(headers)
                if url == b"/use-stale":
                    try:
                        kept[0].GetHeader("url")
                    except RuntimeError as error:
                        headers.SetHeader("url", "/ext/stale-refused")
                if url == b"/disable":
                    fc.DisableNotifications(isapicon.SF_NOTIFY_SEND_RESPONSE)
                    headers.SetHeader("url", "/ext/disabled")
                return None
            if nt == isapicon.SF_NOTIFY_AUTHENTICATION:
                auth = fc.GetData()
                if auth.User == b"admin" and auth.Password == b"secret":
                    auth.User = b"administrator"
                return isapicon.SF_STATUS_REQ_NEXT_NOTIFICATION
            if nt == isapicon.SF_NOTIFY_URL_MAP:
                mapping = fc.GetData()
                if mapping.URL == b"/mapped.txt":
                    mapping.PhysicalPath = mapping.PhysicalPath.replace(b"mapped.txt", b"real.txt")
                return isapicon.SF_STATUS_REQ_NEXT_NOTIFICATION
            if nt == isapicon.SF_NOTIFY_ACCESS_DENIED:
                denied = fc.GetData()
                print("ACCESS_DENIED", denied.URL.decode(), denied.Reason)
                fc.WriteClient(raw_response("401 Unauthorized", b"custom denial\n"))
                return isapicon.SF_STATUS_REQ_FINISHED_KEEP_CONN
            if nt == isapicon.SF_NOTIFY_SEND_RESPONSE:
                response = fc.GetData()
                response.SetHeader("X-Send-Response", str(response.HttpStatus))
                if response.HttpStatus == 404 and fc.GetServerVariable("URL") == b"/ext/gone":
                    response.HttpStatus = 410
                return isapicon.SF_STATUS_REQ_NEXT_NOTIFICATION
            if nt == isapicon.SF_NOTIFY_SEND_RAW_DATA:
                raw = fc.GetData()
                if b"SECRET" in raw.InData:
                    raw.InData = raw.InData.replace(b"SECRET", b"******")
                return isapicon.SF_STATUS_REQ_NEXT_NOTIFICATION
            if nt == isapicon.SF_NOTIFY_END_OF_REQUEST:
                print("END_OF_REQUEST", fc.GetServerVariable("URL").decode())
                return isapicon.SF_STATUS_REQ_NEXT_NOTIFICATION
            if nt == isapicon.SF_NOTIFY_LOG:
                log = fc.GetData()
                if log.Target == b"/ext/hidden":
                    log.Target = b"/redacted"
                    log.ClientUserName = b"someone"
                print("LOG", log.Operation.decode(), log.Target.decode(), log.HttpStatus, log.BytesSent)
                return isapicon.SF_STATUS_REQ_NEXT_NOTIFICATION
            if nt == isapicon.SF_NOTIFY_END_OF_NET_SESSION:
                print("END_OF_NET_SESSION requests", fc.FilterContext)
                return isapicon.SF_STATUS_REQ_NEXT_NOTIFICATION
            return isapicon.SF_STATUS_REQ_NEXT_NOTIFICATION

        def TerminateFilter(self, status):
            print("FILTER TERMINATED", status, flush=True)

    class Extension(SimpleExtension):
        "sees what the filter let through"

        def HttpExtensionProc(self, ecb):
            url = ecb.GetServerVariable("URL").decode()
            if url == "/ext/deny":
                ecb.SendResponseHeaders("401 Unauthorized", "Content-Type: text/plain\r\n\r\n", False)
                ecb.WriteClient(b"the extension's denial\n")
                return isapicon.HSE_STATUS_SUCCESS
            if url == "/ext/gone":
                body = b"not here\n"
                ecb.SendResponseHeaders("404 Not Found", f"Content-Length: {len(body)}\r\n\r\n", False)
                ecb.WriteClient(body)
                return isapicon.HSE_STATUS_SUCCESS
            if url == "/ext/secret":
                body = b"the SECRET word\n"
                ecb.SendResponseHeaders("200 OK", f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n", False)
                ecb.WriteClient(body)
                return isapicon.HSE_STATUS_SUCCESS
            seen = {
                "url": url, "method": ecb.Method.decode(), "query": ecb.QueryString.decode(),
                "added": ecb.GetServerVariable("HTTP_X_ADDED", b"").decode(),
                "multi": ecb.GetServerVariable("HTTP_X_MULTI", b"").decode(),
                "agent": ecb.GetServerVariable("HTTP_USER_AGENT", b"-").decode(),
                "user": ecb.GetServerVariable("REMOTE_USER").decode(),
                "auth": ecb.GetServerVariable("AUTH_TYPE").decode(),
            }
            body = json.dumps(seen).encode()
            ecb.SendResponseHeaders("200 OK", f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n", False)
            ecb.WriteClient(body)
            return isapicon.HSE_STATUS_SUCCESS

    def __FilterFactory__():
        return Filter()

    def __ExtensionFactory__():
        return Extension()
    """#

    /// The bundle plus a site: "/" static files from `www`, "/ext" to the extension.
    static func start(_ scratch: ScratchDirectory, filters: String? = nil) throws -> (RunningServer, String) {
        let loader = try makeBundle(in: scratch, name: "filtertest", files: ["filtertest.py": module])
        let www = scratch.path("www")
        try FileManager.default.createDirectory(atPath: www, withIntermediateDirectories: true)
        try "the real file\n".write(toFile: www + "/real.txt", atomically: true, encoding: .utf8)
        try "static SECRET text\n".write(toFile: www + "/secret.txt", atomically: true, encoding: .utf8)
        let site = scratch.path("site.json")
        try """
            {"virtual_directories": [{"name": "/", "path": "\(www)", "script_maps": []},
                                     {"name": "/ext", "path": "\(www)", "script_maps": ["*"]}]
             \(filters.map { ", \"filters\": \($0)" } ?? "")}
            """.write(toFile: site, atomically: true, encoding: .utf8)
        // One worker: the filter's notifications are compared across requests in one process.
        return (try RunningServer(loader: loader, arguments: ["--workers", "1", "--site", site]), www)
    }
}

@Suite struct FilterEndToEndTests {
    @Test func preprocHeadersRewritesTheRequestLineAndHeaders() throws {
        let scratch = ScratchDirectory("filter-preproc")
        let (server, _) = try FilterFixture.start(scratch)
        let response = try server.get("/rewrite", headers: "User-Agent: tester\r\nX-Method: DELETE\r\n")
        let seen = try json(response)
        #expect(seen["url"] as? String == "/ext/rewritten")
        #expect(seen["query"] as? String == "q=1")
        #expect(seen["method"] as? String == "DELETE")
        #expect(seen["added"] as? String == "yes")
        #expect(seen["multi"] as? String == "two")
        #expect(seen["agent"] as? String == "-", "an empty SetHeader value removes the header")
        #expect(response.header("x-send-response") == "200")
        let stopped = server.stop()
        #expect(stopped.status == 0)
        #expect(stopped.stdout.contains("\"DELETE /ext/rewritten?q=1 HTTP/1.1\" 200"))
        #expect(stopped.stderr.contains("python stdout: END_OF_REQUEST /ext/rewritten"))
        #expect(stopped.stderr.contains("python stdout: LOG DELETE /ext/rewritten 200"))
        #expect(stopped.stderr.contains("python stdout: FILTER TERMINATED 2"))
    }

    @Test func filterContextLivesPerConnectionUntilTheSessionEnds() throws {
        let scratch = ScratchDirectory("filter-context")
        let (server, _) = try FilterFixture.start(scratch)
        let connection = try RawConnection(port: server.port)
        try connection.send("GET /ext/a HTTP/1.1\r\nHost: x\r\n\r\nGET /ext/b HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try connection.readResponse().header("x-count") == "1")
        #expect(try connection.readResponse().header("x-count") == "2")
        try connection.send("GET /ext/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(try connection.readResponse().header("x-count") == "3")
        #expect(try server.get("/ext/other").header("x-count") == "1", "a new connection starts from None")
        let stopped = server.stop()
        #expect(stopped.stderr.contains("python stdout: END_OF_NET_SESSION requests 3"))
        #expect(stopped.stderr.contains("python stdout: END_OF_NET_SESSION requests 1"))
    }

    @Test func everyReturnCodeSteersThePipeline() throws {
        let scratch = ScratchDirectory("filter-status")
        let (server, _) = try FilterFixture.start(scratch)
        // FINISHED_KEEP_CONN: the filter's own response, and the connection goes on.
        let connection = try RawConnection(port: server.port)
        try connection.send("GET /finish-keep HTTP/1.1\r\nHost: x\r\n\r\n")
        let kept = try connection.readResponse()
        #expect(kept.status == 200 && kept.text == "from filter\n")
        try connection.send("GET /ext/after HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try json(try connection.readResponse())["url"] as? String == "/ext/after")
        // FINISHED: the filter's response, then the connection closes.
        let closing = try RawConnection(port: server.port)
        try closing.send("GET /finish-close HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try closing.readResponse().text == "closing\n")
        #expect(closing.isClosedByServer())
        // ERROR and an exception: a generic 500, the traceback only in the log.
        #expect(try server.get("/error").status == 500)
        let raised = try server.get("/raise")
        #expect(raised.status == 500 && !raised.text.contains("filter secret"))
        // HANDLED / NEXT / None: the request goes on.
        #expect(try json(try server.get("/ext/plain"))["url"] as? String == "/ext/plain")
        // A notification's objects die with it.
        _ = try server.get("/stale")
        #expect(try json(try server.get("/use-stale"))["url"] as? String == "/ext/stale-refused")
        let stopped = server.stop()
        #expect(stopped.stderr.contains("HttpFilterProc raised ValueError: filter secret for SF_NOTIFY_PREPROC_HEADERS"))
        #expect(stopped.stderr.contains("Traceback"))
    }

    /// A filter that finishes a request while its body is still coming: the client reads the
    /// filter's answer, sends the rest without a reset, and then sees an orderly close.
    @Test func aFilterAnswerBeforeTheBodyIsInLosesNothingToAReset() throws {
        let scratch = ScratchDirectory("filter-early")
        let (server, _) = try FilterFixture.start(scratch)
        let connection = try RawConnection(port: server.port)
        try connection.send("POST /finish-close HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n" + String(repeating: "b", count: 100))
        #expect(try connection.readResponse().text == "closing\n")
        var sent = 100
        while sent < 3_000_000 {
            try connection.send([UInt8](repeating: 0x62, count: 200_000))  // throws on a reset or broken pipe
            sent += 200_000
        }
        #expect(connection.isClosedByServer(), "an orderly end of stream, not a reset")
        #expect(server.stop().status == 0)
    }

    @Test func rawDataInAndOutPassThroughTheFilter() throws {
        let scratch = ScratchDirectory("filter-raw")
        let (server, _) = try FilterFixture.start(scratch)
        let rewritten = try server.get("/raw-original", headers: "X-Raw-Rewrite: 1\r\n")
        #expect(try json(rewritten)["url"] as? String == "/ext/raw-rewritten")
        let blocked = try RawConnection(port: server.port)
        try blocked.send("GET /ext/x HTTP/1.1\r\nHost: x\r\nX-Raw-Block: 1\r\n\r\n")
        let answer = try blocked.readResponse()
        #expect(answer.status == 403 && answer.text == "blocked raw\n")
        #expect(blocked.isClosedByServer())
        // READ_NEXT: the first part is held back and comes again with the rest.
        let split = try RawConnection(port: server.port)
        try split.send("GET /ext/split HTTP/1.1\r\nHost: x\r\nX-Split: 1\r\n")
        usleep(200_000)
        try split.send("Connection: close\r\n\r\n")
        #expect(try json(try split.readResponse())["url"] as? String == "/ext/joined")
        // SEND_RAW_DATA sees the extension's bytes and a static file's (sent as a file region).
        #expect(try server.get("/ext/secret").text == "the ****** word\n")
        #expect(try server.get("/secret.txt").text == "static ****** text\n")
        #expect(server.stop().status == 0)
    }

    @Test func authenticationUrlMapAccessDeniedSendResponseAndLog() throws {
        let scratch = ScratchDirectory("filter-auth")
        let (server, _) = try FilterFixture.start(scratch)
        let credentials = Data("admin:secret".utf8).base64EncodedString()
        let seen = try json(try server.get("/ext/who", headers: "Authorization: Basic \(credentials)\r\n"))
        #expect(seen["user"] as? String == "administrator")
        #expect(seen["auth"] as? String == "Basic")
        #expect(try json(try server.get("/ext/who"))["user"] as? String == "")
        // URL_MAP points a static URL at another file.
        let mapped = try server.get("/mapped.txt")
        #expect(mapped.status == 200 && mapped.text == "the real file\n")
        #expect(mapped.header("x-send-response") == "200")
        // ACCESS_DENIED: the filter replaces the extension's 401.
        let denied = try server.get("/ext/deny")
        #expect(denied.status == 401 && denied.text == "custom denial\n")
        // SEND_RESPONSE changes the status; DisableNotifications switches it off for one request.
        let gone = try server.get("/ext/gone")
        #expect(gone.status == 410 && gone.header("x-send-response") == "404")
        let disabled = try server.get("/disable")
        #expect(disabled.status == 200 && disabled.header("x-send-response") == nil)
        _ = try server.get("/ext/hidden")
        let stopped = server.stop()
        #expect(stopped.stderr.contains("python stdout: ACCESS_DENIED /ext/deny 8"))
        #expect(stopped.stdout.contains("- someone ["), "LOG changed the user")
        #expect(stopped.stdout.contains("\"GET /redacted HTTP/1.1\" 200"))
        #expect(!stopped.stdout.contains("/ext/hidden"))
    }

    @Test func aSiteWithAnEmptyFilterListRunsWithoutTheFilter() throws {
        let scratch = ScratchDirectory("filter-off")
        let (server, _) = try FilterFixture.start(scratch, filters: "[]")
        let response = try server.get("/ext/rewrite")
        #expect(response.status == 200 && response.header("x-count") == nil)
        #expect(try json(response)["url"] as? String == "/ext/rewrite")
        #expect(try server.get("/ext/secret").text == "the SECRET word\n")
        #expect(server.stop().status == 0)
    }
}

@Suite struct FilterSampleTests {
    @Test func redirectorWithFilterRewritesIntoPythonAndCountsPerConnection() throws {
        let scratch = ScratchDirectory("redirector-filter")
        for name in ["hello", "redirector_with_filter"] {
            let build = try frostBuild([Repository.root.appendingPathComponent("Bundles/\(name).toml").path, "--quiet"],
                                       dist: scratch.path)
            #expect(build.status == 0, "\(build.output)")
        }
        let upstream = try RunningServer(loader: scratch.path("hello/_hello"))
        defer { _ = upstream.stop() }
        // `install` records the /python virtual directory and the filter (below a root: no
        // systemd or nginx is touched; InstallerTests checks those files).
        let root = scratch.path("root")
        let install = try runProcess(scratch.path("redirector_with_filter/redirector_with_filter"), ["install", "--root", root])
        #expect(install.status == 0, "\(install.output)")
        let siteFile = root + scratch.path("redirector_with_filter/site.json")
        let site = try String(contentsOfFile: siteFile, encoding: .utf8)
        #expect(site.contains("\"/python\"") && site.contains("PythonRedirector"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: scratch.path("redirector_with_filter/_redirector_with_filter"))
        process.arguments = ["--listen", "127.0.0.1:0", "--site", siteFile]
        process.environment = ["FROST_REDIRECTOR_UPSTREAM": "http://127.0.0.1:\(upstream.port)"]
        let proxy = try RunningServer(process: process)
        let connection = try RawConnection(port: proxy.port)
        try connection.send("GET /page HTTP/1.1\r\nHost: x\r\n\r\nGET /python/page HTTP/1.1\r\nHost: x\r\n\r\n")
        let first = try connection.readResponse(), second = try connection.readResponse()
        #expect(first.text == "Hello, world!\n" && first.header("x-requests-on-connection") == "1")
        #expect(second.text == "Hello, world!\n" && second.header("x-requests-on-connection") == "2")
        let stopped = proxy.stop()
        #expect(stopped.stdout.contains("\"GET /python/page HTTP/1.1\" 200"))
        #expect(upstream.stop().stdout.components(separatedBy: "\"GET /page HTTP/1.1\" 200").count == 3,
                "both requests reach the upstream without the /python prefix")
        let remove = try runProcess(scratch.path("redirector_with_filter/redirector_with_filter"), ["remove", "--root", root])
        #expect(remove.status == 0 && !FileManager.default.fileExists(atPath: siteFile))
    }

    @Test func advancedReloadsOnRedeployAndHasItsCommandLine() throws {
        let scratch = ScratchDirectory("advanced")
        let build = try frostBuild([Repository.root.appendingPathComponent("Bundles/advanced.toml").path, "--quiet"],
                                   dist: scratch.path)
        #expect(build.status == 0, "\(build.output)")
        let console = scratch.path("advanced/advanced")
        let status = try runProcess(console, ["status"])
        #expect(status.status == 0 && status.stdout == "Everything seems to be fine!\n")
        let dry = try runProcess(console, ["install", "--dry-run", "--description", "Mine"])
        #expect(dry.status == 0 && dry.stdout.contains("\"description\": \"Mine\"") && dry.stdout.contains("has been installed"))
        let bad = try runProcess(console, ["bogus"])
        #expect(bad.status == 2 && bad.stderr.contains("unknown command 'bogus'"))

        let server = try RunningServer(loader: scratch.path("advanced/_advanced"))
        let page = try server.get("/x?URL&REMOTE_ADDR&NO_SUCH")
        #expect(page.text.contains("URL=b'/x'") && page.text.contains("REMOTE_ADDR=b'127.0.0.1'"))
        #expect(page.text.contains("NO_SUCH=None") && page.text.contains("0 times"))
        // Redeploy: a rebuilt archive (same code, new file) replaces the old one.
        let archive = scratch.path("advanced/advanced.zip")
        let copy = archive + ".new"
        try FileManager.default.copyItem(atPath: archive, toPath: copy)
        _ = rename(copy, archive)
        var reloaded = ""
        for _ in 0..<40 where !reloaded.contains("1 times") {
            Thread.sleep(forTimeInterval: 0.25)
            reloaded = try server.get("/again").text
        }
        #expect(reloaded.contains("1 times"))
        // As IIS does, an unhealthy worker is recycled: its replacement serves.
        let worker = children(of: server.process.processIdentifier)
        _ = try server.get("/ReportUnhealthy")
        #expect(eventually(15) { let now = children(of: server.process.processIdentifier); return !now.isEmpty && now != worker })
        #expect(eventually(10) { (try? server.get("/after").text.contains("0 times")) == true })
        let stopped = server.stop()
        #expect(stopped.stderr.contains("the extension reports itself unhealthy: I'm a little sick"))
        #expect(stopped.stderr.contains("InternalReloadException: reloading the entry module"))
        #expect(stopped.stderr.contains("asks to be recycled (the extension reports itself unhealthy: I'm a little sick)"))
    }
}
