"""Simple base classes for extensions and filters.

Subclasses provide ``HttpExtensionProc`` (or ``HttpFilterProc``); the descriptions come
from the class docstring, as in pywin32.
"""


class SimpleExtension:
    """Base class for a simple ISAPI extension."""

    def __init__(self):
        pass

    def GetExtensionVersion(self, vi):
        # vi is None when the host calls this after a reload.
        if vi is not None:
            vi.ExtensionDesc = self.__doc__

    def HttpExtensionProc(self, control_block):
        raise NotImplementedError("sub-classes should override HttpExtensionProc")

    def TerminateExtension(self, status):
        pass


class SimpleFilter:
    """Base class for a simple ISAPI filter."""

    filter_flags = None

    def __init__(self):
        pass

    def GetFilterVersion(self, fv):
        if self.filter_flags is None:
            raise RuntimeError("You must specify the filter flags")
        # fv is None when the host calls this after a reload.
        if fv is not None:
            fv.Flags = self.filter_flags
            fv.FilterDesc = self.__doc__

    def HttpFilterProc(self, fc):
        raise NotImplementedError("sub-classes should override HttpFilterProc")

    def TerminateFilter(self, status):
        pass
