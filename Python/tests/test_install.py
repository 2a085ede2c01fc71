"""Tests of isapi.install: pywin32's parameter classes and command line, and the site
configuration that `install` records for the loader."""
import io
import json
import optparse
import os
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout

from isapi import install
from isapi.install import (ConfigurationError, FilterParameters, HandleCommandLine, ISAPIParameters,
                           ScriptMapParams, VirtualDirParameters)


def params(calls):
    return ISAPIParameters(
        PreInstall=lambda p, o: calls.append("PreInstall"), PostInstall=lambda p, o: calls.append("PostInstall"),
        PreRemove=lambda p, o: calls.append("PreRemove"), PostRemove=lambda p, o: calls.append("PostRemove"),
        Filters=[FilterParameters(Name="PythonRedirector", Description="rewrites")],
        VirtualDirs=[VirtualDirParameters(Name="python", Description="the app", Path="/srv/app",
                                          ScriptMaps=[ScriptMapParams(Extension="*"), ScriptMapParams(Extension="py")],
                                          PreInstall=lambda vd, o: calls.append("vd PreInstall"),
                                          PostRemove=lambda vd, o: calls.append("vd PostRemove"))])


class InstallTest(unittest.TestCase):
    def run_command(self, p, *argv, **kw):
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                HandleCommandLine(p, argv=["app"] + list(argv), **kw)
                status = 0
            except SystemExit as exit:
                status = exit.code
        return status, out.getvalue(), err.getvalue()

    def test_unknown_parameter_is_a_configuration_error(self):
        with self.assertRaises(ConfigurationError):
            VirtualDirParameters(Nme="typo")

    def test_site_configuration(self):
        site = install.site_configuration(params([]))
        self.assertEqual(site["virtual_directories"],
                         [{"name": "/python", "path": "/srv/app", "script_maps": ["*", ".py"], "description": "the app"}])
        self.assertEqual(site["filters"], [{"name": "PythonRedirector", "description": "rewrites"}])
        with self.assertRaises(ConfigurationError):
            install.site_configuration(ISAPIParameters(VirtualDirs=[VirtualDirParameters(Name="x", Path="relative")]))

    def test_install_and_remove_under_root_with_hooks_in_order(self):
        calls = []
        with tempfile.TemporaryDirectory() as root:
            status, _, _ = self.run_command(params(calls), "install", "--root", root, "-q")
            self.assertEqual(status, 0)
            written = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]
            self.assertEqual(len(written), 1)
            self.assertTrue(written[0].endswith("/site.json"))
            with open(written[0]) as f:
                self.assertEqual(json.load(f)["virtual_directories"][0]["name"], "/python")
            status, _, _ = self.run_command(params(calls), "remove", "--root", root, "-q")
            self.assertEqual(status, 0)
            self.assertFalse(os.path.exists(written[0]))
        self.assertEqual(calls, ["PreInstall", "vd PreInstall", "PostInstall", "PreRemove", "vd PostRemove", "PostRemove"])

    def test_dry_run_writes_nothing(self):
        with tempfile.TemporaryDirectory() as root:
            status, out, _ = self.run_command(params([]), "install", "--root", root, "--dry-run")
            self.assertEqual(status, 0)
            self.assertIn('"PythonRedirector"', out)
            self.assertEqual(os.listdir(root), [])

    def test_custom_commands_and_options(self):
        seen = []
        parser = optparse.OptionParser("")
        parser.add_option("", "--description", action="store")
        status, _, _ = self.run_command(params([]), "status", "--description", "mine", opt_parser=parser,
                                        custom_arg_handlers={"status": lambda o, log, arg: seen.append((o.description, arg))})
        self.assertEqual(status, 0)
        self.assertEqual(seen, [("mine", "status")])
        status, _, err = self.run_command(params([]), "bogus")
        self.assertEqual(status, 2)
        self.assertIn("unknown command 'bogus'", err)
