import Foundation
import Testing
import FrostBundle
#if canImport(Glibc)
import Glibc
#endif

/// Real WSGI applications, unchanged: built from their one-line specs, served from a root
/// that has only glibc, with their state outside the bundle.
@Suite(.serialized) struct WSGIAppTests {
    /// A glibc-only root with the bundle at /app/NAME and an empty /state.
    static func deploy(_ name: String, in scratch: ScratchDirectory) throws -> String {
        let build = try frostBuild([Repository.root.appendingPathComponent("Bundles/\(name).toml").path, "--quiet"],
                                   dist: scratch.path("dist"))
        #expect(build.status == 0, "\(build.output)")
        let root = scratch.path("root")
        if !FileManager.default.fileExists(atPath: root) { try makeGlibcOnlyRoot(at: root) }
        try FileManager.default.createDirectory(atPath: root + "/state", withIntermediateDirectories: true)
        #expect(try runProcess("/bin/cp", ["-a", scratch.path("dist/" + name), root + "/app/" + name]).status == 0)
        return root
    }

    /// The loader (or console) inside the root, in a private mount namespace with /proc.
    static func inRoot(_ root: String, _ command: [String]) -> [String] {
        ["-m", "/bin/sh", "-c", "mount -t proc proc \"$1/proc\" && shift && exec /usr/sbin/chroot \"$@\"", "sh", root, root] + command
    }

    static func serve(_ root: String, _ name: String, _ arguments: [String] = []) throws -> RunningServer {
        try RunningServer(command: "/usr/bin/unshare",
                          arguments: inRoot(root, ["/app/\(name)/_\(name)", "--listen", "127.0.0.1:0"] + arguments),
                          environment: ["FROST_STATE_DIR": "/state"])
    }

    static func console(_ root: String, _ name: String, _ arguments: [String], environment: [String: String] = [:]) throws -> ProcessResult {
        try runProcess("/usr/bin/unshare", inRoot(root, ["/app/\(name)/\(name)"] + arguments),
                       environment: ["FROST_STATE_DIR": "/state"].merging(environment) { _, new in new }, timeout: 120)
    }

    @Test func aPlainWSGIFunctionNeedsOneSpecLine() throws {
        let scratch = ScratchDirectory("wsgi-hello")
        let root = try Self.deploy("hello_wsgi", in: scratch)
        let server = try Self.serve(root, "hello_wsgi", ["--workers", "1"])
        #expect(try server.get("/a/b?c=d").text == "Hello, WSGI world! GET /a/b\n")
        #expect(server.stop().status == 0)
    }

