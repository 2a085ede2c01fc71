import Foundation
import Testing
import FrostPython
import CPython

/// Payload whose instances count themselves, to prove native objects release them.
final class Counted {
    nonisolated(unsafe) static var live = 0
    static let lock = NSLock()
    var label: String
    var hits = 0
    init(_ label: String) {
        self.label = label
        Counted.lock.lock(); Counted.live += 1; Counted.lock.unlock()
    }
    deinit { Counted.lock.lock(); Counted.live -= 1; Counted.lock.unlock() }
}

let countedType: NativeType<Counted> = {
    let type = NativeType<Counted>("_frost_test.Counted", doc: "A counted test object.")
    type.attribute("Label", get: { try PythonObject($0.label) }, set: { $0.label = try $1.asString() })
    type.attribute("Hits", get: { try PythonObject($0.hits) })
    type.method("Hit") { payload, arguments in
        let by = try arguments.optional(0, "by")?.asInt() ?? 1
        if by < 0 { throw PythonError.raise(.valueError, "cannot hit by \(by)") }
        payload.hits += by
        return try PythonObject(payload.hits)
    }
    // Two arguments, the second required: by position or keyword, in any order.
    type.method("Add") { payload, arguments in
        let scale = try arguments.optional(0, "scale")?.asInt() ?? 1
        payload.hits += scale * (try arguments.required(1, "amount").asInt())
        return try PythonObject(payload.hits)
    }
    // Calling the object adds its positional arguments and `extra` to the hits.
    type.callable { payload, arguments in
        var total = try arguments.optional(arguments.positionalCount, "extra")?.asInt() ?? 0
        for index in 0..<arguments.positionalCount { total += try arguments.required(index, "number").asInt() }
        if total < 0 { throw PythonError.raise(.valueError, "cannot add \(total)") }
        payload.hits += total
        return try PythonObject(payload.hits)
    }
    // The per-request forms: values handed over as owned references, no wrapper.
    type.attribute("LabelBytes", owned: { try OwnedObject(bytesOf: $0.label) })
    type.method("HitOwned", owned: { payload, _ in
        payload.hits += 1_000_000
        return try OwnedObject(payload.hits)
    })
    type.describe = { "<Counted \($0.label)>" }
    return type
}()

let testModule = NativeModule(name: "_frost_test", doc: "test module") { module in
    try module.setAttribute("Counted", countedType.typeObject())
    try module.setAttribute("make", Python.function("make") { args, _ in
        try countedType.wrap(Counted(try args.first?.asString() ?? "anon"))
    })
    try module.setAttribute("ANSWER", PythonObject(42))
}

/// One interpreter per test process, started with an exact search path.
enum TestInterpreter {
    static let extraDirectory = NSTemporaryDirectory() + "frost-python-tests-path"
    static let shared: Interpreter = {
        try? FileManager.default.createDirectory(atPath: extraDirectory, withIntermediateDirectories: true)
        try! "VALUE = 'from the extra directory'\n".write(toFile: extraDirectory + "/extra_module.py",
                                                           atomically: true, encoding: .utf8)
        try! PythonLibrary.loadDevelopmentDefault()
        return try! Interpreter.start(InterpreterConfiguration(
            executable: "/usr/bin/frost-test-loader", searchPath: [extraDirectory], standardLibrary: .systemPython,
            arguments: ["frost-test", "--flag"], builtinModules: [testModule]))
    }()

    static func run<R>(_ body: () throws -> R) rethrows -> R {
        _ = shared
        return try Python.withGIL(body)
    }
}

