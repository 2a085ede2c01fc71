"""isapi.wsgi against PEP 3333 (wsgiref.validate) with a recording control block."""
import io
import threading
import unittest
from wsgiref.validate import validator

from isapi import ExtensionError, isapicon
from isapi.wsgi import ISAPIInputWrapper, ISAPISimpleHandler, ISAPIThreadPoolHandler


_NO_DEFAULT = object()


class RecordingECB:
    """The parts of an extension control block a WSGI adapter uses, recorded."""

    def __init__(self, method=b"GET", path=b"/", query=b"", body=b"", headers=None, preload=0, variables=None):
        self.Method = method
        self.PathInfo = path
        self.QueryString = query
        self.ContentType = (headers or {}).get("CONTENT_TYPE", b"")
        self.TotalBytes = len(body)
        self.AvailableData = body[:preload]
        self._rest = io.BytesIO(body[preload:])
        self.HttpStatusCode = 0
        self.headers = None
        self.status = None
        self.body = b""
        self.done = threading.Event()
        http = "".join(f"HTTP_{k}:{v}\n" for k, v in (headers or {}).items() if k != "CONTENT_TYPE")
        self.variables = {"SERVER_NAME": b"example.test", "SERVER_PORT": b"8080", "SERVER_PROTOCOL": b"HTTP/1.1",
                          "REMOTE_ADDR": b"127.0.0.1", "SCRIPT_NAME": b"", "ALL_HTTP": http.encode(), "HTTPS": b"off"}
        self.variables.update(variables or {})

    def GetServerVariable(self, name, default=_NO_DEFAULT):
        # As pywin32's and frost's: a default given (None too) is returned for a missing name.
        if name in self.variables:
            return self.variables[name]
        if default is not _NO_DEFAULT:
            return default
        raise ExtensionError(1413, None, "GetServerVariable")

    def ReadClient(self, size=65536):
        return self._rest.read(size)

    def SendResponseHeaders(self, status, headers, keep_alive):
        if self.status is not None:
            raise ExtensionError(1, "headers already sent", "SendResponseHeaders")
        self.status, self.headers = status, headers

    def WriteClient(self, data, flags=0):
        self.body += data

    def DoneWithSession(self, status=None):
        self.done.set()


def echo_app(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    lines = [f"{k}={environ[k]}" for k in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
                                           "SERVER_NAME", "SERVER_PORT", "HTTP_X_TEST", "wsgi.url_scheme")
             if k in environ]
    payload = ("\n".join(lines) + "\n").encode() + body
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(payload)))])
    return [payload]


