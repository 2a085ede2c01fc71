"""frost's module analysis, run by the target interpreter.

Reads a JSON request on stdin, writes a JSON report on stdout. It finds the module
graph from the entry script with the interpreter's own import machinery and bytecode
(modulefinder), so conditional and relative imports resolve as they would at run time,
and compiles every pure-Python module to an unchecked-hash .pyc in a content-keyed cache.
"""
import ast
import dis
import encodings
import encodings.aliases
import fnmatch
import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import modulefinder
import os
import pkgutil
import subprocess
import sys
import sysconfig
import tempfile

request = json.load(sys.stdin)
entry_name = request["name"]
script = os.path.realpath(request["script"])
# Where the app's own packages are found: the script's directory, or the project's root
# for a generated (WSGI) entry.
script_dir = os.path.realpath(request.get("app_root") or os.path.dirname(script))
console_script = os.path.realpath(request["console"]) if request.get("console") else None
console_module = request.get("console_module")
isapi_parent = os.path.realpath(request["isapi_parent"])
optimize = request["optimize"]
cache = request["cache"]
excludes = set(request["excludes"])  # the spec's: never bundled
provided = set(request["provided_modules"])
hooks = request["hooks"]
# Left out unless the traced import shows they are used or the spec names them: build and
# test tooling, the host's site customisation, and the parts hooks call unneeded.
default_excludes = set(request["default_excludes"])
for hook in hooks.values():
    default_excludes.update(hook.get("excludes", []))
requested_missing = []
forced = set()  # modules the traced import saw: default exclusions do not apply to them

paths = sysconfig.get_paths()
stdlib_dirs = {os.path.realpath(p) for p in (paths["stdlib"], paths["platstdlib"])}
dynload = os.path.realpath(sysconfig.get_config_var("DESTSHARED") or os.path.join(paths["platstdlib"], "lib-dynload"))
interpreter_path = [os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)]
site_dirs = [p for p in interpreter_path if os.path.basename(p) in ("site-packages", "dist-packages")]
search_path = [script_dir, isapi_parent] + [p for p in interpreter_path if p not in (script_dir, isapi_parent)]


def under(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")


def category_of(path):
    real = os.path.realpath(path)
    if under(real, isapi_parent + "/isapi"):
        return "isapi"
    if any(under(real, s) for s in site_dirs):
        return "site"
    if under(real, dynload) or any(under(real, s) for s in stdlib_dirs):
        return "stdlib"
    return "app"


def excluded_by_default(name, caller_category=None):
    """Default exclusions: listed names and their submodules, and the test suites of
    third-party packages (a `tests` subpackage or `conftest` module of a site package)."""
    if name in forced:
        return False
    if any(name == e or name.startswith(e + ".") for e in default_excludes):
        return True
    parts = name.split(".")
    if len(parts) > 1 and any(p in ("tests", "conftest") for p in parts[1:]):
        top = finder.modules.get(parts[0]) if "finder" in globals() else None
        top_file = getattr(top, "__file__", None) or ""
        return not top_file or category_of(top_file) == "site"
    return False


def root_of(path):
    real = os.path.realpath(path)
    roots = sorted((p for p in search_path if under(real, p)), key=len, reverse=True)
    return roots[0] if roots else os.path.dirname(real)


def is_main_test(node):
    """`__name__ == "__main__"` (either way round)."""
    if not isinstance(node, ast.Compare) or len(node.ops) != 1 or not isinstance(node.ops[0], ast.Eq):
        return False
    sides = [node.left, node.comparators[0]]
    return (any(isinstance(n, ast.Name) and n.id == "__name__" for n in sides)
            and any(isinstance(n, ast.Constant) and n.value == "__main__" for n in sides))


# What a test in an `if` is wherever the bundle runs: Linux, this interpreter's version.
RUNTIME_VALUES = {("sys", "platform"): "linux", ("os", "name"): "posix", ("sys", "version_info"): sys.version_info}


def runtime_value(node, known):
    """The value of an expression that is the same wherever the bundle runs, or None when
    it is not known from the source alone: `sys.platform`, `os.name`, `sys.version_info`
    (and a slice of it), `platform.system()`, `TYPE_CHECKING` (False at run time, whether
    typing's or the module's own), constants, comparisons and `startswith` of those, `not`,
    `and`, `or`, and module-level names bound once to such an expression (`WIN =
    sys.platform.startswith("win")`)."""
    if isinstance(node, ast.Constant):
        return node
    if isinstance(node, ast.Tuple):
        items = [runtime_value(e, known) for e in node.elts]
        return None if any(i is None for i in items) else ast.Constant(tuple(i.value for i in items))
    if isinstance(node, ast.Name):
        if node.id == "TYPE_CHECKING":
            return ast.Constant(False)
        return known.get(node.id)
    if isinstance(node, ast.Attribute):
        if node.attr == "TYPE_CHECKING":
            return ast.Constant(False)
        if isinstance(node.value, ast.Name) and (node.value.id, node.attr) in RUNTIME_VALUES:
            return ast.Constant(RUNTIME_VALUES[(node.value.id, node.attr)])
        return None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
        value = runtime_value(node.value, known)
        bounds = [runtime_value(b, known) if b is not None else ast.Constant(None)
                  for b in (node.slice.lower, node.slice.upper, node.slice.step)]
        if value is None or any(b is None for b in bounds) or not isinstance(value.value, tuple):
            return None
        return ast.Constant(tuple(value.value[slice(*(b.value for b in bounds))]))
    if isinstance(node, ast.Call) and not node.keywords:
        function = node.func
        if (isinstance(function, ast.Attribute) and function.attr == "system" and not node.args
                and isinstance(function.value, ast.Name) and function.value.id == "platform"):
            return ast.Constant("Linux")
        if isinstance(function, ast.Attribute) and function.attr == "startswith" and len(node.args) == 1:
            value, prefix = runtime_value(function.value, known), runtime_value(node.args[0], known)
            if value is None or prefix is None or not isinstance(value.value, str):
                return None
            if not (isinstance(prefix.value, str) or (isinstance(prefix.value, tuple)
                                                      and all(isinstance(p, str) for p in prefix.value))):
                return None
            return ast.Constant(value.value.startswith(prefix.value))
        return None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        operand = runtime_value(node.operand, known)
        return None if operand is None else ast.Constant(not operand.value)
    if isinstance(node, ast.BoolOp):
        # Python's own short-circuit, with an unknown operand left unknown unless a known
        # one decides: `False and x` is False, `True or x` is True.
        decisive = isinstance(node.op, ast.Or)
        unknown = False
        for operand in node.values:
            value = runtime_value(operand, known)
            if value is None:
                unknown = True
            elif bool(value.value) == decisive:
                return ast.Constant(decisive)
        return None if unknown else ast.Constant(not decisive)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left, right = runtime_value(node.left, known), runtime_value(node.comparators[0], known)
        if left is None or right is None:
            return None
        compare = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
                   ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
                   ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
                   ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}.get(type(node.ops[0]))
        try:
            return None if compare is None else ast.Constant(bool(compare(left.value, right.value)))
        except TypeError:  # "linux" < 3, `in` a string constant's non-string
            return None
    return None