@Suite(.serialized) struct InterpreterTests {
    @Test func startsIsolatedWithExactlyTheGivenSearchPath() throws {
        try TestInterpreter.run {
            let sys = try Python.sys()
            let path = try sys.attribute("path").elements().map { try $0.asString() }
            #expect(path == [TestInterpreter.extraDirectory] + TestInterpreter.shared.standardLibraryPath)
            let flags = try sys.attribute("flags")
            #expect(try flags.attribute("isolated").asInt() == 1)
            #expect(try flags.attribute("ignore_environment").asInt() == 1)
            #expect(try flags.attribute("no_site").asInt() == 1)
            #expect(try flags.attribute("no_user_site").asInt() == 1)
            #expect(try flags.attribute("utf8_mode").asInt() == 1)
            #expect(try sys.attribute("frozen").isTrue())
            #expect(try sys.attribute("modules").callMethod("__contains__", [PythonObject("site")]).isTrue() == false)
            #expect(try sys.attribute("argv").elements().map { try $0.asString() } == ["frost-test", "--flag"])
            #expect(try sys.attribute("executable").asString() == "/usr/bin/frost-test-loader")
            #expect(try Python.importModule("extra_module").attribute("VALUE").asString() == "from the extra directory")
            let version = try sys.attribute("version_info")
            #expect(try version.attribute("major").asInt() == Python.version.major)
            #expect(try version.attribute("minor").asInt() == Python.version.minor)
            #expect(try version.attribute("micro").asInt() == Python.version.micro)
        }
    }

    @Test func secondStartIsRefused() {
        _ = TestInterpreter.shared
        #expect(throws: InterpreterError.self) {
            _ = try Interpreter.start(InterpreterConfiguration(executable: "/x", searchPath: []))
        }
    }

    @Test func systemStandardLibraryPathPointsAtTheLoadedPython() {
        _ = TestInterpreter.shared
        #expect(TestInterpreter.shared.standardLibraryPath.contains { $0.hasSuffix("python\(Python.version.short)") })
        #expect(TestInterpreter.shared.standardLibraryPath.contains { $0.hasSuffix("lib-dynload") })
    }
}

@Suite struct ErrorConversionTests {
    @Test func exceptionsCarryTypeMessageAndTraceback() throws {
        try TestInterpreter.run {
            let source = """
            def inner(x):
                raise ValueError(f"bad value {x!r}")
            def outer():
                inner(41 + 1)
            outer()
            """
            do {
                try Python.run(source, filename: "/srv/app/failing.py")
                Issue.record("no error thrown")
            } catch let error as PythonError {
                #expect(error.typeName == "ValueError")
                #expect(error.message == "bad value 42")
                #expect(error.description == "ValueError: bad value 42")
                #expect(error.traceback.hasPrefix("Traceback (most recent call last):"))
                #expect(error.traceback.contains("File \"/srv/app/failing.py\", line 2, in inner"))
                #expect(error.traceback.contains("in outer"))
                #expect(error.traceback.hasSuffix("ValueError: bad value 42\n"))
                #expect(error.exception != nil)
            }
        }
    }

    @Test func userExceptionClassesAreQualified() throws {
        try TestInterpreter.run {
            let namespace = try PythonObject.dict([("__builtins__", try Python.importModule("builtins")),
                                                   ("__name__", try PythonObject("myapp.errors"))])
            do {
                try Python.run("class AppError(Exception): pass\nraise AppError('boom')", globals: namespace)
                Issue.record("no error thrown")
            } catch let error as PythonError {
                #expect(error.typeName == "myapp.errors.AppError")
                #expect(error.message == "boom")
            }
        }
    }

    @Test func syntaxErrorsAndSwiftRaisedErrors() throws {
        try TestInterpreter.run {
            #expect(throws: PythonError.self) { try Python.compile("def broken(:\n", filename: "broken.py") }
            do { _ = try Python.compile("def broken(:\n", filename: "broken.py") } catch let error as PythonError {
                #expect(error.typeName == "SyntaxError")
            }
            let error = PythonError.raise(.importError, "no module named nothing")
            #expect(error.typeName == "ImportError")
            #expect(error.message == "no module named nothing")
            do { _ = try PythonObject(5).asString() } catch let e as PythonError { #expect(e.typeName == "TypeError") }
        }
    }
}

@Suite(.serialized) struct NativeTypeTests {
    @Test func builtinModuleRegisteredBeforeStartUpImports() throws {
        try TestInterpreter.run {
            let module = try Python.importModule("_frost_test")
            #expect(try module.attribute("ANSWER").asInt() == 42)
            let sys = try Python.sys()
            let names = try sys.attribute("builtin_module_names").elements().map { try $0.asString() }
            #expect(names.contains("_frost_test"))
        }
    }

