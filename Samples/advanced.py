"""Some of the host's advanced features, after pywin32's advanced.py sample:

* Reloading: a watcher thread notices when the module's source in the bundle changes
  (a redeployed NAME.zip, or the .py file when run from a directory); the next request
  raises InternalReloadException, the host reloads the module and re-issues the request.
  ``reload_counter`` survives the reload and counts it.
* The query string names server variables to print: /advanced?URL&REMOTE_ADDR.
* A URL ending in ReportUnhealthy reports the extension unhealthy to the host.
* The command line: a custom ``--description`` install option and a ``status`` command.
"""
import os
import threading

from isapi import InternalReloadException, isapicon
from isapi.simple import SimpleExtension

try:
    reload_counter += 1
except NameError:
    reload_counter = 0


def watched_file():
    """The file whose change means new code: the bundle archive holding this module, or
    the source file itself outside a bundle."""
    archive = getattr(__loader__, "archive", None)
    return archive if archive else os.path.abspath(__file__)


def stamp(path):
    try:
        info = os.stat(path)
        return (info.st_ino, info.st_size, info.st_mtime_ns)
    except OSError:
        return None


class ReloadWatcherThread(threading.Thread):
    """Polls the watched file's identity once a second; sets ``change_detected``."""

    def __init__(self, interval=1.0):
        super().__init__(name="reload-watcher", daemon=True)
        self.filename = watched_file()
        self.interval = interval
        self.change_detected = False
        self.stopping = threading.Event()
        self.last = stamp(self.filename)

    def run(self):
        while not self.stopping.wait(self.interval):
            now = stamp(self.filename)
            if now is not None and now != self.last:
                print(f"Detected a change of {self.filename}: reloading at the next request")
                self.change_detected = True
                self.last = now

    def stop(self):
        self.stopping.set()


class Extension(SimpleExtension):
    "Python advanced sample Extension"

    def __init__(self):
        super().__init__()
        self.reload_watcher = ReloadWatcherThread()
        self.reload_watcher.start()

    def HttpExtensionProc(self, ecb):
        # Checked here, not in a worker thread: the host only reloads for an exception
        # raised by HttpExtensionProc itself.
        if self.reload_watcher.change_detected:
            print("Doing reload")
            raise InternalReloadException

        url = ecb.GetServerVariable("URL").decode()
        if url.endswith("ReportUnhealthy"):
            ecb.ReportUnhealthy("I'm a little sick")

        ecb.SendResponseHeaders("200 OK", "Content-Type: text/html; charset=utf-8\r\n\r\n", False)
        print("<HTML><BODY>", file=ecb)
        query = ecb.GetServerVariable("QUERY_STRING").decode()
        if query:
            print("<PRE>", file=ecb)
            for name in query.split("&"):
                value = ecb.GetServerVariable(name, None)
                print(f"{name}={value!r}", file=ecb)
            print("</PRE><P/>", file=ecb)
        print("This module has been imported", file=ecb)
        print(f"{reload_counter} times", file=ecb)
        print("</BODY></HTML>", file=ecb)
        ecb.close()
        return isapicon.HSE_STATUS_SUCCESS

    def TerminateExtension(self, status):
        self.reload_watcher.stop()


def __ExtensionFactory__():
    return Extension()


def PreInstallDirectory(params, options):
    """Pre-install hook of the virtual directory: the --description option wins."""
    if options.description:
        params.Description = options.description


def PostInstall(params, options):
    print()
    print("The sample has been installed.")
    print("Point your browser to /AdvancedPythonSample")
    print("If you redeploy the bundle and reload the page, the reload counter goes up.")


def status_handler(options, log, arg):
    "Query the status of something"
    print("Everything seems to be fine!")


custom_arg_handlers = {"status": status_handler}

if __name__ == "__main__":
    from optparse import OptionParser

    from isapi.install import HandleCommandLine, ISAPIParameters, ScriptMapParams, VirtualDirParameters

    params = ISAPIParameters(PostInstall=PostInstall)
    params.VirtualDirs = [VirtualDirParameters(Name="AdvancedPythonSample", Description=Extension.__doc__,
                                               ScriptMaps=[ScriptMapParams(Extension="*", Flags=0)],
                                               ScriptMapUpdate="replace", PreInstall=PreInstallDirectory)]
    parser = OptionParser("")  # a blank usage: HandleCommandLine sets it
    parser.add_option("", "--description", action="store", help="custom description to use for the virtual directory")
    HandleCommandLine(params, opt_parser=parser, custom_arg_handlers=custom_arg_handlers)