class SimpleHandlerTest(unittest.TestCase):
    def run_request(self, handler, **kwargs):
        ecb = RecordingECB(**kwargs)
        self.assertEqual(handler.HttpExtensionProc(ecb), isapicon.HSE_STATUS_SUCCESS)
        return ecb

    def test_environ_and_response_pass_the_validator(self):
        handler = ISAPISimpleHandler(validator(echo_app))
        ecb = self.run_request(handler, method=b"POST", path=b"/a/b", query=b"x=1",
                               body=b"hello body", headers={"X_TEST": "yes", "CONTENT_TYPE": b"text/plain"})
        self.assertEqual(ecb.status, "200 OK")
        self.assertIn("Content-Type: text/plain\r\n", ecb.headers)
        self.assertTrue(ecb.headers.endswith("\r\n\r\n"))
        text = ecb.body.decode()
        for expected in ("REQUEST_METHOD=POST", "PATH_INFO=/a/b", "QUERY_STRING=x=1", "SERVER_NAME=example.test",
                         "SERVER_PORT=8080", "HTTP_X_TEST=yes", "wsgi.url_scheme=http"):
            self.assertIn(expected, text)
        self.assertTrue(text.endswith("hello body"))
        self.assertEqual(ecb.HttpStatusCode, 200)

    def test_sub_applications_by_first_segment(self):
        handler = ISAPISimpleHandler(validator(echo_app), blog=validator(echo_app))
        blog = self.run_request(handler, path=b"/blog/post/1").body.decode()
        self.assertIn("SCRIPT_NAME=/blog", blog)
        self.assertIn("PATH_INFO=/post/1", blog)
        root = self.run_request(handler, path=b"/other").body.decode()
        self.assertIn("SCRIPT_NAME=\n", root)
        self.assertIn("PATH_INFO=/other", root)
        missing = self.run_request(ISAPISimpleHandler(blog=echo_app), path=b"/nothing")
        self.assertEqual(missing.status, "404 Not Found")

    def test_input_reads_preloaded_then_client_data_in_pieces(self):
        body = b"line one\nline two\n" + b"x" * 100000
        wrapper = ISAPIInputWrapper(RecordingECB(body=body, preload=5))
        self.assertEqual(wrapper.readline(), b"line one\n")
        self.assertEqual(wrapper.read(4), b"line")
        self.assertEqual(wrapper.readline(), b" two\n")
        self.assertEqual(len(wrapper.read()), 100000)
        self.assertEqual(wrapper.read(), b"")

    def test_input_asks_for_what_is_missing_and_reads_like_a_file(self):
        body = bytes(range(256)) * 1200 + b"\nlast line\nno newline"
        ecb = RecordingECB(body=body, preload=1000)
        asked = []
        read_client = ecb.ReadClient
        ecb.ReadClient = lambda size=65536: asked.append(size) or read_client(size)
        wrapper = ISAPIInputWrapper(ecb)
        first = wrapper.read(65536)
        self.assertEqual(first, body[:65536])
        self.assertEqual(asked, [64536], "the preloaded bytes and exactly what is missing: nothing left over")
        self.assertIs(wrapper.read(0), b"")
        # Small reads and lines against a file with the same bytes.
        reference = io.BytesIO(body)
        reference.read(65536)
        for step in range(400):
            if step % 3 == 0:
                got, want = wrapper.readline(700), reference.readline(700)
            elif step % 3 == 1:
                got, want = wrapper.read(step), reference.read(step)
            else:
                got, want = wrapper.readline(), reference.readline()
            self.assertEqual(got, want, f"step {step}")
        self.assertEqual(wrapper.read(), reference.read())
        self.assertEqual(wrapper.readline(), b"")
        self.assertTrue(all(size >= 8192 for size in asked), asked)

    def test_input_reads_with_read_body_and_looks_for_lines_in_what_has_arrived(self):
        body = b"a line\n" + b"z" * 50000 + b"\nend"
        ecb = RecordingECB(body=body)
        calls = []
        rest = ecb._rest
        # As the network gives it: ReadClient returns what has arrived (here 1,000 bytes at
        # most); frost's ReadBody waits for all it is asked.
        ecb.ReadClient = lambda size=65536: calls.append(("ReadClient", size)) or rest.read(min(size, 1000))
        ecb.ReadBody = lambda size: calls.append(("ReadBody", size)) or rest.read(size)
        wrapper = ISAPIInputWrapper(ecb)
        self.assertEqual(wrapper.readline(), b"a line\n")
        self.assertEqual(calls, [("ReadClient", 8192)], "one call: the line was in what had arrived")
        calls.clear()
        self.assertEqual(wrapper.read(20000), b"z" * 20000)
        self.assertEqual(calls, [("ReadBody", 20000 - 993)], "the 993 bytes left, and one ReadBody for the rest")
        self.assertEqual(wrapper.read(), b"z" * 30000 + b"\nend")
        self.assertEqual(wrapper.read(10), b"")

    def test_input_returns_a_whole_piece_without_copying_it(self):
        body = b"y" * 200000
        ecb = RecordingECB(body=body)
        given = []
        read_client = ecb.ReadClient
        ecb.ReadClient = lambda size=65536: given.append(read_client(size)) or given[-1]
        wrapper = ISAPIInputWrapper(ecb)
        pieces = [wrapper.read(65536) for _ in range(4)]
        self.assertEqual([len(piece) for piece in pieces], [65536, 65536, 65536, 200000 - 3 * 65536])
        self.assertEqual(b"".join(pieces), body)
        self.assertTrue(all(piece is chunk for piece, chunk in zip(pieces, given)), "each piece is what ReadClient gave")

    def test_empty_body_still_sends_headers_and_close_is_called(self):
        closed = []

        class Body(list):
            def close(self):
                closed.append(True)

        def app(environ, start_response):
            start_response("204 No Content", [])
            return Body()

        ecb = self.run_request(ISAPISimpleHandler(validator(app)))
        self.assertEqual(ecb.status, "204 No Content")
        self.assertEqual(closed, [True])

    def test_bad_applications_raise(self):
        def no_start(environ, start_response):
            return [b"body"]

        def text_body(environ, start_response):
            start_response("200 OK", [])
            return ["not bytes"]

        for app in (no_start, text_body):
            with self.assertRaises((AssertionError, TypeError)):
                ISAPISimpleHandler(app).HttpExtensionProc(RecordingECB())

    def test_start_response_checks_every_call_though_it_remembers_good_headers(self):
        # What start_response has checked once passes quicker later: a bad status or
        # header is still refused however often good ones came before it.
        def app_with(status, headers):
            def app(environ, start_response):
                start_response(status, headers)
                return [b"ok"]
            return app

        good = ("Content-Type", "text/plain")
        for _ in range(3):
            ecb = self.run_request(ISAPISimpleHandler(app_with("200 OK", [good, ["X-List", "pair"]])))
            self.assertEqual((ecb.status, ecb.body), ("200 OK", b"ok"))
            self.assertIn("X-List: pair\r\n", ecb.headers)
        for status, headers in (("200 OK", [good, ("X-Bad", "a\r\nb")]), ("200 OK", [good, ["X-Bad", 1]]),
                                ("200 OK", [good, ("X-Bad", ["unhashable"])]), ("200", [good]), (b"200 OK", [good])):
            with self.assertRaises(ValueError, msg=f"{status!r} {headers!r}"):
                ISAPISimpleHandler(app_with(status, headers)).HttpExtensionProc(RecordingECB())


class ThreadPoolHandlerTest(unittest.TestCase):
    def test_requests_run_on_workers_and_errors_give_500(self):
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/fail":
                raise RuntimeError("application failed")
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [threading.current_thread().name.encode()]

        handler = ISAPIThreadPoolHandler(validator(app))
        handler.max_workers = 2
        handler.GetExtensionVersion(None)
        ok = RecordingECB(path=b"/")
        self.assertEqual(handler.HttpExtensionProc(ok), isapicon.HSE_STATUS_PENDING)
        self.assertTrue(ok.done.wait(5))
        self.assertEqual(ok.body, b"isapi-worker")
        failing = RecordingECB(path=b"/fail")
        handler.HttpExtensionProc(failing)
        self.assertTrue(failing.done.wait(5))
        self.assertEqual(failing.status, "500 Internal Server Error")
        self.assertNotIn(b"application failed", failing.body)
        handler.TerminateExtension(isapicon.HSE_TERM_MUST_UNLOAD)


if __name__ == "__main__":
    unittest.main()
