"""The benchmark's native extension: the same bytes as bench_wsgi.py and nginx's files."""
from isapi import isapicon
from isapi.simple import SimpleExtension

HELLO = b"Hello, world!\n"
BODIES = {"/": HELLO, "/64k": b"x" * 65536, "/1m": b"x" * 1048576}


class Extension(SimpleExtension):
    "frost benchmark"

    def HttpExtensionProc(self, ecb):
        path = ecb.PathInfo.decode()
        if path == "/upload":
            size, data = 0, ecb.AvailableData
            while data:
                size += len(data)
                data = ecb.ReadClient(65536)
            body = b"%d\n" % size
        else:
            body = BODIES.get(path, HELLO)
        ecb.SendResponseHeaders("200 OK", "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body), False)
        ecb.WriteClient(body)
        return isapicon.HSE_STATUS_SUCCESS


def __ExtensionFactory__():
    return Extension()