def runtime_names(tree):
    """Module-level names bound exactly once, to an expression runtime_value knows, and
    never declared global elsewhere (which could rebind them)."""
    bound, known = {}, {}
    rebound = {name for n in ast.walk(tree) if isinstance(n, (ast.Global, ast.Nonlocal)) for name in n.names}
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For)) else []
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    bound[name.id] = bound.get(name.id, 0) + 1
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and bound.get(node.targets[0].id) == 1 and node.targets[0].id not in rebound):
            value = runtime_value(node.value, known)
            if value is not None and isinstance(value.value, (bool, str, tuple)):
                known[node.targets[0].id] = value
    return known


class StaticBranches(ast.NodeTransformer):
    """Replaces each `if` whose test runtime_value knows by the branch that runs (`pass`
    when that branch is empty), noting what was cut."""

    def __init__(self, source, known, cuts):
        self.source, self.known, self.cuts = source, known, cuts

    def visit_If(self, node):
        value = runtime_value(node.test, self.known)
        if value is None:
            return self.generic_visit(node)
        test = " ".join((ast.get_source_segment(self.source, node.test) or "...").split())
        if not value.value:
            self.cuts.append("if %s at line %d (false wherever the bundle runs)" % (test, node.lineno))
        elif node.orelse:
            self.cuts.append("else of if %s at line %d (true wherever the bundle runs)" % (test, node.lineno))
        kept = [self.visit(n) for n in (node.body if value.value else node.orelse)]
        kept = [n for item in kept for n in (item if isinstance(item, list) else [item]) if n is not None]
        return kept or ast.Pass(lineno=node.lineno, col_offset=node.col_offset)


trimmed_code = {}  # module -> what of its code was not followed (for the report)
FROZEN_ALIASES = {"importlib._bootstrap": "_frozen_importlib", "importlib._bootstrap_external": "_frozen_importlib_external"}


def catches_import_errors(handler):
    """Whether an `except` clause catches a failed import (bare, or naming ImportError,
    ModuleNotFoundError or a base class of them)."""
    if handler.type is None:
        return True
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError", "Exception", "BaseException")
               for n in names)


# Module -> {(level, name) imported only inside a `try` whose `except` catches a failed
# import: the module runs without it}, for the code that runs when the module is imported
# (functions aside: their imports are deferred).
guarded_imports = {}


TRY_NODES = (ast.Try, ast.TryStar) if hasattr(ast, "TryStar") else (ast.Try,)  # except* from 3.11


def guarded_import_keys(tree):
    guarded, unguarded = set(), set()

    def keys(node):
        if isinstance(node, ast.Import):
            return [(0, alias.name) for alias in node.names]
        return [(node.level, node.module or "")]

    def visit(node, guard):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            (guarded if guard else unguarded).update(keys(node))
            return
        if isinstance(node, TRY_NODES):
            inner = guard or any(catches_import_errors(h) for h in node.handlers)
            for child in node.body:
                visit(child, inner)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, guard)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, guard)

    visit(tree, False)
    return guarded - unguarded


def catches_only_import_errors(handler):
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return bool(names) and all(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names)


