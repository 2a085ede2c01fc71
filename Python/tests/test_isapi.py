"""Tests of the isapi package against pywin32's documented behaviour."""
import sys
import threading
import time
import unittest

import isapi
from isapi import isapicon, simple, threaded_extension


class ConstantsTest(unittest.TestCase):
    def test_iis_values(self):
        self.assertEqual(isapicon.HSE_STATUS_SUCCESS, 1)
        self.assertEqual(isapicon.HSE_STATUS_SUCCESS_AND_KEEP_CONN, 2)
        self.assertEqual(isapicon.HSE_STATUS_PENDING, 3)
        self.assertEqual(isapicon.HSE_STATUS_ERROR, 4)
        self.assertEqual(isapicon.SF_NOTIFY_SECURE_PORT, 0x1)
        self.assertEqual(isapicon.SF_NOTIFY_NONSECURE_PORT, 0x2)
        self.assertEqual(isapicon.SF_NOTIFY_READ_RAW_DATA, 0x8000)
        self.assertEqual(isapicon.SF_NOTIFY_PREPROC_HEADERS, 0x4000)
        self.assertEqual(isapicon.SF_NOTIFY_AUTHENTICATION, 0x2000)
        self.assertEqual(isapicon.SF_NOTIFY_URL_MAP, 0x1000)
        self.assertEqual(isapicon.SF_NOTIFY_ACCESS_DENIED, 0x800)
        self.assertEqual(isapicon.SF_NOTIFY_SEND_RESPONSE, 0x40)
        self.assertEqual(isapicon.SF_NOTIFY_SEND_RAW_DATA, 0x400)
        self.assertEqual(isapicon.SF_NOTIFY_LOG, 0x200)
        self.assertEqual(isapicon.SF_NOTIFY_END_OF_REQUEST, 0x80)
        self.assertEqual(isapicon.SF_NOTIFY_END_OF_NET_SESSION, 0x100)
        self.assertEqual(isapicon.SF_NOTIFY_ORDER_HIGH, 0x80000)
        self.assertEqual(isapicon.SF_NOTIFY_ORDER_MEDIUM, 0x40000)
        self.assertEqual(isapicon.SF_NOTIFY_ORDER_LOW, 0x20000)
        self.assertEqual(isapicon.SF_NOTIFY_ORDER_DEFAULT, isapicon.SF_NOTIFY_ORDER_LOW)
        self.assertEqual(isapicon.SF_STATUS_REQ_FINISHED, 0x8000000)
        self.assertEqual(
            [isapicon.SF_STATUS_REQ_FINISHED_KEEP_CONN, isapicon.SF_STATUS_REQ_NEXT_NOTIFICATION,
             isapicon.SF_STATUS_REQ_HANDLED_NOTIFICATION, isapicon.SF_STATUS_REQ_ERROR,
             isapicon.SF_STATUS_REQ_READ_NEXT],
            [0x8000001, 0x8000002, 0x8000003, 0x8000004, 0x8000005])
        self.assertEqual((isapicon.HSE_IO_SYNC, isapicon.HSE_IO_ASYNC, isapicon.HSE_IO_DISCONNECT_AFTER_SEND,
                          isapicon.HSE_IO_SEND_HEADERS, isapicon.HSE_IO_FINAL_SEND), (1, 2, 4, 8, 0x10))
        self.assertEqual(isapicon.HSE_EXEC_URL_NO_HEADERS, 2)
        self.assertEqual(isapicon.HSE_EXEC_URL_IGNORE_CURRENT_INTERCEPTOR, 4)
        self.assertEqual(isapicon.HTTP_OK, 200)
        self.assertEqual(isapicon.HTTP_NOT_FOUND, 404)
        self.assertEqual(isapicon.HTTP_INTERNAL_SERVER_ERROR, 500)