    /// The object the test script calls `c`.
    private func c(_ namespace: PythonObject) throws -> PythonObject { try #require(try namespace.item("c")) }

    @Test func attributesMethodsAndErrorsBehaveLikePython() throws {
        try TestInterpreter.run {
            let namespace = try PythonObject.dict([("__builtins__", try Python.importModule("builtins"))])
            try Python.run("""
            import _frost_test
            c = _frost_test.make("first")
            results = [c.Label, c.Hit(), c.Hit(5), c.Hit(by=10), c.Hits, repr(c), type(c).__name__]
            c.Label = "renamed"
            results.append(c.Label)
            results += [c.Add(2, 3), c.Add(amount=4), c.Add(amount=1, scale=10), c.Add(1, amount=2)]
            errors = []
            for action in (lambda: setattr(c, "Hits", 3), lambda: setattr(c, "Nope", 1),
                           lambda: c.Hit(-1), lambda: _frost_test.Counted(), lambda: c.Missing,
                           lambda: setattr(c, "Label", 7), lambda: c.Add(2), lambda: c.Add(scale=2)):
                try:
                    action()
                except Exception as e:
                    errors.append(type(e).__name__)
            """, globals: namespace)
            let results = try #require(try namespace.item("results")).elements()
            #expect(try results[0].asString() == "first")
            #expect(try results[1...4].map { try $0.asInt() } == [1, 6, 16, 16])
            #expect(try results[5].asString() == "<Counted first>")
            #expect(try results[6].asString() == "Counted")
            #expect(try results[7].asString() == "renamed")
            #expect(try results[8...11].map { try $0.asInt() } == [22, 26, 36, 38])
            let errors = try #require(try namespace.item("errors")).elements().map { try $0.asString() }
            #expect(errors == ["AttributeError", "AttributeError", "ValueError", "TypeError", "AttributeError", "TypeError",
                               "TypeError", "TypeError"])
            // Methods called the interpreter's way (vectorcall, the name interned once).
            let hit = InternedName("Hit")
            #expect(try c(namespace).callMethod(hit, [try PythonObject(4)]).asInt() == 42)
            #expect(try c(namespace).callMethod(hit).asInt() == 43)
            #expect(throws: PythonError.self) { try c(namespace).callMethod(InternedName("NoSuchMethod")) }
        }
    }

    /// A callable native type: its tuple and dict arrive as a method's arguments, with
    /// keywords, past the eight that fit without a heap array, and errors raised in Python.
    @Test func callableNativeObjectsTakeArgumentsAsMethodsDo() throws {
        try TestInterpreter.run {
            let namespace = try PythonObject.dict([("__builtins__", try Python.importModule("builtins"))])
            try Python.run("""
            import _frost_test
            c = _frost_test.make("called")
            results = [callable(c), c(), c(1, 2), c(extra=10), c(1, extra=100), c(*range(20)), c(*range(9), extra=1)]
            try:
                c(-5)
            except ValueError as e:
                results.append(str(e))
            """, globals: namespace)
            let results = try #require(try namespace.item("results")).elements()
            #expect(try results[0].isTrue())
            #expect(try results[1...6].map { try $0.asInt() } == [0, 3, 13, 114, 304, 341])
            #expect(try results[7].asString() == "cannot add -5")
        }
    }

