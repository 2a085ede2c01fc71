import Foundation
import Testing
import FrostBundle

/// The packages a typical web app uses, each frozen from its smoke script (one shared build
/// venv) and run through the bundle's console in a root that has only glibc.
@Suite(.serialized) struct PackageCorpusTests {
    static let corpus = Repository.root.appendingPathComponent("Tests/Corpus")
    static let scripts = ["numpy", "pydantic", "cryptography", "sqlalchemy", "lxml", "pillow", "yaml", "orjson",
                          "psycopg", "requests", "jinja2", "dateutil"]

    /// Runs a bundle's console inside a glibc-only root (with /proc, as in any container).
    static func runInGlibcRoot(_ root: String, _ command: String) throws -> ProcessResult {
        try runProcess("/usr/bin/unshare", ["-m", "/bin/sh", "-c",
            "mount -t proc proc \"$1/proc\" && exec /usr/sbin/chroot \"$1\" \"$2\"", "sh", root, command], timeout: 120)
    }

    @Test func everyCorpusPackageFreezesAndRunsInAGlibcOnlyRoot() throws {
        let scratch = ScratchDirectory("corpus")
        let root = scratch.path("root")
        try makeGlibcOnlyRoot(at: root)
        let requirements = Self.corpus.appendingPathComponent("requirements.txt").path
        var failures: [String] = []
        for name in Self.scripts {
            let script = Self.corpus.appendingPathComponent("smoke_\(name).py").path
            let build = try frostBuild([script, "--requirements", requirements, "--json"], dist: scratch.path("dist"))
            guard build.status == 0 else {
                failures.append("\(name): build failed: \(build.output)")
                continue
            }
            let report = try JSON.parse(build.stdout)
            // Only what may break at run time is a warning; optional imports are one note.
            let warnings = report["warnings"]?.array?.compactMap(\.string) ?? []
            #expect(warnings.filter { !$0.hasPrefix("note:") }.isEmpty, "\(name): \(warnings)")
            let bundle = "smoke_\(name)"
            #expect(try runProcess("/bin/cp", ["-a", scratch.path("dist/" + bundle), root + "/app/" + bundle]).status == 0)
            let run = try Self.runInGlibcRoot(root, "/app/\(bundle)/\(bundle)")
            if run.status != 0 || !run.stdout.contains("ok \(name)") {
                failures.append("\(name): exit \(run.status): \(run.output.suffix(1500))")
            } else {
                print("corpus: \(run.stdout.split(separator: "\n").last ?? "")")
            }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    /// The three failures that started this: numpy's C core importing numpy._core._exceptions,
    /// cryptography's Rust extension importing _cffi_backend, and sysconfig's computed import
    /// of _sysconfigdata (pydantic) are all seen by the traced import; build and test tooling
    /// and the host's sitecustomize stay out.
    @Test func theTracedImportFindsWhatExtensionsAndComputedNamesImport() throws {
        let scratch = ScratchDirectory("corpus-trace")
        let requirements = Self.corpus.appendingPathComponent("requirements.txt").path
        var entries: [String: [String: String]] = [:]
        var files: [String: Set<String>] = [:]
        for name in ["numpy", "cryptography", "pydantic"] {
            let script = Self.corpus.appendingPathComponent("smoke_\(name).py").path
            let build = try frostBuild([script, "--requirements", requirements, "--quiet"], dist: scratch.path("dist"))
            #expect(build.status == 0, "\(build.output)")
            let manifest = try #require(try BundleManifest.load(bundleDirectory: scratch.path("dist/smoke_\(name)")))
            entries[name] = manifest.archives.values.reduce(into: [:]) { $0.merge($1) { a, _ in a } }
            files[name] = Set(manifest.files.keys)
        }
        #expect(entries["numpy"]?["numpy/_core/_exceptions.pyc"] != nil
                || files["numpy"]?.contains("lib/site-packages/numpy/_core/_exceptions.pyc") == true)
        #expect(files["cryptography"]?.contains { $0.hasPrefix("lib/site-packages/_cffi_backend.") } == true)
        #expect(entries["pydantic"]?.keys.contains { $0.hasPrefix("_sysconfigdata_") } == true)
        for (name, archive) in entries {
            for tooling in ["setuptools/__init__.pyc", "pip/__init__.pyc", "sitecustomize.pyc", "numpy/distutils/__init__.pyc",
                            "numpy/_core/tests/__init__.pyc", "numpy/_core/include/numpy/ndarrayobject.h"] {
                #expect(archive[tooling] == nil, "\(name) carries \(tooling)")
            }
        }
        // Without the trace, the numpy bundle misses what its C core imports (kept in the
        // archive, so only what some analysis found is there).
        let untraced = try frostBuild([Self.corpus.appendingPathComponent("smoke_numpy.py").path, "--requirements", requirements,
                                       "--no-trace", "--archive", "numpy", "--quiet", "--name", "untraced"],
                                      dist: scratch.path("dist"))
        #expect(untraced.status == 0)
        let run = try runProcess(scratch.path("dist/untraced/untraced"))
        #expect(run.status != 0 && run.output.contains("numpy._core._exceptions"), "\(run.output.suffix(800))")
    }

    /// A module imported only on a later call (here a plugin loaded by a computed name) is
    /// invisible to the traced import; a hook in the data format brings it in. The built-in
    /// hooks do the same for SQLAlchemy's dialects and tzdata's zones (the corpus above).
    @Test func aHookCoversWhatOnlyALaterCallImports() throws {
        let scratch = ScratchDirectory("corpus-hook")
        let app = scratch.path("app")
        try FileManager.default.createDirectory(atPath: app + "/plugins", withIntermediateDirectories: true)
        try "".write(toFile: app + "/plugins/__init__.py", atomically: true, encoding: .utf8)
        try "NAME = 'fancy plugin'\n".write(toFile: app + "/plugins/fancy.py", atomically: true, encoding: .utf8)
        try """
            import importlib

            def load(kind):
                return importlib.import_module("plugins." + kind).NAME

            if __name__ == "__main__":
                print("loaded", load("fancy"))
            """.write(toFile: app + "/later.py", atomically: true, encoding: .utf8)
        let bare = try frostBuild([app + "/later.py", "--quiet"], dist: scratch.path("dist"))
        #expect(bare.status == 0, "\(bare.output)")
        let without = try runProcess(scratch.path("dist/later/later"))
        #expect(without.status != 0 && without.output.contains("No module named 'plugins"), "\(without.output)")
        // Keyed by the module that does the loading (hooks apply when their package is in the bundle).
        try #"{"_comment": "plugins later.load() imports by name", "later": {"hidden_imports": ["plugins.fancy"]}}"#
            .write(toFile: app + "/hooks.json", atomically: true, encoding: .utf8)
        let hooked = try frostBuild([app + "/later.py", "--quiet", "--hooks", app + "/hooks.json"], dist: scratch.path("dist"))
        #expect(hooked.status == 0, "\(hooked.output)")
        let with = try runProcess(scratch.path("dist/later/later"))
        #expect(with.status == 0 && with.stdout == "loaded fancy plugin\n", "\(with.output)")
        // A bad hooks file is an error that names the file and what is wrong, before anything is built.
        try #"{"plugins": {"hidden": ["plugins.fancy"]}}"#.write(toFile: app + "/bad.json", atomically: true, encoding: .utf8)
        let bad = try frostBuild([app + "/later.py", "--hooks", app + "/bad.json"], dist: scratch.path("dist-bad"))
        #expect(bad.status == 2, "\(bad.output)")
        #expect(bad.stderr.contains("bad.json: package 'plugins': unknown field 'hidden'"), "\(bad.stderr)")
    }
}
