import Foundation
import Testing
import FrostBundle

/// The CPython interpreters of every supported version on this machine: Debian's
/// /usr/bin/python3 for its version, pyenv's shared builds for the others.
enum SupportedPythons {
    static let minors = Array(BundleLayout.supportedPythonMinorVersions)

    /// The interpreter of Python 3.`minor`, or nil when this machine has none.
    static func interpreter(minor: Int) -> String? {
        if debianMinor == minor { return "/usr/bin/python3" }
        let root = ProcessInfo.processInfo.environment["PYENV_ROOT"] ?? NSHomeDirectory() + "/.pyenv"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root + "/versions")) ?? []
        for version in versions.sorted().reversed() where version.hasPrefix("3.\(minor).") && !version.hasSuffix("t") {
            let python = "\(root)/versions/\(version)/bin/python3.\(minor)"
            let library = "\(root)/versions/\(version)/lib/libpython3.\(minor).so.1.0"
            if FileManager.default.isExecutableFile(atPath: python), FileManager.default.fileExists(atPath: library) {
                return python
            }
        }
        return nil
    }

    static let debianMinor: Int? = {
        guard let result = try? runProcess("/usr/bin/python3", ["-c", "import sys; print(sys.version_info[1])"]) else { return nil }
        return Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }()

    static func version(of python: String) throws -> String {
        try runProcess(python, ["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// An app that answers with the Python it runs on, over HTTP and in its console.
let versionProbeScript = """
    import sys
    from isapi import isapicon
    from isapi.simple import SimpleExtension

    VERSION = "%d.%d.%d" % sys.version_info[:3]


    class Extension(SimpleExtension):
        def HttpExtensionProc(self, ecb):
            path = ecb.GetServerVariable("PATH_INFO").decode()
            if path == "/sys":
                body = ("isolated=%d frozen=%s\\n" % (sys.flags.isolated, sys.frozen) + "\\n".join(sys.path)).encode()
            else:
                body = VERSION.encode()
            ecb.SendResponseHeaders("200 OK", "Content-Type: text/plain\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body), False)
            ecb.WriteClient(body)
            return isapicon.HSE_STATUS_SUCCESS


    def __ExtensionFactory__():
        return Extension()


    if __name__ == "__main__":
        print("console", VERSION, sys.argv[1:])
    """

@Suite struct PythonVersionTests {
    /// For each supported version: the hello, redirector (with and without its filter) and
    /// Flask samples and a version
    /// probe, built with that interpreter, check, serve HTTP and run their consoles; hello
    /// runs in a root that holds nothing but glibc.
    @Test(arguments: SupportedPythons.minors)
    func samplesFreezeCheckServeAndRunWith(minor: Int) throws {
        guard let python = SupportedPythons.interpreter(minor: minor) else {
            print("skipped Python 3.\(minor): no interpreter of it on this machine (pyenv install 3.\(minor) with --enable-shared)")
            return
        }
        let version = try SupportedPythons.version(of: python)
        let scratch = ScratchDirectory("py3\(minor)")
        let dist = scratch.path("dist")
        try versionProbeScript.write(toFile: scratch.path("probe.py"), atomically: true, encoding: .utf8)
        try "name = \"probe\"\nscript = \"probe.py\"\n".write(toFile: scratch.path("probe.toml"), atomically: true, encoding: .utf8)
        let specs = ["hello", "redirector", "redirector_with_filter", "flask_site"].map { Repository.root.appendingPathComponent("Bundles/\($0).toml").path }
        for spec in specs + [scratch.path("probe.toml")] {
            let build = try frostBuild([spec, "--python", python, "--quiet"], dist: dist)
            try #require(build.status == 0, "\(spec) with \(python): \(build.output)")
        }
        for name in ["hello", "redirector", "redirector_with_filter", "flask_site", "probe"] {
            let bundle = dist + "/" + name
            let manifest = try #require(try BundleManifest.load(bundleDirectory: bundle))
            #expect(manifest.pythonVersion == version)
            #expect(manifest.pythonLibrary == "libpython3.\(minor).so.1.0")
            #expect(FileManager.default.fileExists(atPath: bundle + "/lib/python3\(minor).zip"))
            let check = try runProcess(bundle + "/_" + name, ["--check"])
            #expect(check.status == 0, "\(name) on \(version): \(check.output)")
            #expect(check.stdout.contains("python: \(version) (\(bundle)/lib/libpython3.\(minor).so.1.0)"), "\(check.stdout)")
            #expect(check.stdout.hasSuffix("check: ok\n"))
        }
        // Shared objects carry only what the dynamic linker uses (pyenv's keep debug info).
        let sections = try runProcess("/usr/bin/readelf", ["-S", dist + "/hello/lib/libpython3.\(minor).so.1.0"])
        #expect(sections.status == 0 && sections.stdout.contains(".dynsym"))
        #expect(!sections.stdout.contains(".debug_info") && !sections.stdout.contains(".symtab"), "libpython not stripped")
        let filterCheck = try runProcess(dist + "/redirector_with_filter/_redirector_with_filter", ["--check"])
        #expect(filterCheck.stdout.contains("filter: "), "\(filterCheck.output)")
        let inspect = try runProcess(Products.frost, ["inspect", dist + "/probe"])
        #expect(inspect.stdout.contains("python: \(version) (bytecode magic"), "\(inspect.output)")
        #expect(inspect.stdout.contains("lib/libpython3.\(minor).so.1.0)"))

        // Served over HTTP, the app sees its own version; the console too.
        let probe = try RunningServer(loader: dist + "/probe/_probe")
        defer { _ = probe.stop() }
        #expect(try probe.get("/").text == version)
        #expect(try probe.get("/sys").text == "isolated=1 frozen=True\n" + [dist + "/probe/probe.zip",
            dist + "/probe/lib/python3\(minor).zip", dist + "/probe/lib/lib-dynload"].joined(separator: "\n"))
        let console = try runProcess(dist + "/probe/probe", ["one", "two"])
        #expect(console.stdout == "console \(version) ['one', 'two']\n", "\(console.output)")
        let hello = try RunningServer(loader: dist + "/hello/_hello")
        defer { _ = hello.stop() }
        #expect(try hello.get("/").text == "Hello, world!\n")
        let proxy = try RunningServer(command: dist + "/redirector/_redirector", arguments: ["--listen", "127.0.0.1:0"],
                                      environment: ["FROST_REDIRECTOR_UPSTREAM": "http://127.0.0.1:\(probe.port)"])
        defer { _ = proxy.stop() }
        let proxied = try proxy.get("/through")
        #expect(proxied.status == 200 && proxied.text == version, "\(proxied.status) \(proxied.text)")
        let flask = try RunningServer(loader: dist + "/flask_site/_flask_site")
        defer { _ = flask.stop() }
        let page = try flask.get("/")
        #expect(page.status == 200 && page.text.contains("<h1>Frozen Flask</h1>"), "\(page.status) \(page.text)")
        let selftest = try runProcess(dist + "/flask_site/flask_site", ["selftest"])
        #expect(selftest.status == 0 && selftest.stdout.contains("Flask 3.1.3, frozen by frost"), "\(selftest.output)")

        // Nothing from the build machine's Python: a root with glibc alone runs it.
        let root = scratch.path("root")
        try makeGlibcOnlyRoot(at: root)
        #expect(try runProcess("/bin/cp", ["-a", dist + "/hello", root + "/app/hello"]).status == 0)
        let chrooted = try runProcess("/usr/bin/unshare", ["-m", "/bin/sh", "-c",
            "mount -t proc proc \"$1/proc\" && exec /usr/sbin/chroot \"$1\" /app/hello/_hello --check", "sh", root])
        #expect(chrooted.status == 0, "\(chrooted.output)")
        #expect(chrooted.stdout.contains("python: \(version) (/app/hello/lib/libpython3.\(minor).so.1.0)"))
        #expect(chrooted.stdout.contains("standard library from the bundle's lib/ (/app/hello/lib/python3\(minor).zip"))
    }

    /// A bundle never runs with another version's files: lib/ from another build is
    /// refused with what was found and what the bundle needs.
    @Test func aBundleWithAnotherVersionsLibIsRefused() throws {
        let available = SupportedPythons.minors.compactMap { minor in SupportedPythons.interpreter(minor: minor).map { (minor, $0) } }
        guard available.count >= 2 else {
            print("skipped: needs two Python versions, this machine has \(available.map { "3.\($0.0)" })")
            return
        }
        let (ours, theirs) = (available[available.count - 1], available[0])
        let scratch = ScratchDirectory("swap")
        let hello = Repository.root.appendingPathComponent("Bundles/hello.toml").path
        for (minor, python) in [ours, theirs] {
            #expect(try frostBuild([hello, "--python", python, "--quiet"], dist: scratch.path("3\(minor)")).status == 0)
        }
        let bundle = scratch.path("3\(ours.0)/hello")
        let foreign = scratch.path("3\(theirs.0)/hello/lib")
        let ourVersion = try SupportedPythons.version(of: ours.1)

        // The other build's lib/ as a whole: bundle.json's records name what is missing.
        try FileManager.default.moveItem(atPath: bundle + "/lib", toPath: bundle + "/lib.own")
        try FileManager.default.copyItem(atPath: foreign, toPath: bundle + "/lib")
        let swapped = try runProcess(bundle + "/_hello", ["--check"])
        #expect(swapped.status != 0)
        #expect(swapped.stderr.contains("the bundle does not match \(bundle)/bundle.json: missing: lib/python3\(ours.0).zip"),
                "\(swapped.output)")
        // ... and with this version's standard library put back, the library itself.
        try FileManager.default.copyItem(atPath: bundle + "/lib.own/python3\(ours.0).zip", toPath: bundle + "/lib/python3\(ours.0).zip")
        let withoutLibrary = try runProcess(bundle + "/_hello", ["--check"])
        #expect(withoutLibrary.status != 0)
        #expect(withoutLibrary.stderr.contains("the bundle's Python library \(bundle)/lib/libpython3.\(ours.0).so.1.0 is missing "
                                               + "(bundle.json says Python \(ourVersion)); rebuild the bundle"), "\(withoutLibrary.output)")

        // Their libpython under our name: refused before it is loaded, for not being the file the build put there.
        try FileManager.default.removeItem(atPath: bundle + "/lib")
        try FileManager.default.moveItem(atPath: bundle + "/lib.own", toPath: bundle + "/lib")
        let ourLibrary = bundle + "/lib/libpython3.\(ours.0).so.1.0"
        try FileManager.default.removeItem(atPath: ourLibrary)
        try FileManager.default.copyItem(atPath: foreign + "/libpython3.\(theirs.0).so.1.0", toPath: ourLibrary)
        let renamed = try runProcess(bundle + "/_hello", ["--check"])
        #expect(renamed.status != 0)
        #expect(renamed.stderr.contains("the bundle's Python library \(ourLibrary) is ") && renamed.stderr.contains(
                    "(Python \(ourVersion)): its lib/ comes from another build, or was changed; rebuild the bundle"), "\(renamed.output)")
        #expect(try runProcess(Products.frost, ["verify", bundle]).stdout.contains("lib/libpython3.\(ours.0).so.1.0"))
    }

    @Test func anUnsupportedInterpreterIsAClearError() throws {
        let root = NSHomeDirectory() + "/.pyenv/versions"
        guard let old = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()
            .first(where: { $0.hasPrefix("3.9.") || $0.hasPrefix("3.8.") }) else {
            print("skipped: no Python older than 3.10 under pyenv")
            return
        }
        let python = "\(root)/\(old)/bin/python3"
        let scratch = ScratchDirectory("oldpython")
        let build = try frostBuild([Repository.root.appendingPathComponent("Bundles/hello.toml").path, "--python", python],
                                   dist: scratch.path("dist"))
        #expect(build.status != 0)
        #expect(build.stderr.contains("python = \(python) is cpython \(old); frost freezes with CPython 3.10 to 3.13"),
                "\(build.output)")
        #expect(!FileManager.default.fileExists(atPath: scratch.path("dist/hello")))
    }
}
