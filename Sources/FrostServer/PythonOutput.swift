import FrostPython

/// While serving, Python's stdout and stderr go to the log (the server's stderr), one
/// tagged line per line written, so output from many threads stays readable.
public enum PythonOutput {
    static let source = #"""
import io, os, sys, threading

class TaggedLog(io.TextIOBase):
    """Writes whole lines to a file descriptor, each prefixed with a tag."""

    def __init__(self, tag, fd):
        self._tag, self._fd, self._lock = tag, fd, threading.Lock()
        # The unfinished line of each thread: print() writes its pieces one by one, and
        # another thread's pieces must not land inside the line.
        self._pending = {}

    encoding = "utf-8"
    errors = "backslashreplace"

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self._fd

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            thread = threading.get_ident()
            *lines, rest = (self._pending.pop(thread, "") + text).split("\n")
            if rest:
                self._pending[thread] = rest
            if lines:
                self._emit(lines)
        return len(text)

    def flush(self):
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
            if pending:
                self._emit(pending)

    def _emit(self, lines):
        data = "".join(f"{self._tag}: {line}\n" for line in lines).encode("utf-8", "backslashreplace")
        while data:
            data = data[os.write(self._fd, data):]

sys.stdout = TaggedLog("python stdout", 2)
sys.stderr = TaggedLog("python stderr", 2)
"""#

    /// Installs the tagged streams; needs the GIL.
    public static func install() throws {
        try Python.run(source, filename: "<frost>/python_output.py")
    }
}