    @Test func classicFlaskServesPagesFormsJSONAndStaticFilesWithItsDatabaseInTheStateDirectory() throws {
        let scratch = ScratchDirectory("wsgi-flask")
        let root = try Self.deploy("flask_classic", in: scratch)
        // Placement: the app's package and its templates/static on the filesystem.
        for file in ["lib/app/flaskr/__init__.pyc", "lib/app/flaskr/templates/index.html", "lib/app/flaskr/static/style.css"] {
            #expect(FileManager.default.fileExists(atPath: root + "/app/flask_classic/" + file), "\(file)")
        }
        let server = try Self.serve(root, "flask_classic", ["--workers", "2"])
        let page = try server.get("/")
        #expect(page.status == 200 && page.text.contains("<h1>Flaskr</h1>"), "\(page.text)")
        let post = try server.request("POST /add HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                                      + "Content-Length: 14\r\nConnection: close\r\n\r\nbody=from+test")
        #expect(post.status == 302 && post.header("location") == "/")
        let notes = try server.get("/api/notes")
        #expect(notes.status == 200 && notes.text.contains("\"body\":\"from test\""), "\(notes.text)")
        #expect(try server.get("/").text.contains("<li>from test</li>"))
        let css = try server.get("/static/style.css")
        #expect(css.status == 200 && css.text.contains("font-family"))
        #expect(server.stop().status == 0)
        #expect(FileManager.default.fileExists(atPath: root + "/state/flaskr.sqlite"), "the database is in the state directory")
    }

    @Test func djangoMigratesThroughTheConsoleAndItsAdminLoginSessionSurvivesARestart() throws {
        let scratch = ScratchDirectory("wsgi-django")
        let root = try Self.deploy("django_site", in: scratch)
        let migrate = try Self.console(root, "django_site", ["migrate"])
        #expect(migrate.status == 0 && migrate.stdout.contains("Applying polls.0001_initial... OK"), "\(migrate.output)")
        let superuser = try Self.console(root, "django_site", ["createsuperuser", "--noinput"], environment: [
            "DJANGO_SUPERUSER_USERNAME": "admin", "DJANGO_SUPERUSER_PASSWORD": "frost-Secret-42",
            "DJANGO_SUPERUSER_EMAIL": "admin@example.com"])
        #expect(superuser.status == 0, "\(superuser.output)")
        let collect = try Self.console(root, "django_site", ["collectstatic", "--noinput"])
        #expect(collect.status == 0 && collect.stdout.contains("static files copied to '/state/static'"), "\(collect.output)")
        #expect(try Self.console(root, "django_site", ["check"]).stdout.contains("no issues"))
        // nginx's job in production; here the site serves /static from the state directory.
        try #"""
            {"virtual_directories": [
              {"name": "/", "path": "/app/django_site", "script_maps": ["*"]},
              {"name": "/static", "path": "/state/static", "script_maps": []}]}
            """#.write(toFile: root + "/site.json", atomically: true, encoding: .utf8)
        var server = try Self.serve(root, "django_site", ["--workers", "1", "--site", "/site.json"])
        // Django checks Host against ALLOWED_HOSTS.
        func get(_ path: String) throws -> RawConnection.Response {
            try server.request("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        }
        let login = try get("/admin/login/")
        #expect(login.status == 200 && login.text.contains("csrfmiddlewaretoken"), "\(login.text.prefix(500))")
        #expect(try server.get("/static/admin/css/base.css").status == 200)
        #expect(try get("/polls/").text.contains("No polls are available."))
        #expect(try server.get("/polls/").status == 400, "another Host is refused by Django, not by frost")
        let client = #"""
        import http.cookiejar, re, sys, urllib.parse, urllib.request
        base, jar_file, mode = sys.argv[1:4]
        jar = http.cookiejar.LWPCookieJar(jar_file)
        if mode == "again":
            jar.load(ignore_discard=True)
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        if mode == "login":
            page = opener.open(base + "/admin/login/?next=/admin/").read().decode()
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
            form = {"csrfmiddlewaretoken": token, "username": "admin", "password": "frost-Secret-42", "next": "/admin/"}
            response = opener.open(base + "/admin/login/?next=/admin/", data=urllib.parse.urlencode(form).encode())
            print("landed", urllib.parse.urlsplit(response.geturl()).path)
            jar.save(ignore_discard=True)
        page = opener.open(base + "/admin/").read().decode()
        print("admin" if "Site administration" in page else "not logged in")
        """#
        let jar = scratch.path("cookies.txt")
        let first = try runProcess("/usr/bin/python3", ["-c", client, "http://127.0.0.1:\(server.port)", jar, "login"])
        #expect(first.stdout == "landed /admin/\nadmin\n", "\(first.output)")
        let second = try runProcess("/usr/bin/python3", ["-c", client, "http://127.0.0.1:\(server.port)", jar, "again"])
        #expect(second.stdout == "admin\n", "the session holds across requests: \(second.output)")
        #expect(server.stop().status == 0)
        server = try Self.serve(root, "django_site", ["--workers", "1", "--site", "/site.json"])
        let afterRestart = try runProcess("/usr/bin/python3", ["-c", client, "http://127.0.0.1:\(server.port)", jar, "again"])
        #expect(afterRestart.stdout == "admin\n", "the session holds across a restart: \(afterRestart.output)")
        #expect(server.stop().status == 0)
        #expect(FileManager.default.fileExists(atPath: root + "/state/db.sqlite3"))
    }

    @Test func initFindsTheWSGIApplicationOfAProject() throws {
        let scratch = ScratchDirectory("wsgi-init")
        for sample in ["django_site", "flask_classic"] {
            #expect(try runProcess("/bin/cp", ["-r", Repository.root.appendingPathComponent("Samples/" + sample).path,
                                               scratch.path(sample)]).status == 0)
            let result = try runProcess(Products.frost, ["init", scratch.path(sample)])
            #expect(result.status == 0 && result.stdout == "wrote \(scratch.path(sample))/\(sample).toml\n", "\(result.output)")
        }
        let django = try String(contentsOfFile: scratch.path("django_site/django_site.toml"), encoding: .utf8)
        #expect(django.contains("wsgi = \"mysite.wsgi:application\"") && django.contains("console = \"manage.py\"")
                && django.contains("requirements = \"requirements.txt\""), "\(django)")
        let flask = try String(contentsOfFile: scratch.path("flask_classic/flask_classic.toml"), encoding: .utf8)
        #expect(flask.contains("wsgi = \"flaskr:create_app()\""), "\(flask)")
        // The spec it wrote builds.
        let build = try frostBuild([scratch.path("flask_classic/flask_classic.toml"), "--quiet"], dist: scratch.path("dist"))
        #expect(build.status == 0, "\(build.output)")
        let empty = scratch.path("empty")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let none = try runProcess(Products.frost, ["init", empty])
        #expect(none.status == 2 && none.stderr.contains("found no WSGI application"), "\(none.output)")
    }

    /// A package that reads `os.path.dirname(__file__)` data works by default (it goes to the
    /// filesystem); kept in the archive with `archive = [...]` it fails with its own error.
    @Test func theFilesystemArchiveSplitDoesWhatTheKeysSay() throws {
        let scratch = ScratchDirectory("wsgi-split")
        let app = scratch.path("app")
        try FileManager.default.createDirectory(atPath: app + "/datapkg", withIntermediateDirectories: true)
        try """
            import os
            def message():
                with open(os.path.join(os.path.dirname(__file__), "message.txt")) as f:
                    return f.read().strip()
            """.write(toFile: app + "/datapkg/__init__.py", atomically: true, encoding: .utf8)
        try "read by path\n".write(toFile: app + "/datapkg/message.txt", atomically: true, encoding: .utf8)
        try "import datapkg\nif __name__ == '__main__':\n    print(datapkg.message())\n"
            .write(toFile: app + "/split.py", atomically: true, encoding: .utf8)
        let build = try frostBuild([app + "/split.py", "--json"], dist: scratch.path("dist"))
        #expect(build.status == 0, "\(build.output)")
        let report = try JSON.parse(build.stdout)
        #expect(report["placement"]?.array?.compactMap(\.string).contains {
            $0.hasPrefix("datapkg: filesystem (the app's own package, with data files") } == true, "\(build.stdout)")
        let ok = try runProcess(scratch.path("dist/split/split"))
        #expect(ok.status == 0 && ok.stdout == "read by path\n", "\(ok.output)")
        let archived = try frostBuild([app + "/split.py", "--quiet", "--archive", "datapkg"], dist: scratch.path("dist2"))
        #expect(archived.status == 0)
        let failed = try runProcess(scratch.path("dist2/split/split"))
        #expect(failed.status != 0 && failed.output.contains("NotADirectoryError"), "\(failed.output)")
    }

    /// The environ of PEP 3333 for a matrix of requests, wsgi.file_wrapper with sendfile,
    /// and wsgi.multiprocess with several workers.
    @Test func theEnvironFollowsPEP3333AndFileWrapperUsesSendfile() throws {
        let scratch = ScratchDirectory("wsgi-environ")
        let big = scratch.path("big.bin")
        let size = 50 << 20
        _ = FileManager.default.createFile(atPath: big, contents: Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }))
        try """
            import hashlib, json, sys
            READS = []

            class CountingFile:
                def __init__(self, path):
                    self.f = open(path, "rb")
                def read(self, size=-1):
                    READS.append(size)
                    return self.f.read(size)
                def fileno(self):
                    return self.f.fileno()
                def tell(self):
                    return self.f.tell()
                def close(self):
                    self.f.close()

            def application(environ, start_response):
                path = environ["PATH_INFO"]
                if path == "/file":
                    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", "\(size)")])
                    return environ["wsgi.file_wrapper"](CountingFile(\(String(reflecting: big))), 65536)
                if path == "/reads":
                    body = json.dumps(READS).encode()
                    start_response("200 OK", [("Content-Type", "application/json")])
                    return [body]
                if path == "/pieces":
                    stream = environ["wsgi.input"]
                    lengths = [len(stream.readline()), len(stream.readline(3))]
                    while True:
                        piece = stream.read(7000)
                        if not piece:
                            break
                        lengths.append(len(piece))
                    body = json.dumps(lengths).encode()
                    start_response("200 OK", [("Content-Type", "application/json")])
                    return [body]
                data = environ["wsgi.input"].read()
                keys = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
                        "SERVER_PROTOCOL", "HTTP_X_REPEATED", "HTTP_HOST", "wsgi.url_scheme", "wsgi.multiprocess",
                        "wsgi.multithread", "wsgi.run_once", "wsgi.input_terminated"]
                out = {k: environ.get(k) for k in keys}
                out["types"] = sorted({type(v).__name__ for k, v in environ.items() if k.isupper()})
                out["version"] = list(environ["wsgi.version"])
                out["path_utf8"] = environ["PATH_INFO"].encode("latin-1").decode("utf-8", "replace")
                out["body"] = [len(data), hashlib.sha256(data).hexdigest()]
                body = json.dumps(out).encode()
                start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
                return [body]
            """.write(toFile: scratch.path("envapp.py"), atomically: true, encoding: .utf8)
        let build = try frostBuild([scratch.path("."), "--wsgi", "envapp:application", "--name", "envtest", "--quiet"],
                                   dist: scratch.path("dist"))
        #expect(build.status == 0, "\(build.output)")
        let server = try RunningServer(loader: scratch.path("dist/envtest/_envtest"), arguments: ["--workers", "2"])
        func environ(_ request: String) throws -> [String: Any] {
            let response = try server.request(request)
            #expect(response.status == 200, "\(response.text)")
            return try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] ?? [:]
        }
        let get = try environ("GET /caf%C3%A9/x%20y?a=1&b=%20 HTTP/1.1\r\nHost: h.test\r\nX-Repeated: one\r\nX-Repeated: two\r\nConnection: close\r\n\r\n")
        #expect(get["REQUEST_METHOD"] as? String == "GET")
        #expect(get["SCRIPT_NAME"] as? String == "")
        #expect(get["path_utf8"] as? String == "/café/x y", "PATH_INFO is the decoded bytes as latin-1: \(get)")
        #expect(get["QUERY_STRING"] as? String == "a=1&b=%20", "the query string is left as sent")
        #expect(get["CONTENT_LENGTH"] is NSNull, "no body, no CONTENT_LENGTH")
        #expect(get["HTTP_X_REPEATED"] as? String == "one,two", "repeated headers are joined: \(get)")
        #expect(get["HTTP_HOST"] as? String == "h.test")
        #expect(get["SERVER_PROTOCOL"] as? String == "HTTP/1.1")
        #expect(get["wsgi.url_scheme"] as? String == "http")
        #expect(get["wsgi.multiprocess"] as? Bool == true && get["wsgi.multithread"] as? Bool == true)
        #expect(get["wsgi.run_once"] as? Bool == false)
        #expect(get["types"] as? [String] == ["str"], "every CGI variable is a str")
        #expect(get["version"] as? [Int] == [1, 0])
        for size in [0, 1 << 20, 5 << 20] {
            let body = String(repeating: "p", count: size)
            let digest = try runProcess("/usr/bin/python3", ["-c", "import hashlib; print(hashlib.sha256(b'p' * \(size)).hexdigest())"]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let sized = try environ("POST /up HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: \(size)\r\nConnection: close\r\n\r\n" + body)
            #expect(sized["CONTENT_LENGTH"] as? String == (size == 0 ? nil : String(size)) || (size == 0 && sized["CONTENT_LENGTH"] is NSNull))
            #expect((sized["body"] as? [Any])?.first as? Int == size && (sized["body"] as? [Any])?.last as? String == digest)
            let chunks = stride(from: 0, to: size, by: 300_000).map { offset -> String in
                let piece = min(300_000, size - offset)
                return String(piece, radix: 16) + "\r\n" + String(repeating: "p", count: piece) + "\r\n"
            }.joined()
            let chunked = try environ("POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks + "0\r\n\r\n")
            #expect(chunked["CONTENT_LENGTH"] is NSNull, "a chunked upload has no CONTENT_LENGTH")
            #expect(chunked["wsgi.input_terminated"] as? Bool == true)
            #expect((chunked["body"] as? [Any])?.first as? Int == size && (chunked["body"] as? [Any])?.last as? String == digest)
        }
        // A body arriving in pieces, 0.1 s apart: read(7000) waits for 7000 bytes (as a
        // file's read does) or the body's end; readline returns a line as soon as it is there.
        for chunked in [false, true] {
            // Over the 48 KiB read-ahead in the first piece, so that the application runs
            // while the rest is on its way.
            let pieces = ["first line\nabcdef" + String(repeating: "q", count: 60000), String(repeating: "r", count: 12000),
                          String(repeating: "s", count: 9000), "end"]
            let total = pieces.reduce(0) { $0 + $1.utf8.count }
            let slow = try RawConnection(port: server.port)
            try slow.send("POST /pieces HTTP/1.1\r\nHost: h\r\n"
                          + (chunked ? "Transfer-Encoding: chunked" : "Content-Length: \(total)") + "\r\n\r\n")
            for piece in pieces {
                Thread.sleep(forTimeInterval: 0.1)
                try slow.send(chunked ? String(piece.utf8.count, radix: 16) + "\r\n" + piece + "\r\n" : piece)
            }
            if chunked { try slow.send("0\r\n\r\n") }
            let lengths = try slow.readResponse()
            #expect(lengths.status == 200)
            let expected = [11, 3] + Array(repeating: 7000, count: (total - 14) / 7000) + [(total - 14) % 7000]
            #expect(lengths.text == "[" + expected.map(String.init).joined(separator: ", ") + "]", "chunked \(chunked): \(lengths.text)")
        }
        // 50 MiB through wsgi.file_wrapper: sendfile, so Python never reads the file.
        // One keep-alive connection, so both requests reach the same worker.
        let connection = try RawConnection(port: server.port)
        try connection.send("GET /file HTTP/1.1\r\nHost: h\r\n\r\n")
        let file = try connection.readResponse()
        #expect(file.status == 200 && file.body.count == size)
        #expect(file.body.prefix(4) == [0, 31, 62, 93])
        try connection.send("GET /reads HTTP/1.1\r\nHost: h\r\n\r\n")
        let reads = try connection.readResponse().text
        #expect(reads == "[]", "the file went out with sendfile, not through read(): \(reads)")
        #expect(server.stop().status == 0)
    }

    /// isapi.wsgi hands an application at the root to the control block's `ServeWSGI`,
    /// which runs start_response, write, the result's iteration and close() natively: the
    /// rules of PEP 3333 (checked by wsgiref.validate) and of isapi.wsgi's own adapter hold.
    @Test func theNativeWSGIServerKeepsTheRulesOfPEP3333() throws {
        let scratch = ScratchDirectory("wsgi-native-serve")
        try #"""
            import io, sys, time
            from wsgiref.validate import validator

            CLOSED = []

            class Closing(list):
                def close(self):
                    CLOSED.append(self[0])

            def pieces(start_response):
                start_response("200 OK", [("Content-Type", "text/plain")])
                yield b"one,"
                yield b""
                yield b"two,"
                yield b"three"

            def late_failure(start_response):
                start_response("200 OK", [("Content-Type", "text/plain")])
                yield b"partial"
                try:
                    raise RuntimeError("late failure")
                except RuntimeError:
                    start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())

