"""WSGI (PEP 3333) applications as ISAPI extensions.

    from isapi.wsgi import ISAPIThreadPoolHandler
    def __ExtensionFactory__():
        return ISAPIThreadPoolHandler(app)

``ISAPISimpleHandler`` runs the application in ``HttpExtensionProc``;
``ISAPIThreadPoolHandler`` runs it on the extension's worker threads. Both take a root
application and/or sub-applications by keyword: with ``ISAPISimpleHandler(blog=app1,
shop=app2)`` a request for ``/blog/post/1`` goes to ``app1`` with ``SCRIPT_NAME``
extended by ``/blog`` and ``PATH_INFO`` ``/post/1``; requests no sub-application takes
go to the root application (or get a 404).
"""
import os
import stat
import sys

from isapi import isapicon, simple, threaded_extension

__all__ = ["ISAPISimpleHandler", "ISAPIThreadPoolHandler", "ISAPIInputWrapper", "FileWrapper", "constant_environ"]


class FileWrapper:
    """``wsgi.file_wrapper``: a regular file returned this way is sent by the host with
    ``TransmitFile`` (sendfile, no copy through Python); anything else is iterated in
    blocks, as PEP 3333 describes."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def regular_file(self):
        """(descriptor, offset, size) when the file can go out with sendfile, else None."""
        try:
            descriptor = self.filelike.fileno()
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                return None
            return descriptor, self.filelike.tell(), info.st_size
        except (AttributeError, OSError, ValueError):
            return None


def _text(value):
    """Server variables and ECB strings arrive as bytes: WSGI wants latin-1 str."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


# The server variables an environ is built from, fetched in one call where the control
# block offers GetServerVariables (frost's), else one by one.
_ENVIRON_VARIABLES = ("PATH_INFO", "SCRIPT_NAME", "HTTPS", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
                      "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_PORT", "REMOTE_USER", "AUTH_TYPE", "ALL_HTTP")


def _variables(ecb):
    """The values of _ENVIRON_VARIABLES, as latin-1 str ("" when missing)."""
    fetch = getattr(ecb, "GetServerVariables", None)
    values = fetch(_ENVIRON_VARIABLES) if fetch is not None else \
        [ecb.GetServerVariable(name, None) for name in _ENVIRON_VARIABLES]
    return [value.decode("latin-1") if type(value) is bytes else _text(value) for value in values]


_CHUNKED = 0xFFFFFFFF  # TotalBytes of a body without a Content-Length, as IIS reports it
_UNREAD = object()  # a value not looked for yet
# Several worker processes serve the application (the master sets FROST_WORKERS).
_MULTIPROCESS = int(os.environ.get("FROST_WORKERS") or 1) > 1


# The entries every environ has, by wsgi.multithread.
_CONSTANT_ENVIRON = {
    multithread: {
        "wsgi.version": (1, 0),
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": _MULTIPROCESS,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.run_once": False,
    }
    for multithread in (False, True)
}


def constant_environ(multithread):
    """The entries every environ has (wsgi.version, wsgi.multithread, ...): a dict shared by
    all requests, which frost's ``ecb.ServeWSGI`` copies into each environ."""
    return _CONSTANT_ENVIRON[bool(multithread)]


