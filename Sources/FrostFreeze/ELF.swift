import Foundation

/// The dynamic-linking facts of an ELF shared object or executable.
public struct ELFDynamicInfo: Equatable, Sendable {
    public var needed: [String] = []
    public var runPaths: [String] = []
    public var soname: String?
}

public struct ELFError: Error, CustomStringConvertible {
    public let path: String
    public let message: String
    public var description: String { "\(path): \(message)" }
}

/// Reads the dynamic section of 64-bit little-endian ELF files (x86-64, aarch64).
public enum ELFReader {
    public static func isELF(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4)) == Data([0x7F, 0x45, 0x4C, 0x46])
    }

    /// Whether the file carries DWARF debug information (`.debug_*` sections): what
    /// stripping saves. Binary wheels' libraries have none (and some of them, rewritten by
    /// patchelf, binutils' strip would break); pyenv's and self-built ones do.
    public static func hasDebugInformation(_ path: String) -> Bool {
        guard let elf = ELFBytes(path: path), elf.isELF64LittleEndian,
              let shoff = elf.integer(at: 0x28, size: 8), let shentsize = elf.integer(at: 0x3A, size: 2),
              let shnum = elf.integer(at: 0x3C, size: 2), let shstrndx = elf.integer(at: 0x3E, size: 2), shstrndx < shnum,
              let names = elf.integer(at: shoff + shstrndx * shentsize + 24, size: 8) else { return false }
        let prefix = Data(".debug_".utf8)
        for i in 0..<shnum {
            guard let name = elf.integer(at: shoff + i * shentsize, size: 4) else { return false }
            let start = names + name
            if start >= 0, start + prefix.count <= elf.data.count, elf.data[start..<(start + prefix.count)] == prefix { return true }
        }
        return false
    }

    /// Whether every loadable segment's file offset agrees with its address modulo its
    /// alignment, as the dynamic linker requires ("ELF load command address/offset not
    /// page-aligned" otherwise): checked after stripping.
    public static func loadSegmentsAreAligned(_ path: String) -> Bool {
        guard let elf = ELFBytes(path: path), elf.isELF64LittleEndian, let segments = try? elf.segments() else { return false }
        return segments.allSatisfy { $0.type != 1 || $0.align <= 1 || $0.offset % $0.align == $0.vaddr % $0.align }  // PT_LOAD
    }

    public static func read(_ path: String) throws -> ELFDynamicInfo {
        let elf: ELFBytes
        do { elf = ELFBytes(data: try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)) } catch {
            throw ELFError(path: path, message: "cannot read: \(error.localizedDescription)")
        }
        func u64(_ o: Int) throws -> Int {
            guard let value = elf.integer(at: o, size: 8) else { throw ELFError(path: path, message: "truncated") }
            return value
        }
        guard elf.data.count >= 64, elf.data.prefix(4) == Data([0x7F, 0x45, 0x4C, 0x46]) else {
            throw ELFError(path: path, message: "not an ELF file")
        }
        guard elf.isELF64LittleEndian else { throw ELFError(path: path, message: "not a 64-bit little-endian ELF file") }
        guard let segments = try? elf.segments() else { throw ELFError(path: path, message: "truncated") }
        let bytes = elf.data
        guard let dynamic = segments.first(where: { $0.type == 2 }) else { return ELFDynamicInfo() }  // PT_DYNAMIC
        func fileOffset(_ address: Int) throws -> Int {
            for s in segments where s.type == 1 && address >= s.vaddr && address < s.vaddr + s.filesz {  // PT_LOAD
                return address - s.vaddr + s.offset
            }
            throw ELFError(path: path, message: "address 0x\(String(address, radix: 16)) is in no loaded segment")
        }
        var entries: [(Int, Int)] = []
        var strtab = 0
        var o = dynamic.offset
        while o + 16 <= dynamic.offset + dynamic.filesz {
            let tag = try u64(o), value = try u64(o + 8)
            if tag == 0 { break }
            if tag == 5 { strtab = value }  // DT_STRTAB
            entries.append((tag, value))
            o += 16
        }
        let strings = try fileOffset(strtab)
        func string(_ index: Int) throws -> String {
            var end = strings + index
            guard end < bytes.count else { throw ELFError(path: path, message: "string outside the file") }
            while end < bytes.count && bytes[end] != 0 { end += 1 }
            return String(decoding: bytes[(strings + index)..<end], as: UTF8.self)
        }
        var info = ELFDynamicInfo()
        for (tag, value) in entries {
            switch tag {
            case 1: info.needed.append(try string(value))                     // DT_NEEDED
            case 14: info.soname = try string(value)                           // DT_SONAME
            case 15, 29: info.runPaths += try string(value).split(separator: ":").map(String.init)  // DT_RPATH, DT_RUNPATH
            default: break
            }
        }
        return info
    }
}

