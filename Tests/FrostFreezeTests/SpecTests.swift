import Foundation
import Testing
@testable import FrostFreeze

final class SpecDirectory {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "frost-spec-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path + "/app", withIntermediateDirectories: true)
        try! "print('hi')\n".write(toFile: path + "/app/main.py", atomically: true, encoding: .utf8)
        try! "flask\n".write(toFile: path + "/app/requirements.txt", atomically: true, encoding: .utf8)
        try! FileManager.default.createDirectory(atPath: path + "/app/static", withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func write(_ name: String, _ text: String) -> String {
        let file = path + "/" + name
        try! text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }
}

func specError(_ body: () throws -> Void) -> SpecError? {
    do { try body(); return nil } catch let error as SpecError { return error } catch { return nil }
}

@Suite struct SpecLoaderTests {
    @Test func fullSpecLoadsWithPathsRelativeToTheFile() throws {
        let dir = SpecDirectory()
        let file = dir.write("site.toml", """
            name = "site"
            script = "app/main.py"
            requirements = "app/requirements.txt"
            includes = ["json", "email.mime.text"]
            excludes = ["tkinter"]
            packages = ["email"]
            optimize = 2
            compress = false
            listen = "0.0.0.0:9000"
            workers = "auto"

            [resources]
            "app/static" = "static"
            """)
        let spec = try SpecLoader.load(file)
        #expect(spec.name == "site")
        #expect(spec.script == dir.path + "/app/main.py")
        #expect(spec.requirements == dir.path + "/app/requirements.txt")
        #expect(spec.includes == ["json", "email.mime.text"])
        #expect(spec.excludes == ["tkinter"])
        #expect(spec.packages == ["email"])
        #expect(spec.optimize == 2)
        #expect(spec.compress == false)
        #expect(spec.listen == "0.0.0.0:9000")
        #expect(spec.workers == .auto)
        #expect(spec.resources == [.init(source: dir.path + "/app/static", destination: "static")])
        #expect(spec.python == "/usr/bin/python3")
    }

    @Test func flagsOverrideScalarsAndExtendLists() throws {
        let dir = SpecDirectory()
        let file = dir.write("s.toml", "script = \"app/main.py\"\noptimize = 1\nincludes = [\"json\"]\n")
        var overrides = SpecOverrides()
        overrides.name = "renamed"
        overrides.optimize = 2
        overrides.includes = ["csv"]
        overrides.workers = "4"
        let spec = try SpecLoader.load(file, overrides: overrides)
        #expect(spec.name == "renamed")
        #expect(spec.optimize == 2)
        #expect(spec.includes == ["json", "csv"])
        #expect(spec.workers == .count(4))
    }

    @Test func pyprojectToolFrostTable() throws {
        let dir = SpecDirectory()
        let file = dir.write("pyproject.toml", """
            [project]
            name = "whatever"

            [tool.frost]
            script = "app/main.py"
            optimize = 1
            """)
        let spec = try SpecLoader.load(file)
        #expect(spec.name == "main")
        #expect(spec.optimize == 1)
        let bare = dir.write("other/pyproject.toml".replacingOccurrences(of: "other/", with: ""), "[project]\nname='x'\n")
        #expect(specError { _ = try SpecLoader.load(bare) }?.message == "no [tool.frost] table")
    }

    @Test func bareScriptGetsDefaults() throws {
        let dir = SpecDirectory()
        let spec = try SpecLoader.load(dir.path + "/app/main.py")
        #expect(spec.name == "main")
        #expect(spec.optimize == 0 && spec.compress && spec.listen == "127.0.0.1:8000" && spec.workers == .auto)
    }

