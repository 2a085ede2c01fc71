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
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else { return false }
        return data.withUnsafeBytes { raw -> Bool in
            let bytes = raw.bindMemory(to: UInt8.self)
            func u(_ o: Int, _ size: Int) -> Int? {
                guard o >= 0, o + size <= bytes.count else { return nil }
                var value = 0
                for i in 0..<size { value |= Int(bytes[o + i]) << (8 * i) }
                return value
            }
            guard bytes.count >= 64, bytes[0] == 0x7F, bytes[4] == 2, bytes[5] == 1,
                  let shoff = u(0x28, 8), let shentsize = u(0x3A, 2), let shnum = u(0x3C, 2), let shstrndx = u(0x3E, 2),
                  shstrndx < shnum, let names = u(shoff + shstrndx * shentsize + 24, 8) else { return false }
            let prefix = Array(".debug_".utf8)
            for i in 0..<shnum {
                guard let name = u(shoff + i * shentsize, 4) else { return false }
                let start = names + name
                if start + prefix.count <= bytes.count, (0..<prefix.count).allSatisfy({ bytes[start + $0] == prefix[$0] }) {
                    return true
                }
            }
            return false
        }
    }

    /// Whether every loadable segment's file offset agrees with its address modulo its
    /// alignment, as the dynamic linker requires ("ELF load command address/offset not
    /// page-aligned" otherwise): checked after stripping.
    public static func loadSegmentsAreAligned(_ path: String) -> Bool {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path)) else { return false }
        let bytes = [UInt8](data)
        func u(_ o: Int, _ size: Int) -> Int? {
            guard o >= 0, o + size <= bytes.count else { return nil }
            var value = 0
            for i in 0..<size { value |= Int(bytes[o + i]) << (8 * i) }
            return value
        }
        guard bytes.count >= 64, let phoff = u(0x20, 8), let phentsize = u(0x36, 2), let phnum = u(0x38, 2) else { return false }
        for i in 0..<phnum {
            let base = phoff + i * phentsize
            guard let type = u(base, 4), let offset = u(base + 8, 8), let vaddr = u(base + 16, 8),
                  let align = u(base + 48, 8) else { return false }
            if type == 1, align > 1, (offset % align) != (vaddr % align) { return false }  // PT_LOAD
        }
        return true
    }

    public static func read(_ path: String) throws -> ELFDynamicInfo {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw ELFError(path: path, message: "cannot read: \(error.localizedDescription)")
        }
        let bytes = [UInt8](data)
        func u16(_ o: Int) throws -> Int {
            guard o >= 0, o + 2 <= bytes.count else { throw ELFError(path: path, message: "truncated") }
            return Int(bytes[o]) | Int(bytes[o + 1]) << 8
        }
        func u32(_ o: Int) throws -> Int { let low = try u16(o); let high = try u16(o + 2); return low | high << 16 }
        func u64(_ o: Int) throws -> Int { let low = try u32(o); let high = try u32(o + 4); return low | high << 32 }
        guard bytes.count >= 64, bytes[0..<4] == [0x7F, 0x45, 0x4C, 0x46] else {
            throw ELFError(path: path, message: "not an ELF file")
        }
        guard bytes[4] == 2, bytes[5] == 1 else { throw ELFError(path: path, message: "not a 64-bit little-endian ELF file") }
        let phoff = try u64(0x20), phentsize = try u16(0x36), phnum = try u16(0x38)
        struct Segment { let type: Int; let offset: Int; let vaddr: Int; let filesz: Int }
        var segments: [Segment] = []
        for i in 0..<phnum {
            let base = phoff + i * phentsize
            segments.append(Segment(type: try u32(base), offset: try u64(base + 8), vaddr: try u64(base + 16),
                                    filesz: try u64(base + 32)))
        }
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
