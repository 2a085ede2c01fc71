"""Installation support for frost bundles, with pywin32's ``isapi.install`` interface.

A bundle's console (``dist/NAME/NAME``) runs the script's ``__main__``, which describes
its virtual directories, script maps and filters with the parameter classes below and
calls ``HandleCommandLine(params)``:

    NAME install [--root DIR] [--dry-run]   record the site configuration
    NAME remove  [--root DIR] [--dry-run]   remove what install recorded
    NAME <custom> ...                       a handler from custom_arg_handlers

``install`` writes the site configuration (``site.json`` next to the loader, or below
``--root``), which the loader reads at start-up: virtual directories with their physical
paths and script maps, and the filters. Registration with systemd and nginx is not
part of this module yet; the site configuration is what the host uses.
"""
import json
import optparse
import os
import sys

__all__ = [
    "ISAPIParameters", "VirtualDirParameters", "ScriptMapParams", "FilterParameters", "HandleCommandLine",
    "InstallationError", "ConfigurationError", "ItemNotFound", "Install", "Uninstall",
]

SITE_FILE = "site.json"


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


def _site_file(options):
    path = os.path.join(_bundle_directory(), SITE_FILE)
    if options.root:
        path = os.path.join(options.root, path.lstrip("/"))
    return path


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


def Install(params, options):
    _call(params.PreInstall, params, options)
    for vd in params.VirtualDirs:
        _call(vd.PreInstall, vd, options)
    text = json.dumps(site_configuration(params), indent=2, sort_keys=True) + "\n"
    path = _site_file(options)
    if options.dry_run:
        print(f"would write {path}:")
        print(text, end="")
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
        if options.verbose >= 1:
            print(f"wrote {path}")
    for vd in params.VirtualDirs:
        _call(vd.PostInstall, vd, options)
    _call(params.PostInstall, params, options)


def Uninstall(params, options):
    _call(params.PreRemove, params, options)
    for vd in params.VirtualDirs:
        _call(vd.PreRemove, vd, options)
    path = _site_file(options)
    if os.path.exists(path):
        if options.dry_run:
            print(f"would remove {path}")
        else:
            os.remove(path)
            if options.verbose >= 1:
                print(f"removed {path}")
    elif options.verbose >= 1:
        print(f"nothing to remove: {path} does not exist")
    for vd in params.VirtualDirs:
        _call(vd.PostRemove, vd, options)
    _call(params.PostRemove, params, options)


standard_arguments = {"install": Install, "remove": Uninstall, "uninstall": Uninstall}


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
    parser.add_option("--root", default="", help="write below this directory instead of /")
    parser.add_option("--dry-run", action="store_true", default=False, help="show what would be done")
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
                parser.error(f"{argument} failed: {error}")
        else:
            parser.error(f"unknown command {argument!r}: use one of {', '.join(commands)}")
