"""The frost ISAPI package: pywin32's ``isapi`` programming model on Linux.

Extensions and filters written for pywin32's ``isapi`` package run unchanged once their
Windows-only imports are gone: a module exports ``__ExtensionFactory__()`` and/or
``__FilterFactory__()``, and the frost loader calls ``GetExtensionVersion`` /
``GetFilterVersion``, then ``HttpExtensionProc`` / ``HttpFilterProc`` per request, and
``TerminateExtension`` / ``TerminateFilter`` at shutdown.
"""

__all__ = ["ISAPIError", "FilterError", "ExtensionError", "InternalReloadException"]


class ISAPIError(Exception):
    """An error reported by the host, with a Windows-style error number.

    The named attributes match ``OSError``: ``errno``, ``strerror`` and ``funcname``.
    """

    def __init__(self, errno, strerror=None, funcname=None):
        self.errno = errno
        self.strerror = strerror
        self.funcname = funcname
        Exception.__init__(self, errno, strerror, funcname)

    def __str__(self):
        if self.strerror is None:
            self.strerror = _error_messages.get(self.errno, "no error message is available")
        return str((self.errno, self.strerror, self.funcname))


class FilterError(ISAPIError):
    """An error from a filter-context call."""


class ExtensionError(ISAPIError):
    """An error from an extension-control-block call."""


class InternalReloadException(Exception):
    """Raised by a Proc to have the host reload the module.

    The host calls Terminate*, re-imports the entry module, calls the Version function
    with ``None`` and re-issues the request.
    """


# The Windows error numbers the host reports, with their usual messages.
_error_messages = {
    1: "Incorrect function.",
    2: "The system cannot find the file specified.",
    5: "Access is denied.",
    6: "The handle is invalid.",
    87: "The parameter is incorrect.",
    122: "The data area passed to a system call is too small.",
    1413: "Invalid index.",
    10054: "An existing connection was forcibly closed by the remote host.",
}
