"""A ThreadPoolExtension that proxies every request to an upstream server.

The upstream is FROST_REDIRECTOR_UPSTREAM from the environment (default
http://127.0.0.1:8080). Requests are forwarded with their method, path, query, body and
headers (hop-by-hop headers dropped); the upstream's status, headers and body come back.
Each request runs on one of the extension's worker threads, so a slow upstream does not
hold up the host.
"""
import http.client
import os
import urllib.parse

from isapi import isapicon, threaded_extension

UPSTREAM = os.environ.get("FROST_REDIRECTOR_UPSTREAM", "http://127.0.0.1:8080")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}


def request_headers(ecb):
    headers = {}
    for line in ecb.GetServerVariable("ALL_RAW").decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name and name.strip().lower() not in HOP_BY_HOP:
            headers[name.strip()] = value.strip()
    return headers


def read_body(ecb):
    total = ecb.TotalBytes
    data = bytearray(ecb.AvailableData)
    while total == 0xFFFFFFFF or len(data) < total:
        chunk = ecb.ReadClient(65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)


class Extension(threaded_extension.ThreadPoolExtension):
    "Proxies every request to an upstream server"

    max_workers = 8

    def upstream_path(self, ecb):
        """The path to ask the upstream for: the request's own."""
        return ecb.GetServerVariable("URL").decode("latin-1")

    def Dispatch(self, ecb):
        target = urllib.parse.urlsplit(UPSTREAM)
        path = self.upstream_path(ecb)
        query = ecb.QueryString.decode("latin-1")
        connection_class = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
        upstream = connection_class(target.hostname, target.port, timeout=30)
        try:
            upstream.request(ecb.Method.decode(), (target.path.rstrip("/") + path) + ("?" + query if query else ""),
                             body=read_body(ecb) or None, headers=request_headers(ecb))
            response = upstream.getresponse()
            body = response.read()
        except OSError as error:
            message = f"Bad Gateway: {UPSTREAM} did not answer ({error})\n".encode()
            ecb.SendResponseHeaders("502 Bad Gateway",
                                    f"Content-Type: text/plain\r\nContent-Length: {len(message)}\r\n\r\n", False)
            ecb.WriteClient(message)
            ecb.DoneWithSession()
            return
        finally:
            upstream.close()
        headers = "".join(f"{name}: {value}\r\n" for name, value in response.getheaders()
                          if name.lower() not in HOP_BY_HOP)
        ecb.SendResponseHeaders(f"{response.status} {response.reason}",
                                headers + f"Content-Length: {len(body)}\r\n\r\n", False)
        ecb.WriteClient(body)
        ecb.DoneWithSession()


def __ExtensionFactory__():
    return Extension()
