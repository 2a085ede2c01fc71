/// The Python side of `importlib.resources` for archives: a `Traversable` over the
/// mounted archive, reading through the native importer (so resources come from the
/// same checked mount as code). Compiled once, on the first resource request.
enum ResourceSupport {
    static let moduleName = "_frost_resources"

    static let source = #"""
"""importlib.resources support for packages inside a frost archive."""
import io
import posixpath
try:
    from importlib.resources.abc import Traversable, TraversableResources
except ImportError:  # Python 3.10
    from importlib.abc import Traversable, TraversableResources


class ArchivePath(Traversable):
    """A file or directory inside the mounted archive; `at` is its archive path."""

    def __init__(self, importer, at):
        self._importer = importer
        self._at = at.rstrip("/")

    @property
    def name(self):
        return posixpath.basename(self._at)

    def _directory(self):
        return self._at + "/" if self._at else ""

    def is_dir(self):
        return self._importer._is_dir(self._directory())

    def is_file(self):
        return self._importer._is_file(self._at)

    def exists(self):
        return self.is_dir() or self.is_file()

    def iterdir(self):
        if not self.is_dir():
            raise NotADirectoryError(f"not a directory in the archive: {self}")
        directory = self._directory()
        return iter([ArchivePath(self._importer, directory + name) for name, _ in
                     self._importer._children(directory)])

    def joinpath(self, *descendants):
        parts = [self._at] if self._at else []
        for descendant in descendants:
            for part in str(descendant).split("/"):
                if part in ("", "."):
                    continue
                if part == "..":
                    if not parts:
                        raise ValueError(f"{descendant!r} leads outside the archive")
                    parts.pop()
                else:
                    parts.append(part)
        return ArchivePath(self._importer, "/".join(parts))

    def __truediv__(self, child):
        return self.joinpath(child)

    def open(self, mode="r", *args, **kwargs):
        if mode not in ("r", "rb", "rt"):
            raise ValueError(f"archive resources are read-only; open mode {mode!r} is not supported")
        stream = io.BytesIO(self.read_bytes())
        if "b" in mode:
            return stream
        return io.TextIOWrapper(stream, *args, **kwargs)

    def read_bytes(self):
        return self._importer._read(self._at)

    def read_text(self, encoding=None):
        with self.open("r", encoding=encoding) as stream:
            return stream.read()

    def __str__(self):
        return self._importer.archive + ("/" + self._at if self._at else "")

    def __repr__(self):
        return f"ArchivePath({str(self)!r})"

    def __eq__(self, other):
        return isinstance(other, ArchivePath) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


class ArchiveResourceReader(TraversableResources):
    def __init__(self, importer, directory):
        self._importer = importer
        self._directory = directory

    def files(self):
        return ArchivePath(self._importer, self._directory)
"""#
}