    @Test func errorsNameTheFileTheKeyAndTheLine() {
        let dir = SpecDirectory()
        let unknown = dir.write("u.toml", "script = \"app/main.py\"\n\noptimise = 2\n")
        let e1 = specError { _ = try SpecLoader.load(unknown) }
        #expect(e1?.key == "optimise")
        #expect(e1?.line == 3)
        #expect(e1?.description.hasPrefix("\(unknown):3: key 'optimise': unknown key") == true)

        let wrongType = dir.write("t.toml", "script = \"app/main.py\"\noptimize = \"high\"\n")
        let e2 = specError { _ = try SpecLoader.load(wrongType) }
        #expect(e2?.description == "\(wrongType):2: key 'optimize': expected an integer 0, 1 or 2, found string")

        let missingScript = dir.write("m.toml", "name = \"x\"\nscript = \"app/nope.py\"\n")
        let e3 = specError { _ = try SpecLoader.load(missingScript) }
        #expect(e3?.key == "script")
        #expect(e3?.line == 2)
        #expect(e3?.message.hasPrefix("no such file") == true)

        let badValue = dir.write("b.toml", "script = \"app/main.py\"\n\n\noptimize = 7\n")
        #expect(specError { _ = try SpecLoader.load(badValue) }?.description == "\(badValue):4: key 'optimize': must be 0, 1 or 2, not 7")

        let syntax = dir.write("s.toml", "script = \"app/main.py\"\nname = \n")
        let e5 = specError { _ = try SpecLoader.load(syntax) }
        #expect(e5?.line == 2)
        #expect(e5?.message.hasPrefix("TOML syntax") == true)

        let trace = dir.write("tr.toml", "script = \"app/main.py\"\ntrace = \"yes\"\n")
        #expect(specError { _ = try SpecLoader.load(trace) }?.description == "\(trace):2: key 'trace': expected true or false, found string")
        let noTrace = dir.write("nt.toml", "script = \"app/main.py\"\ntrace = false\n")
        #expect((try? SpecLoader.load(noTrace))?.trace == false)

        _ = dir.write("hooks-bad.json", #"{"numpy": {"hidden_imports": "numpy.x"}}"#)
        let hooks = dir.write("h.toml", "script = \"app/main.py\"\n\nhooks = \"hooks-bad.json\"\n")
        let e6 = specError { _ = try SpecLoader.load(hooks) }
        #expect(e6?.line == 3 && e6?.key == "hooks")
        #expect(e6?.message.hasSuffix("hooks-bad.json: package 'numpy': 'hidden_imports' must be an array of strings") == true, "\(String(describing: e6))")

        let listen = dir.write("l.toml", "script = \"app/main.py\"\nlisten = \"nowhere\"\n")
        #expect(specError { _ = try SpecLoader.load(listen) }?.line == 2)

        let resource = dir.write("r.toml", "script = \"app/main.py\"\n[resources]\n\"app/missing\" = \"x\"\n")
        let e7 = specError { _ = try SpecLoader.load(resource) }
        #expect(e7?.key == "resources")
        #expect(e7?.line == 2)

        let noScript = dir.write("n.toml", "name = \"x\"\n")
        #expect(specError { _ = try SpecLoader.load(noScript) }?.key == "script")
        #expect(specError { _ = try SpecLoader.load(dir.path + "/none.toml") }?.message == "no such file")
        #expect(specError { _ = try SpecLoader.load(dir.write("x.txt", "")) } != nil)
        let badName = dir.write("bn.toml", "script = \"app/main.py\"\nname = \"my-app\"\n")
        #expect(specError { _ = try SpecLoader.load(badName) }?.line == 2)
    }

    @Test func keyLinesFollowTables() {
        let lines = KeyLines(text: """
            [project]
            name = "p"
            [tool.frost]
            # comment = 1
            name = "x"
            "optimize" = 1
            [tool.frost.resources]
            "a" = "b"
            """, tablePath: ["tool", "frost"])
        #expect(lines.line(of: "name") == 5)
        #expect(lines.line(of: "optimize") == 6)
        #expect(lines.line(of: "resources") == 7)
        #expect(lines.line(of: "comment") == nil)
    }
}

@Suite struct ELFTests {
    static let libpython = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"

    @Test func readsNeededLibrariesAndSoname() throws {
        let info = try ELFReader.read(ELFTests.libpython)
        #expect(info.soname == "libpython3.11.so.1.0")
        #expect(info.needed.contains("libc.so.6"))
        #expect(info.needed.contains("libexpat.so.1"))
        #expect(ELFReader.isELF(ELFTests.libpython))
        #expect(!ELFReader.isELF("/etc/passwd"))
        #expect(throws: ELFError.self) { try ELFReader.read("/etc/passwd") }
    }

