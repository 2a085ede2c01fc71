import Testing
import FrostBundle
import FrostSystem

@Suite struct BundleLayoutTests {
    @Test func loaderNameSelectsTheModule() {
        let layout = BundleLayout(executablePath: "/srv/dist/hello/_hello")
        #expect(layout.role == .loader)
        #expect(layout.name == "hello")
        #expect(layout.directory == "/srv/dist/hello")
        #expect(layout.archivePath == "/srv/dist/hello/hello.zip")
        #expect(layout.libraryDirectory == "/srv/dist/hello/lib")
        #expect(layout.manifestPath == "/srv/dist/hello/bundle.json")
        #expect(layout.standardLibraryArchive(major: 3, minor: 11) == "/srv/dist/hello/lib/python311.zip")
        #expect(layout.extensionModuleDirectory == "/srv/dist/hello/lib/lib-dynload")
    }

    @Test func renamedLoaderLooksForTheOtherModule() {
        let layout = BundleLayout(executablePath: "/srv/dist/hello/_other")
        #expect(layout.name == "other")
        #expect(layout.archivePath == "/srv/dist/hello/other.zip")
    }

    @Test func nameWithoutUnderscoreIsTheConsole() {
        let layout = BundleLayout(executablePath: "/srv/dist/hello/hello")
        #expect(layout.role == .console)
        #expect(layout.name == "hello")
        #expect(BundleLayout(executablePath: "/_").role == .console)
        #expect(BundleLayout(executablePath: "/_x").directory == "/")
    }

    @Test func moduleNamesAreChecked() {
        #expect(BundleLayout.problemWithModuleName("hello") == nil)
        #expect(BundleLayout.problemWithModuleName("pkg.sub_mod") == nil)
        #expect(BundleLayout.problemWithModuleName("héllo") == nil)
        #expect(BundleLayout.problemWithModuleName("my-app") != nil)
        #expect(BundleLayout.problemWithModuleName("9lives") != nil)
        #expect(BundleLayout.problemWithModuleName("a..b") != nil)
        #expect(BundleLayout.problemWithModuleName("") != nil)
    }
}

import Foundation
import FrostArchive