    @Test func noLeakAcross100kNativeObjects() throws {
        try TestInterpreter.run {
            let before = Counted.live
            let typeObject = try countedType.typeObject()
            let typeReferences = typeObject.referenceCount
            for i in 0..<100_000 {
                let object = try countedType.wrap(Counted("n\(i)"))
                if i % 10_000 == 0 {
                    _ = try object.callMethod("Hit", [try PythonObject(2)])
                    #expect(countedType.payload(of: object)?.hits == 2)
                }
            }
            #expect(Counted.live == before)
            // Objects made from Python code are freed as well, including bound methods.
            let namespace = try PythonObject.dict([("__builtins__", try Python.importModule("builtins"))])
            try Python.run("""
            import _frost_test
            for i in range(100000):
                o = _frost_test.make(str(i))
                o.Hit(by=1)
            del o
            """, globals: namespace)
            #expect(Counted.live == before)
            #expect(typeObject.referenceCount == typeReferences)
        }
    }

    /// Owned results reach Python with exactly one reference of their own (one too many
    /// would leak every value, one too few free it under Python's feet), and objects made by
    /// `wrapOwned` and `callMethod(_:borrowing:)` are freed with their payloads.
    @Test func ownedValuesAreHandedOverExactlyOnce() throws {
        try TestInterpreter.run {
            let before = Counted.live
            let namespace = try PythonObject.dict([("__builtins__", try Python.importModule("builtins"))])
            for index in 0..<20_000 {
                let owned = try countedType.wrapOwned(Counted("é\(index)"))
                let result = try PythonObject(borrowing: owned.pointer).callMethod(InternedName("HitOwned"), borrowing: owned.borrowed)
                    .object
                if index % 5_000 == 0 {
                    try namespace.setItem("o", PythonObject(borrowing: owned.pointer))
                    try Python.run("""
                    import sys
                    label = o.LabelBytes
                    hits = o.HitOwned()
                    assert label == str(o).split()[1][:-1].encode(), (label, str(o))
                    assert hits == 2000000, hits
                    # The variable's reference and getrefcount's argument: nothing else holds them.
                    assert sys.getrefcount(label) == 2, sys.getrefcount(label)
                    assert sys.getrefcount(hits) == 2, sys.getrefcount(hits)
                    del o, label, hits
                    """, globals: namespace)
                }
                #expect(try result.asInt() == 1_000_000)
            }
            #expect(Counted.live == before)
        }
    }

    @Test func payloadOfRejectsOtherObjects() throws {
        try TestInterpreter.run {
            let text = try PythonObject("text")
            #expect(countedType.payload(of: text) == nil)
        }
    }
}

