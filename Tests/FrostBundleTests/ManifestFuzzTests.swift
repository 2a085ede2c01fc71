import Foundation
import Testing
import FrostBundle
import FrostTestSupport

/// A property-based fuzzer over the manifest reader: seeded mutations of a real
/// bundle.json (bytes flipped, inserted, deleted, duplicated) for a bounded count and
/// time. Every input is read without a crash or a hang, and every refusal is typed.
@Suite struct ManifestFuzzTests {

    static var sample: [UInt8] {
        var manifest = BundleManifest(name: "app", entry: "app", pythonVersion: "3.11.2", bytecodeMagic: "a70d0d0a")
        manifest.files["app.zip"] = .init(sha256: String(repeating: "ab", count: 32), size: 1234)
        manifest.files["lib/libpython3.11.so.1.0"] = .init(sha256: String(repeating: "cd", count: 32), size: 5_000_000)
        manifest.archives["app.zip"] = ["app.pyc": String(repeating: "ef", count: 32), "pkg/__init__.pyc": String(repeating: "01", count: 32)]
        manifest.options = ["listen": .string("127.0.0.1:8000"), "workers": .number(2), "threads": .number(8)]
        return Array(manifest.json.serialized().utf8)
    }

    @Test func mutatedManifestsAreReadOrRefusedWithATypedError() throws {
        let good = Self.sample
        #expect(try BundleManifest(json: try JSON.parse(utf8: good), source: "bundle.json").name == "app")
        var random = SeededRandom(seed: 20261202)
        let alphabet = Array("{}[]\",:0123456789.eE+-\\u tfnabcdef\u{0}\u{7f}".utf8) + [0xC3, 0xFF]
        let started = Date()
        var accepted = 0, refused = 0
        for _ in 0..<20_000 where Date().timeIntervalSince(started) < 10 {
            var bytes = good
            random.mutate(&bytes, maxEdits: 6, alphabet: alphabet, duplicatingRuns: true, filler: UInt8(ascii: "{"))
            do {
                _ = try BundleManifest(json: try JSON.parse(utf8: bytes), source: "bundle.json")
                accepted += 1
            } catch is JSON.ParseError {
                refused += 1
            } catch is ManifestError {
                refused += 1
            }
        }
        #expect(accepted + refused > 1000, "ran: \(accepted) accepted, \(refused) refused")
        #expect(refused > accepted, "most mutations are refused: \(accepted) accepted, \(refused) refused")
    }
}
