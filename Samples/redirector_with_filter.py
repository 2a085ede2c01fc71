"""A filter that rewrites every URL into the /python virtual directory, and the proxying
extension (Samples/redirector.py) that serves that directory.

As in pywin32's sample: the filter sees each request's headers first
(SF_NOTIFY_PREPROC_HEADERS) and prefixes the URL with /python unless it is already
there; the extension strips the prefix again and forwards the request to
FROST_REDIRECTOR_UPSTREAM. The filter counts the requests of each connection in
``fc.FilterContext`` (which lives as long as the connection) and reports the count in
an ``X-Requests-On-Connection`` response header.

    dist/redirector_with_filter/redirector_with_filter install   # records /python and the filter
"""
from isapi import isapicon
from isapi.simple import SimpleFilter

from redirector import Extension as ProxyExtension

# The virtual directory the filter redirects into.
VIRTUAL_DIRECTORY = "/python"


class Extension(ProxyExtension):
    "Proxies the /python virtual directory to an upstream server"

    def upstream_path(self, ecb):
        url = ecb.GetServerVariable("URL").decode("latin-1")
        if url == VIRTUAL_DIRECTORY or url.startswith(VIRTUAL_DIRECTORY + "/"):
            return url[len(VIRTUAL_DIRECTORY):] or "/"
        # Only a request the filter let through unchanged gets here.
        return url


class Filter(SimpleFilter):
    "Rewrites URLs into the /python virtual directory"

    filter_flags = isapicon.SF_NOTIFY_PREPROC_HEADERS | isapicon.SF_NOTIFY_ORDER_DEFAULT

    def HttpFilterProc(self, fc):
        if fc.NotificationType != isapicon.SF_NOTIFY_PREPROC_HEADERS:
            return isapicon.SF_STATUS_REQ_NEXT_NOTIFICATION
        headers = fc.GetData()
        url = headers.GetHeader("url")
        if fc.FilterContext is None:
            fc.FilterContext = 0
        fc.FilterContext += 1
        fc.AddResponseHeaders(f"X-Requests-On-Connection: {fc.FilterContext}\r\n")
        prefix = VIRTUAL_DIRECTORY.encode()
        if url == prefix or url.startswith(prefix + b"/"):
            return isapicon.SF_STATUS_REQ_NEXT_NOTIFICATION
        headers.SetHeader("url", prefix + url)
        return isapicon.SF_STATUS_REQ_HANDLED_NOTIFICATION


def __FilterFactory__():
    return Filter()


def __ExtensionFactory__():
    return Extension()


if __name__ == "__main__":
    from isapi.install import FilterParameters, HandleCommandLine, ISAPIParameters, ScriptMapParams, VirtualDirParameters

    params = ISAPIParameters()
    params.Filters = [FilterParameters(Name="PythonRedirector", Description=Filter.__doc__)]
    params.VirtualDirs = [VirtualDirParameters(Name=VIRTUAL_DIRECTORY.strip("/"), Description=Extension.__doc__,
                                               ScriptMaps=[ScriptMapParams(Extension="*", Flags=0)],
                                               ScriptMapUpdate="replace")]
    HandleCommandLine(params)
