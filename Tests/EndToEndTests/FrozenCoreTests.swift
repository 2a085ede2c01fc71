import Foundation
import Testing
import FrostArchive

/// The package the issue describes: sub-modules, a data file, a .dist-info; the entry
/// module reports what it saw as one JSON line.
enum PackageFixture {
    static let entryModule = #"""
    """pkgtest: reports what a frozen module sees."""
    import importlib, importlib.metadata, importlib.resources, inspect, json, os, pkgutil, sys
    from isapi import isapicon
    from isapi.simple import SimpleExtension, SimpleFilter

    import mypkg
    import mypkg.sub.mod
    from mypkg import helper
    import nspkg.part

    seen = {
        "frozen": getattr(sys, "frozen", None),
        "path": sys.path,
        "isolated": sys.flags.isolated,
        "no_site": sys.flags.no_site,
        "site_loaded": "site" in sys.modules,
        "verbose": sys.flags.verbose,
        "pythonpath_env": os.environ.get("PYTHONPATH"),
        "pkg_file": mypkg.__file__,
        "pkg_path": list(mypkg.__path__),
        "pkg_origin": mypkg.__spec__.origin,
        "mod_file": mypkg.sub.mod.__file__,
        "mod_cached": mypkg.sub.mod.__cached__,
        "mod_value": mypkg.sub.mod.VALUE,
        "loader_type": type(mypkg.__loader__).__name__,
        "loader_archive": mypkg.__loader__.archive,
        "helper_file": helper.__file__,
        "helper_relative": helper.from_relative(),
        "helper_source_has_def": "def from_relative" in inspect.getsource(helper),
        "pyc_source": mypkg.__loader__.get_source("mypkg"),
        "resource_text": importlib.resources.files("mypkg").joinpath("data.txt").read_text(),
        "resource_nested": (importlib.resources.files("mypkg") / "templates" / "page.html").read_text(),
        "resource_listing": sorted(p.name for p in importlib.resources.files("mypkg").iterdir()),
        "resource_is_file": importlib.resources.files("mypkg").joinpath("data.txt").is_file(),
        "resource_missing_is_file": importlib.resources.files("mypkg").joinpath("nope.txt").is_file(),
        "resource_binary": list(importlib.resources.files("mypkg").joinpath("blob.bin").read_bytes()),
        "get_data": pkgutil.get_data("mypkg", "data.txt").decode(),
        "metadata_version": importlib.metadata.version("mypkg-dist"),
        "metadata_name": importlib.metadata.metadata("mypkg-dist")["Name"],
        "iter_modules": sorted((m.name, m.ispkg) for m in pkgutil.iter_modules(mypkg.__path__)),
        "iter_top": sorted(m.name for m in pkgutil.iter_modules([sys.path[0]])),
        "namespace_path": list(nspkg.__path__),
        "namespace_value": nspkg.part.PART,
        "constant": isapicon.HSE_STATUS_PENDING,
    }
    print("OBSERVED " + json.dumps(seen), flush=True)

    class Extension(SimpleExtension):
        "pkgtest extension"

    class Filter(SimpleFilter):
        "pkgtest filter"
        filter_flags = isapicon.SF_NOTIFY_PREPROC_HEADERS | isapicon.SF_NOTIFY_LOG | isapicon.SF_NOTIFY_ORDER_HIGH

        def TerminateFilter(self, status):
            print("TERMINATE_FILTER", status, flush=True)

    def __ExtensionFactory__():
        return Extension()

    def __FilterFactory__():
        return Filter()