class ISAPIInputWrapper:
    """``wsgi.input``: the request body, read from the ECB as the application asks."""

    __slots__ = ("_ecb", "_total", "_started", "_buffer", "_position", "_remaining", "_read_body")

    def __init__(self, ecb, total=None):
        self._ecb = ecb
        self._total = total
        # Nothing is asked of the ECB until the application reads: most requests have no
        # body, and most applications never touch wsgi.input. The other slots are set
        # then too (one is made for every request).
        self._started = False

    def _start(self):
        self._started = True
        ecb = self._ecb
        # What was read from the ECB and not yet by the application: _buffer from
        # _position on. Cutting off what was read would copy the rest at every read.
        self._position = 0
        total = int(ecb.TotalBytes or 0) if self._total is None else self._total
        # A chunked body (TotalBytes 0xFFFFFFFF) is read until the host says it ended.
        self._remaining = sys.maxsize if total == _CHUNKED else max(total, 0)
        preloaded = ecb.AvailableData or b""
        self._buffer = bytes(preloaded[: self._remaining])
        self._remaining -= len(self._buffer)
        # frost's ReadBody waits for all it is asked, as a file's read does (one call, one
        # copy); pywin32's ReadClient gives what has arrived.
        self._read_body = getattr(ecb, "ReadBody", None)

    def _fill(self, wanted, whole=True):
        """At least `wanted` unread bytes buffered, or all that is left of the body. Not
        `whole`: what has arrived will do (a line is looked for in it)."""
        if not self._started:
            self._start()
        have = len(self._buffer) - self._position
        if have >= wanted or self._remaining <= 0:
            return
        # Pieces are joined once: adding each to the buffer would copy it again and again.
        parts = [self._buffer[self._position:]] if have else []
        while have < wanted and self._remaining > 0:
            # What is missing, so that nothing is left over to copy at the next read; a small
            # read asks for 64 KiB, for the small reads after it.
            missing = wanted - have
            size = min(self._remaining, missing if missing >= 8192 else 65536)
            chunk = self._read_body(size) if whole and self._read_body else self._ecb.ReadClient(size)
            if not chunk:
                self._remaining = 0
                break
            self._remaining -= len(chunk)
            parts.append(chunk)
            have += len(chunk)
            if not whole:
                break  # a line may be in it: no waiting for more
        self._buffer = parts[0] if len(parts) == 1 else b"".join(parts)
        self._position = 0

    def _take(self, count):
        """The next `count` unread bytes (fewer at the end)."""
        buffer, start = self._buffer, self._position
        end = min(start + count, len(buffer))
        if start == 0 and end == len(buffer):
            self._buffer = b""  # all of it: the same object, no copy
            return buffer
        self._position = end
        return buffer[start:end]

    def read(self, size=-1):
        if size is None or size < 0:
            self._fill(sys.maxsize)
            return self._take(len(self._buffer))
        self._fill(size)
        return self._take(size)

    def readline(self, size=-1):
        if not self._started:
            self._start()
        limit = sys.maxsize if size is None or size < 0 else size
        newline = self._buffer.find(b"\n", self._position)
        while newline < 0 and self._remaining > 0 and len(self._buffer) - self._position < limit:
            searched = len(self._buffer) - self._position
            self._fill(searched + 8192, whole=False)
            newline = self._buffer.find(b"\n", self._position + searched)
        unread = len(self._buffer) - self._position
        end = newline + 1 - self._position if newline >= 0 else unread
        return self._take(min(end, limit))

    def readlines(self, hint=-1):
        lines, total = [], 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


# Status lines and header pairs start_response has checked: most responses repeat the same
# few, and a set lookup costs less than checking again. Bounded: emptied when full.
_CHECKED = set()


def _remember(checked):
    if len(_CHECKED) >= 1024:
        _CHECKED.clear()
    _CHECKED.add(checked)


