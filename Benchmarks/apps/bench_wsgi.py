"""The benchmark's WSGI application: the same bytes as bench_isapi.py and nginx's files."""
HELLO = b"Hello, world!\n"
BODIES = {"/": HELLO, "/64k": b"x" * 65536, "/1m": b"x" * 1048576}


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/upload":
        stream, left, size = environ["wsgi.input"], int(environ.get("CONTENT_LENGTH") or 0), 0
        while left > 0:
            data = stream.read(min(left, 65536))
            if not data:
                break
            size += len(data)
            left -= len(data)
        body = b"%d\n" % size
    else:
        body = BODIES.get(path, HELLO)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