def importable(name):
    """Whether a top-level module will be in the bundle and import: builtin or found, and
    not left out."""
    if name in excludes or excluded_by_default(name):
        return False
    if name in sys.builtin_module_names or importlib.machinery.FrozenImporter.find_spec(name) is not None:
        return True
    try:
        return importlib.machinery.PathFinder.find_spec(name, search_path) is not None
    except (ImportError, ValueError):
        return False


class UnreachableCodeTrimmed:
    """A module's source as an AST without the code that cannot run in the bundle, so what
    that code imports is not followed (the module keeps all its code in the bundle):

    - `if __name__ == "__main__":` blocks, and the module-level functions only those
      blocks use (a stdlib module's `_test()` that imports doctest, a `main()` for
      `python -m`): an imported module is never __main__;
    - the `except ImportError:` fallback of a `try:` that only imports top-level modules
      this interpreter has (random's `from _sha512 import sha512`, else hashlib): with
      those modules in the bundle, the fallback never runs;
    - the branch of an `if` that cannot run where the bundle runs (Linux, this
      interpreter): `if TYPE_CHECKING:` (imports for annotations only), `if
      sys.platform == "win32":`, `if os.name == "nt":`, `if sys.version_info < (3, 8):`,
      and the same through a module-level name (`WIN = sys.platform.startswith("win")`);
    - all of importlib's `_bootstrap` and `_bootstrap_external` sources: importlib puts
      the frozen modules in their place."""

    def __init__(self, fp, pathname, fqname):
        self.fp, self.pathname, self.fqname = fp, pathname, fqname

    def read(self):
        source = self.fp.read()
        if self.fqname in FROZEN_ALIASES and importlib.machinery.FrozenImporter.find_spec(FROZEN_ALIASES[self.fqname]):
            # importlib puts the frozen module in sys.modules under this name: the source
            # file never runs.
            trimmed_code[self.fqname] = ["all (the frozen %s runs instead)" % FROZEN_ALIASES[self.fqname]]
            return ast.Module(body=[], type_ignores=[])
        try:
            tree = ast.parse(source, self.pathname)
        except (SyntaxError, ValueError):
            return source  # modulefinder reports it as it would
        cuts = []
        tree = StaticBranches(source if isinstance(source, str) else source.decode("utf-8", "replace"),
                              runtime_names(tree), cuts).visit(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Try) or not node.body:
                continue
            if not all(isinstance(n, ast.Import) or (isinstance(n, ast.ImportFrom) and n.level == 0 and n.module)
                       for n in node.body):
                continue
            names = [a.name for n in node.body if isinstance(n, ast.Import) for a in n.names] + \
                [n.module for n in node.body if isinstance(n, ast.ImportFrom)]
            if all("." not in name and importable(name) for name in names):
                for handler in node.handlers:
                    if catches_only_import_errors(handler):
                        handler.body = [ast.Pass(lineno=handler.lineno, col_offset=handler.col_offset)]
                        cuts.append("except ImportError at line %d" % handler.lineno)
        guarded_imports[self.fqname] = guarded_import_keys(tree)
        blocks = [n for n in tree.body if isinstance(n, ast.If) and is_main_test(n.test)]
        if not blocks:
            if cuts:
                trimmed_code[self.fqname] = cuts
            return tree
        # Only private functions and the conventional command-line entry points: a public
        # function is API, whoever calls it.
        exported = set()
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                exported |= {n.value for n in ast.walk(node.value) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and (n.name.startswith("_") or n.name in ("main", "test")) and not n.name.startswith("__")}

        # Which top-level statements name each candidate (its own definition aside).
        named_by = {name: set() for name in functions if name not in exported}
        for index, node in enumerate(tree.body):
            for n in ast.walk(node):
                if isinstance(n, ast.Name) and n.id in named_by and node is not functions[n.id]:
                    named_by[n.id].add(index)
        # Trimmed: named only by the blocks and by functions already trimmed.
        cut = {index for index, node in enumerate(tree.body) if node in blocks}
        trimmed = set()
        while True:
            more = {name for name, where in named_by.items() if name not in trimmed and where and where <= cut}
            if not more:
                break
            trimmed |= more
            cut |= {tree.body.index(functions[name]) for name in more}
        for block in blocks:
            block.body = [ast.Pass(lineno=block.lineno, col_offset=block.col_offset)]
        for name in trimmed:
            node = functions[name]
            node.body = [ast.Pass(lineno=node.lineno, col_offset=node.col_offset)]
            node.decorator_list = []
        trimmed_code[self.fqname] = cuts + ['if __name__ == "__main__"'] + ["%s()" % f for f in sorted(trimmed)]
        return tree


EDGE_ORDER = ["eager", "try", "function"]


