import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Faults in the Python code: each gives its client the right answer, leaves a log line
/// that names it, costs a replaced worker only where the process is really lost, and
/// disturbs nothing beyond that worker's own requests in flight.
enum FaultFixture {
    static let module = #"""
    import ctypes, os, sys, threading, time
    from isapi import isapicon
    from isapi.simple import SimpleExtension

    \#(PythonFixture.reply)

    def forever():
        while True:
            time.sleep(0.05)

    class Extension(SimpleExtension):
        "faults"

        def HttpExtensionProc(self, ecb):
            path = ecb.PathInfo.decode()
            if path == "/raise":
                raise RuntimeError("raised on purpose")
            if path == "/sys-exit":
                sys.exit(3)
            if path == "/keyboard-interrupt":
                raise KeyboardInterrupt()
            if path == "/os-exit":
                os._exit(7)
            if path == "/segfault":
                ctypes.string_at(0)
            if path == "/allocate":
                hoard = []
                while True:
                    hoard.append(bytearray(64 << 20))
            if path == "/leak-thread":
                threading.Thread(target=forever, name="leaked").start()
                return reply(ecb, "leaked a thread")
            if path == "/bad-status":
                return 12345
            if path == "/str-status":
                return "done"
            if path == "/no-return":
                ecb.SendResponseHeaders("200 OK", "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n", False)
                ecb.WriteClient(b"ok")
                return None
            return reply(ecb, f"pid {os.getpid()}")

        def TerminateExtension(self, status):
            raise RuntimeError("Terminate raised on purpose")

    def __ExtensionFactory__():
        return Extension()
    """#
}

@Suite(.serialized) struct PythonFaultTests {
    static func pid(_ server: RunningServer) throws -> String {
        let response = try server.get("/")
        #expect(response.status == 200)
        return response.text
    }

    /// Faults the worker survives: the client gets a 500, the log names the fault, and
    /// the same process serves the next request.
    @Test func exceptionsOfEveryKindAre500AndTheWorkerServesOn() throws {
        let scratch = ScratchDirectory("faults")
        let loader = try makeBundle(in: scratch, name: "faults", files: ["faults.py": FaultFixture.module],
                                    stub: Products.releaseStub ?? Products.stub)
        // The address space is bounded so the runaway allocation ends in MemoryError, not the OOM killer.
        let server = try RunningServer(command: "/bin/sh", arguments: ["-c", "ulimit -v 6000000; exec \"$0\" \"$@\"", loader,
                                                                        "--listen", "127.0.0.1:0", "--workers", "1"])
        let worker = try Self.pid(server)
        for path in ["/raise", "/sys-exit", "/keyboard-interrupt", "/allocate", "/bad-status", "/str-status"] {
            let response = try server.get(path)
            #expect(response.status == 500, "\(path): \(response.status) \(response.text.prefix(200))")
            #expect(!response.text.contains("Traceback"), "\(path): no traceback to clients without --debug")
            #expect(try Self.pid(server) == worker, "\(path): the same worker serves on")
        }
        let leaked = try server.get("/leak-thread")
        #expect(leaked.status == 200)
        let plain = try server.get("/no-return")
        #expect(plain.status == 200 && plain.text == "ok")
        #expect(try Self.pid(server) == worker)
        let start = Date()
        let stopped = server.stop()
        let log = stopped.stderr
        for needle in ["RuntimeError: raised on purpose", "SystemExit: 3", "KeyboardInterrupt", "MemoryError",
                       "Terminate raised on purpose", "HttpExtensionProc returned 12345 for GET /bad-status, not an HSE_STATUS_* value",
                       "HttpExtensionProc returned a non-integer for GET /str-status"] {
            #expect(log.contains(needle), "the log names \(needle): \(log.suffix(3000))")
        }
        #expect(!log.contains("replaced by"), "\(log.suffix(2000))")
        #expect(Date().timeIntervalSince(start) < 20, "a leaked non-daemon thread does not hold the stop up")
        #expect(stopped.status == 0, "\(log.suffix(2000))")
    }

    /// Faults that lose the process: the client's connection ends without an answer, the
    /// master says how the worker ended and replaces it, and the other worker's clients
    /// are not disturbed.
    @Test func aLostProcessIsReplacedAndOnlyItsRequestsFail() throws {
        let scratch = ScratchDirectory("faults-lost")
        let loader = try makeBundle(in: scratch, name: "faults", files: ["faults.py": FaultFixture.module],
                                    stub: Products.releaseStub ?? Products.stub)
        let server = try RunningServer(loader: loader, arguments: ["--workers", "2"])
        _ = try Self.pid(server)
        for path in ["/os-exit", "/segfault"] {
            let lost = try WireExchange.run(port: server.port, Array("GET \(path) HTTP/1.1\r\nHost: h\r\n\r\n".utf8),
                                            halfClose: false, quiet: 10, timeout: 15)
            #expect(lost.received.isEmpty && lost.closedByServer, "\(path): the connection of a process that is gone just ends")
            // Meanwhile and afterwards every request is answered (by the other worker, then the replacement).
            for _ in 0..<10 { #expect(try server.get("/").status == 200) }
        }
        let deadline = Date().addingTimeInterval(10)
        var pids = Set<String>()
        while Date() < deadline, pids.count < 2 {
            pids.insert(try Self.pid(server))
        }
        #expect(pids.count == 2, "two workers serve again: \(pids)")
        let stopped = server.stop()
        #expect(stopped.stderr.contains("exited with status 7; replaced by worker"), "\(stopped.stderr.suffix(2000))")
        #expect(stopped.stderr.contains("was killed by signal 11 (Segmentation fault)"), "\(stopped.stderr.suffix(2000))")
    }
}

/// A filter that raises at the notification a request names (`X-Raise-At`), for every
/// notification the host delivers.
enum FilterFaultFixture {
    static let module = #"""
    import os
    from isapi import isapicon
    from isapi.simple import SimpleExtension, SimpleFilter

