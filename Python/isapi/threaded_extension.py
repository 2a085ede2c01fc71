"""An extension base class that handles requests on a pool of worker threads.

pywin32 builds this on a Windows I/O completion port; here the port is a thread-safe
queue and the workers are ordinary (daemon) threads. The protocol is the same:
``HttpExtensionProc`` posts the request and returns ``HSE_STATUS_PENDING``, a worker
calls ``Dispatch(ecb)``, and the request ends when ``ecb.DoneWithSession()`` is called.
"""

import html
import queue
import sys
import threading
import time
import traceback

import isapi.simple
from isapi import ExtensionError, isapicon

# Keys posted to the request port, as in pywin32.
ISAPI_REQUEST = 1
ISAPI_SHUTDOWN = 2


class RequestPort:
    """The Linux stand-in for a completion port: posted (key, item) pairs, FIFO."""

    def __init__(self):
        self._queue = queue.SimpleQueue()

    def post(self, key, item=None):
        self._queue.put((key, item))

    def get(self):
        return self._queue.get()


class WorkerThread(threading.Thread):
    def __init__(self, extension, io_req_port):
        self.running = False
        self.io_req_port = io_req_port
        self.extension = extension
        threading.Thread.__init__(self, daemon=True, name="isapi-worker")

    def run(self):
        self.running = True
        while self.running:
            key, item = self.io_req_port.get()
            if key == ISAPI_SHUTDOWN and item is None:
                break
            # Let the parent extension handle the command.
            dispatcher = self.extension.dispatch_map.get(key)
            if dispatcher is None:
                raise RuntimeError("Bad request '%s'" % (key,))
            dispatcher(0, 0, key, item)

    def call_handler(self, cblock):
        self.extension.Dispatch(cblock)


class ThreadPoolExtension(isapi.simple.SimpleExtension):
    "Base class for an ISAPI extension based around a thread-pool"

    max_workers = 20
    worker_shutdown_wait = 15000  # milliseconds for the workers to quit

    def __init__(self):
        self.workers = []
        # Extensible dispatch map, for sub-classes that post their own requests to the
        # port: each function gets (errCode, bytes, key, item).
        self.dispatch_map = {
            ISAPI_REQUEST: self.DispatchConnection,
        }

    def GetExtensionVersion(self, vi):
        isapi.simple.SimpleExtension.GetExtensionVersion(self, vi)
        self.io_req_port = RequestPort()
        self.workers = []
        for i in range(self.max_workers):
            worker = WorkerThread(self, self.io_req_port)
            worker.start()
            self.workers.append(worker)

    def HttpExtensionProc(self, control_block):
        self.io_req_port.post(ISAPI_REQUEST, control_block)
        return isapicon.HSE_STATUS_PENDING

    def TerminateExtension(self, status):
        for worker in self.workers:
            worker.running = False
        for worker in self.workers:
            self.io_req_port.post(ISAPI_SHUTDOWN, None)
        end_time = time.monotonic() + self.worker_shutdown_wait / 1000
        for worker in self.workers:
            remaining = end_time - time.monotonic()
            if remaining <= 0:
                break
            worker.join(remaining)
        self.dispatch_map = {}  # break circles

    def DispatchConnection(self, errCode, bytes, key, control_block):
        try:
            self.Dispatch(control_block)
        except:
            self.HandleDispatchError(control_block)

    def Dispatch(self, ecb):
        """Overridden by the sub-class to handle connection requests.

        Called on one of the worker threads. Sub-classes can implement each request with
        blocking reads and writes and the pool still gives decent response times. The
        request ends when ``ecb.DoneWithSession()`` is called.
        """
        raise NotImplementedError("sub-classes should override Dispatch")

    def HandleDispatchError(self, ecb):
        """Handles an exception raised by Dispatch.

        The traceback goes to the log (stderr). The client gets a 500 with a generic
        page, or the traceback when the host runs with debugging on.
        """
        ecb.HttpStatusCode = isapicon.HTTP_INTERNAL_SERVER_ERROR
        exc_typ, exc_val, exc_tb = sys.exc_info()
        try:
            try:
                print("Dispatch failed:", file=sys.stderr)
                traceback.print_exception(exc_typ, exc_val, exc_tb, file=sys.stderr)
                ecb.SendResponseHeaders("500 Internal Server Error",
                                        "Content-Type: text/html; charset=utf-8\r\n\r\n", False)
                if _debug_enabled():
                    lines = traceback.format_tb(exc_tb) + traceback.format_exception_only(exc_typ, exc_val)
                    body = "<h3>Traceback (most recent call last):</h3><pre>%s<b>%s</b></pre>" % (
                        html.escape("".join(lines[:-1])), html.escape(lines[-1]))
                else:
                    body = "<h1>500 Internal Server Error</h1><p>The server could not complete the request.</p>"
                ecb.WriteClient(body.encode("utf-8"))
            except ExtensionError:
                # The client went away without reading the error page.
                pass
            except:
                print("FAILED to render the error message!", file=sys.stderr)
                traceback.print_exc()
                print("ORIGINAL extension error:", file=sys.stderr)
                traceback.print_exception(exc_typ, exc_val, exc_tb, file=sys.stderr)
        finally:
            ecb.DoneWithSession()


def _debug_enabled():
    """Whether the host shows tracebacks to clients (``--debug``)."""
    try:
        import _isapi
    except ImportError:
        return False
    return bool(getattr(_isapi, "debug", False))