class Finder(modulefinder.ModuleFinder):
    """ModuleFinder that remembers on which line each import stands, and what first
    brought each module in (a module, or a reason in angle brackets)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.brought_by = {}
        self.loading = ["<entry>"]
        # Every import seen: importer -> {imported: how: "eager" (runs when the importer
        # is imported), "try" (runs then, inside a try that survives its failure) or
        # "function" (only inside functions)}.
        self.edges = {}
        self.in_function = [False]

    def import_hook(self, name, caller=None, fromlist=None, level=-1):
        result = super().import_hook(name, caller, fromlist, level)
        if caller is not None:
            try:
                parent = self.determine_parent(caller, level=level)
            except ImportError:
                parent = None
            target = name if parent is None else (parent.__name__ + "." + name if name else parent.__name__)
            if self.in_function[-1]:
                how = "function"
            elif (level if level > 0 else 0, name) in guarded_imports.get(caller.__name__, ()):
                how = "try"
            else:
                how = "eager"
            found = [target] + [target + "." + item for item in (fromlist or ()) if item != "*"]
            edges = self.edges.setdefault(caller.__name__, {})
            for imported in found:
                if imported in self.modules:
                    # An unguarded import at module level anywhere wins over the others.
                    edges[imported] = min(edges.get(imported, how), how, key=EDGE_ORDER.index)
        return result

    def because(self, reason):
        """Imports made in the block are recorded as brought in by `reason`."""
        finder = self

        class Reason:
            def __enter__(self):
                finder.loading.append(reason)

            def __exit__(self, *exc):
                finder.loading.pop()
        return Reason()

    def load_module(self, fqname, fp, pathname, file_info):
        self.brought_by.setdefault(fqname, self.loading[-1])
        if file_info[2] == modulefinder._PY_SOURCE and fqname not in (entry_name, console_module):
            # modulefinder compiles fp.read(): hand it the tree without the code that
            # cannot run in the bundle.
            fp = UnreachableCodeTrimmed(fp, pathname, fqname)
        self.loading.append(fqname)
        self.in_function.append(False)  # a module's own code runs when it is imported
        try:
            return super().load_module(fqname, fp, pathname, file_info)
        finally:
            self.in_function.pop()
            self.loading.pop()

    def scan_code(self, co, m):
        # A function's code (CO_NEWLOCALS) runs when called, not when the module is
        # imported; class bodies and the module's own code run at import.
        self.in_function.append(self.in_function[-1] or bool(co.co_flags & 0x2))
        try:
            self.scan_code_lines(co, m)
        finally:
            self.in_function.pop()

    def scan_code_lines(self, co, m):
        lines = m.__dict__.setdefault("_import_lines", {})
        line = co.co_firstlineno
        for instruction in dis.get_instructions(co):
            # 3.13 made starts_line a flag and put the number in line_number.
            number = getattr(instruction, "line_number", None)
            if number is None and not isinstance(instruction.starts_line, bool):
                number = instruction.starts_line
            if number:
                line = number
            if instruction.opname == "IMPORT_NAME":
                lines.setdefault(instruction.argval, line)
        super().scan_code(co, m)

    def import_module(self, partname, fqname, parent):
        if excluded_by_default(fqname):
            raise ImportError(f"{fqname} is left out by default", name=fqname)
        return super().import_module(partname, fqname, parent)

    def find_module(self, name, path, parent=None):
        try:
            return super().find_module(name, path, parent)
        except AttributeError:
            # A namespace package (a spec without a loader): modulefinder cannot follow
            # it by itself; treat its directory as a package without __init__.
            spec = importlib.machinery.PathFinder.find_spec(name, path if path is not None else self.path)
            if spec is not None and spec.loader is None and spec.submodule_search_locations:
                return None, list(spec.submodule_search_locations)[0], ("", "", modulefinder._PKG_DIRECTORY)
            raise ImportError(f"No module named {name!r}", name=name)

    def load_package(self, fqname, pathname):
        self.brought_by.setdefault(fqname, self.loading[-1])
        if any(os.path.exists(os.path.join(pathname, "__init__" + suffix))
               for suffix in importlib.machinery.all_suffixes()):
            return super().load_package(fqname, pathname)
        module = self.add_module(fqname)
        module.__file__ = None  # a namespace package has no code
        module.__path__ = [pathname]
        return module


finder = Finder(path=search_path, excludes=list(excludes))
with open(script, "rb") as source:
    finder.load_module(entry_name, source, script, (".py", "rb", 1))
if console_script:
    with open(console_script, "rb") as source, finder.because("<console script>"):
        finder.load_module(console_module, source, console_script, (".py", "rb", 1))


def safe_import(name, report=True):
    if name in excludes or any(name.startswith(e + ".") for e in excludes):
        return
    try:
        finder.import_hook(name)
    except ImportError:
        if report:
            requested_missing.append(name)


for reason, names in (("<the loader's own needs>", request["runtime_modules"]), ("<includes>", request["includes"])):
    with finder.because(reason):
        for name in names:
            forced.add(name)
            # The loader's list names modules of several versions (importlib.resources.abc
            # is 3.11+): those this one lacks are not the user's concern.
            safe_import(name, report=reason == "<includes>")


def walk_package(name):
    """Every submodule of a package on disk."""
    module = finder.modules.get(name)
    if module is None or not module.__path__:
        return
    for directory in module.__path__:
        for entry in sorted(os.listdir(directory)):
            full = os.path.join(directory, entry)
            if entry == "__pycache__" or excluded_by_default(f"{name}.{entry.split('.')[0]}"):
                continue
            if os.path.isdir(full) and os.path.exists(os.path.join(full, "__init__.py")):
                safe_import(f"{name}.{entry}")
                walk_package(f"{name}.{entry}")
            elif entry.endswith(".py") and entry != "__init__.py":
                safe_import(f"{name}.{entry[:-3]}")
            elif entry.endswith(".so"):
                safe_import(f"{name}.{entry.split('.')[0]}")


with finder.because("<named as a whole package>"):
    for package in request["packages"] + request["whole_packages"]:
        safe_import(package)
        walk_package(package)



def apply_hooks():
    """Hidden imports and whole packages of the hooks whose package is in the bundle,
    until nothing new appears."""
    done = set()
    while True:
        present = set(finder.modules) | {n.split(".")[0] for n in finder.modules}
        todo = sorted(key for key in hooks if key in present and key not in done)
        if not todo:
            return
        for top in todo:
            done.add(top)
            finder.loading.append(f"<hook for {top}>")
            for name in hooks[top].get("hidden_imports", []):
                forced.add(name)
                safe_import(name, report=False)  # optional by nature: a version may not have it
            for package in hooks[top].get("packages", []):
                forced.add(package)
                safe_import(package, report=False)
                walk_package(package)
            finder.loading.pop()


apply_hooks()

# The traced import: what really ends up in sys.modules when the entry module is imported.
trace = {"modules": {}, "libraries": [], "error": None, "ran": False}
if request["trace"]:
    bundle_path = [script_dir, isapi_parent] + [p for p in interpreter_path if p not in site_dirs
                                                and p not in (script_dir, isapi_parent)] + site_dirs
    with tempfile.TemporaryDirectory(prefix="frost-trace-") as scratch:
        trace_request = os.path.join(scratch, "request.json")
        trace_out = os.path.join(scratch, "out.json")
        with open(trace_request, "w") as f:
            json.dump({"name": entry_name, "script": script, "path": bundle_path, "excludes": sorted(excludes),
                       "timeout": request["trace_timeout"]}, f)
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                       "HOME": os.environ.get("HOME", "/tmp"), "FROST_TRACE": "1"}
        try:
            completed = subprocess.run([sys.executable, "-I", "-S", request["trace_script"], trace_request, trace_out],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       env=environment, cwd=scratch, timeout=request["trace_timeout"] + 30)
            status, stderr = completed.returncode, completed.stderr
        except subprocess.TimeoutExpired as expired:
            status, stderr = "killed after a time-out", expired.stderr or b""
        if os.path.exists(trace_out):
            with open(trace_out) as f:
                trace.update(json.load(f))
            trace["ran"] = True
        else:
            last = stderr.decode(errors="replace").strip().splitlines()
            trace["error"] = f"the traced import ended without a report (exit status {status})" + (f": {last[-1]}" if last else "")
    for name in sorted(trace["modules"]):
        forced.add(name)
    with finder.because("<the traced import>"):
        for name in sorted(trace["modules"]):
            if name in finder.modules or name in excludes or trace["modules"][name] is None:
                continue
            finder.badmodules.pop(name, None)  # left out by default before the trace showed it is used
            safe_import(name, report=False)
    apply_hooks()

# The encodings package contributes the codecs the code can name: every string constant of
# a bundled module that names a codec (after the aliases), plus the hooks' (UTF-8, Latin-1,
# ASCII; idna with socket). A codec named only at run time (a charset from a request)
# needs `includes` ("encodings" for all of them).
def string_constants(code):
    for constant in code.co_consts:
        if isinstance(constant, str) and 2 <= len(constant) <= 40:
            yield constant
        elif hasattr(constant, "co_consts"):
            yield from string_constants(constant)


codec_modules = {name for _, name, _ in pkgutil.iter_modules(encodings.__path__)}
with finder.because("<a codec the code names>"):
    named = set()
    for module in list(finder.modules.values()):
        code = getattr(module, "__code__", None)
        # Tables of codec names name none in particular: the aliases, locale's, email's
        # charsets (a message's charset picks one at run time), stringprep's units ("hz").
        if code is None or module.__name__.startswith("encodings") or \
                module.__name__ in ("locale", "_pyio", "email.charset", "stringprep"):
            continue
        for text in string_constants(code):
            normal = encodings.normalize_encoding(text).lower()
            codec = encodings.aliases.aliases.get(normal, normal)
            if codec in codec_modules:
                named.add("encodings." + codec)
    for name in sorted(named - set(finder.modules)):
        safe_import(name, report=False)
apply_hooks()

# Placement: code that reads its own files by path (templates beside a Flask app, Django's
# locale, templates, static files and migrations) goes to a real directory inside the
# bundle, with its data files; everything else stays in the archive.
# Files no program reads at run time: stubs, documentation, and build material.
NOT_RUNTIME_SUFFIXES = (".py", ".pyc", ".pyo", ".pyi", ".so", ".typed", ".md", ".rst", ".a", ".h", ".hpp",
                        ".c", ".cc", ".cpp", ".pxd", ".pyx", ".pxi", ".build", ".cmake", ".toml", ".cfg")
NOT_RUNTIME_PREFIXES = ("README", "LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS", "CHANGES", "CHANGELOG",
                        "Makefile", "CMakeLists")


def has_data_files(directory, site_package):
    """Whether a package has files its code may read at run time beside its code."""
    for current, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not (site_package and d == "tests")]
        for f in files:
            if not f.endswith(NOT_RUNTIME_SUFFIXES) and not f.startswith(NOT_RUNTIME_PREFIXES):
                return True
    return False


def reads_own_files(package_name):
    """Whether the package's code refers to __file__ (bytecode names, nested code too)."""
    def names(code):
        yield from code.co_names
        for constant in code.co_consts:
            if hasattr(constant, "co_names"):
                yield from names(constant)
    for name, module in list(finder.modules.items()):
        if (name == package_name or name.startswith(package_name + ".")) and module.__code__ is not None:
            if "__file__" in names(module.__code__):
                return True
    return False


