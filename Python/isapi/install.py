"""Installation support for frost bundles, with pywin32's ``isapi.install`` interface.

A bundle's console (``dist/NAME/NAME``) runs the script's ``__main__``, which describes
its virtual directories, script maps and filters with the parameter classes below and
calls ``HandleCommandLine(params)``:

    NAME install [--root DIR] [--dry-run] [options]   register the bundle with systemd and nginx
    NAME remove  [--root DIR] [--dry-run]             take away exactly what install made
    NAME status  [--root DIR]                         what is installed, and whether it changed
    NAME <custom> ...                                 a handler from custom_arg_handlers

``install`` writes the site configuration (``site.json`` next to the loader), a systemd
service unit ``frost-NAME.service`` (Type=notify, watchdog, hardening, an unprivileged
dynamic user) and socket unit ``frost-NAME.socket`` (a unix socket under /run/frost by
default, so nginx connects while the loader restarts), and an nginx server block with a
``location`` per virtual directory and script map. With ``--root DIR`` everything is
written below DIR and no command runs; without it, systemd and nginx are reloaded (after
``nginx -t``), and a failure puts every file back as it was. A record of what was written
(paths and SHA-256) lives beside the bundle as ``frost-install.json``: ``install`` never
overwrites a file it did not write, running it twice leaves one registration, and
``remove`` deletes exactly what it made.
"""
import fcntl
import hashlib
import json
import optparse
import os
import re
import shutil
import subprocess
import sys

__all__ = [
    "ISAPIParameters", "VirtualDirParameters", "ScriptMapParams", "FilterParameters", "HandleCommandLine",
    "InstallationError", "ConfigurationError", "ItemNotFound", "Install", "Uninstall",
]

SITE_FILE = "site.json"
RECORD_FILE = "frost-install.json"


class InstallationError(Exception):
    pass


class ItemNotFound(InstallationError):
    pass


class ConfigurationError(InstallationError):
    pass


class _Parameters:
    """Keyword arguments become attributes; unknown names are errors, as typos would be."""

    _defaults = {}

    def __init__(self, **kw):
        for name, value in self._defaults.items():
            setattr(self, name, list(value) if isinstance(value, list) else value)
        for name, value in kw.items():
            if name not in self._defaults:
                raise ConfigurationError(f"{type(self).__name__} has no parameter {name!r}")
            setattr(self, name, value)

    def __repr__(self):
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._defaults)
        return f"{type(self).__name__}({fields})"


class FilterParameters(_Parameters):
    _defaults = dict(Name=None, Description=None, Path=None, Server=None,
                     AddExtensionFile=True, AddExtensionFile_Enabled=True,
                     AddExtensionFile_GroupID=None, AddExtensionFile_CanDelete=True,
                     AddExtensionFile_Description=None)


class ScriptMapParams(_Parameters):
    _defaults = dict(Extension=None, Module=None, Flags=5, Verbs="", Path=None,
                     AddExtensionFile=True, AddExtensionFile_Enabled=True,
                     AddExtensionFile_GroupID=None, AddExtensionFile_CanDelete=True,
                     AddExtensionFile_Description=None)


class VirtualDirParameters(_Parameters):
    _defaults = dict(Name=None, Description=None, AppProtection=None, Headers=None, Path=None, Type=None,
                     AccessExecute=None, AccessRead=None, AccessWrite=None, AccessScript=None,
                     ContentIndexed=None, EnableDirBrowsing=None, EnableDefaultDoc=None, DefaultDoc=None,
                     ScriptMaps=[], ScriptMapUpdate="end", Server=None,
                     PreInstall=None, PostInstall=None, PreRemove=None, PostRemove=None)


class ISAPIParameters(_Parameters):
    _defaults = dict(ServerName=None, Extensions=[], Filters=[], VirtualDirs=[],
                     PreInstall=None, PostInstall=None, PreRemove=None, PostRemove=None)