            def plain(environ, start_response):
                path = environ["PATH_INFO"]
                if path == "/list":
                    start_response("200 OK", [("Content-Type", "text/plain"), ("X-List", "pair")])
                    return [b"a", b"b", b"c"]
                if path == "/loose":  # what wsgiref.validate refuses but isapi.wsgi takes
                    start_response("200 OK", [["X-Pair", "as a list"]])
                    return [bytearray(b"byte"), b"array"]
                if path == "/tuple":
                    start_response("201 Created", [("Content-Type", "text/plain"), ("Content-Length", "2")])
                    return (b"x", b"y")
                if path == "/write":
                    write = start_response("200 OK", [("Content-Type", "text/plain")])
                    write(b"written ")
                    return [b"then returned"]
                if path == "/generator":
                    return pieces(start_response)
                if path == "/closing":
                    start_response("200 OK", [("Content-Length", "6")])
                    return Closing([b"closed"])
                if path == "/closed":
                    start_response("200 OK", [])
                    return [repr(CLOSED).encode()]
                if path == "/empty":
                    start_response("204 No Content", [])
                    return iter(())
                if path == "/wrapper":
                    start_response("200 OK", [("Content-Type", "application/octet-stream")])
                    return environ["wsgi.file_wrapper"](io.BytesIO(b"w" * 100000), 4096)
                if path == "/replaced":
                    start_response("200 OK", [("Content-Type", "text/plain")])
                    try:
                        raise ValueError("before anything was sent")
                    except ValueError:
                        start_response("503 Busy", [("Retry-After", "1")], sys.exc_info())
                    return [b"replaced"]
                if path == "/late":
                    return late_failure(start_response)
                if path == "/twice":
                    start_response("200 OK", [])
                    start_response("200 OK", [])
                if path == "/badstatus":
                    start_response("200", [])
                if path == "/badheader":
                    start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
                if path == "/notbytes":
                    start_response("200 OK", [])
                    return ["text"]
                if path == "/memo":
                    start_response("200 OK", [("Content-Type", "text/plain"), ("X-A", "1"), ("X-B", "2")])
                    return [b"memo"]
                if path == "/nul":  # the bytes of /memo's pairs, but with NULs inside one pair
                    start_response("200 OK", [("Content-Type\x00text/plain", "X-A\x001"), ("X-B", "2")])
                    return [b"not sent"]
                if path == "/kind":
                    start_response("200 OK", [("Content-Type", "text/plain")])
                    return [type(start_response).__name__.encode()]
                if path == "/nostart":
                    return [b"body"]
                if path == "/raises":
                    raise KeyError("the application failed")
                start_response("404 Not Found", [])
                return [b"no route"]