placement = {}  # top-level name -> (where, why)
app_data_dirs = []  # data directories beside top-level app modules placed on the filesystem
for top in sorted({n.split(".")[0] for n in finder.modules}):
    module = finder.modules.get(top)
    file = getattr(module, "__file__", None)
    if top in (entry_name, console_module) or not file or file.endswith(".so"):
        continue
    category = category_of(file)
    if category not in ("app", "site"):
        continue
    is_package = bool(module.__path__)
    directory = os.path.dirname(file)
    if top in request["archive"]:
        placement[top] = ("archive", "named in archive")
    elif top in request["filesystem"]:
        placement[top] = ("filesystem", "named in filesystem")
    elif hooks.get(top, {}).get("filesystem"):
        placement[top] = ("filesystem", "a hook: it reads its own files by path")
    elif category == "app" and is_package and has_data_files(directory, False):
        placement[top] = ("filesystem", "the app's own package, with data files beside its code")
    elif category == "app" and is_package and reads_own_files(top):
        placement[top] = ("filesystem", "the app's own package, whose code reads files by __file__")
    elif category == "app" and not is_package and any(
            os.path.isdir(os.path.join(directory, d)) for d in ("templates", "static")):
        placement[top] = ("filesystem", "the app's own module, with templates/ or static/ beside it")
        app_data_dirs += [os.path.join(directory, d) for d in ("templates", "static")
                          if os.path.isdir(os.path.join(directory, d))]
    elif category == "site" and is_package and has_data_files(directory, True) and reads_own_files(top):
        placement[top] = ("filesystem", "has data files and its code reads files by __file__")
    else:
        if category == "app" and is_package:
            # The app's own packages are small and often loaded by dotted names from
            # settings (URL configurations, middleware): whole, wherever they go.
            with finder.because(f"<the app's package {top}: whole>"):
                walk_package(top)
        continue
    if (placement[top][0] == "filesystem" or category == "app") and is_package:
        # Read by path, so likely discovered by listing too (migrations, commands): whole.
        forced.add(top)
        with finder.because(f"<{top} on the filesystem: whole>"):
            walk_package(top)
