import Foundation
import Testing

/// Bundles changed after the build, and hostile archives: the loader refuses to start
/// with a message naming the file, `frost verify` lists the difference, and `frost
/// inspect` refuses what the loader would.
@Suite(.serialized) struct TamperedBundleTests {
    /// One built hello bundle; each case works on a copy of it.
    static let built: Result<String, Error> = Result {
        let scratch = ScratchDirectory("tamper-source")
        let result = try frostBuild([Repository.root.appendingPathComponent("Bundles/hello.toml").path, "--quiet"], dist: scratch.path)
        guard result.status == 0 else { throw CompileFailure(message: result.output) }
        scratchKeeper.append(scratch)
        return scratch.path("hello")
    }
    nonisolated(unsafe) static var scratchKeeper: [ScratchDirectory] = []

    /// Runs a Python snippet with `bundle` as its first argument (zip surgery, JSON edits).
    static func python(_ code: String, _ arguments: [String]) throws {
        let result = try runProcess("/usr/bin/python3", ["-I", "-c", code] + arguments)
        guard result.status == 0 else { throw CompileFailure(message: result.output) }
    }

    static let tampers: [(name: String, change: String, loaderSays: String, verifyLists: String)] = [
        ("archive cut short", "f = open(b + '/hello.zip', 'r+b'); f.truncate(f.seek(0, 2) - 100)",
         "changed: hello.zip (", "changed: hello.zip ("),
        ("a flipped byte in the standard library", "f = open(b + '/lib/python311.zip', 'r+b'); f.seek(5000); x = f.read(1); f.seek(5000); f.write(bytes([x[0] ^ 0xFF]))",
         "changed: lib/python311.zip (SHA-256 differs)", "changed: lib/python311.zip (SHA-256 differs)"),
        ("two entries' contents swapped",
         """
         import zipfile, shutil
         src = zipfile.ZipFile(b + '/hello.zip'); names = [n for n in src.namelist() if n.endswith('.pyc')][:2]
         data = {n: src.read(n) for n in src.namelist()}; data[names[0]], data[names[1]] = data[names[1]], data[names[0]]
         out = zipfile.ZipFile(b + '/new.zip', 'w')
         [out.writestr(src.getinfo(n), data[n]) for n in src.namelist()]; out.close(); shutil.move(b + '/new.zip', b + '/hello.zip')
         """,
         "changed: hello.zip (", "entry changed: hello.zip:"),
        ("an extra extension module in lib/", "open(b + '/lib/lib-dynload/evil.cpython-311-x86_64-linux-gnu.so', 'wb').write(b'\\x7fELF')",
         "unexpected: lib/lib-dynload/evil.cpython-311-x86_64-linux-gnu.so (not in the manifest)",
         "unexpected: lib/lib-dynload/evil.cpython-311-x86_64-linux-gnu.so"),
        ("a shared library cut short", "import os; p = b + '/lib/libexpat.so.1'; os.truncate(p, os.path.getsize(p) - 4096)",
         "changed: lib/libexpat.so.1 (", "changed: lib/libexpat.so.1 ("),
        ("a file missing from lib/", "import os; os.remove(b + '/lib/python311.zip')", "missing: lib/python311.zip", "missing: lib/python311.zip"),
        ("a manifest that lies about an archive",
         "import json; p = b + '/bundle.json'; m = json.load(open(p)); m['files']['hello.zip']['sha256'] = '0' * 64; open(p, 'w').write(json.dumps(m))",
         "changed: hello.zip (SHA-256 differs)", "changed: hello.zip (SHA-256 differs)"),
        ("a manifest whose Python magic differs",
         "import json; p = b + '/bundle.json'; m = json.load(open(p)); m['python']['magic'] = '0d0d0d0a'; open(p, 'w').write(json.dumps(m))",
         "bundle.json", ""),
    ]

    @Test(arguments: tampers.map(\.name))
    func theLoaderRefusesATamperedBundleAndVerifyListsIt(_ name: String) throws {
        let tamper = try #require(Self.tampers.first { $0.name == name })
        let source = try Self.built.get()
        let scratch = ScratchDirectory("tamper")
        let bundle = scratch.path("hello")
        #expect(try runProcess("/bin/cp", ["-a", source, bundle]).status == 0)
        let code = "import sys\nb = sys.argv[1]\n" + tamper.change.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .joined(separator: "\n")
        try Self.python(code, [bundle])
        let check = try runProcess(bundle + "/_hello", ["--check"])
        #expect(check.status == 1, "\(name): \(check.output)")
        #expect(check.stderr.hasPrefix("_hello: error: ") && check.stderr.contains(tamper.loaderSays), "\(name): \(check.stderr)")
        #expect(!check.stdout.contains("check: ok"))
        let served = try runProcess(bundle + "/_hello", ["--listen", "127.0.0.1:0", "--workers", "0"], timeout: 30)
        #expect(served.status == 1 && served.stderr.contains(tamper.loaderSays), "\(name): the server does not start either")
        if !tamper.verifyLists.isEmpty {
            let verify = try runProcess(Products.frost, ["verify", bundle])
            #expect(verify.status == 1 && verify.stdout.contains(tamper.verifyLists), "\(name): \(verify.output)")
        }
    }

    /// Path traversal, a symbolic link and a forged size (a zip bomb): `frost inspect` and
    /// the loader both refuse, naming the archive and the entry.
    @Test func hostileArchivesAreRefusedByInspectAndTheLoader() throws {
        let scratch = ScratchDirectory("hostile-archives")
        let make = """
            import sys, zipfile, struct
            kind, path = sys.argv[1], sys.argv[2]
            z = zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED)
            z.writestr('ok.py', 'x = 1\\n')
            if kind == 'traversal':
                z.writestr('../evil.py', 'import os\\n')
            elif kind == 'symlink':
                info = zipfile.ZipInfo('link.py'); info.external_attr = 0o120777 << 16; info.create_system = 3
                z.writestr(info, '/etc/passwd')
            elif kind == 'bomb':
                z.writestr('bomb.bin', b'\\0' * 1000000)
            z.close()
            if kind == 'bomb':
                data = bytearray(open(path, 'rb').read())
                at = data.rfind(b'PK\\x01\\x02')  # the last central directory record: bomb.bin's
                data[at + 24:at + 28] = struct.pack('<I', 400_000_000)
                open(path, 'wb').write(bytes(data))
            """
        let cases = [("traversal", "entry '../evil.py'"), ("symlink", "entry 'link.py'"), ("bomb", "entry 'bomb.bin'")]
        for (kind, entry) in cases {
            let archive = scratch.path("\(kind).zip")
            try Self.python(make, [kind, archive])
            let inspect = try runProcess(Products.frost, ["inspect", archive])
            #expect(inspect.status == 1, "\(kind): \(inspect.output)")
            #expect(inspect.stderr.hasPrefix("frost: error: archive \(archive): \(entry)"), "\(kind): \(inspect.stderr)")
            let loaderDirectory = scratch.path(kind)
            try FileManager.default.createDirectory(atPath: loaderDirectory, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Products.stub, toPath: loaderDirectory + "/_\(kind)")
            try FileManager.default.copyItem(atPath: archive, toPath: loaderDirectory + "/\(kind).zip")
            let loader = try runProcess(loaderDirectory + "/_\(kind)", ["--check"])
            #expect(loader.status == 1 && loader.stderr.contains(entry), "\(kind): \(loader.stderr)")
        }
    }
}