            checked = validator(plain)

            def application(environ, start_response):
                if environ["PATH_INFO"].startswith("/checked"):
                    environ["PATH_INFO"] = environ["PATH_INFO"][len("/checked"):]
                    return checked(environ, start_response)
                return plain(environ, start_response)
            """#.write(toFile: scratch.path("rules.py"), atomically: true, encoding: .utf8)
        // The generated entry module calls ServeWSGI itself; an extension of the
        // application's own (ISAPIThreadPoolHandler here) gets there through isapi.wsgi.
        try """
            from isapi.wsgi import ISAPIThreadPoolHandler
            from rules import application

            def __ExtensionFactory__():
                return ISAPIThreadPoolHandler(application)
            """.write(toFile: scratch.path("pooled.py"), atomically: true, encoding: .utf8)
        let generated = try frostBuild([scratch.path("."), "--wsgi", "rules:application", "--name", "pep3333", "--quiet"],
                                       dist: scratch.path("dist"))
        #expect(generated.status == 0, "\(generated.output)")
        let pooled = try frostBuild([scratch.path("pooled.py"), "--quiet"], dist: scratch.path("dist"))
        #expect(pooled.status == 0, "\(pooled.output)")
        for loader in ["dist/pep3333/_pep3333", "dist/pooled/_pooled"] {
            let server = try RunningServer(loader: scratch.path(loader), arguments: ["--workers", "0"])
            for prefix in ["", "/checked"] {
                let list = try server.get(prefix + "/list")
                #expect(list.status == 200 && list.text == "abc" && list.header("x-list") == "pair", "\(list.headers) \(list.text)")
                let tuple = try server.get(prefix + "/tuple")
                #expect(tuple.status == 201 && tuple.text == "xy" && tuple.reason == "Created")
                let write = try server.get(prefix + "/write")
                #expect(write.status == 200 && write.text == "written then returned", "\(write.text)")
                let generator = try server.get(prefix + "/generator")
                #expect(generator.status == 200 && generator.text == "one,two,three", "\(generator.text)")
                #expect(generator.header("transfer-encoding") == "chunked", "streamed without a length: \(generator.headers)")
                let empty = try server.get(prefix + "/empty")
                #expect(empty.status == 204)
                let wrapper = try server.get(prefix + "/wrapper")
                #expect(wrapper.status == 200 && wrapper.body == [UInt8](repeating: 0x77, count: 100_000),
                        "a file_wrapper over no regular file is iterated")
            }
            #expect(try server.get("/kind").text == "builtin_function_or_method", "the control block's ServeWSGI served")
            let loose = try server.get("/loose")
            #expect(loose.status == 200 && loose.text == "bytearray" && loose.header("x-pair") == "as a list", "\(loose.headers)")
            let closing = try server.get("/closing")
            #expect(closing.status == 200 && closing.text == "closed")
            #expect(try server.get("/closed").text == "[b'closed']", "close() ran once")

            let replaced = try server.get("/replaced")
            #expect(replaced.status == 503 && replaced.header("retry-after") == "1" && replaced.text == "replaced",
                    "start_response with exc_info before anything was sent replaces the response")
            // Once the head is out, exc_info raises the application's error again: the client
            // gets what was sent and the connection ends short of a complete response.
            let late = try RawConnection(port: server.port)
            try late.send("GET /late HTTP/1.1\r\nHost: h\r\n\r\n")
            let cut = try? late.readResponse()
            #expect(cut == nil || cut?.text == "partial", "\(String(describing: cut))")
            for path in ["/twice", "/badstatus", "/badheader", "/notbytes", "/nostart", "/raises"] {
                let failed = try server.get(path)
                #expect(failed.status == 500, "\(path): \(failed.status) \(failed.text)")
                #expect(failed.header("injected") == nil)
            }
            #expect(try server.get("/memo").header("x-a") == "1")
            let nul = try server.get("/nul")
            #expect(nul.status == 500 && nul.header("x-a") == nil, "a NUL is refused, even where checked headers had their separators")
            #expect(try server.get("/list").text == "abc", "the worker serves on after every failure")
            let log = server.stop()
            #expect(log.status == 0)
            for expected in ["RuntimeError: late failure", "AssertionError: start_response called twice without exc_info",
                             "ValueError: bad WSGI status '200'", "ValueError: bad WSGI header", "TypeError: WSGI body data must be bytes, not str",
                             "AssertionError: the application wrote a body before calling start_response",
                             "KeyError: 'the application failed'"] {
                #expect(log.stderr.contains(expected), "\(expected) in \(log.stderr)")
            }
        }
    }

    /// frost's control block builds the environ natively (`WSGIEnviron`) and takes the
    /// response headers as pairs; isapi.wsgi's portable path (server variables one by one,
    /// a header string) must give the same environ and the same response.
    @Test func theNativeEnvironIsThePortableOne() throws {
        let scratch = ScratchDirectory("wsgi-native-environ")
        try """
            import json
            from isapi.wsgi import ISAPISimpleHandler