    if __name__ == "__main__":
        print("MAIN", sys.argv[1:], flush=True)
        raise SystemExit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    """#

    static let compiledSources: [String: String] = [
        "pkgtest.py": entryModule,
        "mypkg/__init__.py": "\"\"\"mypkg docstring\"\"\"\nfrom . import sub\n",
        "mypkg/sub/__init__.py": "",
        "mypkg/sub/mod.py": "VALUE = 'sub-module value'\n",
    ]

    static let textEntries: [String: String] = [
        "mypkg/helper.py": "from .sub import mod\n\ndef from_relative():\n    return mod.VALUE.upper()\n",
        "mypkg/data.txt": "data file contents\n",
        "mypkg/templates/page.html": "<p>page</p>\n",
        "mypkg_dist-1.2.3.dist-info/METADATA": "Metadata-Version: 2.1\nName: mypkg-dist\nVersion: 1.2.3\n",
        "mypkg_dist-1.2.3.dist-info/RECORD": "mypkg/__init__.py,,\n",
        "nspkg/part.py": "PART = 'namespace portion'\n",
    ]

    static func build(in scratch: ScratchDirectory, name: String = "pkgtest") throws -> String {
        var sources = compiledSources
        sources["\(name).py"] = sources.removeValue(forKey: "pkgtest.py")
        let compiled = try compileToBytecode(sources)
        var binary = compiled
        binary["mypkg/blob.bin"] = [0, 1, 2, 255]
        return try makeBundle(in: scratch, name: name, files: textEntries, binary: binary)
    }

    static func observed(_ output: String) throws -> [String: Any] {
        let line = try #require(output.split(separator: "\n").first { $0.hasPrefix("OBSERVED ") })
        let json = Data(line.dropFirst("OBSERVED ".count).utf8)
        return try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
    }
}

@Suite struct FrozenCoreEndToEndTests {
    @Test func packageInArchiveImportsWithFilesResourcesAndMetadata() throws {
        let scratch = ScratchDirectory("pkgtest")
        let loader = try PackageFixture.build(in: scratch)
        let archive = scratch.path("pkgtest.zip")
        let result = try runProcess(loader, ["--check"], environment: [
            "PYTHONPATH": "/frost-bogus-pythonpath", "PYTHONHOME": "/frost-bogus-home",
            "PYTHONVERBOSE": "1", "PYTHONSTARTUP": "/frost-bogus-startup.py", "PYTHONNOUSERSITE": "",
        ])
        #expect(result.status == 0, "\(result.output)")
        let seen = try PackageFixture.observed(result.stdout)

        #expect(seen["frozen"] as? Bool == true)
        #expect(seen["isolated"] as? Int == 1)
        #expect(seen["no_site"] as? Int == 1)
        #expect(seen["site_loaded"] as? Bool == false)
        #expect(seen["verbose"] as? Int == 0)
        #expect(seen["pythonpath_env"] as? String == "/frost-bogus-pythonpath")
        let path = try #require(seen["path"] as? [String])
        #expect(path.first == archive)
        #expect(!path.contains { $0.contains("frost-bogus") })
        #expect(!path.contains { $0.contains("site-packages") || $0.contains("dist-packages") })

        #expect(seen["pkg_file"] as? String == archive + "/mypkg/__init__.pyc")
        #expect(seen["pkg_origin"] as? String == archive + "/mypkg/__init__.pyc")
        #expect(seen["pkg_path"] as? [String] == [archive + "/mypkg"])
        #expect(seen["mod_file"] as? String == archive + "/mypkg/sub/mod.pyc")
        #expect(seen["mod_cached"] as? String == archive + "/mypkg/sub/mod.pyc")
        #expect(seen["mod_value"] as? String == "sub-module value")
        #expect(seen["loader_type"] as? String == "ArchiveImporter")
        #expect(seen["loader_archive"] as? String == archive)
        #expect(seen["helper_file"] as? String == archive + "/mypkg/helper.py")
        #expect(seen["helper_relative"] as? String == "SUB-MODULE VALUE")
        #expect(seen["helper_source_has_def"] as? Bool == true)
        #expect(seen["pyc_source"] is NSNull)

        #expect(seen["resource_text"] as? String == "data file contents\n")
        #expect(seen["resource_nested"] as? String == "<p>page</p>\n")
        #expect(seen["resource_listing"] as? [String] == ["__init__.pyc", "blob.bin", "data.txt", "helper.py", "sub", "templates"])
        #expect(seen["resource_is_file"] as? Bool == true)
        #expect(seen["resource_missing_is_file"] as? Bool == false)
        #expect(seen["resource_binary"] as? [Int] == [0, 1, 2, 255])
        #expect(seen["get_data"] as? String == "data file contents\n")
        #expect(seen["metadata_version"] as? String == "1.2.3")
        #expect(seen["metadata_name"] as? String == "mypkg-dist")
        let modules = try #require(seen["iter_modules"] as? [[Any]])
        #expect(modules.map { "\($0[0]):\($0[1])" } == ["helper:0", "sub:1"])
        let top = try #require(seen["iter_top"] as? [String])
        #expect(top.contains("mypkg") && top.contains("pkgtest") && top.contains("isapi"))
        #expect(seen["namespace_path"] as? [String] == [archive + "/nspkg"])
        #expect(seen["namespace_value"] as? String == "namespace portion")
        #expect(seen["constant"] as? Int == 3)

        #expect(result.stdout.contains("bundle: \(scratch.path) (loader _pkgtest, module pkgtest)"))
        #expect(result.stdout.contains("standard library from the system Python, for development"))
        #expect(result.stdout.contains("module: pkgtest from \(archive)/pkgtest.pyc"))
        #expect(result.stdout.contains("extension: pkgtest extension"))
        #expect(result.stdout.contains("filter: pkgtest filter; flags 0x84200 (SF_NOTIFY_PREPROC_HEADERS|SF_NOTIFY_LOG|SF_NOTIFY_ORDER_HIGH)"))
        #expect(result.stdout.contains("TERMINATE_FILTER 2"))
        #expect(result.stdout.contains("terminated: extension, filter"))
        #expect(result.stdout.hasSuffix("check: ok\n"))
        #expect(result.stderr.isEmpty, "\(result.stderr)")
    }

    @Test func renamedLoaderLoadsTheModuleNamedAfterIt() throws {
        let scratch = ScratchDirectory("rename")
        _ = try PackageFixture.build(in: scratch, name: "other")
        let result = try runProcess(scratch.path("_other"), ["--check"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.stdout.contains("module: other from \(scratch.path)/other.zip/other.pyc"))
    }

    @Test func archiveAppendedToTheLoaderIsFound() throws {
        let scratch = ScratchDirectory("appended")
        let loader = try PackageFixture.build(in: scratch)
        // Move the archive into the executable itself.
        let appended = try runProcess(Products.frost, ["archive", "list", scratch.path("pkgtest.zip")])
        #expect(appended.status == 0)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: scratch.path("pkgtest.zip")))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: loader))
        try handle.seekToEnd()
        try handle.write(contentsOf: bytes)
        try handle.close()
        try FileManager.default.removeItem(atPath: scratch.path("pkgtest.zip"))
        let result = try runProcess(loader, ["--check"])
        #expect(result.status == 0, "\(result.output)")
        let seen = try PackageFixture.observed(result.stdout)
        #expect(seen["pkg_file"] as? String == loader + "/mypkg/__init__.pyc")
        #expect(seen["resource_text"] as? String == "data file contents\n")
        #expect(seen["metadata_version"] as? String == "1.2.3")
    }

    @Test func consoleRunsTheModuleAsMainWithItsArguments() throws {
        let scratch = ScratchDirectory("console")
        _ = try PackageFixture.build(in: scratch)
        let console = scratch.path("pkgtest")
        try FileManager.default.copyItem(atPath: Products.stub, toPath: console)
        let result = try runProcess(console, ["7", "extra"])
        #expect(result.status == 7, "\(result.output)")
        #expect(result.stdout.contains("MAIN ['7', 'extra']"))
        let ok = try runProcess(console, [])
        #expect(ok.status == 0, "\(ok.output)")
    }

    @Test func bundleStandardLibraryIsUsedWhenLibIsPresent() throws {
        let scratch = ScratchDirectory("stdlib")
        let loader = try PackageFixture.build(in: scratch)
        // A bundle lib/: the linked Python's pure-Python standard library as sources in
        // python3XY.zip, and its lib-dynload.
        let lib = scratch.url.appendingPathComponent("lib")
        try FileManager.default.createDirectory(at: lib, withIntermediateDirectories: true)
        let info = try runProcess("/usr/bin/python3", ["-I", "-c",
            "import sys, sysconfig; print(f'{sys.version_info[0]}{sys.version_info[1]}'); print(sysconfig.get_path('stdlib'))"])
        let lines = info.stdout.split(separator: "\n").map(String.init)
        let (version, stdlibDirectory) = (lines[0], lines[1])
        var writer = ZipWriter(defaultCompression: .stored)
        let enumerator = FileManager.default.enumerator(atPath: stdlibDirectory)!
        while let relative = enumerator.nextObject() as? String {
            let top = relative.split(separator: "/").first.map(String.init) ?? ""
            if ["test", "idlelib", "tkinter", "lib2to3", "ensurepip", "site-packages", "dist-packages",
                "lib-dynload", "turtledemo", "__pycache__", "config-\(version.prefix(1)).\(version.dropFirst())-x86_64-linux-gnu"].contains(top) {
                continue
            }
            guard relative.hasSuffix(".py"), !relative.contains("__pycache__") else { continue }
            try writer.add(relative, contents: [UInt8](try Data(contentsOf: URL(fileURLWithPath: stdlibDirectory + "/" + relative))))
        }
        try writer.write(to: lib.appendingPathComponent("python\(version).zip").path)
        try FileManager.default.createSymbolicLink(atPath: lib.appendingPathComponent("lib-dynload").path,
                                                   withDestinationPath: stdlibDirectory + "/lib-dynload")
        let result = try runProcess(loader, ["--check"])
        #expect(result.status == 0, "\(result.output)")
        let seen = try PackageFixture.observed(result.stdout)
        #expect(seen["path"] as? [String] == [scratch.path("pkgtest.zip"), lib.path + "/python\(version).zip", lib.path + "/lib-dynload"])
        #expect(result.stdout.contains("standard library from the bundle's lib/"))
        #expect(seen["metadata_version"] as? String == "1.2.3")
    }
}

@Suite struct LoaderFailureTests {
    func bundle(_ name: String, _ files: [String: String], compiled: [String: String] = [:],
                binary: [String: [UInt8]] = [:]) throws -> (ScratchDirectory, String) {
        let scratch = ScratchDirectory("fail-\(name)")
        var all = binary
        all.merge(try compileToBytecode(compiled)) { a, _ in a }
        let loader = try makeBundle(in: scratch, name: name, files: files, binary: all)
        return (scratch, loader)
    }

    func expectFailure(_ loader: String, _ message: String, traceback: String? = nil,
                       status: Int32 = 1, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try runProcess(loader, ["--check"])
        #expect(result.status == status, "\(result.output)", sourceLocation: sourceLocation)
        let name = URL(fileURLWithPath: loader).lastPathComponent
        let firstErrorLine = result.stderr.split(separator: "\n").first.map(String.init) ?? ""
        #expect(firstErrorLine == "\(name): error: \(message)", sourceLocation: sourceLocation)
        if let traceback {
            #expect(result.stderr.contains("Traceback (most recent call last):"), sourceLocation: sourceLocation)
            #expect(result.stderr.contains(traceback), "\(result.stderr)", sourceLocation: sourceLocation)
        } else {
            #expect(!result.stderr.contains("Traceback"), "\(result.stderr)", sourceLocation: sourceLocation)
        }
        #expect(!result.output.contains("Program crashed"), sourceLocation: sourceLocation)
    }

    @Test func noArchive() throws {
        let scratch = ScratchDirectory("fail-none")
        let loader = scratch.path("_lonely")
        try FileManager.default.copyItem(atPath: Products.stub, toPath: loader)
        try expectFailure(loader, "no archive: neither \(scratch.path)/lonely.zip exists nor is one appended to \(loader)")
    }

    @Test func noSuchModule() throws {
        let (scratch, loader) = try bundle("ghost", ["other.py": "X = 1\n"])
        try expectFailure(loader, "module 'ghost' not found in \(scratch.path)/ghost.zip")
    }

    @Test func noFactory() throws {
        let (scratch, loader) = try bundle("plain", ["plain.py": "X = 1\n"])
        try expectFailure(loader, "module 'plain' (\(scratch.path)/plain.zip/plain.py) defines neither __ExtensionFactory__() nor __FilterFactory__()")
    }

    @Test func factoryRaises() throws {
        let (scratch, loader) = try bundle("badfactory", ["badfactory.py": """
            def __ExtensionFactory__():
                raise RuntimeError("factory failed")
            """])
        try expectFailure(loader, "badfactory.__ExtensionFactory__() raised RuntimeError: factory failed",
                          traceback: "badfactory.py\", line 2, in __ExtensionFactory__")
        withExtendedLifetime(scratch) {}
    }

    @Test func versionRaises() throws {
        let (scratch, loader) = try bundle("badversion", ["badversion.py": """
            from isapi.simple import SimpleFilter
            class F(SimpleFilter):
                "no flags set"
            def __FilterFactory__():
                return F()
            """])
        try expectFailure(loader, "GetFilterVersion of badversion's filter raised RuntimeError: You must specify the filter flags",
                          traceback: "in GetFilterVersion")
        withExtendedLifetime(scratch) {}
    }

    @Test func badMagicNumber() throws {
        var compiled = try compileToBytecode(["oldmagic.py": "def __ExtensionFactory__(): pass\n"])
        var pyc = try #require(compiled["oldmagic.pyc"])
        pyc[0] = 0x0d; pyc[1] = 0x0d  // Python 3.7's magic is 3394 = 0x0d42; any other value will do
        compiled["oldmagic.pyc"] = pyc
        let (scratch, loader) = try bundle("oldmagic", [:], binary: compiled)
        let result = try runProcess(loader, ["--check"])
        #expect(result.status == 1)
        let first = result.stderr.split(separator: "\n").first.map(String.init) ?? ""
        #expect(first.hasPrefix("_oldmagic: error: importing module 'oldmagic' from \(scratch.path)/oldmagic.zip failed: ImportError: bad magic number in \(scratch.path)/oldmagic.zip/oldmagic.pyc: it was compiled for another Python"), "\(first)")
        #expect(first.contains("but this loader runs Python 3.") && first.contains("rebuild the bundle with that interpreter"))
    }

    @Test func importErrorInsideTheModule() throws {
        let (scratch, loader) = try bundle("needsdep", ["needsdep.py": "import requests_not_bundled\n"])
        try expectFailure(loader, "importing module 'needsdep' from \(scratch.path)/needsdep.zip failed: ModuleNotFoundError: No module named 'requests_not_bundled'",
                          traceback: "needsdep.py\", line 1, in <module>")
    }

    @Test func hostileArchiveIsRefusedBeforePythonStarts() throws {
        let scratch = ScratchDirectory("fail-hostile")
        // Our writer refuses '..'; forge the name by patching bytes of a valid archive.
        var writer = ZipWriter(defaultCompression: .stored)
        try writer.add("xx/evil.py", text: "X = 1\n")
        var bytes = try writer.bytes()
        let name = Array("xx/evil.py".utf8), forged = Array("../evil.py".utf8)
        var i = 0
        while i + name.count <= bytes.count {
            if Array(bytes[i..<(i + name.count)]) == name { bytes.replaceSubrange(i..<(i + name.count), with: forged) }
            i += 1
        }
        try Data(bytes).write(to: URL(fileURLWithPath: scratch.path("hostile.zip")))
        let loader = scratch.path("_hostile")
        try FileManager.default.copyItem(atPath: Products.stub, toPath: loader)
        try expectFailure(loader, "cannot mount the bundle archive: archive \(scratch.path)/hostile.zip: entry '../evil.py': '..' component escapes the archive")
    }

    @Test func usageErrors() throws {
        let scratch = ScratchDirectory("usage")
        let loader = scratch.path("_x")
        try FileManager.default.copyItem(atPath: Products.stub, toPath: loader)
        let unknown = try runProcess(loader, ["--frobnicate"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.hasPrefix("_x: unknown option '--frobnicate'"))
        let badName = try runProcess(loader, ["--check", "--module", "not-a-module"])
        #expect(badName.status == 2)
        #expect(badName.stderr.contains("'not-a-module' is not a valid Python module name"))
        let help = try runProcess(loader, ["--help"])
        #expect(help.status == 0 && help.stdout.contains("--check"))
        // The help comes from the options table: every public option, no internal one.
        for option in ["--listen ADDR", "--max-requests-jitter J", "--lingering-timeout S", "--trusted-proxy ADDR", "--timings"] {
            #expect(help.stdout.contains("\n  \(option)"), "\(option)")
        }
        #expect(!help.stdout.contains("--worker-control") && !help.stdout.contains("--connection-board"))
        let missingValue = try runProcess(loader, ["--threads"])
        #expect(missingValue.status == 2 && missingValue.stderr.hasPrefix("_x: --threads needs a value (N)"))
        let flagWithValue = try runProcess(loader, ["--debug=yes"])
        #expect(flagWithValue.status == 2 && flagWithValue.stderr.hasPrefix("_x: --debug takes no value"))
        let badNumber = try runProcess(loader, ["--max-body=0"])
        #expect(badNumber.status == 2 && badNumber.stderr.hasPrefix("_x: --max-body needs a positive number"))
        let badBudget = try runProcess(loader, ["--inline-budget", "0"])
        #expect(badBudget.status == 2 && badBudget.stderr.hasPrefix("_x: --inline-budget needs a number of milliseconds above 0"))
        #expect(help.stdout.contains("\n  --no-inline") && help.stdout.contains("\n  --inline-budget MS"))
        let badPoll = try runProcess(loader, ["--busy-poll", "-5"])
        #expect(badPoll.status == 2 && badPoll.stderr.hasPrefix("_x: --busy-poll needs a number of microseconds from 0 to 10000"))
        #expect(help.stdout.contains("\n  --busy-poll US"))
    }
}

@Suite struct ArchiveCommandTests {
    @Test func createArchivesRegularFilesAndRefusesLinks() throws {
        let scratch = ScratchDirectory("archive-create")
        let source = scratch.path("src")
        try FileManager.default.createDirectory(atPath: source + "/pkg", withIntermediateDirectories: true)
        try "X = 1\n".write(toFile: source + "/pkg/__init__.py", atomically: true, encoding: .utf8)
        try "data".write(toFile: source + "/top.txt", atomically: true, encoding: .utf8)
        let created = try runProcess(Products.frost, ["archive", "create", source, "-o", scratch.path("a.zip")])
        #expect(created.status == 0, "\(created.output)")
        #expect(created.stdout == "wrote \(scratch.path("a.zip")): 2 entries\n")
        let listed = try runProcess(Products.frost, ["archive", "list", scratch.path("a.zip")])
        #expect(listed.stdout.contains(" pkg/__init__.py\n") && listed.stdout.contains(" top.txt\n"))

        try FileManager.default.createSymbolicLink(atPath: source + "/link.txt", withDestinationPath: "/etc/passwd")
        let refused = try runProcess(Products.frost, ["archive", "create", source, "-o", scratch.path("b.zip")])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("\(source)/link.txt: symbolic links are not archived; copy the file instead"))
        #expect(!FileManager.default.fileExists(atPath: scratch.path("b.zip")))
        let notDirectory = try runProcess(Products.frost, ["archive", "create", source + "/top.txt", "-o", scratch.path("c.zip")])
        #expect(notDirectory.stderr.contains("\(source)/top.txt: not a directory"))
    }
}
