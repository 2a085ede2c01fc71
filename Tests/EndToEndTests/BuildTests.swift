import Foundation
import Testing
import FrostBundle
import FrostSystem

/// A bytecode/venv cache shared by the build tests (and kept between runs: everything in
/// it is keyed by content and venv creation is locked), and private ones where a test
/// needs to prove independence from the cache.
enum BuildCache {
    static let shared = NSTemporaryDirectory() + "frost-test-cache"
}

struct Build {
    let result: ProcessResult
    let dist: String
    let name: String
    var bundle: String { dist + "/" + name }
}

/// Runs `frost build` with the stub built beside the tests.
func frostBuild(_ arguments: [String], dist: String, cache: String = BuildCache.shared,
                currentDirectory: String? = nil) throws -> ProcessResult {
    try runProcess(Products.frost, ["build"] + arguments + ["--dist", dist, "--stub", Products.stub],
                   environment: ["FROST_CACHE": cache, "HOME": NSTemporaryDirectory()], timeout: 300)
}

func specs() throws -> [String] {
    let directory = Repository.root.appendingPathComponent("Bundles").path
    return try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".toml") }.sorted()
        .map { directory + "/" + $0 }
}

/// glibc's own files, as Debian's libc6 package installs them: the dynamic linker and
/// glibc's libraries (libc, libm, libpthread, libdl, librt, ...), nothing else.
func makeGlibcOnlyRoot(at root: String) throws {
    let fm = FileManager.default
    for directory in ["lib/x86_64-linux-gnu", "lib64", "proc", "app"] {
        try fm.createDirectory(atPath: root + "/" + directory, withIntermediateDirectories: true)
    }
    // The real files, not the symbolic links that name them on the host.
    func copyResolved(_ source: String, _ target: String) throws {
        try fm.copyItem(atPath: URL(fileURLWithPath: source).resolvingSymlinksInPath().path, toPath: root + "/" + target)
    }
    for library in glibcLibraries() {
        try copyResolved("/lib/x86_64-linux-gnu/" + library, "lib/x86_64-linux-gnu/" + library)
    }
    try copyResolved("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2")
}

/// The shared libraries of the libc6 package (from dpkg's list of its files).
func glibcLibraries() -> [String] {
    let list = (try? String(contentsOfFile: "/var/lib/dpkg/info/libc6:amd64.list", encoding: .utf8)) ?? ""
    let names = list.split(separator: "\n").filter { $0.hasPrefix("/lib/x86_64-linux-gnu/") && $0.contains(".so") }
        .map { String($0.split(separator: "/").last!) }
    return names.isEmpty ? ["libc.so.6", "libm.so.6"] : names.sorted()
}

@Suite(.serialized) struct BuildEndToEndTests {
    @Test func everyBundleSpecBuildsAndChecks() throws {
        let scratch = ScratchDirectory("bundles")
        let all = try specs()
        #expect(!all.isEmpty)
        for spec in all {
            let result = try frostBuild([spec, "--quiet"], dist: scratch.path)
            #expect(result.status == 0, "\(spec): \(result.output)")
            let name = URL(fileURLWithPath: spec).deletingPathExtension().lastPathComponent
            let check = try runProcess(scratch.path("\(name)/_\(name)"), ["--check"])
            #expect(check.status == 0, "\(name): \(check.output)")
            #expect(check.stdout.contains("standard library from the bundle's lib/"))
            #expect(check.stdout.contains("manifest: archives match bundle.json"))
            #expect(check.stdout.hasSuffix("check: ok\n"))
        }
    }

    @Test func helloBundleHasTheDesignedLayout() throws {
        let scratch = ScratchDirectory("layout")
        let result = try frostBuild([Repository.root.appendingPathComponent("Bundles/hello.toml").path, "--json"],
                                    dist: scratch.path)
        #expect(result.status == 0, "\(result.output)")
        let report = try JSON.parse(result.stdout)
        #expect(report["name"]?.string == "hello")
        #expect(report["up_to_date"]?.bool == false)
        #expect((report["modules"]?["app"]?.int ?? 0) == 1)
        #expect((50...120).contains(report["modules"]?["stdlib"]?.int ?? 0), "only what hello imports")
        let bundle = scratch.path("hello")
        let fm = FileManager.default
        for file in ["_hello", "hello", "hello.zip", "bundle.json", "lib/python311.zip", "lib/libpython3.11.so.1.0",
                     "lib/lib-dynload"] {
            #expect(fm.fileExists(atPath: bundle + "/" + file), "\(file)")
        }
        for glibc in ["libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2"] {
            #expect(!fm.fileExists(atPath: bundle + "/lib/" + glibc))
        }
        let manifest = try #require(try BundleManifest.load(bundleDirectory: bundle))
        #expect(manifest.entry == "hello")
        #expect(manifest.pythonVersion.hasPrefix("3.11"))
        #expect(manifest.archives["hello.zip"]?["hello.pyc"] != nil)
        #expect(manifest.archives["hello.zip"]?["isapi/simple.pyc"] != nil)
        #expect(manifest.archives["lib/python311.zip"]?["encodings/utf_8.pyc"] != nil)
        #expect(manifest.archives["lib/python311.zip"]?["tkinter/__init__.pyc"] == nil)
        let inspect = try runProcess(Products.frost, ["inspect", bundle])
        #expect(inspect.status == 0)
        #expect(inspect.stdout.contains("bundle: hello (entry module hello)"))
        #expect(inspect.stdout.contains("archive python311.zip:"))
        let verify = try runProcess(Products.frost, ["verify", bundle])
        #expect(verify.status == 0, "\(verify.output)")
        #expect(verify.stdout.hasPrefix("ok: "))
    }