@Suite struct PythonThreadTests {
    @Test func dedicatedThreadsKeepOneThreadStateAndRunConcurrently() throws {
        let interpreter = TestInterpreter.shared
        let threads = try (0..<4).map { try PythonThread(interpreter: interpreter, name: "py-\($0)") }
        defer { threads.forEach { $0.stop() } }
        let idents = try threads.map { thread in
            try (0..<3).map { _ in
                try thread.perform { try Python.importModule("threading").callMethod("get_ident").asInt() }
            }
        }
        for perThread in idents { #expect(Set(perThread).count == 1) }
        #expect(Set(idents.map { $0[0] }).count == 4)

        let results = ResultCollector()
        DispatchQueue.concurrentPerform(iterations: 4) { index in
            let value = try? threads[index].perform {
                try Python.evaluate("sum(i * i for i in range(\(10_000 * (index + 1))))").asInt()
            }
            results.set(index, value ?? -1)
        }
        for index in 0..<4 {
            let n = 10_000 * (index + 1)
            #expect(results.get(index) == (n - 1) * n * (2 * n - 1) / 6)
        }
    }

    /// Jobs that come one after another run on one thread (the one that slept last, its
    /// caches warm), not in turn on every thread of the pool. (On a loaded machine — the
    /// whole suite runs in parallel — the watchdog hands a job whose thread did not get a
    /// core within a tick to another thread: 11 of 64 went elsewhere in one run. Waking
    /// threads in turn spreads them evenly, 8 each, so "most on one" tells the two apart.)
    @Test func sequentialJobsStayOnOneThread() throws {
        let pool = try PythonThreadPool(interpreter: TestInterpreter.shared, size: 8, name: "py-sequential")
        defer { pool.stop() }
        let seen = ResultCollector()
        for index in 0..<64 {
            let done = DispatchSemaphore(value: 0)
            pool.submit {
                seen.set(index, Int(bitPattern: UInt(pthread_self())))
                done.signal()
            }
            done.wait()
            usleep(200)  // the thread goes back to sleep before the next job comes
        }
        var perThread: [Int: Int] = [:]
        for index in 0..<64 { perThread[seen.get(index) ?? -1, default: 0] += 1 }
        #expect((perThread.values.max() ?? 0) >= 32, "64 jobs in turn ran on \(perThread.count) threads: \(perThread.values.sorted())")
    }

    /// A job that blocks (releasing the GIL, as time.sleep and I/O do) does not hold back the
    /// jobs queued behind it: the watchdog hands them to another thread within ticks.
    @Test func aBlockedJobDoesNotHoldBackTheQueue() throws {
        let pool = try PythonThreadPool(interpreter: TestInterpreter.shared, size: 4, name: "py-blocked")
        defer { pool.stop() }
        let started = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        pool.submit {
            started.signal()
            _ = try? Python.evaluate("__import__('time').sleep(1.5)")
            finished.signal()
        }
        started.wait()
        let begin = Date()
        let fast = DispatchSemaphore(value: 0)
        for _ in 0..<20 { pool.submit { fast.signal() } }
        for _ in 0..<20 { fast.wait() }
        let elapsed = Date().timeIntervalSince(begin)
        #expect(elapsed < 0.5, "20 quick jobs behind a sleeping one took \(elapsed) s")
        finished.wait()
    }

    @Test func errorsComeBackToTheCaller() throws {
        let thread = try PythonThread(interpreter: TestInterpreter.shared, name: "py-errors")
        defer { thread.stop() }
        #expect(throws: PythonError.self) { try thread.perform { try Python.evaluate("1/0") } }
        #expect(try thread.perform { try Python.evaluate("6*7").asInt() } == 42)
    }
}

final class ResultCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int: Int] = [:]
    func set(_ key: Int, _ value: Int) { lock.lock(); values[key] = value; lock.unlock() }
    func get(_ key: Int) -> Int? { lock.lock(); defer { lock.unlock() }; return values[key] }
}

/// The interpreters of every supported version on this machine: Debian's and pyenv's.
enum Interpreters {
    static func headers(minor: Int) -> String? {
        var candidates = ["/usr/include/python3.\(minor)"]
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: NSHomeDirectory() + "/.pyenv/versions")) ?? []
        for version in versions.sorted() where version.hasPrefix("3.\(minor).") {
            candidates.append(NSHomeDirectory() + "/.pyenv/versions/\(version)/include/python3.\(minor)")
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/cpython/initconfig.h") }
    }
}