class ErrorsTest(unittest.TestCase):
    def test_isapi_error_attributes_and_str(self):
        e = isapi.ExtensionError(1413, None, "GetServerVariable")
        self.assertEqual((e.errno, e.funcname), (1413, "GetServerVariable"))
        self.assertEqual(str(e), str((1413, "Invalid index.", "GetServerVariable")))
        self.assertIsInstance(e, isapi.ISAPIError)
        self.assertTrue(issubclass(isapi.FilterError, isapi.ISAPIError))
        self.assertEqual(e.args, (1413, None, "GetServerVariable"))
        self.assertIn("no error message", str(isapi.ISAPIError(99999)))
        self.assertTrue(issubclass(isapi.InternalReloadException, Exception))


class VersionInfo:
    ExtensionDesc = None
    Flags = None
    FilterDesc = None


class SimpleTest(unittest.TestCase):
    def test_extension_description_comes_from_docstring(self):
        class Ext(simple.SimpleExtension):
            "my extension"
        vi = VersionInfo()
        Ext().GetExtensionVersion(vi)
        self.assertEqual(vi.ExtensionDesc, "my extension")
        Ext().GetExtensionVersion(None)  # after a reload: no error
        with self.assertRaises(NotImplementedError):
            Ext().HttpExtensionProc(object())

    def test_filter_needs_flags(self):
        class NoFlags(simple.SimpleFilter):
            "no flags"
        with self.assertRaises(RuntimeError):
            NoFlags().GetFilterVersion(VersionInfo())

        class Flagged(simple.SimpleFilter):
            "flagged"
            filter_flags = isapicon.SF_NOTIFY_LOG
        fv = VersionInfo()
        Flagged().GetFilterVersion(fv)
        self.assertEqual((fv.Flags, fv.FilterDesc), (isapicon.SF_NOTIFY_LOG, "flagged"))


class RecordingBlock:
    """Just enough of an extension control block to watch the pool work."""

    def __init__(self):
        self.done = threading.Event()
        self.written = []
        self.headers = None
        self.HttpStatusCode = 200

    def SendResponseHeaders(self, status, headers, keep_alive):
        self.headers = status

    def WriteClient(self, data, flags=0):
        self.written.append(data)

    def DoneWithSession(self, status=None):
        self.done.set()


class ThreadPoolTest(unittest.TestCase):
    def test_dispatch_runs_on_worker_threads_and_errors_become_500(self):
        seen = []

        class Ext(threaded_extension.ThreadPoolExtension):
            "pool"
            max_workers = 3

            def Dispatch(self, ecb):
                seen.append(threading.current_thread().name)
                if getattr(ecb, "fail", False):
                    raise ValueError("dispatch failed")
                ecb.WriteClient(b"ok")
                ecb.DoneWithSession()

        ext = Ext()
        ext.GetExtensionVersion(VersionInfo())
        self.assertEqual(len(ext.workers), 3)
        blocks = [RecordingBlock() for _ in range(6)]
        for block in blocks:
            self.assertEqual(ext.HttpExtensionProc(block), isapicon.HSE_STATUS_PENDING)
        for block in blocks:
            self.assertTrue(block.done.wait(5))
            self.assertEqual(block.written, [b"ok"])
        self.assertTrue(all(name == "isapi-worker" for name in seen))
        self.assertNotIn(threading.main_thread().name, seen)

        failing = RecordingBlock()
        failing.fail = True
        ext.HttpExtensionProc(failing)
        self.assertTrue(failing.done.wait(5))
        self.assertEqual(failing.HttpStatusCode, 500)
        self.assertEqual(failing.headers, "500 Internal Server Error")
        self.assertNotIn(b"dispatch failed", b"".join(failing.written))  # no traceback to clients

        started = time.monotonic()
        ext.TerminateExtension(isapicon.HSE_TERM_MUST_UNLOAD)
        self.assertLess(time.monotonic() - started, 5)
        self.assertFalse(any(w.is_alive() for w in ext.workers))


if __name__ == "__main__":
    unittest.main()