class _Response:
    """start_response and the body writes of one request."""

    __slots__ = ("ecb", "status", "headers", "sent", "length", "written", "native")

    def __init__(self, ecb, native=False):
        self.ecb = ecb
        self.status = None
        self.headers = None
        self.sent = False
        self.length = _UNREAD  # the Content-Length the application set, read when streaming
        self.written = 0
        self.native = native  # frost's control block: headers go as (name, value) pairs

    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        if type(status) is not str or status not in _CHECKED:
            if not isinstance(status, str) or len(status) < 4 or not status[:3].isdigit() or status[3] != " ":
                raise ValueError(f"bad WSGI status {status!r}")
            _remember(status)
        headers = list(headers)
        for pair in headers:
            try:
                if pair in _CHECKED:
                    continue
            except TypeError:  # unhashable (a list): checked, not remembered
                pass
            name, value = pair
            if not isinstance(name, str) or not isinstance(value, str) or "\n" in value or "\r" in value:
                raise ValueError(f"bad WSGI header {name!r}: {value!r}")
            if type(pair) is tuple:
                _remember(pair)
        self.status, self.headers, self.length = status, headers, _UNREAD
        return self.write

    def content_length(self):
        """The Content-Length the application set (None: none), read once."""
        if self.length is _UNREAD:
            self.length = None
            for name, value in self.headers:
                if len(name) == 14 and name.lower() == "content-length":
                    value = value.strip()
                    if value.isdigit():
                        self.length = int(value)
                        break
        return self.length

    def send_headers(self):
        if self.sent:
            return
        if self.status is None:
            raise AssertionError("the application wrote a body before calling start_response")
        self.sent = True
        if self.native:
            # frost takes the pairs as they are, and the status code from the status line.
            self.ecb.SendResponseHeaders(self.status, self.headers, False)
            return
        self.ecb.HttpStatusCode = int(self.status[:3])
        text = "".join(f"{name}: {value}\r\n" for name, value in self.headers) + "\r\n"
        self.ecb.SendResponseHeaders(self.status, text, False)

    def write(self, data, flush=True):
        """Sends a piece of the body. The host buffers what a handler writes and sends it
        when the handler returns; a streamed piece (from ``write`` or an iterator) is
        flushed at once, as gunicorn sends it, unless it completes the Content-Length
        (then the end of the response follows anyway)."""
        if type(data) is not bytes and not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"WSGI body data must be bytes, not {type(data).__name__}")
        if not self.sent:
            self.send_headers()
        if data:
            self.written += len(data)
            if flush and ((length := self.content_length()) is None or self.written < length):
                self.ecb.WriteClient(bytes(data), isapicon.HSE_IO_NODELAY)
            else:
                self.ecb.WriteClient(data if type(data) is bytes else bytes(data))