@Suite struct HashAndJSONTests {
    /// Hashing in pieces of any size (buffers, array slices, non-contiguous collections)
    /// gives the digest of the whole.
    @Test func sha256OfPiecesIsTheDigestOfTheWhole() {
        var generator = SystemRandomNumberGenerator()
        for length in [0, 1, 55, 56, 63, 64, 65, 127, 128, 1000, 4096 + 17, 100_000] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            var whole = SHA256()
            bytes.withUnsafeBytes { whole.update(buffer: $0) }
            var pieces = SHA256()
            var offset = 0
            while offset < length {
                let size = min(length - offset, Int.random(in: 1...200, using: &generator))
                if size % 2 == 0 {
                    pieces.update(bytes[offset..<offset + size])
                } else {
                    pieces.update(bytes[offset..<offset + size].lazy.map { $0 })
                }
                offset += size
            }
            #expect(whole.finalize() == pieces.finalize(), "length \(length)")
        }
    }

    @Test func sha256MatchesKnownVectorsAndSha256sum() throws {
        #expect(SHA256.hex([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let long = (0..<100_003).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let path = NSTemporaryDirectory() + "frost-sha-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(long))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        process.arguments = [path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let expected = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).prefix(64)
        process.waitUntilExit()
        #expect(SHA256.hex(long) == String(expected))
        #expect(try FileSystem.sha256(ofFile: path).0 == String(expected))
        var incremental = SHA256()
        incremental.update(long[..<7]); incremental.update(long[7..<70_000]); incremental.update(long[70_000...])
        #expect(SHA256.hexString(incremental.finalize()) == String(expected))
    }

    @Test func jsonRoundTripsDeterministically() throws {
        let value: JSON = .object(["b": .array([.number(1), .bool(true), .null]), "a": .string("é \"q\" \n\u{01}"),
                                   "c": .object([:]), "n": .number(-2.5)])
        let text = value.serialized()
        #expect(try JSON.parse(text) == value)
        #expect(text.hasPrefix("{\n  \"a\":"))
        #expect(try JSON.parse("[\"\\ud83d\\ude00\"]") == .array([.string("😀")]))
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "tru", "\"unterminated", "[1] 2", "{\"a\":\"\\x\"}",
                    // strict for real: repeated keys, and numbers outside RFC 8259's grammar
                    "{\"a\":1,\"a\":2}", "{\"k\":{\"x\":1},\"k\":{}}", "+1", "01", "-01", "1.", ".5", "1e", "1e+",
                    "-", "--1", "1e400", "-1e400", "Infinity", "NaN", "0x10", "[1,,2]"] {
            #expect(throws: JSON.ParseError.self, "\(bad)") { _ = try JSON.parse(bad) }
        }
        for (good, number) in [("0", 0.0), ("-0", -0.0), ("10", 10), ("-2.5", -2.5), ("1E3", 1000), ("2e-1", 0.2), ("0.5e+1", 5)] {
            #expect(try JSON.parse(good) == .number(number), "\(good)")
        }
        #expect(try JSON.parse("{\"a\":{\"b\":1},\"b\":{\"b\":2}}")["b"]?["b"]?.int == 2, "the same key in two objects is fine")
        #expect(throws: JSON.ParseError.self) { _ = try JSON.parse(utf8: [0x22, 0xC3, 0x28, 0x22]) }  // invalid UTF-8
        #expect(try JSON.parse(utf8: Array("\"é\"".utf8)) == .string("é"))
    }

    @Test func manifestRoundTripsAndVerifierFindsEveryKindOfDifference() throws {
        let root = NSTemporaryDirectory() + "frost-manifest-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/lib", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var writer = ZipWriter()
        try writer.add("a.py", text: "A = 1\n")
        try writer.add("b.py", text: "B = 2\n")
        try writer.write(to: root + "/app.zip")
        _ = FileManager.default.createFile(atPath: root + "/lib/libx.so", contents: Data("lib".utf8))
        var manifest = BundleManifest(name: "app", entry: "app", pythonVersion: "3.11.2", bytecodeMagic: "a70d0d0a")
        for file in try FileSystem.listFiles(below: root) {
            let (hash, size) = try FileSystem.sha256(ofFile: root + "/" + file.path)
            manifest.files[file.path] = .init(sha256: hash, size: size)
        }
        let mounted = try MountedArchive(path: root + "/app.zip")
        manifest.archives["app.zip"] = Dictionary(uniqueKeysWithValues: try mounted.paths.map { ($0, SHA256.hex(try mounted.read($0))) })
        try Data(manifest.json.serialized().utf8).write(to: URL(fileURLWithPath: root + "/bundle.json"))
        let loaded = try #require(try BundleManifest.load(bundleDirectory: root))
        #expect(loaded == manifest)
        #expect(BundleVerifier.verify(bundleDirectory: root, manifest: loaded).isEmpty)

        _ = FileManager.default.createFile(atPath: root + "/lib/libx.so", contents: Data("liB".utf8))
        _ = FileManager.default.createFile(atPath: root + "/extra.txt", contents: Data())
        let differences = BundleVerifier.verify(bundleDirectory: root, manifest: loaded)
        #expect(differences.map(\.description) == ["unexpected: extra.txt (not in the manifest)", "changed: lib/libx.so (SHA-256 differs)"])
        #expect(BundleVerifier.verifyArchives(bundleDirectory: root, manifest: loaded).isEmpty)

        var other = ZipWriter()
        try other.add("a.py", text: "A = 9\n")
        try other.add("c.py", text: "C = 3\n")
        try other.write(to: root + "/app.zip")
        let archiveDifferences = BundleVerifier.verify(bundleDirectory: root, manifest: loaded).map(\.description)
        #expect(archiveDifferences.contains("changed: app.zip (SHA-256 differs)") || archiveDifferences.contains { $0.hasPrefix("changed: app.zip") })
        #expect(archiveDifferences.contains("entry changed: app.zip:a.py"))
        #expect(archiveDifferences.contains("entry missing: app.zip:b.py"))
        #expect(archiveDifferences.contains("entry unexpected: app.zip:c.py"))
        #expect(!BundleVerifier.verifyArchives(bundleDirectory: root, manifest: loaded).isEmpty)

        try Data("{not json".utf8).write(to: URL(fileURLWithPath: root + "/bundle.json"))
        #expect(throws: ManifestError.self) { _ = try BundleManifest.load(bundleDirectory: root) }
    }
}