            class Portable:
                "The control block without frost's native additions."
                def __init__(self, ecb):
                    self._ecb = ecb
                def __getattr__(self, name):
                    if name == "WSGIEnviron":
                        raise AttributeError(name)
                    return getattr(self._ecb, name)

            HIDDEN = {"wsgi.input", "wsgi.errors", "isapi.ecb", "wsgi.file_wrapper"}

            def application(environ, start_response):
                portable = ISAPISimpleHandler(application).environ(Portable(environ["isapi.ecb"]), True)
                def shown(env):
                    return {k: v for k, v in env.items() if k not in HIDDEN}
                native, portable = shown(environ), shown(portable)
                differences = sorted(k for k in native.keys() | portable.keys() if native.get(k) != portable.get(k))
                body = json.dumps({"keys": len(native), "differences": differences,
                                   "native": repr(native), "portable": repr(portable)}).encode()
                start_response("201 Made", [("Content-Type", "application/json"), ("X-Pairs", " spaced "),
                                            ("Content-Length", str(len(body)))])
                return [body]
            """.write(toFile: scratch.path("same.py"), atomically: true, encoding: .utf8)
        let build = try frostBuild([scratch.path("."), "--wsgi", "same:application", "--name", "samesite", "--quiet"],
                                   dist: scratch.path("dist"))
        #expect(build.status == 0, "\(build.output)")
        let server = try RunningServer(loader: scratch.path("dist/samesite/_samesite"), arguments: ["--workers", "0"])
        let requests = [
            "GET /caf%C3%A9/x%20y?a=1&b=%20 HTTP/1.1\r\nHost: h.test:81\r\nX-Repeated: one\r\nX-Repeated: two\r\n"
                + "Cookie: a=1\r\nCookie: b=2\r\nUser-Agent: caf\u{e9}\r\nConnection: close\r\n\r\n",
            "POST /up HTTP/1.0\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc",
            "PUT /chunk HTTP/1.1\r\nHost: [::1]:8080\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            // The header variables are kept by position from one request to the next: the
            // same headers again, then the same names with other values, then names in
            // other places and ones that map to the same variables.
            "GET /caf%C3%A9/x%20y?a=1&b=%20 HTTP/1.1\r\nHost: h.test:81\r\nX-Repeated: one\r\nX-Repeated: two\r\n"
                + "Cookie: a=1\r\nCookie: b=2\r\nUser-Agent: caf\u{e9}\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: other.test\r\nX-Repeated: three\r\nX-Repeated: two\r\n"
                + "Cookie: a=1\r\nCookie: c=3\r\nUser-Agent: caf\u{e9}\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nContent_Type: odd\r\nHOST: UP.test\r\nContent-TYPE: text/x\r\nX-Repeated:  spaced \r\n"
                + "Cookie: a=1\r\nConnection: close\r\n\r\n",
        ]
        // Each request several times in a row, the list three times over: the environ's
        // template learns a variable's value after sixteen requests that gave another one
        // (`WSGIKeys.put`), so it holds each request's values in turn and the next request
        // must replace them.
        for _ in 0..<3 {
            for request in requests {
                for _ in 0..<6 {
                    let response = try server.request(request)
                    #expect(response.status == 201, "\(response.text)")
                    #expect(response.header("x-pairs") == "spaced", "the headers went as pairs: \(response.headers)")
                    let both = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] ?? [:]
                    #expect((both["keys"] as? Int ?? 0) >= 17, "\(both)")
                    #expect(both["differences"] as? [String] == [], "\(both)")
                }
            }
        }
        #expect(server.stop().status == 0)
    }

    /// ServeWSGI's own wsgi.input (the control block's, in place of isapi.wsgi's
    /// ISAPIInputWrapper) reads as a file does: each sequence of reads gives what the same
    /// reads of an io.BytesIO of the body give, across the host's read-ahead. A stream (and
    /// a start_response) is used again by a later request only when nothing holds it; one
    /// an application kept refuses to work once its request has ended.
    @Test func theNativeInputReadsAsAFileDoes() throws {
        let scratch = ScratchDirectory("wsgi-native-input")
        try #"""
            import io, json