    @Test func twoBuildsAreByteIdenticalWhateverTheCache() throws {
        let first = ScratchDirectory("repro-a"), second = ScratchDirectory("repro-b")
        let cacheA = ScratchDirectory("cache-a"), cacheB = ScratchDirectory("cache-b")
        let spec = Repository.root.appendingPathComponent("Bundles/hello.toml").path
        #expect(try frostBuild([spec, "--quiet"], dist: first.path, cache: cacheA.path).status == 0)
        // The second cache is warmed by an unrelated build first, so bytecode comes from a
        // process that compiled other things before.
        let other = ScratchDirectory("repro-other")
        try "import json, csv\nprint(json, csv)\n".write(toFile: other.path("other.py"), atomically: true, encoding: .utf8)
        #expect(try frostBuild([other.path("other.py"), "--quiet"], dist: other.path("dist"), cache: cacheB.path).status == 0)
        #expect(try frostBuild([spec, "--quiet"], dist: second.path, cache: cacheB.path).status == 0)
        let files = try FileSystem.listFiles(below: first.path("hello")).map(\.path)
        #expect(try FileSystem.listFiles(below: second.path("hello")).map(\.path) == files)
        for file in files {
            let a = try Data(contentsOf: URL(fileURLWithPath: first.path("hello/" + file)))
            let b = try Data(contentsOf: URL(fileURLWithPath: second.path("hello/" + file)))
            #expect(a == b, "\(file) differs")
        }
    }

    @Test func secondBuildWithNothingChangedIsUpToDate() throws {
        let scratch = ScratchDirectory("incremental")
        try "import helper\nfrom isapi.simple import SimpleExtension\ndef __ExtensionFactory__():\n    return SimpleExtension()\n"
            .write(toFile: scratch.path("inc.py"), atomically: true, encoding: .utf8)
        try "VALUE = 1\n".write(toFile: scratch.path("helper.py"), atomically: true, encoding: .utf8)
        let dist = scratch.path("dist")
        let first = try frostBuild([scratch.path("inc.py"), "--json"], dist: dist)
        #expect(first.status == 0, "\(first.output)")
        #expect(try JSON.parse(first.stdout)["up_to_date"]?.bool == false)
        let second = try frostBuild([scratch.path("inc.py"), "--json"], dist: dist)
        let report = try JSON.parse(second.stdout)
        #expect(report["up_to_date"]?.bool == true)
        #expect((report["seconds"]?.double ?? 99) < 5)
        // A changed module is rebuilt.
        try "VALUE = 2\n".write(toFile: scratch.path("helper.py"), atomically: true, encoding: .utf8)
        let third = try frostBuild([scratch.path("inc.py"), "--json"], dist: dist)
        #expect(try JSON.parse(third.stdout)["up_to_date"]?.bool == false)
        // So is a bundle damaged since.
        try Data("junk".utf8).write(to: URL(fileURLWithPath: dist + "/inc/inc.zip"))
        let fourth = try frostBuild([scratch.path("inc.py"), "--json"], dist: dist)
        #expect(try JSON.parse(fourth.stdout)["up_to_date"]?.bool == false)
        #expect(try runProcess(dist + "/inc/_inc", ["--check"]).status == 0)
    }