@Suite struct PythonLibraryTests {
    /// The PyConfig offsets frost sets through are what each version's own headers say.
    @Test(arguments: Array(PythonLibrary.supportedMinorVersions))
    func configLayoutMatchesTheHeaders(minor: Int) throws {
        guard let layout = frost_python_config_layout(Int32(minor))?.pointee else {
            Issue.record("no PyConfig layout for 3.\(minor)")
            return
        }
        guard let include = Interpreters.headers(minor: minor) else {
            print("skipped: no headers of Python 3.\(minor) on this machine (python3.\(minor)-dev or pyenv)")
            return
        }
        let fields = ["site_import", "user_site_directory", "use_environment", "buffered_stdio", "write_bytecode",
                      "parse_argv", "pathconfig_warnings", "install_signal_handlers", "optimization_level", "program_name",
                      "executable", "home", "stdio_encoding", "module_search_paths_set", "module_search_paths"]
            + (minor >= 11 ? ["safe_path"] : [])
        let program = "#include <Python.h>\n#include <stdio.h>\n#include <stddef.h>\nint main(void) {\n"
            + "printf(\"size %zu\\n\", sizeof(PyConfig));\n"
            + fields.map { "printf(\"\($0) %zu\\n\", offsetof(PyConfig, \($0)));\n" }.joined() + "return 0; }\n"
        let scratch = NSTemporaryDirectory() + "frost-layout-\(minor)-\(getpid())"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try program.write(toFile: scratch + "/layout.c", atomically: true, encoding: .utf8)
        let compile = Process()
        compile.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
        compile.arguments = ["-I", include, scratch + "/layout.c", "-o", scratch + "/layout"]
        try compile.run()
        compile.waitUntilExit()
        try #require(compile.terminationStatus == 0, "cc failed for \(include)")
        let run = Process(), out = Pipe()
        run.executableURL = URL(fileURLWithPath: scratch + "/layout")
        run.standardOutput = out
        try run.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.waitUntilExit()
        var actual: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            actual[String(parts[0])] = Int(parts[1])
        }
        let known: [String: Int] = [
            "size": layout.size, "site_import": layout.site_import, "user_site_directory": layout.user_site_directory,
            "use_environment": layout.use_environment, "buffered_stdio": layout.buffered_stdio,
            "write_bytecode": layout.write_bytecode, "parse_argv": layout.parse_argv,
            "pathconfig_warnings": layout.pathconfig_warnings, "install_signal_handlers": layout.install_signal_handlers,
            "optimization_level": layout.optimization_level, "program_name": layout.program_name,
            "executable": layout.executable, "home": layout.home, "stdio_encoding": layout.stdio_encoding,
            "module_search_paths_set": layout.module_search_paths_set, "module_search_paths": layout.module_search_paths,
        ].merging(minor >= 11 ? ["safe_path": layout.safe_path] : [:]) { a, _ in a }
        #expect(actual == known, "Python 3.\(minor) (\(include))")
        if minor < 11 { #expect(layout.safe_path == -1) }
    }

    @Test func aSecondLibraryInOneProcessIsRefused() throws {
        _ = TestInterpreter.shared
        let loaded = try #require(PythonLibrary.loaded)
        #expect(try PythonLibrary.load(loaded.path) == loaded.version)
        let other = "/usr/lib/x86_64-linux-gnu/libz.so.1"
        #expect {
            try PythonLibrary.load(other)
        } throws: { error in
            "\(error)".contains("already runs \(loaded.path); it cannot load \(other) too")
        }
    }

    @Test func versionsAreReadAndJudged() throws {
        let release = try #require(PythonLibrary.Version(line: "3.12.1 (main, Dec  4 2023, 10:31:58) [GCC 12.2.0]"))
        #expect((release.major, release.minor, release.micro) == (3, 12, 1))
        #expect(release.short == "3.12")
        #expect(PythonLibrary.unsupported(release) == nil)
        let candidate = try #require(PythonLibrary.Version(line: "3.13.0rc2 (main) [GCC]"))
        #expect(candidate.micro == 0)
        let old = try #require(PythonLibrary.Version(line: "3.9.18 (main) [GCC]"))
        #expect(PythonLibrary.unsupported(old)?.contains("3.10 to 3.13") == true)
        let threaded = try #require(PythonLibrary.Version(line: "3.13.0 experimental free-threading build (main) [GCC]"))
        #expect(PythonLibrary.unsupported(threaded)?.contains("free-threaded") == true)
        #expect(PythonLibrary.Version(line: "not a version") == nil)
    }
}