    NAMES = {isapicon.SF_NOTIFY_READ_RAW_DATA: "READ_RAW_DATA", isapicon.SF_NOTIFY_PREPROC_HEADERS: "PREPROC_HEADERS",
             isapicon.SF_NOTIFY_AUTHENTICATION: "AUTHENTICATION", isapicon.SF_NOTIFY_URL_MAP: "URL_MAP",
             isapicon.SF_NOTIFY_SEND_RESPONSE: "SEND_RESPONSE", isapicon.SF_NOTIFY_SEND_RAW_DATA: "SEND_RAW_DATA",
             isapicon.SF_NOTIFY_END_OF_REQUEST: "END_OF_REQUEST", isapicon.SF_NOTIFY_LOG: "LOG",
             isapicon.SF_NOTIFY_END_OF_NET_SESSION: "END_OF_NET_SESSION"}
    ALL = isapicon.SF_NOTIFY_ORDER_DEFAULT
    for flag in NAMES:
        ALL |= flag

    class Filter(SimpleFilter):
        "raises where asked"
        filter_flags = ALL

        def HttpFilterProc(self, fc):
            name = NAMES.get(fc.NotificationType)
            if name == "READ_RAW_DATA":
                asked = b"X-Raise-At: READ_RAW_DATA" in fc.GetData().InData
            elif name in ("SEND_RAW_DATA", "END_OF_NET_SESSION"):
                # Raw data out and the session's end are the connection's: what the request asked is kept on it.
                asked = fc.FilterContext == name
            else:
                wanted = fc.GetServerVariable("HTTP_X_RAISE_AT", b"").decode()
                asked = wanted == name
                if name == "PREPROC_HEADERS" and wanted in ("SEND_RAW_DATA", "END_OF_NET_SESSION"):
                    fc.FilterContext = wanted
            if asked:
                raise ValueError(f"filter fault at {name}")
            return isapicon.SF_STATUS_REQ_NEXT_NOTIFICATION

