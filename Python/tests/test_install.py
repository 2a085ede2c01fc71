"""Tests of isapi.install: pywin32's parameter classes and command line, and the site
configuration that `install` records for the loader."""
import io
import json
import optparse
import os
import shutil
import sys
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

    def setUp(self):
        # The console of a bundle named "app" at /srv/bundles/app.
        self.argv0 = sys.argv[0]
        sys.argv[0] = "/srv/bundles/app/app.py"

    def tearDown(self):
        sys.argv[0] = self.argv0

    @staticmethod
    def tree(root):
        files = {}
        for directory, _, names in os.walk(root):
            for name in names:
                path = os.path.join(directory, name)
                files[os.path.relpath(path, root)] = os.readlink(path) if os.path.islink(path) else open(path, "rb").read()
        return files

    def test_install_and_remove_under_root_with_hooks_in_order(self):
        calls = []
        with tempfile.TemporaryDirectory() as root:
            status, _, err = self.run_command(params(calls), "install", "--root", root, "-q")
            self.assertEqual(status, 0, err)
            tree = self.tree(root)
            self.assertEqual(sorted(tree), [
                "etc/nginx/sites-available/frost-app.conf", "etc/nginx/sites-enabled/frost-app.conf",
                "etc/systemd/system/frost-app.service", "etc/systemd/system/frost-app.socket",
                "srv/bundles/app/frost-install.json", "srv/bundles/app/site.json"])
            self.assertEqual(json.loads(tree["srv/bundles/app/site.json"])["virtual_directories"][0]["name"], "/python")
            service = tree["etc/systemd/system/frost-app.service"].decode()
            for line in ["Type=notify", "NotifyAccess=main", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                         "WatchdogSec=30", "DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
                         "ProtectHome=yes", "PrivateTmp=yes", "StateDirectory=frost-app", "Requires=frost-app.socket",
                         "ExecStart=/srv/bundles/app/_app --workers auto --trusted-proxy unix"]:
                self.assertIn(line + "\n", service)
            socket = tree["etc/systemd/system/frost-app.socket"].decode()
            self.assertIn("ListenStream=/run/frost/app.sock\n", socket)
            self.assertIn("SocketGroup=www-data\n", socket)
            nginx = tree["etc/nginx/sites-available/frost-app.conf"].decode()
            self.assertIn("server unix:/run/frost/app.sock;", nginx)
            self.assertIn("location /python/ {", nginx)
            self.assertIn("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;", nginx)
            self.assertIn("proxy_set_header X-Forwarded-Proto $scheme;", nginx)
            self.assertIn("proxy_http_version 1.1;", nginx)
            self.assertIn("client_max_body_size 1073741824;", nginx)
            self.assertIn("return 404;", nginx, "URLs outside the virtual directories are not the bundle's")
            self.assertEqual(tree["etc/nginx/sites-enabled/frost-app.conf"], "/etc/nginx/sites-available/frost-app.conf")
            record = json.loads(tree["srv/bundles/app/frost-install.json"])
            self.assertEqual(sorted(record["files"]), ["/etc/nginx/sites-available/frost-app.conf",
                                                       "/etc/systemd/system/frost-app.service",
                                                       "/etc/systemd/system/frost-app.socket", "/srv/bundles/app/site.json"])
            # Twice: one registration, nothing rewritten.
            status, out, _ = self.run_command(params([]), "install", "--root", root)
            self.assertEqual(status, 0)
            self.assertIn("already installed, nothing changed", out)
            self.assertEqual(self.tree(root), tree)
            status, out, _ = self.run_command(params([]), "status", "--root", root)
            self.assertIn("ok                     /etc/systemd/system/frost-app.service", out)
            status, _, _ = self.run_command(params(calls), "remove", "--root", root, "-q")
            self.assertEqual(status, 0)
            self.assertEqual(self.tree(root), {}, "remove takes away exactly what install made")
        self.assertEqual(calls, ["PreInstall", "vd PreInstall", "PostInstall", "PreRemove", "vd PostRemove", "PostRemove"])

    def test_dry_run_writes_nothing(self):
        with tempfile.TemporaryDirectory() as root:
            status, out, _ = self.run_command(params([]), "install", "--root", root, "--dry-run")
            self.assertEqual(status, 0)
            self.assertIn('"PythonRedirector"', out)
            self.assertIn(f"would write {root}/etc/systemd/system/frost-app.service (sha256 ", out)
            self.assertIn(f"would link {root}/etc/nginx/sites-enabled/frost-app.conf -> /etc/nginx/sites-available/frost-app.conf", out)
            self.assertEqual(os.listdir(root), [])

    def test_a_foreign_file_is_never_overwritten(self):
        with tempfile.TemporaryDirectory() as root:
            foreign = os.path.join(root, "etc/systemd/system/frost-app.service")
            os.makedirs(os.path.dirname(foreign))
            with open(foreign, "w") as f:
                f.write("[Service]\nExecStart=/bin/true\n")
            status, _, err = self.run_command(params([]), "install", "--root", root)
            self.assertEqual(status, 1)
            self.assertIn("/etc/systemd/system/frost-app.service exists and was not written by this installer", err)
            self.assertEqual(sorted(self.tree(root)), ["etc/systemd/system/frost-app.service"], "nothing else written")
            with open(foreign) as f:
                self.assertEqual(f.read(), "[Service]\nExecStart=/bin/true\n")

    def test_a_changed_file_stops_remove(self):
        with tempfile.TemporaryDirectory() as root:
            self.assertEqual(self.run_command(params([]), "install", "--root", root, "-q")[0], 0)
            unit = os.path.join(root, "etc/systemd/system/frost-app.socket")
            with open(unit, "a") as f:
                f.write("# local change\n")
            status, _, err = self.run_command(params([]), "remove", "--root", root)
            self.assertEqual(status, 1)
            self.assertIn("frost-app.socket was changed since it was installed", err)
            self.assertTrue(os.path.exists(os.path.join(root, "srv/bundles/app/site.json")))
            status, out, _ = self.run_command(params([]), "status", "--root", root)
            self.assertIn("changed since install  /etc/systemd/system/frost-app.socket", out)

    def test_options_shape_the_units(self):
        with tempfile.TemporaryDirectory() as root:
            status, _, err = self.run_command(params([]), "install", "--root", root, "--listen", "127.0.0.1:9001",
                                              "--user", "web", "--workers", "3", "--max-body", "1000",
                                              "--server-name", "app.example", "--nginx-listen", "127.0.0.1:8080", "-q")
            self.assertEqual(status, 0, err)
            tree = self.tree(root)
            service = tree["etc/systemd/system/frost-app.service"].decode()
            self.assertIn("ExecStart=/srv/bundles/app/_app --workers 3 --trusted-proxy 127.0.0.1 --max-body 1000\n", service)
            self.assertIn("User=web\n", service)
            self.assertNotIn("DynamicUser", service)
            self.assertIn("ListenStream=127.0.0.1:9001\n", tree["etc/systemd/system/frost-app.socket"].decode())
            nginx = tree["etc/nginx/sites-available/frost-app.conf"].decode()
            for line in ["server 127.0.0.1:9001;", "listen 127.0.0.1:8080;", "server_name app.example;",
                         "client_max_body_size 1000;"]:
                self.assertIn(line, nginx)
            status, _, err = self.run_command(params([]), "install", "--root", root, "--listen", "nowhere")
            self.assertEqual(status, 1)
            self.assertIn("--listen must be unix:PATH or HOST:PORT", err)

    def test_a_failing_hook_leaves_nothing_installed(self):
        def broken(p, o):
            raise RuntimeError("the hook broke")
        with tempfile.TemporaryDirectory() as root:
            status, _, err = self.run_command(ISAPIParameters(PostInstall=broken, VirtualDirs=[
                VirtualDirParameters(Name="x", Path="/srv/x", ScriptMaps=[ScriptMapParams(Extension="*")])]),
                "install", "--root", root, "-q")
            self.assertEqual(status, 1)
            self.assertIn("install failed at RuntimeError: the hook broke; every file is back as it was", err)
            self.assertEqual(self.tree(root), {})

    def fake_tools(self, directory, fail_on=""):
        """systemctl and nginx stand-ins that log their arguments (and fail on one step)."""
        log = os.path.join(directory, "calls.log")
        bin_dir = os.path.join(directory, "bin")
        os.makedirs(bin_dir)
        for tool in ("systemctl", "nginx"):
            path = os.path.join(bin_dir, tool)
            with open(path, "w") as f:
                f.write(f'#!/bin/sh\necho "{tool} $*" >> {log}\n'
                        f'case "{tool} $*" in "{fail_on}") echo "it broke" >&2; exit 1;; esac\nexit 0\n')
            os.chmod(path, 0o755)
        return bin_dir, log

    def run_acting(self, directory, *argv, fail_on=""):
        """install/remove without --root, against stand-in tools and directories."""
        bin_dir, log = self.fake_tools(directory, fail_on)
        sys.argv[0] = os.path.join(directory, "bundle/app/app.py")
        path = os.environ["PATH"]
        os.environ["PATH"] = bin_dir + ":" + path
        try:
            result = self.run_command(params([]), *argv, "--systemd-dir", os.path.join(directory, "systemd"),
                                      "--nginx-dir", os.path.join(directory, "nginx"))
        finally:
            os.environ["PATH"] = path
        with open(log) as f:
            calls = f.read().splitlines()
        os.remove(log)
        shutil.rmtree(bin_dir)
        return result, calls

    def test_install_runs_systemd_and_nginx_in_order_and_remove_undoes_it(self):
        with tempfile.TemporaryDirectory() as directory:
            (status, _, err), calls = self.run_acting(directory, "install", "-q")
            self.assertEqual(status, 0, err)
            self.assertEqual(calls, ["nginx -t -q", "systemctl daemon-reload",
                                     "systemctl enable --now frost-app.socket frost-app.service",
                                     "nginx -t -q", "systemctl reload nginx"])
            self.assertTrue(os.path.exists(os.path.join(directory, "systemd/frost-app.service")))
            (status, _, err), calls = self.run_acting(directory, "remove", "-q")
            self.assertEqual(status, 0, err)
            self.assertEqual(calls, ["systemctl disable --now frost-app.socket frost-app.service",
                                     "systemctl daemon-reload", "nginx -t -q", "systemctl reload nginx"])
            self.assertEqual(self.tree(directory), {})

    def test_a_failing_step_puts_every_file_back(self):
        with tempfile.TemporaryDirectory() as directory:
            (status, _, err), calls = self.run_acting(directory, "install", "-q", fail_on="systemctl reload nginx")
            self.assertEqual(status, 1)
            self.assertIn("install failed at reloading nginx (systemctl reload nginx) exited 1: it broke; "
                          "every file is back as it was", err)
            self.assertEqual(calls[-2:], ["systemctl disable --now frost-app.socket frost-app.service",
                                          "systemctl daemon-reload"], "units it started are stopped")
            self.assertEqual(self.tree(directory), {})
            # nginx already broken: nothing is written at all.
            (status, _, err), calls = self.run_acting(directory, "install", "-q", fail_on="nginx -t -q")
            self.assertEqual(status, 1)
            self.assertIn("install stopped before writing anything", err)
            self.assertEqual(calls, ["nginx -t -q"])
            self.assertEqual(self.tree(directory), {})

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
