"""The smallest frost extension: answers every request with a greeting."""
from isapi import isapicon
from isapi.simple import SimpleExtension


class Extension(SimpleExtension):
    "Hello from frost"

    def HttpExtensionProc(self, ecb):
        body = b"Hello, world!\n"
        ecb.SendResponseHeaders("200 OK", "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body), False)
        ecb.WriteClient(body)
        return isapicon.HSE_STATUS_SUCCESS


def __ExtensionFactory__():
    return Extension()