class _WSGIHandlerMixin:
    def __init__(self, rootapp=None, **apps):
        self.rootapp = rootapp
        self.apps = apps

    def select(self, path_info):
        """The application for a path and the SCRIPT_NAME/PATH_INFO split it gets."""
        if self.apps:
            segment = path_info.lstrip("/").split("/", 1)[0]
            if segment in self.apps:
                prefix = "/" + segment
                return self.apps[segment], prefix, path_info[len(prefix):] if path_info.startswith(prefix) else path_info
        return self.rootapp, "", path_info

    @staticmethod
    def _native_environ(ecb, multithread, build):
        # frost's control block builds the CGI variables natively, from the same request
        # data and with the same rules as the portable path in environ(), and adds
        # wsgi.input, wsgi.errors and isapi.ecb (handle() makes this call itself).
        return build(_CONSTANT_ENVIRON[multithread], ISAPIInputWrapper(ecb), sys.stderr)

    def environ(self, ecb, multithread):
        build = getattr(ecb, "WSGIEnviron", None)
        if build is not None:
            return self._native_environ(ecb, multithread, build)
        (path_variable, script_name, https, server_name, server_port, protocol, remote_addr, remote_host,
         remote_port, remote_user, auth_type, all_http) = _variables(ecb)
        path_info = _text(ecb.PathInfo) or path_variable
        if script_name and path_info.startswith(script_name) and script_name != path_info:
            path_info = path_info[len(script_name):]
        elif script_name == path_info:
            script_name = ""
        https = https.lower() in ("on", "1")
        total = int(ecb.TotalBytes or 0)
        environ = {
            "REQUEST_METHOD": _text(ecb.Method),
            "SCRIPT_NAME": script_name.rstrip("/"),
            "PATH_INFO": path_info,
            "QUERY_STRING": _text(ecb.QueryString),
            "CONTENT_TYPE": _text(ecb.ContentType),
            "SERVER_NAME": server_name or "localhost",
            "SERVER_PORT": server_port or ("443" if https else "80"),
            "SERVER_PROTOCOL": protocol or "HTTP/1.1",
            "REMOTE_ADDR": remote_addr,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if https else "http",
            "wsgi.input": ISAPIInputWrapper(ecb, total),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": _MULTIPROCESS,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.run_once": False,
            "isapi.ecb": ecb,
        }
        if total == _CHUNKED:
            # No length to give (PEP 3333 leaves CONTENT_LENGTH out); reading to the end is
            # safe, as gunicorn and mod_wsgi announce with this key.
            environ["wsgi.input_terminated"] = True
        elif total:
            environ["CONTENT_LENGTH"] = str(total)
        if remote_host:
            environ["REMOTE_HOST"] = remote_host
        if remote_port:
            environ["REMOTE_PORT"] = remote_port
        if remote_user:
            environ["REMOTE_USER"] = remote_user
        if auth_type:
            environ["AUTH_TYPE"] = auth_type
        for line in all_http.split("\n"):
            name, _, value = line.partition(":")
            name = name.strip()
            if name.startswith("HTTP_") and name != "HTTP_CONTENT_TYPE" and name != "HTTP_CONTENT_LENGTH":
                value = value.strip()
                if name in environ:
                    # A repeated header is one variable, its values joined (RFC 9110 §5.3;
                    # cookies with "; ", RFC 6265 §5.4), as gunicorn and mod_wsgi do.
                    value = environ[name] + ("; " if name == "HTTP_COOKIE" else ",") + value
                environ[name] = value
        return environ

    def handle(self, ecb, multithread):
        if not self.apps and self.rootapp is not None:
            serve = getattr(ecb, "ServeWSGI", None)
            if serve is not None:
                # frost's control block runs the whole request natively, with the rules of
                # _Response and of the rest of this method: the same environ, checks and
                # writes, without these Python frames (most of a small request's cost), and
                # its own wsgi.input with ISAPIInputWrapper's reads (input None).
                serve(self.rootapp, _CONSTANT_ENVIRON[multithread], None, sys.stderr, FileWrapper)
                return
        build = getattr(ecb, "WSGIEnviron", None)
        if build is not None:  # _native_environ, inline: this runs for every request
            environ = build(_CONSTANT_ENVIRON[multithread], ISAPIInputWrapper(ecb), sys.stderr)
            response = _Response(ecb, True)
        else:
            environ = self.environ(ecb, multithread)
            response = _Response(ecb, False)
        if self.apps:
            app, prefix, path_info = self.select(environ["PATH_INFO"])
            environ["SCRIPT_NAME"] += prefix
            environ["PATH_INFO"] = path_info
        else:
            app = self.rootapp
        if app is None:
            response.start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            response.write(b"Not Found\n")
            return
        result = app(environ, response.start_response)
        if type(result) is list and len(result) == 1 and type(result[0]) is bytes and response.status is not None:
            # The common `return [body]` (a list has no close()): headers and body in two calls.
            response.send_headers()
            if result[0]:
                ecb.WriteClient(result[0])
            return
        try:
            regular = result.regular_file() if isinstance(result, FileWrapper) else None
            if regular is not None:
                self.transmit(response, regular)
                return
            # A list or tuple is all there already: one write at the end. Anything else
            # may be produced slowly (a generator, server-sent events): each piece goes now.
            streamed = not isinstance(result, (list, tuple))
            for data in result:
                response.write(data, streamed)
            if not response.sent:
                response.send_headers()  # an empty body still sends its headers
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


    @staticmethod
    def transmit(response, regular):
        """The rest of the file from its current position, zero-copy; no more than the
        Content-Length the application set."""
        descriptor, offset, size = regular
        length = max(size - offset, 0)
        for name, value in response.headers or ():
            if name.lower() == "content-length" and value.strip().isdigit():
                length = min(length, int(value))
        response.send_headers()
        if length:
            response.ecb.TransmitFile(None, None, descriptor, None, length, offset, None, None, 0)


class ISAPISimpleHandler(_WSGIHandlerMixin, simple.SimpleExtension):
    """Runs the WSGI application in HttpExtensionProc, one request at a time per call."""

    def __init__(self, rootapp=None, **apps):
        simple.SimpleExtension.__init__(self)
        _WSGIHandlerMixin.__init__(self, rootapp, **apps)

    def HttpExtensionProc(self, ecb):
        self.handle(ecb, multithread=False)
        return isapicon.HSE_STATUS_SUCCESS


class ISAPIThreadPoolHandler(_WSGIHandlerMixin, threaded_extension.ThreadPoolExtension):
    """Runs the WSGI application on the extension's pool of worker threads."""

    def __init__(self, rootapp=None, **apps):
        threaded_extension.ThreadPoolExtension.__init__(self)
        _WSGIHandlerMixin.__init__(self, rootapp, **apps)

    def Dispatch(self, ecb):
        # A failure goes to HandleDispatchError (500, traceback logged), which ends the
        # session itself.
        self.handle(ecb, multithread=True)
        ecb.DoneWithSession()