    @Test func deployedIntoAGlibcOnlyRootItRuns() throws {
        let scratch = ScratchDirectory("chroot")
        #expect(try frostBuild([Repository.root.appendingPathComponent("Bundles/hello.toml").path, "--quiet"],
                               dist: scratch.path("dist")).status == 0)
        let root = scratch.path("root")
        try makeGlibcOnlyRoot(at: root)
        let copy = try runProcess("/bin/cp", ["-a", scratch.path("dist/hello"), root + "/app/hello"])
        #expect(copy.status == 0)
        // Every file of the root is glibc's or the bundle's.
        let outside = try FileSystem.listFiles(below: root).map(\.path).filter { !$0.hasPrefix("app/") }
        #expect(Set(outside) == Set(glibcLibraries().map { "lib/x86_64-linux-gnu/" + $0 } + ["lib64/ld-linux-x86-64.so.2"]))
        #expect(outside.contains("lib/x86_64-linux-gnu/libc.so.6"))
        // /proc as in any container (the dynamic linker expands $ORIGIN through it), in a
        // private mount namespace that goes away with the process.
        let result = try runProcess("/usr/bin/unshare", ["-m", "/bin/sh", "-c",
            "mount -t proc proc \"$1/proc\" && exec /usr/sbin/chroot \"$1\" /app/hello/_hello --check", "sh", root])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.stdout.contains("bundle: /app/hello (loader _hello, module hello)"))
        #expect(result.stdout.contains("standard library from the bundle's lib/ (/app/hello/lib/python311.zip"))
        #expect(result.stdout.hasSuffix("check: ok\n"))
    }

    @Test func runsWithTheSystemPythonMasked() throws {
        let scratch = ScratchDirectory("masked")
        #expect(try frostBuild([Repository.root.appendingPathComponent("Bundles/hello.toml").path, "--quiet"],
                               dist: scratch.path).status == 0)
        let script = """
            mount -t tmpfs tmpfs /usr/lib/python3.11 && \
            mount --bind /dev/null /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0 && \
            if /usr/bin/python3 -c pass 2>/dev/null; then echo "SYSTEM PYTHON STILL WORKS"; exit 3; fi && \
            exec "$1" --check
            """
        let result = try runProcess("/usr/bin/unshare", ["-m", "/bin/sh", "-c", script, "sh", scratch.path("hello/_hello")])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.stdout.hasSuffix("check: ok\n"))
    }

    @Test func verifyCatchesFlippedBytesAndTheLoaderRefuses() throws {
        let scratch = ScratchDirectory("flip")
        #expect(try frostBuild([Repository.root.appendingPathComponent("Bundles/hello.toml").path, "--quiet"],
                               dist: scratch.path).status == 0)
        let bundle = scratch.path("hello")
        func flip(_ file: String, at offset: UInt64) throws {
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: bundle + "/" + file))
            try handle.seek(toOffset: offset)
            let byte = try handle.read(upToCount: 1)![0]
            try handle.seek(toOffset: offset)
            try handle.write(contentsOf: Data([byte ^ 0xFF]))
            try handle.close()
        }
        try flip("lib/libpython3.11.so.1.0", at: 5000)
        let libFlip = try runProcess(Products.frost, ["verify", bundle])
        #expect(libFlip.status == 1)
        #expect(libFlip.stdout.contains("changed: lib/libpython3.11.so.1.0 (SHA-256 differs)"))
        try flip("lib/libpython3.11.so.1.0", at: 5000)  // back
        #expect(try runProcess(Products.frost, ["verify", bundle]).status == 0)

        try flip("hello.zip", at: 40)
        let archiveFlip = try runProcess(Products.frost, ["verify", bundle])
        #expect(archiveFlip.status == 1)
        #expect(archiveFlip.stdout.contains("changed: hello.zip (SHA-256 differs)"))
        let loader = try runProcess(bundle + "/_hello", ["--check"])
        #expect(loader.status == 1)
        #expect(loader.stderr.hasPrefix("_hello: error: the bundle does not match \(bundle)/bundle.json: changed: hello.zip (SHA-256 differs)"))
    }

    @Test func specErrorsExitTwoAndWriteNothing() throws {
        let scratch = ScratchDirectory("specerr")
        let spec = scratch.path("bad.toml")
        try "script = \"app.py\"\nworkers = -3\n".write(toFile: spec, atomically: true, encoding: .utf8)
        try "print(1)\n".write(toFile: scratch.path("app.py"), atomically: true, encoding: .utf8)
        let result = try frostBuild([spec], dist: scratch.path("dist"))
        #expect(result.status == 2)
        #expect(result.stderr.hasPrefix("frost: error: \(spec):2: key 'workers': must be between 0 and 1024"))
        #expect(!FileManager.default.fileExists(atPath: scratch.path("dist")))
        let unknown = try frostBuild([scratch.path("nothing.toml")], dist: scratch.path("dist"))
        #expect(unknown.status == 2)
        #expect(!FileManager.default.fileExists(atPath: scratch.path("dist")))
    }

    /// Every command reports a failure as one `frost: error:` line naming the file, with
    /// 2 for bad input and 1 for a failure, whichever library the error came from.
    @Test func everyCommandReportsFailuresAsOneLineWithItsExitStatus() throws {
        let scratch = ScratchDirectory("errors")
        let notZip = scratch.path("not.zip")
        try "hello".write(toFile: notZip, atomically: true, encoding: .utf8)
        try "print(1)\n".write(toFile: scratch.path("app.py"), atomically: true, encoding: .utf8)
        let cases: [(arguments: [String], status: Int32, message: String)] = [
            (["inspect", scratch.path("absent")], 2, "\(scratch.path("absent")): no such file or directory"),
            (["verify", scratch.path]   , 2, "\(scratch.path): no bundle.json"),
            (["run", scratch.path], 2, "\(scratch.path) is not a bundle (no bundle.json)"),
            (["archive", "list", notZip], 1, "archive \(notZip): "),
            (["archive", "create", notZip, "-o", scratch.path("x.zip")], 2, "\(notZip): not a directory"),
            (["image", scratch.path, "-o", scratch.path("x.tar")], 1, "\(scratch.path): not a bundle"),
            (["build", scratch.path("app.py"), "--quiet", "--dist", scratch.path("dist"), "--stub", scratch.path("no-stub")], 1,
             "no loader at \(scratch.path("no-stub"))"),
            (["build", scratch.path("app.py"), "--report", scratch.path("r.txt")], 2, "r.txt"),
            (["init", scratch.path("missing.py")], 2, "\(scratch.path("missing.py")): not an existing .py file"),
        ]
        for (arguments, status, message) in cases {
            let result = try runProcess(Products.frost, arguments, environment: ["FROST_CACHE": BuildCache.shared])
            #expect(result.status == status, "frost \(arguments.joined(separator: " ")): \(result.output)")
            #expect(result.stderr.hasPrefix("frost: error: ") && result.stderr.contains(message),
                    "frost \(arguments.joined(separator: " ")): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "one line: \(result.stderr)")
        }
    }

    @Test func helpIsPrintedWithExitStatusZero() throws {
        // ArgumentParser's help command throws once it has printed; that is not a failure.
        for arguments in [["--help"], ["build", "--help"], ["help", "build"], ["image", "-h"]] {
            let result = try runProcess(Products.frost, arguments)
            #expect(result.status == 0, "frost \(arguments.joined(separator: " ")): \(result.output)")
            #expect(result.stdout.contains("USAGE: frost"), "frost \(arguments.joined(separator: " ")): \(result.stdout)")
            #expect(!result.stderr.contains("error"), "frost \(arguments.joined(separator: " ")): \(result.stderr)")
        }
    }

    @Test func unresolvableAndDynamicImportsAreWarnedWithFileAndLine() throws {
        let scratch = ScratchDirectory("warn")
        try """
            import importlib
            from isapi.simple import SimpleExtension

            try:
                import frost_no_such_module
            except ImportError:
                frost_no_such_module = None

            def load(name):
                return importlib.import_module(name)

            def __ExtensionFactory__():
                return SimpleExtension()
            """.write(toFile: scratch.path("warned.py"), atomically: true, encoding: .utf8)
        let result = try frostBuild([scratch.path("warned.py")], dist: scratch.path("dist"))
        #expect(result.status == 0, "\(result.output)")
        let script = URL(fileURLWithPath: scratch.path("warned.py")).resolvingSymlinksInPath().path
        #expect(result.stderr.contains("warning: \(script):5: module frost_no_such_module not found"), "\(result.stderr)")
        #expect(result.stderr.contains("warning: \(script):10: import_module() with a computed name"), "\(result.stderr)")
        #expect(result.stdout.contains("2 warnings"))
        #expect(try runProcess(scratch.path("dist/warned/_warned"), ["--check"]).status == 0)
    }
}