def _bundle_directory():
    # The console is dist/NAME/NAME; without a bundle (plain python), the script's folder.
    if getattr(sys, "frozen", False):
        return os.path.dirname(os.path.abspath(sys.executable))
    return os.path.dirname(os.path.abspath(sys.argv[0] or "."))


def _bundle_name():
    if getattr(sys, "frozen", False):
        return os.path.basename(sys.executable)
    return os.path.splitext(os.path.basename(sys.argv[0] or "app"))[0]


def _below_root(options, path):
    """Where a file of the target system is written: below --root when given."""
    return os.path.join(options.root, path.lstrip("/")) if options.root else path


def _site_file(options):
    return _below_root(options, os.path.join(_bundle_directory(), SITE_FILE))


def _script_map_extension(script_map):
    extension = script_map.Extension or "*"
    if extension != "*" and not extension.startswith("."):
        extension = "." + extension
    return extension


def site_configuration(params):
    """The site configuration ``install`` records, as a dict (the loader's --site format)."""
    directories = []
    for vd in params.VirtualDirs:
        if not vd.Name:
            raise ConfigurationError("every VirtualDirParameters needs a Name")
        path = vd.Path or _bundle_directory()
        if not os.path.isabs(path):
            raise ConfigurationError(f"virtual directory {vd.Name!r}: Path must be absolute, not {path!r}")
        directories.append({
            "name": "/" + vd.Name.strip("/"),
            "path": path,
            "script_maps": [_script_map_extension(sm) for sm in vd.ScriptMaps],
            "description": vd.Description or "",
        })
    filters = []
    for fp in params.Filters:
        if not fp.Name:
            raise ConfigurationError("every FilterParameters needs a Name")
        filters.append({"name": fp.Name, "description": fp.Description or ""})
    return {"virtual_directories": directories, "filters": filters}


def _call(hook, *args):
    if hook is not None:
        hook(*args)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path):
    try:
        with open(path, "rb") as f:
            return _sha256(f.read())
    except OSError:
        return None


# -- What install writes ------------------------------------------------------------------

def _listen_address(options, name):
    """(systemd ListenStream value, nginx upstream server, loader --trusted-proxy)."""
    listen = options.listen or f"unix:/run/frost/{name}.sock"
    if listen.startswith("unix:"):
        path = listen[len("unix:"):]
        if not path.startswith("/"):
            raise ConfigurationError(f"--listen unix:PATH needs an absolute path, not {path!r}")
        return path, f"unix:{path}", "unix"
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"--listen must be unix:PATH or HOST:PORT, not {listen!r}")
    proxy = host.strip("[]")
    return listen, listen, "127.0.0.1" if proxy in ("0.0.0.0", "::", "") else proxy