            BODY = b"a\nbb\nccc\n" + b"x" * 70000 + b"\nlast"
            KEPT = []

            def reads(stream, script):
                if script == "iter":
                    return list(stream)
                if script == "readlines":
                    return stream.readlines()
                if script == "hint":
                    return [stream.readlines(3), stream.read()]
                if script == "mixed":
                    return [stream.read(1), stream.readline(), stream.readline(2), stream.read(0), stream.readline(-1),
                            stream.readline(None), stream.read(5), stream.read(), stream.read(), stream.readline()]
                if script == "all":
                    return [stream.read(None), stream.read()]
                if script == "sizes":  # past what a line read left, and past the read-ahead
                    return [stream.readline(), stream.read(40000), stream.read(1), stream.read(65536), stream.read(9)]
                if script == "chunks":  # an upload's loop
                    return list(iter(lambda: stream.read(16384), b""))
                raise ValueError(script)

            def application(environ, start_response):
                path = environ["PATH_INFO"][1:]
                stream = environ["wsgi.input"]
                if path == "id":
                    out = {"id": id(stream), "type": type(stream).__name__, "start": id(start_response)}
                elif path == "keep":
                    KEPT.extend([stream, start_response])
                    out = {"id": id(stream), "start": id(start_response)}
                elif path == "stale":
                    out = {}
                    for name, call in [("error", lambda: KEPT[0].read()), ("start", lambda: KEPT[1]("200 OK", []))]:
                        try:
                            call()
                            out[name] = None
                        except ValueError as error:
                            out[name] = str(error)
                else:
                    native = reads(stream, path)
                    reference = reads(io.BytesIO(BODY), path)
                    out = {"same": native == reference, "native": repr(native)[:300], "reference": repr(reference)[:300]}
                body = json.dumps(out).encode()
                start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
                return [body]
            """#.write(toFile: scratch.path("reader.py"), atomically: true, encoding: .utf8)
        let build = try frostBuild([scratch.path("."), "--wsgi", "reader:application", "--name", "readers", "--quiet"],
                                   dist: scratch.path("dist"))
        #expect(build.status == 0, "\(build.output)")
        let server = try RunningServer(loader: scratch.path("dist/readers/_readers"), arguments: ["--workers", "0"])
        let connection = try RawConnection(port: server.port)
        func json(_ request: String) throws -> [String: Any] {
            try connection.send(request)
            let response = try connection.readResponse()
            #expect(response.status == 200, "\(response.text)")
            return try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] ?? [:]
        }
        let body = "a\nbb\nccc\n" + String(repeating: "x", count: 70000) + "\nlast"
        for script in ["iter", "readlines", "hint", "mixed", "all", "sizes", "chunks"] {
            for chunked in [false, true] {
                let framing = chunked ? "Transfer-Encoding: chunked\r\n\r\n" + String(body.utf8.count, radix: 16) + "\r\n" + body + "\r\n0\r\n\r\n"
                    : "Content-Length: \(body.utf8.count)\r\n\r\n" + body
                let result = try json("POST /\(script) HTTP/1.1\r\nHost: h\r\n" + framing)
                #expect(result["same"] as? Bool == true, "\(script), chunked \(chunked): \(result)")
            }
        }
        let first = try json("GET /id HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(first["type"] as? String == "WSGIInput")
        let second = try json("GET /id HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(second["id"] as? Int == first["id"] as? Int, "a stream nothing holds serves the next request")
        #expect(second["start"] as? Int == first["start"] as? Int, "so does start_response")
        let kept = try json("GET /keep HTTP/1.1\r\nHost: h\r\n\r\n")
        let after = try json("GET /id HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(after["id"] as? Int != kept["id"] as? Int, "a stream the application kept is not used again")
        #expect(after["start"] as? Int != kept["start"] as? Int, "nor a start_response")
        let stale = try json("GET /stale HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(stale["error"] as? String == "wsgi.input of a request that has ended", "\(stale)")
        #expect(stale["start"] as? String == "start_response of a request that has ended", "\(stale)")
        #expect(server.stop().status == 0)
    }

}