apply_hooks()

# Distributions that own site modules.
owner = {}
distributions = {}
for dist in importlib.metadata.distributions(path=site_dirs):
    try:
        files = dist.files or []
    except Exception:
        files = []
    dist_path = getattr(dist, "_path", None)
    for f in files:
        owner[os.path.realpath(str(dist.locate_file(f)))] = str(dist_path) if dist_path else None

magic = importlib.util.MAGIC_NUMBER


def compile_to_cache(source_path, display_name):
    with open(source_path, "rb") as f:
        source = f.read()
    key = hashlib.sha256(source + b"\0" + display_name.encode() + b"\0" + str(optimize).encode() + magic).hexdigest()
    target = os.path.join(cache, key[:2], key + ".pyc")
    if not os.path.exists(target):
        code = compile(source, display_name, "exec", dont_inherit=True, optimize=optimize)
        data = importlib._bootstrap_external._code_to_hash_pyc(code, importlib.util.source_hash(source), checked=False)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        temporary = target + f".{os.getpid()}.tmp"
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, target)
    return target


modules = []
warnings = []   # what may break at run time
optional = []   # imports in third-party code that only some code paths make
for name in sorted(finder.modules):
    module = finder.modules[name]
    file = module.__file__
    if name in excludes:
        continue
    if file is None:
        continue  # builtin or frozen-only
    category = category_of(file)
    is_package = bool(module.__path__)
    record = {"name": name, "file": os.path.realpath(file), "package": is_package, "category": category}
    if file.endswith(".py"):
        record["kind"] = "source"
        relative = name.replace(".", "/") + ("/__init__.py" if is_package else ".py")
        record["archive_path"] = relative + "c"
        record["pyc"] = compile_to_cache(file, relative)
        if category in ("app", "site"):
            try:
                tree = ast.parse(open(file, "rb").read(), file)
            except SyntaxError:
                tree = None
            for node in ast.walk(tree) if tree else []:
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                called = (func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None)
                if called in ("import_module", "__import__") and not (
                        isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                    # In the app: a warning. In third-party code: a note (the traced import
                    # already caught what runs when the app starts).
                    (warnings if category == "app" else optional).append(
                        {"kind": "dynamic", "file": os.path.realpath(file), "line": node.lineno,
                         "module": name, "category": category,
                         "message": f"{called}() with a computed name: frost cannot see which module it loads; "
                                    f"add it to includes"})
    elif file.endswith(".so"):
        record["kind"] = "extension"
        record["archive_path"] = os.path.relpath(os.path.realpath(file), root_of(file))
    else:
        continue
    record["root"] = root_of(file)
    if category == "site":
        record["distribution"] = owner.get(os.path.realpath(file))
    where = placement.get(name.split(".")[0], ("archive", ""))[0]
    record["placement"] = where if category in ("app", "site") else "archive"
    modules.append(record)

# Missing modules: reported with the importing file and line, except those imported by
# the standard library itself (platform modules that do not exist here).
missing, maybe = finder.any_missing_maybe()
skipped = 0
for name in sorted(set(requested_missing)):
    warnings.append({"kind": "missing", "module": name, "importer": None, "file": None, "line": None,
                     "category": "app", "message": f"module {name} (from includes or packages) not found"})
if trace["error"]:
    warnings.append({"kind": "trace", "module": entry_name, "importer": None, "file": script, "line": None,
                     "category": "app",
                     "message": f"the traced import of {entry_name} stopped: {trace['error']}; modules it would have "
                                f"imported after that point may be missing at run time (make the import work without "
                                f"side effects, add them to includes, or set trace = false)"})
bundled = {r["name"] for r in modules}
bundled_files = {r["file"] for r in modules}
for name, file in sorted(trace["modules"].items()):
    if file is None or name in bundled or name in excludes or name in provided or name.split(".")[0] in excludes:
        continue
    if name in ("__main__", "__mp_main__") or os.path.realpath(file) in bundled_files:
        continue  # an alias (sys.modules["pkg.vendored"] = other), bundled under its own name
    if not file.endswith((".py", ".so")) or not os.path.exists(file):
        continue
    warnings.append({"kind": "traced", "module": name, "importer": None, "file": file, "line": None, "category": "app",
                     "message": f"module {name} was imported when the app started at build time but could not be "
                                f"bundled from {file}"})
def package_of(module_name):
    module = finder.modules.get(module_name)
    if module is not None and module.__path__:
        return module_name
    return module_name.rpartition(".")[0]


def is_attribute_import(name, importer):
    """`from pkg import Name` (absolute or relative) where pkg was found: Name is an
    attribute, not a missing module."""
    parent = name.rpartition(".")[0]
    if not parent:
        return False
    candidates = [parent]
    package = package_of(importer)
    while package:
        candidates.append(package + "." + parent)
        package = package.rpartition(".")[0]
    return any(c in finder.modules for c in candidates)


for name in missing:
    if name in provided or name.split(".")[0] in excludes or excluded_by_default(name):
        continue
    importers = sorted(i for i in finder.badmodules.get(name, {}) if not is_attribute_import(name, i))
    reported = False
    for importer in importers:
        # "-": modulefinder's anonymous importer ("from . import x" resolved against the
        # parent package), which the module's own entry below covers.
        source = finder.modules.get(importer)
        if source is None or source.__file__ is None or category_of(source.__file__) == "stdlib":
            continue
        lines = source.__dict__.get("_import_lines", {})
        line = lines.get(name)
        if line is None:
            for candidate, candidate_line in lines.items():
                if name.startswith(candidate + ".") or candidate.startswith(name + ".") or name.endswith("." + candidate):
                    line = candidate_line
                    break
        importer_category = category_of(source.__file__)
        (warnings if importer_category == "app" else optional).append(
            {"kind": "missing", "module": name, "importer": importer,
             "file": os.path.realpath(source.__file__), "line": line, "category": importer_category,
             "message": f"module {name} not found"})
        reported = True
    if not reported:
        skipped += 1

# Data files of site packages that contributed modules (templates, certificates, ...)
# and of the packages the spec names.
package_data = []
tops = {}
for record in modules:
    if not record["package"] or record["category"] == "stdlib":
        continue
    if ((record["category"] == "site" and "." not in record["name"]) or record["name"] in request["packages"]
            or (record["category"] == "app" and "." not in record["name"] and record["placement"] == "filesystem")):
        tops[record["name"]] = os.path.dirname(record["file"])
data_left_out = 0
for top, directory in sorted(tops.items()):
    patterns = hooks.get(top.split(".")[0], {}).get("exclude_data", [])
    site_package = category_of(directory) == "site"
    for current, dirs, files in os.walk(directory):
        # Test suites of third-party packages are left out with their modules.
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not (site_package and d == "tests"))
        for f in sorted(files):
            if f.endswith((".py", ".pyc", ".pyo", ".so", ".pyi")):
                continue
            full = os.path.join(current, f)
            relative = os.path.relpath(full, directory)
            if any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns):
                data_left_out += 1
                continue
            base = os.path.dirname(directory) if "." not in top else directory[: -len(top.replace(".", "/"))].rstrip("/")
            package_data.append({"source": full, "archive": os.path.relpath(full, base),
                                 "placement": placement.get(top.split(".")[0], ("archive", ""))[0],
                                 "category": category_of(directory)})
