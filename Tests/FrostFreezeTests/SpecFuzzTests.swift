import Foundation
import Testing
@testable import FrostFreeze
import FrostTestSupport

/// A property-based fuzzer over the spec parser: seeded mutations of a full spec, for a
/// bounded count and time. Each is loaded or refused with a SpecError naming the file;
/// nothing crashes or hangs, and no other error type escapes.
@Suite struct SpecFuzzTests {

    static let sample = """
        name = "site"
        script = "app/main.py"
        requirements = "app/requirements.txt"
        includes = ["json", "email.mime.text"]
        excludes = ["tkinter"]
        packages = ["encodings"]
        optimize = 1
        compress = true
        listen = "127.0.0.1:8000"
        workers = "auto"
        threads = 4

        [resources]
        "app/static" = "static"
        """

    @Test func mutatedSpecsLoadOrFailWithASpecError() throws {
        let dir = SpecDirectory()
        let good = Array(Self.sample.utf8)
        #expect(try SpecLoader.load(dir.write("good.toml", Self.sample)).name == "site")
        var random = SeededRandom(seed: 20261202)
        let alphabet = Array("=[]{}\"',.#\n\\ 0123456789truefalsnamescript-_:/".utf8) + [0, 0xC3, 0xFF]
        let started = Date()
        var loaded = 0, refused = 0
        for index in 0..<600 where Date().timeIntervalSince(started) < 20 {
            var bytes = good
            random.mutate(&bytes, maxEdits: 4, alphabet: alphabet)
            let file = dir.path + "/fuzz\(index).toml"
            _ = FileManager.default.createFile(atPath: file, contents: Data(bytes))
            do {
                _ = try SpecLoader.load(file)
                loaded += 1
            } catch let error as SpecError {
                #expect(error.file == file, "the error names the file: \(error)")
                refused += 1
            }
        }
        #expect(loaded + refused >= 100, "ran: \(loaded) loaded, \(refused) refused")
        #expect(refused > 0 && loaded > 0, "both outcomes seen: \(loaded) loaded, \(refused) refused")
    }
}
