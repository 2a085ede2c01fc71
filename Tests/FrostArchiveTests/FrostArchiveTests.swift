import Foundation
import Testing
@testable import FrostArchive
import FrostTestSupport

/// A scratch directory removed when the test ends.
final class Scratch {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "frost-archive-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String, _ bytes: [UInt8]) -> String {
        let p = path + "/" + name
        _ = FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }
}

func sampleWriter() throws -> ZipWriter {
    var writer = ZipWriter()
    try writer.add("pkg/__init__.py", text: "X = 1\n")
    try writer.add("pkg/sub/mod.py", text: String(repeating: "value = 'compressible'\n", count: 200))
    try writer.add("pkg/data.bin", contents: (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) }, compression: .stored)
    try writer.add("top.txt", text: "héllo wörld\n")
    try writer.add("empty.txt", contents: [])
    return writer
}

@Suite struct WriterAndMountTests {
    @Test func roundTripReadsEveryEntryBack() throws {
        let scratch = Scratch()
        let writer = try sampleWriter()
        let path = scratch.path + "/a.zip"
        try writer.write(to: path)
        let mounted = try MountedArchive(path: path)
        #expect(mounted.paths == ["empty.txt", "pkg/__init__.py", "pkg/data.bin", "pkg/sub/mod.py", "top.txt"])
        #expect(try mounted.read("pkg/__init__.py") == Array("X = 1\n".utf8))
        #expect(try mounted.read("top.txt") == Array("héllo wörld\n".utf8))
        #expect(try mounted.read("empty.txt") == [])
        #expect(try mounted.read("pkg/data.bin") == (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        #expect(mounted.entries["pkg/data.bin"]?.compression == .stored)
        let mod = try #require(mounted.entries["pkg/sub/mod.py"])
        #expect(mod.compression == .deflate)
        #expect(mod.compressedSize < mod.uncompressedSize / 10)
        #expect(mounted.baseOffset == 0)
    }

    @Test func directoriesAreImpliedAndListed() throws {
        let scratch = Scratch()
        let path = scratch.path + "/a.zip"
        try sampleWriter().write(to: path)
        let mounted = try MountedArchive(path: path)
        #expect(mounted.directories == ["", "pkg/", "pkg/sub/"])
        let top = mounted.children(of: "")
        #expect(top.map(\.name) == ["empty.txt", "pkg", "top.txt"])
        #expect(top.map(\.isDirectory) == [false, true, false])
        #expect(mounted.children(of: "pkg/").map(\.name) == ["__init__.py", "data.bin", "sub"])
        #expect(throws: ArchiveError.self) { try mounted.read("pkg/sub") }
        #expect((try? mounted.read("nope.txt")) == nil)
        do { _ = try mounted.read("pkg") } catch let e as ArchiveError { #expect(e.kind == .isADirectory) }
        do { _ = try mounted.read("missing") } catch let e as ArchiveError {
            #expect(e.kind == .noSuchEntry)
            #expect(e.description.contains("missing"))
        }
    }

    @Test func twoWritesAreByteIdenticalWhateverTheOrder() throws {
        let first = try sampleWriter().bytes()
        var reversed = ZipWriter()
        try reversed.add("top.txt", text: "héllo wörld\n")
        try reversed.add("pkg/data.bin", contents: (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) }, compression: .stored)
        try reversed.add("empty.txt", contents: [])
        try reversed.add("pkg/sub/mod.py", text: String(repeating: "value = 'compressible'\n", count: 200))
        try reversed.add("pkg/__init__.py", text: "X = 1\n")
        let second = try reversed.bytes()
        #expect(first == second)
        // A different input gives different bytes: the comparison can fail.
        var changed = try sampleWriter()
        try changed.add("extra.txt", text: "x")
        #expect(try changed.bytes() != first)
    }