@Suite struct WhyTests {
    /// `frost inspect --why` names every hop from the entry module, with file and line.
    @Test func whyShowsTheImportChainWithFilesAndLines() throws {
        let scratch = ScratchDirectory("why")
        try "\"\"\"entry\"\"\"\nimport first\n".write(toFile: scratch.path("chain.py"), atomically: true, encoding: .utf8)
        try "X = 1\n\nimport second\n".write(toFile: scratch.path("first.py"), atomically: true, encoding: .utf8)
        try "import colorsys\n".write(toFile: scratch.path("second.py"), atomically: true, encoding: .utf8)
        let build = try frostBuild([scratch.path("chain.py")], dist: scratch.path("dist"))
        #expect(build.status == 0, "\(build.output)")
        #expect(build.stdout.contains("heaviest (frost inspect DIST --why NAME tells the whole chain):"))
        #expect(build.stdout.contains("libpython3.11.so.1.0"), "\(build.stdout)")
        let first = URL(fileURLWithPath: scratch.path("first.py")).resolvingSymlinksInPath().path
        let entry = URL(fileURLWithPath: scratch.path("chain.py")).resolvingSymlinksInPath().path
        let why = try runProcess(Products.frost, ["inspect", scratch.path("dist/chain"), "--why", "second"])
        #expect(why.status == 0)
        #expect(why.stdout == """
            second is at chain.zip/second.pyc
            second: imported by first (\(first):3)
            first: imported by chain (\(entry):2)

            """, "\(why.output)")
        let colorsys = try runProcess(Products.frost, ["inspect", scratch.path("dist/chain"), "--why", "colorsys"])
        #expect(colorsys.stdout.hasPrefix("colorsys is at lib/python311.zip/colorsys.pyc\ncolorsys: imported by second ("))
        let absent = try runProcess(Products.frost, ["inspect", scratch.path("dist/chain"), "--why", "tkinter"])
        #expect(absent.status == 1 && absent.stdout == "tkinter is not in the bundle\n")
        let library = try runProcess(Products.frost, ["inspect", scratch.path("dist/chain"), "--why", "libpython3.11.so.1.0"])
        #expect(library.stdout.hasPrefix("libpython3.11.so.1.0 is a shared library in lib/, needed by the loader"), "\(library.output)")
    }
}

@Suite struct FlaskSampleTests {
    @Test func flaskSiteFreezesWithItsPackagesAndRendersFromTheArchive() throws {
        let scratch = ScratchDirectory("flask")
        let build = try frostBuild([Repository.root.appendingPathComponent("Bundles/flask_site.toml").path, "--quiet"],
                                   dist: scratch.path)
        #expect(build.status == 0, "\(build.output)")
        let bundle = scratch.path("flask_site")
        let manifest = try #require(try BundleManifest.load(bundleDirectory: bundle))
        let archive = try #require(manifest.archives["flask_site.zip"])
        #expect(archive["flask/__init__.pyc"] != nil)
        #expect(archive["flask/sansio/app.pyc"] != nil)  // a namespace package inside flask
        #expect(archive["site_app/templates/index.html"] != nil)
        #expect(archive["site_app/static/style.css"] != nil)
        #expect(archive.keys.contains { $0.hasPrefix("flask-3.1.3.dist-info/") })
        #expect(manifest.files.keys.contains { $0.hasPrefix("lib/site-packages/markupsafe/_speedups") })

        let check = try runProcess(bundle + "/_flask_site", ["--check"])
        #expect(check.status == 0, "\(check.output)")
        let selftest = try runProcess(bundle + "/flask_site", ["selftest"])
        #expect(selftest.status == 0, "\(selftest.output)")
        #expect(selftest.stdout.contains("/ 200 text/html"))
        #expect(selftest.stdout.contains("<h1>Frozen Flask</h1>"))
        #expect(selftest.stdout.contains("Flask 3.1.3, frozen by frost; markupsafe escapes with C speedups."))
        #expect(selftest.stdout.contains("/static/style.css 200 text/css"))
        #expect(selftest.stdout.contains("/static/../site_app/__init__.py 404"))
    }
}

/// The loader's size budget (Documentation/LOADER-SIZE.md), so growth is a decision rather
/// than an accident; and never Foundation.
@Suite struct LoaderSizeTests {
    /// The lean bundles issue's target; today's stripped size is 8.6 MiB.
    static let budget = 9 << 20

    @Test func theStrippedLoaderStaysWithinItsBudgetAndHasNoFoundationOrRegexEngine() throws {
        let stub = Products.releaseStub ?? Products.stub
        let scratch = ScratchDirectory("loader-size")
        let strip = try runProcess("/usr/bin/strip", ["--strip-all", "-o", scratch.path("stub"), stub])
        #expect(strip.status == 0, "\(strip.output)")
        let symbols = try runProcess("/usr/bin/nm", [stub], timeout: 120)
        #expect(symbols.status == 0)
        #expect(!symbols.stdout.contains("10Foundation"), "the loader links Foundation")
        // Swift's regex engine (about 1 MiB) comes along with a single call of a
        // _StringProcessing algorithm (String.contains(String), firstRange(of:), ...).
        let regex = symbols.stdout.split(separator: "\n").filter { $0.contains("17_StringProcessing") || $0.contains("RegexParser") }
        #expect(regex.isEmpty, "the loader links Swift's regex modules: \(regex.prefix(5))")
        // It loads the bundle's libpython at start, whatever its version: none is linked.
        let dynamic = try runProcess("/usr/bin/readelf", ["-d", stub])
        #expect(dynamic.stdout.contains("(NEEDED)") && !dynamic.stdout.contains("libpython"), "\(dynamic.stdout)")
        // libstdc++ is linked in (Scripts/setup.sh links gcc's archive where Package.swift looks).
        #expect(!dynamic.stdout.contains("libstdc++"), "the loader needs the shared libstdc++: run Scripts/setup.sh")
        guard Products.releaseStub != nil else { return }  // a debug loader is no measure of size
        // The standard library is linked from the strippable copy (Scripts/setup.sh): a public
        // function nothing calls is gone. From the toolchain's archive, all of them stay.
        let unusedPublic = " $ss7UnicodeO6ScalarV10PropertiesV4nameSSSgvg"  // Unicode.Scalar.Properties.name
        #expect(!symbols.stdout.split(separator: "\n").contains { $0.hasSuffix(unusedPublic) },
                "the loader links the whole standard library: run Scripts/setup.sh (.build-static-swift)")
        let size = (try FileManager.default.attributesOfItem(atPath: scratch.path("stub"))[.size] as? Int) ?? 0
        #expect(size <= Self.budget, """
            the stripped loader is \(size) bytes, over its budget of \(Self.budget) \
            (without Scripts/setup.sh's .build-static-swift the whole standard library is linked)
            """)
        // The unwind tables are left out by the link (Sources/frost-stub/discard-unwind-tables.ld).
        let sections = try runProcess("/usr/bin/readelf", ["-S", "-W", stub])
        #expect(!sections.stdout.contains(".eh_frame"), "the loader carries unwind tables")
        print("loader, stripped: \(size) bytes (budget \(Self.budget))")
    }
}

/// Only what the program imports: code that cannot run in the bundle (`__main__` blocks,
/// fallbacks of imports that succeed) is not followed, isapi contributes the submodules the
/// program imports, encodings the codecs the code names.
@Suite struct LeanBundleTests {
    @Test func helloCarriesNoneOfWhatItNeverImportsAndTheSamplesKeepWhatTheyUse() throws {
        let scratch = ScratchDirectory("lean")
        for name in ["hello", "redirector", "redirector_with_filter", "flask_site"] {
            let build = try frostBuild([Repository.root.appendingPathComponent("Bundles/\(name).toml").path, "--quiet"],
                                       dist: scratch.path)
            try #require(build.status == 0, "\(name): \(build.output)")
        }
        func contents(_ name: String) throws -> (modules: Set<String>, files: Set<String>) {
            let manifest = try #require(try BundleManifest.load(bundleDirectory: scratch.path(name)))
            var modules = Set<String>()
            for (_, entries) in manifest.archives {
                for entry in entries.keys where entry.hasSuffix(".pyc") {
                    modules.insert(String(entry.dropLast(4)).replacingOccurrences(of: "/__init__", with: "")
                        .replacingOccurrences(of: "/", with: "."))
                }
            }
            for file in manifest.files.keys where file.hasPrefix("lib/lib-dynload/") {
                modules.insert(String(file.dropFirst("lib/lib-dynload/".count).split(separator: ".").first!))
            }
            return (modules, Set(manifest.files.keys))
        }
        let hello = try contents("hello")
        for absent in ["ssl", "_ssl", "asyncio", "decimal", "_decimal", "ctypes", "_ctypes", "readline", "multiprocessing",
                       "optparse", "isapi.install", "isapi.wsgi", "doctest", "pdb", "unittest", "email", "encodings.cp932"] {
            #expect(!hello.modules.contains(absent), "hello carries \(absent)")
        }
        for library in ["lib/libssl.so.3", "lib/libcrypto.so.3", "lib/libreadline.so.8"] {
            #expect(!hello.files.contains(library), "hello carries \(library)")
        }
        let stdlib = try #require(try BundleManifest.load(bundleDirectory: scratch.path("hello"))?.archives["lib/python311.zip"])
        #expect(stdlib.keys.filter { $0.hasSuffix(".pyc") }.count <= 120, "\(stdlib.count) standard library modules")
        for present in ["encodings.utf_8", "encodings.latin_1", "encodings.ascii", "isapi", "isapi.simple", "isapi.isapicon"] {
            #expect(hello.modules.contains(present), "hello lacks \(present)")
        }
        // The samples that use them get them.
        let redirector = try contents("redirector")
        for present in ["http.client", "ssl", "_ssl", "isapi.threaded_extension", "encodings.idna"] {
            #expect(redirector.modules.contains(present), "redirector lacks \(present)")
        }
        let installer = try contents("redirector_with_filter")
        for present in ["isapi.install", "optparse"] { #expect(installer.modules.contains(present), "installer lacks \(present)") }
        // The Flask site's spec excludes the optional pulls it does without; the traced
        // import runs without them too, so what only they import stays out (ssl's _ssl and
        // libssl); hashlib's libcrypto stays for _hashlib.
        let flask = try contents("flask_site")
        #expect(flask.modules.contains("hashlib") && flask.modules.contains("_hashlib"))
        #expect(flask.files.contains("lib/libcrypto.so.3"))
        for absent in ["ssl", "_ssl", "asyncio", "readline"] {
            #expect(!flask.modules.contains(absent), "flask_site carries \(absent)")
        }
        #expect(!flask.files.contains("lib/libssl.so.3") && !flask.files.contains("lib/libreadline.so.8"))

        // --why says what is not there, and what brought what is; an optional pull says so.
        let why = try runProcess(Products.frost, ["inspect", scratch.path("hello"), "--why", "ssl"])
        #expect(why.stdout.hasPrefix("ssl is not in the bundle"), "\(why.output)")
        let optional = try runProcess(Products.frost, ["inspect", scratch.path("hello"), "--why", "tarfile"])
        #expect(optional.stdout.contains("tarfile: imported by shutil (") && optional.stdout.contains(
            "optional: only imports inside functions, or inside a try that survives a failed import, reach tarfile; "
            + "if the program does without it, excludes = [\"tarfile\"] leaves it out"),
            "\(optional.output)")

        // The whole graph as a report, and the heaviest optional pulls in the summary.
        let helloSpec = Repository.root.appendingPathComponent("Bundles/hello.toml").path
        let reported = try frostBuild([helloSpec, "--json", "--report", scratch.path("hello.json")], dist: scratch.path)
        #expect(reported.status == 0, "\(reported.output)")
        let summary = try JSON.parse(reported.stdout)
        #expect(summary["optional_pulls"]?.array?.contains { $0.string?.contains("imported inside a function of") == true } == true)
        // An optional pull weighs the shared libraries only it needs, and an import inside a
        // try that survives its failure is one: hashlib's _hashlib brings libcrypto.
        let flaskPulls = try JSON.parse(try String(contentsOfFile: scratch.path("flask_site/lib/imports.json"), encoding: .utf8))
        let hashlib = flaskPulls["optional_pulls"]?.array?.compactMap(\.string).first { $0.hasPrefix("_hashlib ") } ?? ""
        #expect(hashlib.contains(" in 1 module and 1 shared library: imported inside a try of hashlib (hashlib.py:"), "\(hashlib)")
        let report = try JSON.parse(try String(contentsOfFile: scratch.path("hello.json"), encoding: .utf8))
        let items = report["items"]?.array ?? []
        let simple = items.first { $0["name"]?.string == "isapi.simple" }
        #expect(simple?["by"]?.string == "hello" && simple?["line"]?.int == 3 && simple?["location"]?.string == "hello.zip/isapi/simple.pyc")
        #expect((simple?["bytes"]?.int ?? 0) > 0)
        #expect(items.contains { $0["name"]?.string == "libpython3.11.so.1.0" && $0["by"]?.string == "the loader" })
        #expect(report["not_followed"]?["pickle"]?.array?.contains { $0.string == "_test()" } == true)
        #expect(try frostBuild([helloSpec, "--quiet", "--report", scratch.path("hello.html")], dist: scratch.path).status == 0)
        let page = try String(contentsOfFile: scratch.path("hello.html"), encoding: .utf8)
        #expect(page.contains("<tr id=\"isapi.simple\">") && page.contains("<a href=\"#hello\">hello</a>"))
        let badName = try frostBuild([helloSpec, "--report", scratch.path("hello.txt")], dist: scratch.path)
        #expect(badName.status == 2 && badName.stderr.contains("must end in .html or .json"), "\(badName.output)")
        // Served, hello answers as ever (the host tests run it through every path).
        let server = try RunningServer(loader: scratch.path("hello/_hello"))
        defer { _ = server.stop() }
        #expect(try server.get("/").text == "Hello, world!\n")
    }

    /// An entry script: isapi.simple's extension, importing `module` (whose imports the
    /// test is about).
    private func writeSimpleExtension(importing module: String, to path: String) throws {
        try """
            from isapi.simple import SimpleExtension
            import \(module)

            def __ExtensionFactory__():
                return SimpleExtension()
            """.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Branches that cannot run where the bundle runs (Linux, the bundle's Python) are not
    /// followed: `TYPE_CHECKING`, platform and version tests, directly or through a
    /// module-level name; the branch that runs is. A table of charsets names no codec.
    @Test func branchesThatCannotRunInTheBundleAreNotFollowed() throws {
        let scratch = ScratchDirectory("branches")
        try writeSimpleExtension(importing: "platformed", to: scratch.path("branchy.py"))
        try """
            import os, sys, typing
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                import pdb
            if typing.TYPE_CHECKING:
                import doctest
            WIN = sys.platform.startswith(("win", "cygwin"))
            if sys.platform == "win32":
                import sched
            elif os.name == "nt" or (WIN and len(sys.argv) > 3):
                import zipapp
            else:
                import colorsys
            if not WIN and sys.version_info[:2] < (3, 0):
                import smtplib
            else:
                import graphlib
            if sys.platform.startswith("linux") and sys.argv:
                import wave

            def later():
                if sys.platform == "darwin":
                    import plistlib
                import email.charset
                return "shift_jis"
            """.write(toFile: scratch.path("platformed.py"), atomically: true, encoding: .utf8)
        let build = try frostBuild([scratch.path("branchy.py"), "--quiet", "--report", scratch.path("report.json")],
                                   dist: scratch.path("dist"))
        try #require(build.status == 0, "\(build.output)")
        let manifest = try #require(try BundleManifest.load(bundleDirectory: scratch.path("dist/branchy")))
        let stdlib = Set((manifest.archives["lib/python311.zip"] ?? [:]).keys)
        for absent in ["pdb", "doctest", "sched", "zipapp", "smtplib", "plistlib", "encodings/euc_jp", "encodings/big5"] {
            #expect(!stdlib.contains("\(absent).pyc"), "the bundle carries \(absent)")
        }
        for present in ["colorsys", "graphlib", "wave", "email/charset", "encodings/shift_jis"] {
            #expect(stdlib.contains("\(present).pyc"), "the bundle lacks \(present)")
        }
        let report = try JSON.parse(try String(contentsOfFile: scratch.path("report.json"), encoding: .utf8))
        let cut = report["not_followed"]?["platformed"]?.array?.compactMap(\.string) ?? []
        #expect(cut.contains("if TYPE_CHECKING at line 3 (false wherever the bundle runs)"), "\(cut)")
        #expect(cut.contains("if sys.platform == \"win32\" at line 8 (false wherever the bundle runs)"), "\(cut)")
        #expect(cut.contains("if not WIN and sys.version_info[:2] < (3, 0) at line 14 (false wherever the bundle runs)"), "\(cut)")
        #expect(!cut.contains { $0.contains("line 18") }, "\(cut)")  // sys.argv is not known before it runs
        #expect(try runProcess(scratch.path("dist/branchy/_branchy"), ["--check"]).status == 0)
    }

    /// An import inside a `try` whose `except` survives a failed import is an optional pull
    /// (the module is bundled, and weighed); one whose `except` cannot catch it, or that the
    /// module also makes unguarded, is not. The traced import fails what the spec excludes,
    /// as the bundle will, so the program's start is checked without it.
    @Test func importsATrySurvivesAreOptionalAndExcludesHoldInTheTrace() throws {
        let scratch = ScratchDirectory("guarded")
        try writeSimpleExtension(importing: "guarded", to: scratch.path("guarding.py"))
        try """
            try:
                import colorsys
            except ImportError:
                colorsys = None
            try:
                import graphlib
            except ValueError:
                graphlib = None
            try:
                import wave, sched
            except Exception:
                pass
            import sched
            try:
                import csv
            except ImportError:
                csv = None
            """.write(toFile: scratch.path("guarded.py"), atomically: true, encoding: .utf8)
        try "script = \"guarding.py\"\nexcludes = [\"csv\"]\n".write(toFile: scratch.path("guarding.toml"),
                                                                          atomically: true, encoding: .utf8)
        let build = try frostBuild([scratch.path("guarding.toml"), "--quiet", "--report", scratch.path("report.json")],
                                   dist: scratch.path("dist"))
        try #require(build.status == 0, "\(build.output)")
        let report = try JSON.parse(try String(contentsOfFile: scratch.path("report.json"), encoding: .utf8))
        func optional(_ name: String) -> Bool? {
            report["items"]?.array?.first { $0["name"]?.string == name }?["optional"]?.bool
        }
        #expect(optional("colorsys") == true && optional("wave") == true)
        #expect(optional("graphlib") == false && optional("sched") == false)
        let pulls = report["optional_pulls"]?.array?.compactMap(\.string) ?? []
        #expect(pulls.contains { $0.hasPrefix("colorsys ") && $0.hasSuffix("imported inside a try of guarded (guarded.py:2)") },
                "\(pulls)")
        // csv is excluded: not bundled, and the traced import did not bring what only it imports.
        #expect(optional("csv") == nil && optional("_csv") == nil)
        let why = try runProcess(Products.frost, ["inspect", scratch.path("dist/guarding"), "--why", "colorsys"])
        #expect(why.stdout.contains("colorsys: imported by guarded (") && why.stdout.contains("optional: "), "\(why.output)")
        #expect(try runProcess(scratch.path("dist/guarding/_guarding"), ["--check"]).status == 0)
    }
}