for data_dir in app_data_dirs:
    for current, dirs, files in os.walk(data_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in sorted(files):
            full = os.path.join(current, f)
            package_data.append({"source": full, "archive": os.path.relpath(full, script_dir),
                                 "placement": "filesystem", "category": "app"})

def import_line(importer, name):
    """The line of `importer` that imports `name` (directly, through a parent, or relatively)."""
    module = finder.modules.get(importer)
    lines = module.__dict__.get("_import_lines", {}) if module is not None else {}
    if name in lines:
        return lines[name]
    for candidate, line in lines.items():
        if candidate and (name.startswith(candidate + ".") or name.endswith("." + candidate)):
            return line
    return None


# What first brought each bundled module in, for `frost inspect --why`.
brought_by = {}
for record in modules:
    by = finder.brought_by.get(record["name"], "<entry>")
    source = finder.modules.get(by)
    brought_by[record["name"]] = {
        "by": by,
        "file": os.path.realpath(source.__file__) if source is not None and source.__file__ else None,
        "line": import_line(by, record["name"]) if source is not None else None,
    }

# Optional pulls: modules that no unguarded import at module level reaches from what the
# program surely runs (the entry, the loader's needs, includes, hooks, what the traced
# import saw), only imports inside functions or inside a `try` that survives a failed
# import (http.client's `import ssl`). They are in the bundle (a call may need them, or the
# program is better with them); the summary weighs the heaviest so a spec can exclude
# what its program does without.
def module_bytes(record):
    path = record.get("pyc") or record["file"]
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def closure(seeds, kinds):
    """The modules `seeds` reach through imports of the given kinds, with their parents."""
    reached, todo = set(), [n for n in seeds if n in finder.modules]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(t for t, how in finder.edges.get(name, {}).items() if how in kinds)
    return reached


by_name = {r["name"]: r for r in modules}
traced = set(trace["modules"])
sure = {n for n, by in finder.brought_by.items() if by.startswith("<") and by != "<the traced import>"} \
    | (forced - traced) | {entry_name}
# What the traced import saw is surely run too, unless a guarded import explains it: a
# module a `try` imports is in sys.modules after the start, and the program runs without.
guarded_reach = closure(closure(sure, {"eager"}), {"eager", "try"})
eager = closure(sure | {n for n in traced if n not in guarded_reach}, {"eager"})
optional_modules = set(by_name) - eager
optional_pulls, heads = [], set()
for importer in sorted(eager):
    for head, how in sorted(finder.edges.get(importer, {}).items()):
        if how == "eager" or head not in optional_modules or head in heads:
            continue
        heads.add(head)
        reached, todo = set(), [head]
        while todo:
            name = todo.pop()
            if name in reached or name not in optional_modules:
                continue
            reached.add(name)
            todo.extend(finder.edges.get(name, {}))
        source = finder.modules.get(importer)
        optional_pulls.append({"module": head, "by": importer, "how": how, "line": import_line(importer, head),
                               "file": os.path.realpath(source.__file__) if source is not None and source.__file__ else None,
                               "modules": len(reached), "bytes": sum(module_bytes(by_name[n]) for n in reached if n in by_name),
                               # the shared libraries these need weigh in too (the builder adds them)
                               "extensions": sorted(n for n in reached if n in by_name and by_name[n]["kind"] == "extension")})
optional_pulls.sort(key=lambda p: (-p["bytes"], p["module"]))
for record in modules:
    record["optional"] = record["name"] in optional_modules

used_distributions = sorted({r["distribution"] for r in modules if r.get("distribution")})
libdir = sysconfig.get_config_var("LIBDIR") or ""
multiarch = sysconfig.get_config_var("MULTIARCH") or ""
soname = sysconfig.get_config_var("INSTSONAME") or ""
libpython = next((os.path.join(d, soname) for d in (os.path.join(libdir, multiarch), libdir)
                  if soname and os.path.exists(os.path.join(d, soname))), None)

json.dump({
    "python": {
        "version": ".".join(map(str, sys.version_info[:3])),
        "major": sys.version_info[0], "minor": sys.version_info[1],
        "magic": magic.hex(),
        "build": sys.version,
        "libpython": libpython,
        "dynload": dynload,
        "stdlib": sorted(stdlib_dirs),
        "site": site_dirs,
        "executable": sys.executable,
    },
    "modules": modules,
    "warnings": warnings,
    "optional": optional,
    "trace": {
        "ran": trace["ran"],
        "error": trace["error"],
        "modules": len(trace["modules"]),
        # Shared objects the process mapped that are not extension modules or the
        # interpreter's own: loaded with ctypes, cffi or as dependencies.
        "libraries": sorted(p for p in trace["libraries"]
                            if os.path.realpath(p) not in {r["file"] for r in modules}
                            and os.path.realpath(p) != (os.path.realpath(libpython) if libpython else None)
                            and not os.path.basename(p).startswith(("libpython", "ld-linux"))
                            # an extension module the bundle does not hold was the tracer's own
                            and not p.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))),
    },
    "data_left_out": data_left_out,
    "placement": [{"name": top, "where": where, "why": why} for top, (where, why) in sorted(placement.items())],
    "brought_by": brought_by,
    "trimmed": trimmed_code,
    "optional_pulls": optional_pulls[:100],
    "stdlib_missing_skipped": skipped,
    "package_data": package_data,
    "distributions": used_distributions,
}, sys.stdout, indent=1, sort_keys=True)