    @Test func closureLeavesGlibcOut() throws {
        let resolved = try LibraryResolver().closure(of: [ELFTests.libpython])
        let names = resolved.map(\.name)
        #expect(names.contains("libexpat.so.1"))
        #expect(names.contains("libz.so.1"))
        #expect(!names.contains("libc.so.6"))
        #expect(!names.contains("libm.so.6"))
        for library in resolved { #expect(FileManager.default.fileExists(atPath: library.path)) }
    }

    @Test func unresolvableLibrariesAreReported() {
        let resolver = LibraryResolver(searchDirectories: ["/nonexistent"])
        #expect(throws: LibraryResolver.Unresolved.self) { _ = try resolver.closure(of: [ELFTests.libpython]) }
    }
}

@Suite struct HooksTests {
    @Test func builtInHooksLoadAndUserHooksExtendThem() throws {
        let builtIn = try Hooks.builtIn()
        #expect(builtIn.packages["sqlalchemy"]?.hidden_imports.contains("sqlalchemy.dialects.sqlite") == true)
        #expect(builtIn.packages["tzdata"]?.packages == ["tzdata"])
        let dir = SpecDirectory()
        let own = dir.write("own.json", #"{"_comment": "mine", "sqlalchemy": {"hidden_imports": ["sqlalchemy.dialects.postgresql"]}, "myapp": {"exclude_data": ["docs/*"]}}"#)
        let merged = builtIn.adding(try Hooks.load(own))
        #expect(merged.packages["sqlalchemy"]?.hidden_imports.contains("sqlalchemy.dialects.sqlite") == true)
        #expect(merged.packages["sqlalchemy"]?.hidden_imports.contains("sqlalchemy.dialects.postgresql") == true)
        #expect(merged.packages["myapp"]?.exclude_data == ["docs/*"])
    }

    @Test func badHooksNameTheFilePackageAndField() {
        let dir = SpecDirectory()
        func error(_ text: String) -> String? {
            let path = dir.write("h.json", text)
            do { _ = try Hooks.load(path); return nil } catch { return "\(error)" }
        }
        #expect(error("[1]")?.hasSuffix("h.json: not a JSON object of packages") == true)
        #expect(error(#"{"numpy": {"#)?.contains("h.json: invalid JSON") == true)
        #expect(error(#"{"numpy": {"filesystem": "yes"}}"#)?.contains("package 'numpy': 'filesystem' must be true or false") == true)
        #expect(error(#"{"numpy": {"packages": "numpy.core"}}"#)?.contains("package 'numpy': 'packages' must be an array of strings") == true)
        #expect(error(#"{"numpy": {"hidden": []}}"#)?.contains("package 'numpy': unknown field 'hidden'") == true)
        #expect(error(#"{"numpy": {"excludes": ["not a module"]}}"#)?.contains("'not a module' in 'excludes' is not a module name") == true)
        #expect(error(#"{"a.-b": {}}"#)?.contains("'a.-b' is not a package or module name") == true)
        #expect(error(#"{"numpy": []}"#)?.contains("package 'numpy': expected an object") == true)
    }
}

@Suite struct WSGISpecTests {
    @Test func aWSGISpecNeedsNoScriptAndItsRootIsWhereItLies() throws {
        let dir = SpecDirectory()
        let spec = try SpecLoader.load(dir.write("app/frost.toml", "wsgi = \"mysite.wsgi:application\"\nthreads = 4\nconsole = \"main.py\"\n"))
        #expect(spec.wsgi == "mysite.wsgi:application")
        #expect(spec.script.isEmpty)
        #expect(spec.appRoot == dir.path + "/app")
        #expect(spec.name == "app", "the project directory's name")
        #expect(spec.threads == 4)
        #expect(spec.console == dir.path + "/app/main.py")
        #expect(spec.manifestOptions["console"]?.string == BuildSpec.consoleModule)
        // [tool.frost] in a pyproject.toml, and a factory.
        let pyproject = try SpecLoader.load(dir.write("app/pyproject.toml", "[tool.frost]\nname = \"site\"\nwsgi = \"flaskr:create_app()\"\n"))
        #expect(pyproject.wsgi == "flaskr:create_app()" && pyproject.appRoot == dir.path + "/app")
        let entry = try #require(WSGIEntry("flaskr:create_app()"))
        #expect(entry.module == "flaskr" && entry.attribute == "create_app" && entry.isFactory)
        // A project directory with --wsgi.
        var overrides = SpecOverrides()
        overrides.wsgi = "app:app"
        let bare = try SpecLoader.load(dir.path + "/app", overrides: overrides)
        #expect(bare.wsgi == "app:app" && bare.name == "app_wsgi", "not the app's own module name")
    }

    @Test func wsgiSpecErrorsNameTheKey() {
        let dir = SpecDirectory()
        let both = dir.write("b.toml", "script = \"app/main.py\"\nwsgi = \"a:b\"\n")
        #expect(specError { _ = try SpecLoader.load(both) }?.description == "\(both):2: key 'wsgi': a spec has either script or wsgi, not both")
        let bad = dir.write("w.toml", "wsgi = \"not a module:app\"\n")
        #expect(specError { _ = try SpecLoader.load(bad) }?.key == "wsgi")
        let clash = dir.write("c.toml", "name = \"mysite\"\nwsgi = \"mysite.wsgi:application\"\n")
        let e3 = specError { _ = try SpecLoader.load(clash) }
        #expect(e3?.key == "name" && e3?.line == 1 && e3?.message.contains("also the application's module") == true)
        let root = dir.write("r.toml", "wsgi = \"a:b\"\nroot = \"nowhere\"\n")
        #expect(specError { _ = try SpecLoader.load(root) }?.key == "root")
        let split = dir.write("s.toml", "wsgi = \"a:b\"\nfilesystem = [\"x\"]\narchive = [\"x\"]\n")
        #expect(specError { _ = try SpecLoader.load(split) }?.description == "\(split):3: key 'archive': 'x' is in both filesystem and archive")
    }
}