/// Finds the shared libraries a set of ELF objects needs, transitively, the way the
/// dynamic linker would, leaving out glibc's own libraries (every Linux root has them).
public struct LibraryResolver {
    /// glibc's libraries and the dynamic linker: never copied into a bundle.
    public static let systemLibraries: Set<String> = [
        "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1", "libresolv.so.2",
        "libanl.so.1", "libnsl.so.1", "libBrokenLocale.so.1", "libmvec.so.1", "libthread_db.so.1",
        "libc_malloc_debug.so.0", "libnss_files.so.2", "libnss_dns.so.2", "libnss_compat.so.2",
        "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "linux-vdso.so.1",
    ]

    public let searchDirectories: [String]

    public init(searchDirectories: [String]? = nil) {
        self.searchDirectories = searchDirectories ?? LibraryResolver.systemSearchDirectories()
    }

    /// /etc/ld.so.conf (and its includes) followed by the default directories.
    public static func systemSearchDirectories() -> [String] {
        var directories: [String] = []
        func readConf(_ path: String, depth: Int) {
            guard depth < 4, let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
            for raw in text.split(separator: "\n") {
                let line = raw.split(separator: "#", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
                if line.isEmpty { continue }
                if line.hasPrefix("include ") {
                    let pattern = String(line.dropFirst("include ".count)).trimmingCharacters(in: .whitespaces)
                    let directory = (pattern as NSString).deletingLastPathComponent
                    let suffix = (pattern as NSString).lastPathComponent.replacingOccurrences(of: "*", with: "")
                    let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
                    for name in names where suffix.isEmpty || name.hasSuffix(suffix) {
                        readConf(directory + "/" + name, depth: depth + 1)
                    }
                } else {
                    directories.append(line)
                }
            }
        }
        readConf("/etc/ld.so.conf", depth: 0)
        for fallback in ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
                         "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"]
            where !directories.contains(fallback) {
            directories.append(fallback)
        }
        return directories.filter { FileManager.default.fileExists(atPath: $0) }
    }

    public struct Resolved: Equatable, Sendable {
        /// The name objects ask for (DT_NEEDED).
        public let name: String
        /// The file found (symbolic links resolved).
        public let path: String
    }

    public struct Unresolved: Error, CustomStringConvertible, Sendable {
        public let name: String
        public let neededBy: String
        public var description: String { "\(neededBy) needs \(name), which is not on this system" }
    }

    /// Every library `objects` need, directly or not, except glibc's.
    public func closure(of objects: [String]) throws -> [Resolved] {
        var result: [String: Resolved] = [:]
        var queue = objects
        var visited = Set<String>()
        while let object = queue.popLast() {
            let real = URL(fileURLWithPath: object).resolvingSymlinksInPath().path
            guard visited.insert(real).inserted else { continue }
            let info = try ELFReader.read(real)
            let origin = URL(fileURLWithPath: object).deletingLastPathComponent().path
            for name in info.needed where !LibraryResolver.systemLibraries.contains(name) && result[name] == nil {
                guard let path = locate(name, runPaths: info.runPaths, origin: origin) else {
                    throw Unresolved(name: name, neededBy: object)
                }
                result[name] = Resolved(name: name, path: URL(fileURLWithPath: path).resolvingSymlinksInPath().path)
                queue.append(path)
            }
        }
        return result.values.sorted { $0.name < $1.name }
    }

    func locate(_ name: String, runPaths: [String], origin: String) -> String? {
        if name.contains("/") { return FileManager.default.fileExists(atPath: name) ? name : nil }
        let expanded = runPaths.map { $0.replacingOccurrences(of: "$ORIGIN", with: origin).replacingOccurrences(of: "${ORIGIN}", with: origin) }
        for directory in expanded + searchDirectories {
            let candidate = directory + "/" + name
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
        }
        return nil
    }
}

/// The bytes of an ELF file, read as little-endian fields (nil past the end).
struct ELFBytes {
    struct Segment { let type: Int; let offset: Int; let vaddr: Int; let filesz: Int; let align: Int }

    let data: Data

    init(data: Data) { self.data = data }

    init?(path: String) {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else { return nil }
        self.data = data
    }

    var isELF64LittleEndian: Bool {
        data.count >= 64 && data.prefix(4) == Data([0x7F, 0x45, 0x4C, 0x46]) && data[4] == 2 && data[5] == 1
    }

    func integer(at offset: Int, size: Int) -> Int? {
        guard offset >= 0, offset + size <= data.count else { return nil }
        var value = 0
        for i in 0..<size { value |= Int(data[offset + i]) << (8 * i) }
        return value
    }

    struct Truncated: Error {}

    /// The program headers.
    func segments() throws -> [Segment] {
        guard let phoff = integer(at: 0x20, size: 8), let phentsize = integer(at: 0x36, size: 2),
              let phnum = integer(at: 0x38, size: 2) else { throw Truncated() }
        return try (0..<phnum).map { i in
            let base = phoff + i * phentsize
            guard let type = integer(at: base, size: 4), let offset = integer(at: base + 8, size: 8),
                  let vaddr = integer(at: base + 16, size: 8), let filesz = integer(at: base + 32, size: 8),
                  let align = integer(at: base + 48, size: 8) else { throw Truncated() }
            return Segment(type: type, offset: offset, vaddr: vaddr, filesz: filesz, align: align)
        }
    }
}