    @Test func cpythonZipfileReadsTheArchiveWithoutZip64() throws {
        let scratch = Scratch()
        let path = scratch.path + "/a.zip"
        try sampleWriter().write(to: path)
        let script = """
        import zipfile, sys
        z = zipfile.ZipFile(sys.argv[1])
        assert z.testzip() is None
        for i in z.infolist():
            assert i.date_time == (1980, 1, 1, 0, 0, 0), i.date_time
            assert b'\\x01\\x00' not in i.extra[:2], 'zip64 extra'
            assert i.file_size < 0xFFFFFFFF
        print(','.join(sorted(z.namelist())), z.read('top.txt').decode())
        """
        let out = try runPython(script, args: [path])
        #expect(out.hasPrefix("empty.txt,pkg/__init__.py,pkg/data.bin,pkg/sub/mod.py,top.txt héllo wörld"))
    }

    @Test func archiveAppendedToAnExecutableMounts() throws {
        let scratch = Scratch()
        let exe = scratch.file("stub", Array(repeating: 0x7f, count: 10_000))
        try sampleWriter().append(to: exe)
        let mounted = try MountedArchive(path: exe)
        #expect(mounted.baseOffset == 10_000)
        #expect(try mounted.read("pkg/__init__.py") == Array("X = 1\n".utf8))
        // CPython's own zipimport agrees on where the archive starts.
        let out = try runPython("import sys; sys.path.insert(0, sys.argv[1]); import pkg; print(pkg.X)", args: [exe])
        #expect(out == "1\n")
    }

    @Test func writerRefusesBadPathsAndDuplicates() throws {
        var writer = ZipWriter()
        for bad in ["/etc/passwd", "../up", "a/../b", "a//b", "./a", "C:/x", "a\\b", "dir/"] {
            #expect(throws: ArchiveError.self, "\(bad)") { try writer.add(bad, text: "x") }
        }
        try writer.add("a", text: "1")
        #expect(throws: ArchiveError(.duplicateEntry, archive: "<writer>", entry: "a", "added twice")) {
            try writer.add("a", text: "2")
        }
    }
}