def service_unit(params, options, name, loader, trusted_proxy):
    arguments = [loader, "--workers", str(options.workers or "auto"), "--trusted-proxy", trusted_proxy]
    if options.max_body:
        arguments += ["--max-body", str(options.max_body)]
    user = [f"User={options.user}", f"Group={options.group or options.user}"] if options.user else ["DynamicUser=yes"]
    bundle = os.path.dirname(loader)
    # A bundle below /home or /root stays readable; every other home is hidden.
    protect_home = "read-only" if bundle.startswith(("/home/", "/root/")) else "yes"
    description = params.ServerName or name
    return "\n".join([
        f"# Written by `{name} install` (frost); `{name} remove` takes it away.",
        "[Unit]",
        f"Description=frost: {description}",
        f"Requires=frost-{name}.socket",
        f"After=network.target frost-{name}.socket",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=" + " ".join(_systemd_quote(a) for a in arguments),
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=1",
        "WatchdogSec=30",
        # The master stops its workers gracefully: SIGTERM to it alone, SIGKILL to all late.
        "KillMode=mixed",
        "TimeoutStopSec=40",
        *user,
        f"StateDirectory=frost-{name}",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ProtectHome={protect_home}",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def socket_unit(options, name, listen_stream):
    lines = [
        f"# Written by `{name} install` (frost); `{name} remove` takes it away.",
        "[Unit]",
        f"Description=frost: {name} socket",
        "",
        "[Socket]",
        f"ListenStream={listen_stream}",
    ]
    if listen_stream.startswith("/"):
        # nginx (www-data on Debian) connects; nobody else may.
        lines += ["SocketMode=0660", f"SocketGroup={options.proxy_group}", "DirectoryMode=0755"]
    lines += ["Backlog=512", "", "[Install]", "WantedBy=sockets.target", ""]
    return "\n".join(lines)


def _systemd_quote(argument):
    if re.fullmatch(r"[A-Za-z0-9_./:=@+-]+", argument):
        return argument
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _nginx_quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_server(params, options, name, upstream):
    site = site_configuration(params)
    proxy = [
        f"        proxy_pass http://frost_{name};",
        "        proxy_http_version 1.1;",
        '        proxy_set_header Connection "";',
        "        proxy_set_header Host $host;",
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
    ]
    max_body = options.max_body or 1 << 30
    lines = [
        f"# Written by `{name} install` (frost); `{name} remove` takes it away.",
        f"upstream frost_{name} {{",
        f"    server {upstream};",
        "    keepalive 16;",
        "}",
        "",
        "server {",
        f"    listen {options.nginx_listen};",
        f"    server_name {options.server_name or params.ServerName or '_'};",
        # The loader's request body limit (--max-body), so both refuse the same uploads.
        f"    client_max_body_size {max_body};",
    ]
    names = set()
    for directory in sorted(site["virtual_directories"], key=lambda d: d["name"]):
        prefix = directory["name"].rstrip("/") + "/"
        names.add(directory["name"])
        maps = directory["script_maps"]
        lines.append("")
        lines.append(f"    # virtual directory {directory['name']}" + (f": {directory['description']}" if directory["description"] else ""))
        if "*" in maps:
            lines.append(f"    location {prefix} {{")
            lines += proxy
            lines.append("    }")
            continue
        # Static files: nginx serves them itself; the extensions' script maps go to frost.
        lines.append(f"    location {prefix} {{")
        lines.append(f"        alias {directory['path'].rstrip('/')}/;")
        lines.append("    }")
        for extension in maps:
            pattern = "^" + re.escape(prefix) + ".*" + re.escape(extension) + "$"
            lines.append(f"    location ~ {_nginx_quote(pattern)} {{")
            lines += proxy
            lines.append("    }")
    if "/" not in names:
        lines += ["", "    # nothing else is this bundle's", "    location / {", "        return 404;", "    }"]
    lines += ["}", ""]
    return "\n".join(lines)


class _Plan:
    """Every file install writes (target-system path -> bytes) and link, and the commands."""

    def __init__(self, params, options):
        self.name = _bundle_name()
        self.directory = _bundle_directory()
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.name):
            raise ConfigurationError(f"the bundle name {self.name!r} cannot name a unit")
        loader = os.path.join(self.directory, "_" + self.name)
        listen_stream, upstream, trusted = _listen_address(options, self.name)
        site = json.dumps(site_configuration(params), indent=2, sort_keys=True) + "\n"
        self.unit = f"frost-{self.name}"
        systemd = options.systemd_dir
        nginx = options.nginx_dir
        available = os.path.join(nginx, "sites-available")
        if os.path.isdir(_below_root(options, available)) or not os.path.isdir(_below_root(options, os.path.join(nginx, "conf.d"))):
            self.nginx_file = os.path.join(available, f"{self.unit}.conf")
            self.links = {os.path.join(nginx, "sites-enabled", f"{self.unit}.conf"): self.nginx_file}
        else:
            self.nginx_file = os.path.join(nginx, "conf.d", f"{self.unit}.conf")
            self.links = {}
        self.files = {
            os.path.join(self.directory, SITE_FILE): site.encode(),
            os.path.join(systemd, f"{self.unit}.service"): service_unit(params, options, self.name, loader, trusted).encode(),
            os.path.join(systemd, f"{self.unit}.socket"): socket_unit(options, self.name, listen_stream).encode(),
            self.nginx_file: nginx_server(params, options, self.name, upstream).encode(),
        }
        self.record_path = os.path.join(self.directory, RECORD_FILE)


def _load_record(options):
    path = _below_root(options, os.path.join(_bundle_directory(), RECORD_FILE))
    try:
        with open(path) as f:
            record = json.load(f)
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_atomic(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}{_TEMPORARY_MARK}{os.getpid()}.tmp"
    with open(temporary, "wb") as out:
        out.write(data)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


_TEMPORARY_MARK = ".frost-"


def _remove_leftovers(paths):
    """Temporary files of a run that was killed before it could rename them (the caller
    holds the lock, so no other run is writing them)."""
    for path in paths:
        directory, base = os.path.split(path)
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if name.startswith(base + _TEMPORARY_MARK) and name.endswith(".tmp"):
                try:
                    os.remove(os.path.join(directory, name))
                except OSError:
                    pass


def _lock(options):
    """One install/remove at a time for a bundle (a second one waits).

    The holder removes the lock file when it is done, so a waiter that got the lock may
    hold it on a file no longer there while a newcomer locks a new one: it checks that
    the file it locked is still the one at the path, and tries again if not."""
    path = _below_root(options, os.path.join(_bundle_directory(), RECORD_FILE + ".lock"))
    if options.dry_run:
        return None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    while True:
        handle = open(path, "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()


def _unlock(handle, options):
    if handle is not None:
        handle.close()
        try:
            os.remove(_below_root(options, os.path.join(_bundle_directory(), RECORD_FILE + ".lock")))
        except OSError:
            pass


class _Step(Exception):
    """A command that failed: which, and what it said."""


def _run(command, what):
    try:
        completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as error:
        raise _Step(f"{what} ({' '.join(command)}): {error}")
    if completed.returncode != 0:
        last = (completed.stdout or "").strip().splitlines()
        raise _Step(f"{what} ({' '.join(command)}) exited {completed.returncode}" + (f": {last[-1]}" if last else ""))


def _acts(options):
    """Whether commands run: never below --root or in a dry run."""
    return not options.root and not options.dry_run


# -- Kubernetes --------------------------------------------------------------------------

def _yaml(value, indent=0):
    """YAML for dicts, lists, strings, numbers and booleans (block style, quoted strings)."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return " {}"
        out = ""
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                out += f"\n{pad}{key}:" + _yaml(item, indent + 1)
            else:
                out += f"\n{pad}{key}:" + _yaml(item, indent + 1)
        return out
    if isinstance(value, list):
        if not value:
            return " []"
        out = ""
        for item in value:
            text = _yaml(item, indent + 1)
            if isinstance(item, dict) and item:
                # "- key: value" with the rest of the mapping aligned under it.
                first, _, rest = text.lstrip("\n").partition("\n")
                out += f"\n{pad}- {first.strip()}" + ("\n" + rest if rest else "")
            else:
                out += f"\n{pad}-{text}"
        return out
    if isinstance(value, bool):
        return " true" if value else " false"
    if isinstance(value, int):
        return f" {value}"
    return " " + json.dumps(str(value))


def kubernetes_manifests(name, options):
    """A Deployment, a Service and a PodDisruptionBudget for the bundle's image."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "frost"}
    port = int(options.port)
    probe = {"httpGet": {"path": options.health_path, "port": port}}
    state = f"/var/lib/frost/{name}"
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": int(options.replicas),
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # Above the loader's graceful stop (30 s): requests in flight finish.
                    "terminationGracePeriodSeconds": 40,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
                    "containers": [{
                        "name": name,
                        "image": options.image,
                        "ports": [{"name": "http", "containerPort": port}],
                        "readinessProbe": dict(probe, periodSeconds=5, failureThreshold=2),
                        "livenessProbe": dict(probe, initialDelaySeconds=10, periodSeconds=10, failureThreshold=3),
                        "resources": {"requests": {"cpu": options.cpu, "memory": options.memory},
                                      "limits": {"memory": options.memory_limit}},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "state", "mountPath": state}, {"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "state", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": {"app.kubernetes.io/name": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    budget = {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "labels": labels},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}}},
    }
    header = f"# Written by `{name} install --kubernetes` (frost); `{name} remove --kubernetes DIR` takes it away.\n"
    return header + "---\n".join(_yaml(document).lstrip("\n") + "\n" for document in (deployment, service, budget))


def _kubernetes_install(options):
    name = _bundle_name()
    if not options.image:
        raise ConfigurationError("--kubernetes needs --image REFERENCE (the image frost image wrote, pushed "
                                 "to a registry: name@sha256:...)")
    path = os.path.join(options.kubernetes, f"{name}.yaml")
    text = kubernetes_manifests(name, options)
    if os.path.exists(path):
        with open(path) as f:
            if not f.readline().startswith(f"# Written by `{name} install --kubernetes`"):
                raise InstallationError(f"{path} exists and was not written by this installer: not overwriting it")
    if options.dry_run:
        print(f"would write {path} (sha256 {_sha256(text.encode())[:16]}, {len(text)} bytes)")
        print(text, end="")
        return
    _write_atomic(path, text.encode())
    if options.verbose >= 1:
        print(f"wrote {path}: a Deployment, a Service and a PodDisruptionBudget (kubectl apply -f {path})")


def _kubernetes_remove(options):
    name = _bundle_name()
    path = os.path.join(options.kubernetes, f"{name}.yaml")
    if not os.path.exists(path):
        return
    with open(path) as f:
        if not f.readline().startswith(f"# Written by `{name} install --kubernetes`"):
            raise InstallationError(f"{path} was not written by this installer: not removing it")
    if not options.dry_run:
        os.remove(path)


def Install(params, options):
    if options.kubernetes:
        _call(params.PreInstall, params, options)
        _kubernetes_install(options)
        _call_post_install(params, options)
        return
    _call(params.PreInstall, params, options)
    for vd in params.VirtualDirs:
        _call(vd.PreInstall, vd, options)
    plan = _Plan(params, options)
    if _acts(options):
        if shutil.which("systemctl") is None:
            raise InstallationError("systemd is not running here (no systemctl): install with --root DIR to write the files only")
        if shutil.which("nginx") is None and shutil.which("nginx", path="/usr/sbin:/sbin") is None:
            raise InstallationError("nginx is not installed (on Debian: apt-get install nginx), or use --root DIR")
        if options.user:
            import pwd
            try:
                pwd.getpwnam(options.user)
            except KeyError:
                raise InstallationError(f"--user {options.user}: no such user (create it with useradd --system)")
    lock = _lock(options)
    try:
        _install(params, options, plan)
    finally:
        _unlock(lock, options)


def _install(params, options, plan):
    if not options.dry_run:
        _remove_leftovers([_below_root(options, path) for path in list(plan.files) + [plan.record_path]])
    record = _load_record(options)
    recorded = record.get("files", {})
    recorded_links = record.get("links", {})
    # Nothing is written over a file install did not write, or that changed since it did.
    for path, data in plan.files.items():
        current = _file_sha256(_below_root(options, path))
        if current is not None and current != _sha256(data) and recorded.get(path) != current:
            why = "was changed since it was installed" if path in recorded else "was not written by this installer"
            raise InstallationError(f"{path} exists and {why}: not overwriting it (move it away, or remove it first)")
    for link, target in plan.links.items():
        where = _below_root(options, link)
        if os.path.lexists(where) and recorded_links.get(link) != target and os.readlink(where) != target:
            raise InstallationError(f"{link} exists and was not written by this installer: not overwriting it")
    changes = [path for path, data in plan.files.items() if _file_sha256(_below_root(options, path)) != _sha256(data)]
    changes += [link for link, target in plan.links.items()
                if not os.path.islink(_below_root(options, link)) or os.readlink(_below_root(options, link)) != target]
    stale = [path for path in recorded if path not in plan.files] + [link for link in recorded_links if link not in plan.links]
    commands = [
        (["systemctl", "daemon-reload"], "reloading systemd"),
        (["systemctl", "enable", "--now", f"{plan.unit}.socket", f"{plan.unit}.service"], "starting the units"),
        (["nginx", "-t", "-q"], "checking the nginx configuration"),
        (["systemctl", "reload", "nginx"], "reloading nginx"),
    ]
    if options.dry_run:
        for path, data in plan.files.items():
            state = "unchanged" if path not in changes else "write"
            print(f"would {state} {_below_root(options, path)} (sha256 {_sha256(data)[:16]}, {len(data)} bytes)")
            if path.endswith(SITE_FILE) and path in changes:
                print(data.decode(), end="")
        for link, target in plan.links.items():
            print(f"would link {_below_root(options, link)} -> {target}")
        for path in stale:
            print(f"would remove {_below_root(options, path)} (no longer part of the installation)")
        if not options.root:
            for command, _ in commands:
                print("would run " + " ".join(command))
        _call_post_install(params, options)
        return
    # A run killed after its last file but before its record leaves the files right and
    # the record missing: this run writes the record (and starts the units), so remove
    # finds what was installed.
    recorded_fully = recorded == {path: _sha256(data) for path, data in plan.files.items()} and recorded_links == plan.links
    if not changes and not stale and recorded_fully:
        if options.verbose >= 1:
            print(f"{plan.unit}: already installed, nothing changed")
        _call_post_install(params, options)
        return
    if _acts(options):
        # A configuration nginx already refuses is not ours to touch.
        try:
            _run(["nginx", "-t", "-q"], "checking the nginx configuration before changing it")
        except _Step as error:
            raise InstallationError(f"install stopped before writing anything: {error}")
    backups = {}
    written = []
    started = False
    try:
        for path, data in plan.files.items():
            target = _below_root(options, path)
            if path in changes:
                if os.path.exists(target):
                    with open(target, "rb") as f:
                        backups[target] = f.read()
                _write_atomic(target, data)
                written.append(target)
                if options.verbose >= 1:
                    print(f"wrote {target}")
        for link, target in plan.links.items():
            where = _below_root(options, link)
            if link in changes:
                if os.path.lexists(where):
                    backups[where] = ("link", os.readlink(where))
                    os.remove(where)
                os.makedirs(os.path.dirname(where), exist_ok=True)
                os.symlink(target, where)
                written.append(where)
                if options.verbose >= 1:
                    print(f"linked {where} -> {target}")
        for path in stale:
            where = _below_root(options, path)
            if os.path.lexists(where):
                backups[where] = ("link", os.readlink(where)) if os.path.islink(where) else open(where, "rb").read()
                os.remove(where)
        if _acts(options):
            for command, what in commands:
                _run(command, what)
                started = started or command[1] == "enable"
        record_target = _below_root(options, plan.record_path)
        if os.path.exists(record_target):
            with open(record_target, "rb") as f:
                backups[record_target] = f.read()
        _write_record(options, plan)
        written.append(record_target)
        _call_post_install(params, options)
    except (_Step, Exception) as error:
        if started and not recorded:
            # A first install that got as far as starting the units stops them again.
            try:
                _run(["systemctl", "disable", "--now", f"{plan.unit}.socket", f"{plan.unit}.service"], "stopping the units")
            except _Step:
                pass
        _restore(backups, written)
        if _acts(options):
            try:
                _run(["systemctl", "daemon-reload"], "reloading systemd")
            except _Step:
                pass
        message = str(error) if isinstance(error, _Step) else f"{type(error).__name__}: {error}"
        raise InstallationError(f"install failed at {message}; every file is back as it was")


def _call_post_install(params, options):
    for vd in params.VirtualDirs:
        _call(vd.PostInstall, vd, options)
    _call(params.PostInstall, params, options)


def _restore(backups, written):
    for path in reversed(written):
        if path not in backups and os.path.lexists(path):
            os.remove(path)
    for path, previous in backups.items():
        if os.path.lexists(path):
            os.remove(path)
        if isinstance(previous, tuple):
            os.symlink(previous[1], path)
        else:
            _write_atomic(path, previous)


def _write_record(options, plan):
    record = {
        "name": plan.name,
        "bundle": plan.directory,
        "units": [f"{plan.unit}.socket", f"{plan.unit}.service"],
        "files": {path: _sha256(data) for path, data in sorted(plan.files.items())},
        "links": dict(sorted(plan.links.items())),
    }
    _write_atomic(_below_root(options, plan.record_path), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def Uninstall(params, options):
    _call(params.PreRemove, params, options)
    for vd in params.VirtualDirs:
        _call(vd.PreRemove, vd, options)
    if options.kubernetes:
        _kubernetes_remove(options)
    else:
        lock = _lock(options)
        try:
            _uninstall(options)
        finally:
            _unlock(lock, options)
    for vd in params.VirtualDirs:
        _call(vd.PostRemove, vd, options)
    _call(params.PostRemove, params, options)


def _uninstall(options):
    record = _load_record(options)
    record_path = _below_root(options, os.path.join(_bundle_directory(), RECORD_FILE))
    if not record:
        if options.verbose >= 1:
            print(f"nothing to remove: {record_path} does not exist")
        return
    files, links = record.get("files", {}), record.get("links", {})
    changed = [path for path, digest in files.items()
               if os.path.exists(_below_root(options, path)) and _file_sha256(_below_root(options, path)) != digest]
    if changed:
        raise InstallationError(f"{changed[0]} was changed since it was installed: not removing anything "
                                f"(put it back, or delete it yourself, then run remove again)")
    units = record.get("units", [])
    if options.dry_run:
        if _acts(options) and units:
            print("would run systemctl disable --now " + " ".join(units))
        for path in list(files) + list(links):
            if os.path.lexists(_below_root(options, path)):
                print(f"would remove {_below_root(options, path)}")
        print(f"would remove {record_path}")
        return
    if _acts(options) and units and shutil.which("systemctl"):
        try:
            _run(["systemctl", "disable", "--now"] + units, "stopping the units")
        except _Step as error:
            print(f"warning: {error}", file=sys.stderr)
    for path in list(links) + list(files):
        where = _below_root(options, path)
        if os.path.lexists(where):
            os.remove(where)
            if options.verbose >= 1:
                print(f"removed {where}")
    os.remove(record_path)
    if _acts(options):
        for command, what in ((["systemctl", "daemon-reload"], "reloading systemd"),
                              (["nginx", "-t", "-q"], "checking the nginx configuration"),
                              (["systemctl", "reload", "nginx"], "reloading nginx")):
            if shutil.which(command[0]) is not None:
                try:
                    _run(command, what)
                except _Step as error:
                    raise InstallationError(f"remove: the files are gone, but {error}")


def Status(params, options):
    record = _load_record(options)
    if not record:
        print(f"{_bundle_name()}: not installed")
        return
    print(f"{record.get('name')}: installed (units {', '.join(record.get('units', []))})")
    for path, digest in sorted(record.get("files", {}).items()):
        current = _file_sha256(_below_root(options, path))
        state = "ok" if current == digest else "missing" if current is None else "changed since install"
        print(f"  {state:22} {path}")
    for link, target in sorted(record.get("links", {}).items()):
        where = _below_root(options, link)
        state = "ok" if os.path.islink(where) and os.readlink(where) == target else "missing or changed"
        print(f"  {state:22} {link} -> {target}")
    if not options.root and shutil.which("systemctl"):
        for unit in record.get("units", []):
            active = subprocess.run(["systemctl", "is-active", unit], stdout=subprocess.PIPE, text=True).stdout.strip()
            enabled = subprocess.run(["systemctl", "is-enabled", unit], stdout=subprocess.PIPE, text=True).stdout.strip()
            print(f"  {unit}: {active or 'unknown'}, {enabled or 'unknown'}")


standard_arguments = {"install": Install, "remove": Uninstall, "uninstall": Uninstall, "status": Status}


def HandleCommandLine(params, argv=None, conf_module_name=None, default_arg="install",
                      opt_parser=None, custom_arg_handlers={}):
    """Performs each command named on the command line (``install`` when none is)."""
    argv = list(sys.argv if argv is None else argv)
    commands = sorted(set(standard_arguments) | set(custom_arg_handlers))
    parser = opt_parser or optparse.OptionParser()
    parser.usage = f"%prog [options] [{'|'.join(commands)}]"
    if getattr(sys, "frozen", False):
        parser.prog = os.path.basename(sys.executable)
    parser.add_option("-q", "--quiet", action="store_const", dest="verbose", const=0, default=1,
                      help="print nothing but errors")
    parser.add_option("-v", "--verbosity", action="count", dest="verbose", help="print more")
    parser.add_option("--root", default="", help="write every file below this directory and run no command")
    parser.add_option("--dry-run", action="store_true", default=False,
                      help="print each file (path and SHA-256) and command, and change nothing")
    parser.add_option("--user", default=None, help="run the service as this existing user (default: a systemd DynamicUser)")
    parser.add_option("--group", default=None, help="with --user: its group (default: the user's name)")
    parser.add_option("--listen", default=None,
                      help="the socket unit's address: unix:PATH (default unix:/run/frost/NAME.sock) or HOST:PORT")
    parser.add_option("--workers", default="auto", help="worker processes of the loader (a number, or auto: one per core)")
    parser.add_option("--max-body", type="int", default=None,
                      help="request body limit in bytes, for the loader and nginx alike (default 1 GiB)")
    parser.add_option("--server-name", default=None, help="nginx server_name (default: the parameters' ServerName, else _)")
    parser.add_option("--nginx-listen", default="80", help="nginx's listen directive for the server block (default 80)")
    parser.add_option("--nginx-dir", default="/etc/nginx", help="nginx's configuration directory (default /etc/nginx)")
    parser.add_option("--systemd-dir", default="/etc/systemd/system",
                      help="where unit files go (default /etc/systemd/system)")
    parser.add_option("--proxy-group", default="www-data", help="the group nginx runs as, which may use the socket")
    parser.add_option("--kubernetes", default=None, metavar="DIR",
                      help="instead of systemd and nginx: write a Deployment, Service and PodDisruptionBudget to DIR")
    parser.add_option("--image", default=None, help="with --kubernetes: the image reference (name@sha256:...)")
    parser.add_option("--replicas", default="2", help="with --kubernetes: pods to run (default 2)")
    parser.add_option("--port", default="8000", help="with --kubernetes: the port the image's loader listens on (8000)")
    parser.add_option("--health-path", default="/healthz", help="with --kubernetes: the loader's health path (/healthz)")
    parser.add_option("--cpu", default="100m", help="with --kubernetes: the CPU each pod requests (100m)")
    parser.add_option("--memory", default="128Mi", help="with --kubernetes: the memory each pod requests (128Mi)")
    parser.add_option("--memory-limit", default="512Mi", help="with --kubernetes: each pod's memory limit (512Mi)")
    options, arguments = parser.parse_args(argv[1:])
    if not arguments:
        arguments = [default_arg]

    def log(level, what):
        if options.verbose >= level:
            print(what)

    for argument in arguments:
        if argument in custom_arg_handlers:
            custom_arg_handlers[argument](options, log, argument)
        elif argument in standard_arguments:
            try:
                standard_arguments[argument](params, options)
            except InstallationError as error:
                print(f"{parser.get_prog_name()}: error: {error}", file=sys.stderr)
                raise SystemExit(1)
        else:
            parser.error(f"unknown command {argument!r}: use one of {', '.join(commands)}")
