# Imports a fixed set of stdlib modules and prints how long it took. The same code runs
# inside the frost loader (as the bundle's entry module) and under /usr/bin/python3.
import sys
import time

MODULES = """argparse json logging email.message email.parser http.client urllib.request
xml.dom.minidom xml.etree.ElementTree csv difflib textwrap string tomllib dataclasses typing
pathlib tempfile shutil zipfile tarfile configparser unittest asyncio pydoc fractions statistics
smtplib imaplib ftplib uuid ipaddress inspect ast dis pickle pprint gettext calendar datetime
wsgiref.simple_server html.parser http.cookies http.server socketserver subprocess queue
concurrent.futures""".split()

already = [m for m in MODULES if m in sys.modules]
if already:
    raise SystemExit(f"modules imported before timing, the comparison would be unfair: {already}")
started = time.perf_counter()
for name in MODULES:
    __import__(name)
elapsed = time.perf_counter() - started
origin = sys.modules["json"].__spec__.origin
print(f"IMPORT_SECONDS {elapsed:.6f} MODULES {len(sys.modules)} JSON_FROM {origin}", flush=True)


def __ExtensionFactory__():
    class Extension:
        def GetExtensionVersion(self, vi):
            vi.ExtensionDesc = "import benchmark"

        def TerminateExtension(self, status):
            pass

    return Extension()