@Suite struct HostileArchiveTests {
    func mountError(_ bytes: [UInt8], limits: ArchiveLimits = .default) -> ArchiveError? {
        let scratch = Scratch()
        let path = scratch.file("hostile.zip", bytes)
        do {
            _ = try MountedArchive(path: path, limits: limits)
            return nil
        } catch let error as ArchiveError {
            #expect(error.archive == path)
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    func readError(_ zip: RawZip, entry: String) throws -> ArchiveError? {
        let scratch = Scratch()
        let mounted = try MountedArchive(path: scratch.file("h.zip", zip.bytes()))
        do { _ = try mounted.read(entry); return nil } catch let error as ArchiveError { return error }
    }

    @Test func aWellFormedRawZipMounts() throws {
        var zip = RawZip()
        zip.add("ok/file.txt", "fine")
        #expect(mountError(zip.bytes()) == nil)
        #expect(try readError(zip, entry: "ok/file.txt") == nil)
    }

    @Test func absolutePathsAreRefused() {
        for name in ["/etc/passwd", "C:/windows/x", "..\\evil"] {
            var zip = RawZip(); zip.add(name, "x")
            let error = mountError(zip.bytes())
            #expect(error?.kind == .absolutePath, "\(name)")
            #expect(error?.entry == name)
        }
    }

    @Test func parentComponentsAreRefused() {
        for name in ["../evil.py", "a/../../b", "a/./b", "a//b"] {
            var zip = RawZip(); zip.add(name, "x")
            let error = mountError(zip.bytes())
            #expect(error?.kind == .parentReference, "\(name)")
            #expect(error?.description.contains(name) == true)
        }
    }

    @Test func symlinksAndDevicesAreRefused() {
        for (mode, label) in [(UInt32(0o120777), "symbolic link"), (0o020644, "device"), (0o060644, "device"), (0o010644, "fifo")] {
            var zip = RawZip(); zip.add("link", "/etc/passwd", mode: mode)
            let error = mountError(zip.bytes())
            #expect(error?.kind == .notARegularFile)
            #expect(error?.detail.contains(label) == true)
        }
    }

    @Test func duplicateNamesAreRefused() {
        var zip = RawZip(); zip.add("a.py", "1"); zip.add("a.py", "2")
        #expect(mountError(zip.bytes())?.kind == .duplicateEntry)
        var clash = RawZip(); clash.add("a", "1"); clash.add("a/b", "2")
        #expect(mountError(clash.bytes())?.kind == .duplicateEntry)
    }

    @Test func sizeLimitsStopZipBombs() {
        var zip = RawZip(); zip.add("big", String(repeating: "x", count: 2000))
        #expect(mountError(zip.bytes(), limits: ArchiveLimits(maximumEntrySize: 1000))?.kind == .entryTooLarge)
        var many = RawZip(); for i in 0..<5 { many.add("f\(i)", String(repeating: "y", count: 300)) }
        #expect(mountError(many.bytes(), limits: ArchiveLimits(maximumTotalSize: 1000))?.kind == .archiveTooLarge)
        #expect(mountError(many.bytes(), limits: ArchiveLimits(maximumEntryCount: 3))?.kind == .archiveTooLarge)
    }

    @Test func forgedSizesAreCaughtWhenReading() throws {
        var zip = RawZip()
        zip.items.append(.init(name: "short", data: Array("0123456789".utf8), declaredSize: 10))
        zip.items.append(.init(name: "crc", data: Array("payload".utf8), crc: 1234))
        zip.items.append(.init(name: "renamed", data: Array("x".utf8), localName: "other!!"))
        #expect(try readError(zip, entry: "short") == nil)
        #expect(try readError(zip, entry: "crc")?.kind == .corrupt)
        #expect(try readError(zip, entry: "renamed")?.kind == .corrupt)
        // A stored entry that claims a different uncompressed size is refused at mount.
        var lie = RawZip()
        lie.items.append(.init(name: "lie", data: Array("abc".utf8), declaredSize: 1_000_000))
        #expect(mountError(lie.bytes())?.kind == .corrupt)
    }

    /// A deflated entry (as the packager writes them) is inflated to exactly the size the
    /// central directory declares and checked against its CRC-32: a header that declares
    /// less (a bomb's lie), more, a wrong CRC, or damaged deflate data are each refused.
    @Test func deflatedEntriesInflateToExactlyTheDeclaredSizeAndCRC() throws {
        var writer = ZipWriter()
        let text = String(repeating: "value = 'compressible'\n", count: 200)
        try writer.add("mod.py", text: text)
        let good = try writer.bytes()
        // The entry's central directory record: sizes at +20/+24, CRC at +16.
        let signature: [UInt8] = [0x50, 0x4b, 0x01, 0x02]
        let central = try #require((0..<(good.count - 4)).first { Array(good[$0..<($0 + 4)]) == signature })
        let compressedSize = Int(good[central + 20]) | Int(good[central + 21]) << 8
        let dataStart = 30 + "mod.py".utf8.count  // no extra field in the local header
        #expect(good[central + 10] == 8, "the writer deflates text")
        func patched(_ change: (inout [UInt8]) -> Void) -> [UInt8] { var bytes = good; change(&bytes); return bytes }
        func setU32(_ bytes: inout [UInt8], _ at: Int, _ value: Int) {
            for i in 0..<4 { bytes[at + i] = UInt8((value >> (8 * i)) & 0xff) }
        }
        func readError(_ bytes: [UInt8]) throws -> ArchiveError? {
            let scratch = Scratch()
            let mounted = try MountedArchive(path: scratch.file("d.zip", bytes))
            do {
                #expect(try mounted.read("mod.py") == Array(text.utf8))
                return nil
            } catch let error as ArchiveError { return error }
        }
        #expect(try readError(good) == nil)
        #expect(try readError(patched { setU32(&$0, central + 24, text.utf8.count - 1) })?.kind == .entryTooLarge)
        #expect(try readError(patched { setU32(&$0, central + 24, text.utf8.count + 1) })?.kind == .corrupt)
        #expect(try readError(patched { $0[central + 16] ^= 0xff })?.kind == .corrupt)
        #expect(try readError(patched { $0[dataStart + compressedSize / 2] ^= 0x55 })?.kind == .corrupt)
    }

    @Test func truncatedNonZipAndEmptyFilesAreRefused() throws {
        #expect(mountError([])?.kind == .empty)
        #expect(mountError(Array("just some text, not an archive at all".utf8))?.kind == .notAZip)
        #expect(mountError([1, 2, 3])?.kind == .notAZip)
        var zip = RawZip(); zip.add("a.txt", String(repeating: "a", count: 100)); zip.add("b.txt", "b")
        let full = zip.bytes()
        // Cut the front off: the central directory now points before the file start.
        #expect(mountError(Array(full[60...]))?.kind == .truncated)
        // Cut the end off: no end record.
        #expect(mountError(Array(full[..<(full.count - 10)]))?.kind == .notAZip)
        // Every single-byte truncation gives an error, never a crash.
        for cut in stride(from: 1, to: full.count, by: 7) {
            let scratch = Scratch()
            let path = scratch.file("t.zip", Array(full[..<cut]))
            if let mounted = try? MountedArchive(path: path) {
                for name in mounted.paths { _ = try? mounted.read(name) }
            }
        }
    }

    /// A property-based fuzzer over the archive reader: seeded corruption (bytes flipped,
    /// the file cut short) of a real archive, bounded in count and time. Mounting and
    /// reading every entry either works or throws an ArchiveError; nothing crashes or hangs.
    @Test func randomCorruptionNeverCrashes() throws {
        let good = try sampleWriter().bytes()
        var generator = SeededRandom(seed: 20261202)
        let scratch = Scratch()
        let started = Date()
        var refused = 0
        for round in 0..<1000 where Date().timeIntervalSince(started) < 15 {
            var bytes = good
            for _ in 0..<(1 + round % 4) {
                let at = Int.random(in: 0..<bytes.count, using: &generator)
                bytes[at] = UInt8.random(in: 0...255, using: &generator)
            }
            if round % 10 == 0 { bytes.removeLast(Int.random(in: 1...bytes.count / 2, using: &generator)) }
            let path = scratch.file("r\(round).zip", bytes)
            do {
                let mounted = try MountedArchive(path: path)
                for name in mounted.paths where !name.hasSuffix("/") { _ = try mounted.read(name) }
            } catch is ArchiveError {
                refused += 1
            }
        }
        #expect(refused > 100, "corruption is found: \(refused) refused")
    }

    @Test func overlappingEntriesAreRefused() {
        var zip = RawZip(); zip.add("a", String(repeating: "a", count: 50)); zip.add("b", "b")
        var bytes = zip.bytes()
        // Point b's central record at a's local header offset + 10 (inside a).
        let cdStart = bytes.count - 22 - (46 + 1) * 2
        let secondRecord = cdStart + 46 + 1
        bytes[secondRecord + 42] = 10
        #expect(mountError(bytes)?.kind == .corrupt)
    }

    @Test func missingFileIsCannotOpen() {
        do {
            _ = try MountedArchive(path: "/nonexistent/x.zip")
            Issue.record("mounted a missing file")
        } catch let error as ArchiveError {
            #expect(error.kind == .cannotOpen)
            #expect(error.description.hasPrefix("archive /nonexistent/x.zip: cannot open"))
        } catch { Issue.record("\(error)") }
    }
}

func runPython(_ script: String, args: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    process.arguments = ["-I", "-c", script] + args
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    if process.terminationStatus != 0 { Issue.record("python failed: \(text)") }
    return text
}
