"""frost's traced import, run by the build interpreter as `python -I -S trace.py REQUEST OUT`.

Imports the entry module (as a module, not as __main__: its `if __name__ == "__main__"`
block does not run) in a fresh interpreter whose sys.path is the bundle's order, with no
site (no .pth files, no sitecustomize: the loader runs without them too), no network
beyond loopback, and the spec's excludes failing to import, as in the bundle. Then records
every module that ended up in sys.modules and every shared object the process mapped, so
imports made by C/Rust extensions, computed importlib calls, plugin discovery and
ctypes/cffi loads are seen. Writes JSON to OUT.
"""
import sys

# What the interpreter itself imported to start: anything else in sys.modules at the end
# counts as the program's, including what this script imports (json, threading): the
# program may import them too (orjson's Rust code imports json), and unlike a module the
# program brings, nothing would show it.
baseline = set(sys.modules)

import importlib.util
import json
import os
import threading

request = json.load(open(sys.argv[1]))
out_path = sys.argv[2]
sys.path[:] = request["path"]
sys.dont_write_bytecode = True
sys.argv = [request["script"]]


def is_loopback(host):
    host = host.decode() if isinstance(host, bytes) else str(host or "")
    return host in ("", "localhost", "::1") or host.startswith("127.")


def no_network(event, args):
    # The build must not reach the network: connections and lookups outside loopback fail.
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg") and len(args) > 1:
        address = args[1]
        if isinstance(address, tuple) and address and not is_loopback(address[0]):
            raise OSError(f"frost's traced import does not reach the network ({address[0]})")
    elif event == "socket.getaddrinfo" and args and not is_loopback(args[0]):
        raise OSError(f"frost's traced import does not reach the network ({args[0]})")


sys.addaudithook(no_network)


class LeftOut:
    """Fails the import of what the spec excludes, as the bundle will: the trace then sees
    what the program imports without them (http.client without ssl does not bring _ssl)."""

    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, name, path=None, target=None):
        if name in self.names or any(name.startswith(excluded + ".") for excluded in self.names):
            raise ModuleNotFoundError(f"No module named {name!r} (the spec's excludes leave it out)", name=name)
        return None


if request.get("excludes"):
    sys.meta_path.insert(0, LeftOut(request["excludes"]))
written = threading.Lock()


def shared_objects():
    found = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    name = os.path.basename(path)
                    if path.startswith("/") and (name.endswith(".so") or ".so." in name) and path not in found:
                        found.append(path)
    except OSError:
        pass
    return found


def write(error):
    if not written.acquire(blocking=False):
        return
    modules = {}
    for name, module in list(sys.modules.items()):
        if name in baseline or name == request["name"] or module is None:
            continue
        modules[name] = getattr(module, "__file__", None)
    with open(out_path + ".tmp", "w") as out:
        json.dump({"modules": modules, "libraries": shared_objects(), "error": error}, out)
    os.replace(out_path + ".tmp", out_path)


def timed_out():
    write(f"the import did not finish within {request['timeout']} s (what it had imported by then is used)")
    os._exit(0)


timer = threading.Timer(request["timeout"], timed_out)
timer.daemon = True
timer.start()
try:
    spec = importlib.util.spec_from_file_location(request["name"], request["script"])
    module = importlib.util.module_from_spec(spec)
    sys.modules[request["name"]] = module
    spec.loader.exec_module(module)
    error = None
except BaseException as exception:  # SystemExit and KeyboardInterrupt too: report, never stop the build here
    error = f"{type(exception).__name__}: {exception}"
write(error)
os._exit(0)  # the app's threads and atexit handlers are not the build's business
