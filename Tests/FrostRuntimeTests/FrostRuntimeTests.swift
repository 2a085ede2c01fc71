import Foundation
import Testing
import FrostArchive
import FrostBundle
import FrostPython
@testable import FrostRuntime

func mount(_ files: [String: String]) throws -> (MountedArchive, String) {
    var writer = ZipWriter()
    for (path, text) in files { try writer.add(path, text: text) }
    let path = NSTemporaryDirectory() + "frost-runtime-\(UUID().uuidString).zip"
    try writer.write(to: path)
    return (try MountedArchive(path: path), path)
}

@Suite struct ModuleIndexTests {
    @Test func lookupOrderFollowsZipimport() throws {
        let (archive, path) = try mount([
            "pkg/__init__.pyc": "", "pkg/__init__.py": "", "pkg/mod.pyc": "", "pkg/mod.py": "",
            "pkg/onlysource.py": "", "plain.py": "", "ns/part.py": "", "pkg/data.txt": "",
        ])
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(ModuleIndex.locate("pkg", prefix: "", in: archive)
                == ModuleLocation(kind: .package, codeEntry: "pkg/__init__.pyc", packageDirectory: "pkg/"))
        #expect(ModuleIndex.locate("pkg.mod", prefix: "pkg/", in: archive)
                == ModuleLocation(kind: .module, codeEntry: "pkg/mod.pyc", packageDirectory: nil))
        let source = try #require(ModuleIndex.locate("pkg.onlysource", prefix: "pkg/", in: archive))
        #expect(source.codeEntry == "pkg/onlysource.py")
        #expect(!source.isBytecode)
        #expect(ModuleIndex.locate("plain", prefix: "", in: archive)?.kind == .module)
        #expect(ModuleIndex.locate("ns", prefix: "", in: archive)
                == ModuleLocation(kind: .namespace, codeEntry: nil, packageDirectory: "ns/"))
        #expect(ModuleIndex.locate("missing", prefix: "", in: archive) == nil)
        // The importer for "pkg/" only sees what is inside it.
        #expect(ModuleIndex.locate("plain", prefix: "pkg/", in: archive) == nil)
        #expect(ModuleIndex.locate("data", prefix: "pkg/", in: archive) == nil)
    }

    @Test func iterModulesListsModulesAndPackagesOnly() throws {
        let (archive, path) = try mount([
            "pkg/__init__.py": "", "pkg/a.pyc": "", "pkg/a.py": "", "pkg/b.py": "", "pkg/sub/__init__.pyc": "",
            "pkg/notapkg/x.txt": "", "pkg/data.txt": "", "pkg/odd.name.py": "",
        ])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let listed = ModuleIndex.modules(under: "pkg/", in: archive)
        #expect(listed.map(\.name) == ["a", "b", "sub"])
        #expect(listed.map(\.isPackage) == [false, false, true])
    }

    @Test func extensionModulesInTheArchiveAreRecognised() throws {
        let (archive, path) = try mount(["pkg/__init__.py": "", "pkg/_speedups.cpython-311-x86_64-linux-gnu.so": "ELF"])
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(ModuleIndex.extensionModules(in: archive) == ["pkg/_speedups": "pkg/_speedups.cpython-311-x86_64-linux-gnu.so"])
    }
}

@Suite struct FilterFlagTests {
    @Test func flagsAreNamedAndUnknownBitsShown() {
        #expect(FilterFlags.describe(0x24000) == "SF_NOTIFY_PREPROC_HEADERS|SF_NOTIFY_ORDER_LOW")
        #expect(FilterFlags.describe(0) == "0")
        #expect(FilterFlags.describe(0x1_0000_0000 | 0x1) == "SF_NOTIFY_SECURE_PORT|0x100000000")
    }
}

@Suite struct IsapiPackageTests {
    /// The isapi package's own unit tests, under the interpreter frost freezes.
    @Test func pythonUnitTestsPass() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Python")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-I", "-m", "unittest", "discover", "-s", root.appendingPathComponent("tests").path,
                             "-t", root.path, "-v"]
        process.currentDirectoryURL = root
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(output)")
        #expect(output.contains("OK"))
        #expect(!output.contains("Ran 0 tests"))
    }
}

@Suite struct SupportedPythonTests {
    /// The packager refuses what the loader cannot run, and the loader runs all it accepts.
    @Test func thePackagerAndTheLoaderSupportTheSameVersions() {
        #expect(PythonLibrary.supportedMinorVersions == BundleLayout.supportedPythonMinorVersions)
    }
}