    class Extension(SimpleExtension):
        "answers with its pid"

        def HttpExtensionProc(self, ecb):
            body = f"pid {os.getpid()}".encode()
            ecb.SendResponseHeaders("200 OK", f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n", False)
            ecb.WriteClient(body)
            return isapicon.HSE_STATUS_SUCCESS

    def __FilterFactory__():
        return Filter()

    def __ExtensionFactory__():
        return Extension()
    """#
}

@Suite(.serialized) struct FilterFaultTests {
    /// Before the response: a generic 500. While it is written: the connection ends (the
    /// status is out). After it: the client has its whole answer. Each time the log
    /// names the notification, and the same worker serves on.
    @Test func aFilterRaisingAtAnyNotificationCostsOnlyItsRequest() throws {
        let scratch = ScratchDirectory("filter-faults")
        let loader = try makeBundle(in: scratch, name: "filterfaults", files: ["filterfaults.py": FilterFaultFixture.module],
                                    stub: Products.releaseStub ?? Products.stub)
        let server = try RunningServer(loader: loader, arguments: ["--workers", "1"])
        let worker = try server.get("/").text
        #expect(worker.hasPrefix("pid "))
        let expectations: [(String, Int?)] = [
            ("READ_RAW_DATA", 500), ("PREPROC_HEADERS", 500), ("AUTHENTICATION", 500), ("URL_MAP", 500),
            ("SEND_RESPONSE", 500), ("SEND_RAW_DATA", nil), ("END_OF_REQUEST", 200), ("LOG", 200), ("END_OF_NET_SESSION", 200),
        ]
        for (notification, status) in expectations {
            let exchange = try WireExchange.run(port: server.port, Array("GET / HTTP/1.1\r\nHost: h\r\nX-Raise-At: \(notification)\r\n\r\n".utf8),
                                                halfClose: true)
            let responses = try #require(exchange.responses, "\(notification): \(String(decoding: exchange.received, as: UTF8.self))")
            #expect(responses.first?.status == status, "\(notification): \(responses.map(\.status))")
            if status == 500 { #expect(responses.first?.body.contains("filter fault") == false, "no traceback to the client") }
            if status == 200 { #expect(responses.first?.body == worker, "\(notification): the whole answer") }
            #expect(exchange.closedByServer, "\(notification)")
            #expect(try server.get("/").text == worker, "\(notification): the same worker serves on")
        }
        let stopped = server.stop()
        for (notification, _) in expectations {
            #expect(stopped.stderr.contains("filter fault at \(notification)"), "the log names \(notification)")
        }
        #expect(!stopped.stderr.contains("replaced by"))
        #expect(stopped.status == 0)
    }
}

/// Started as root with `--user`, Python runs as that user: in each worker under a
/// master (which keeps root to bind and spawn), and in a single process.
@Suite(.serialized) struct PrivilegeTests {
    static let module = #"""
    import os
    from isapi import isapicon
    from isapi.simple import SimpleExtension

    class Extension(SimpleExtension):
        "who am I"

        def HttpExtensionProc(self, ecb):
            try:
                os.setuid(0)
                regained = "regained root"
            except PermissionError:
                regained = "cannot regain root"
            body = f"uid {os.getuid()} euid {os.geteuid()} gid {os.getgid()} groups {sorted(os.getgroups())} {regained}".encode()
            ecb.SendResponseHeaders("200 OK", f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n", False)
            ecb.WriteClient(body)
            return isapicon.HSE_STATUS_SUCCESS

    def __ExtensionFactory__():
        return Extension()
    """#

    @Test(.enabled(if: getuid() == 0, "needs root"))
    func pythonRunsAsTheConfiguredUser() throws {
        let scratch = ScratchDirectory("privileges")
        try Self.module.write(toFile: scratch.path("whoami.py"), atomically: true, encoding: .utf8)
        let build = try frostBuild([scratch.path("whoami.py"), "--quiet"], dist: scratch.path("dist"))
        #expect(build.status == 0, "\(build.output)")
        let loader = scratch.path("dist/whoami/_whoami")
        let nobody = try #require(getpwnam("nobody")?.pointee)
        let expected = "uid \(nobody.pw_uid) euid \(nobody.pw_uid) gid \(nobody.pw_gid) groups [\(nobody.pw_gid)] cannot regain root"
        for workers in ["1", "0"] {
            let server = try RunningServer(loader: loader, arguments: ["--workers", workers, "--user", "nobody"])
            let answer: String
            do { answer = try server.get("/").text } catch {
                Issue.record("--workers \(workers): \(error): \(server.stop().stderr)")
                continue
            }
            #expect(answer == expected, "--workers \(workers): \(answer)")
            let stopped = server.stop()
            #expect(stopped.status == 0, "\(stopped.stderr)")
        }
        let unknown = try runProcess(loader, ["--listen", "127.0.0.1:0", "--workers", "0", "--user", "no-such-user-here"], timeout: 30)
        #expect(unknown.status == 2 && unknown.stderr.contains("--user no-such-user-here: no such user on this system"), "\(unknown.output)")
    }
}

/// What one client sends never shows up for another: ALL_RAW and ALL_HTTP are the
/// request's own, and the access log does not carry credentials.
@Suite struct ExposureTests {
    static let module = #"""
    import time
    from isapi import isapicon
    from isapi.simple import SimpleExtension

    class Extension(SimpleExtension):
        "echoes its own raw headers"

        def HttpExtensionProc(self, ecb):
            if ecb.PathInfo == b"/slow":
                time.sleep(0.3)
            body = ecb.GetServerVariable("ALL_RAW") + b"\n--\n" + ecb.GetServerVariable("ALL_HTTP")
            ecb.SendResponseHeaders("200 OK", f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n", False)
            ecb.WriteClient(body)
            return isapicon.HSE_STATUS_SUCCESS

    def __ExtensionFactory__():
        return Extension()
    """#

    @Test func credentialsStayWithTheirRequest() throws {
        let scratch = ScratchDirectory("exposure")
        let loader = try makeBundle(in: scratch, name: "rawecho", files: ["rawecho.py": Self.module],
                                    stub: Products.releaseStub ?? Products.stub)
        let server = try RunningServer(loader: loader, arguments: ["--workers", "0", "--threads", "4"])
        // A request with credentials in flight on one connection while others are served.
        let secret = "Basic dXNlcjpodW50ZXIy"  // user:hunter2
        let holder = try RawConnection(port: server.port)
        try holder.send("GET /slow HTTP/1.1\r\nHost: h\r\nAuthorization: \(secret)\r\nCookie: session=s3cr3t\r\n\r\n")
        for _ in 0..<20 {
            let other = try server.get("/other").text
            #expect(!other.contains("dXNlcjpodW50ZXIy") && !other.contains("s3cr3t"), "\(other)")
        }
        let own = try holder.readResponse().text
        #expect(own.contains("Authorization: \(secret)") && own.contains("HTTP_COOKIE:session=s3cr3t"), "\(own)")
        // Keep-alive: the next request on the same connection does not inherit the first one's headers.
        try holder.send("GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        let next = try holder.readResponse().text
        #expect(!next.contains("dXNlcjpodW50ZXIy") && !next.contains("s3cr3t"), "\(next)")
        let stopped = server.stop()
        #expect(!stopped.stdout.contains("dXNlcjpodW50ZXIy") && !stopped.stdout.contains("hunter2") && !stopped.stdout.contains("s3cr3t"),
                "the access log carries no credentials: \(stopped.stdout)")
    }
}
