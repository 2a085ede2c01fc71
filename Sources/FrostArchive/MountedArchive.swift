// FrostArchive: the only user of libarchive and libdeflate: deterministic zip and tar writing (libarchive, in the packager) and checked, bounded mounting (libdeflate, in the loader).

import FrostSystem
import CDeflate
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Limits that make a hostile archive (zip bomb, huge table) fail early with an error.
public struct ArchiveLimits: Sendable {
    /// The largest uncompressed size of one entry.
    public var maximumEntrySize: Int
    /// The largest sum of the uncompressed sizes of all entries.
    public var maximumTotalSize: Int
    /// The largest number of entries.
    public var maximumEntryCount: Int

    public init(maximumEntrySize: Int = 512 << 20, maximumTotalSize: Int = 4 << 30,
                maximumEntryCount: Int = 1_000_000) {
        self.maximumEntrySize = maximumEntrySize
        self.maximumTotalSize = maximumTotalSize
        self.maximumEntryCount = maximumEntryCount
    }

    public static let `default` = ArchiveLimits()
}

/// One entry of a mounted archive's table of contents.
public struct ArchiveEntry: Sendable, Equatable {
    /// The path inside the archive; directories end with `/`.
    public let path: String
    public let compression: ZipCompression
    public let compressedSize: Int
    public let uncompressedSize: Int
    public let crc32: UInt32
    /// The local header's offset from the start of the zip data.
    let localHeaderOffset: Int
    /// Where the next entry (or the central directory) starts: the entry must end before.
    let spanEnd: Int
    let nameLength: Int

    public var isDirectory: Bool { path.hasSuffix("/") }
}

/// A zip archive opened for reading: its table of contents is parsed and checked once,
/// then entries are read into memory on demand, by path, from any thread.
///
/// Nothing is extracted to disk. The archive may stand on its own or be appended to the
/// end of an executable (the offset of the zip data within the file is found from the
/// end-of-central-directory record, as zipimport does).
public final class MountedArchive: @unchecked Sendable {
    // @unchecked: every stored property is immutable after init; reads use pread on the
    // shared descriptor, which has no file position to race on.

    /// The file's path as given.
    public let path: String
    /// Where the zip data starts in the file (non-zero when appended to an executable).
    public let baseOffset: Int
    /// Every entry by path.
    public let entries: [String: ArchiveEntry]
    /// Every directory, explicit or implied by an entry's path, as "a/b/" (root is "").
    public let directories: Set<String>
    public let limits: ArchiveLimits
    /// Directory → its direct children, sorted (built once at mount).
    private let childrenIndex: [String: [(name: String, isDirectory: Bool)]]
    private let fd: Int32

    /// Opens and checks `path`; throws an `ArchiveError` naming the archive and the
    /// offending entry for anything broken or hostile.
    public init(path: String, limits: ArchiveLimits = .default) throws {
        self.path = path
        self.limits = limits
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ArchiveError(.cannotOpen, archive: path, "cannot open: \(errnoDescription())")
        }
        do {
            let table = try TableOfContents.read(fd: fd, archive: path, limits: limits)
            self.baseOffset = table.baseOffset
            self.entries = table.entries
            self.directories = table.directories
            self.childrenIndex = TableOfContents.childrenIndex(entries: table.entries, directories: table.directories)
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Sorted entry paths.
    public var paths: [String] { entries.keys.sorted(by: ZipWriter.byteOrder) }

    public func contains(_ path: String) -> Bool { entries[path] != nil }

    /// The names directly inside `directory` ("" for the root, else "a/b/"), each with
    /// whether it is a directory. Sorted.
    public func children(of directory: String) -> [(name: String, isDirectory: Bool)] {
        childrenIndex[directory] ?? []
    }

    /// Reads one file entry into memory, checking its size and CRC.
    public func read(_ entryPath: String) throws -> [UInt8] {
        guard let entry = entries[entryPath] else {
            if directories.contains(entryPath.hasSuffix("/") ? entryPath : entryPath + "/") {
                throw ArchiveError(.isADirectory, archive: path, entry: entryPath, "is a directory")
            }
            throw ArchiveError(.noSuchEntry, archive: path, entry: entryPath, "no such entry")
        }
        if entry.isDirectory {
            throw ArchiveError(.isADirectory, archive: path, entry: entryPath, "is a directory")
        }
        return try EntryReader.read(entry, fd: fd, baseOffset: baseOffset, archive: path)
    }
}

/// Little-endian field access over a byte array, bounds-checked by the callers.
extension Array where Element == UInt8 {
    @inline(__always) func u16(_ i: Int) -> Int { Int(self[i]) | Int(self[i + 1]) << 8 }
    @inline(__always) func u32(_ i: Int) -> Int {
        Int(self[i]) | Int(self[i + 1]) << 8 | Int(self[i + 2]) << 16 | Int(self[i + 3]) << 24
    }
}

enum ZipSignature {
    static let localHeader = 0x0403_4B50
    static let centralHeader = 0x0201_4B50
    static let endOfCentralDirectory = 0x0605_4B50
    static let zip64Locator = 0x0706_4B50
}

/// Parses and checks the end-of-central-directory record and the central directory.
enum TableOfContents {
    struct Result {
        var baseOffset: Int
        var entries: [String: ArchiveEntry]
        var directories: Set<String>
    }

    static func read(fd: Int32, archive: String, limits: ArchiveLimits) throws -> Result {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw ArchiveError(.cannotOpen, archive: archive, "cannot stat: \(errnoDescription())")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw ArchiveError(.cannotOpen, archive: archive, "not a regular file")
        }
        let fileSize = Int(info.st_size)
        if fileSize == 0 {
            throw ArchiveError(.empty, archive: archive, "the file is empty")
        }
        let eocdSize = 22
        guard fileSize >= eocdSize else {
            throw ArchiveError(.notAZip, archive: archive, "\(fileSize) bytes is too small to be a zip archive")
        }
        // The record sits at the end, followed by a comment of at most 65535 bytes.
        let tailSize = min(fileSize, eocdSize + 0xFFFF)
        let tailStart = fileSize - tailSize
        let tail = try FileIO.readExactly(fd, count: tailSize, at: tailStart, archive: archive,
                                          what: "the end of the file")
        var eocd = -1
        var i = tailSize - eocdSize
        while i >= 0 {
            if tail[i] == 0x50, tail[i + 1] == 0x4B, tail[i + 2] == 5, tail[i + 3] == 6,
               i + eocdSize + tail.u16(i + 20) == tailSize {
                eocd = i
                break
            }
            i -= 1
        }
        guard eocd >= 0 else {
            throw ArchiveError(.notAZip, archive: archive, "no end-of-central-directory record: not a zip archive, or truncated")
        }
        if eocd >= 20, tail.u32(eocd - 20) == ZipSignature.zip64Locator {
            throw ArchiveError(.unsupported, archive: archive, "Zip64 archive: not supported (CPython's zipimport cannot read it either)")
        }
        let diskNumber = tail.u16(eocd + 4), cdDisk = tail.u16(eocd + 6)
        let entriesOnDisk = tail.u16(eocd + 8), entryCount = tail.u16(eocd + 10)
        let cdSize = tail.u32(eocd + 12), cdOffset = tail.u32(eocd + 16)
        guard diskNumber == 0, cdDisk == 0, entriesOnDisk == entryCount else {
            throw ArchiveError(.unsupported, archive: archive, "multi-disk (split) archive")
        }
        if entryCount == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
            throw ArchiveError(.unsupported, archive: archive, "Zip64 markers in the end record")
        }
        guard entryCount <= limits.maximumEntryCount else {
            throw ArchiveError(.archiveTooLarge, archive: archive,
                               "\(entryCount) entries, over the limit of \(limits.maximumEntryCount)")
        }
        let eocdInFile = tailStart + eocd
        // Data before the zip (an executable it is appended to) shifts every offset.
        let baseOffset = eocdInFile - cdSize - cdOffset
        guard baseOffset >= 0 else {
            throw ArchiveError(.truncated, archive: archive,
                               "the central directory (offset \(cdOffset), \(cdSize) bytes) lies outside the file")
        }
        let cd = try FileIO.readExactly(fd, count: cdSize, at: baseOffset + cdOffset, archive: archive,
                                        what: "the central directory")

        struct Raw { var path: String; var method: Int; var csize: Int; var usize: Int; var crc: Int
                     var offset: Int; var nameLength: Int }
        var raws: [Raw] = []
        raws.reserveCapacity(entryCount)
        var names = Set<String>()
        var total = 0
        var p = 0
        for index in 0..<entryCount {
            guard p + 46 <= cd.count else {
                throw ArchiveError(.truncated, archive: archive, "central directory ends inside record \(index)")
            }
            guard cd.u32(p) == ZipSignature.centralHeader else {
                throw ArchiveError(.corrupt, archive: archive, "bad signature for central directory record \(index)")
            }
            let madeBy = cd.u16(p + 4), flags = cd.u16(p + 8), method = cd.u16(p + 10)
            let crc = cd.u32(p + 16), csize = cd.u32(p + 20), usize = cd.u32(p + 24)
            let nameLength = cd.u16(p + 28), extraLength = cd.u16(p + 30), commentLength = cd.u16(p + 32)
            let externalAttributes = cd.u32(p + 38), offset = cd.u32(p + 42)
            let recordEnd = p + 46 + nameLength + extraLength + commentLength
            guard recordEnd <= cd.count else {
                throw ArchiveError(.truncated, archive: archive, "central directory record \(index) runs past its end")
            }
            guard let name = String(validating: cd[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self) else {
                throw ArchiveError(.corrupt, archive: archive, "entry \(index): name is not valid UTF-8")
            }
            p = recordEnd
            try EntryPath.validate(name, archive: archive, allowDirectory: true)
            guard names.insert(name).inserted else {
                throw ArchiveError(.duplicateEntry, archive: archive, entry: name, "appears more than once")
            }
            if madeBy >> 8 == 3 {  // Unix: the file type is in the high bits of the attributes.
                let type = (externalAttributes >> 16) & 0o170000
                switch type {
                case 0, 0o100000: break
                case 0o040000 where name.hasSuffix("/"): break
                case 0o120000:
                    throw ArchiveError(.notARegularFile, archive: archive, entry: name, "symbolic link")
                case 0o040000:
                    throw ArchiveError(.corrupt, archive: archive, entry: name, "directory mode on a file name")
                default:
                    throw ArchiveError(.notARegularFile, archive: archive, entry: name,
                                       "device, fifo or socket (mode \(String(type, radix: 8)))")
                }
            }
            if flags & 1 != 0 {
                throw ArchiveError(.unsupported, archive: archive, entry: name, "encrypted entry")
            }
            guard method == 0 || method == 8 else {
                throw ArchiveError(.unsupported, archive: archive, entry: name,
                                   "compression method \(method) (only stored and deflate are supported)")
            }
            if csize == 0xFFFF_FFFF || usize == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
                throw ArchiveError(.unsupported, archive: archive, entry: name, "Zip64 entry")
            }
            if name.hasSuffix("/"), usize != 0 {
                throw ArchiveError(.corrupt, archive: archive, entry: name, "directory entry with \(usize) bytes of data")
            }
            guard usize <= limits.maximumEntrySize else {
                throw ArchiveError(.entryTooLarge, archive: archive, entry: name,
                                   "\(usize) bytes uncompressed, over the limit of \(limits.maximumEntrySize)")
            }
            if method == 0, csize != usize {
                throw ArchiveError(.corrupt, archive: archive, entry: name, "stored entry whose sizes differ")
            }
            // Deflate cannot expand data more than 1032 times: more is a forged size.
            if method == 8, usize > csize * 1032 + 1024 {
                throw ArchiveError(.entryTooLarge, archive: archive, entry: name,
                                   "declares \(usize) bytes from \(csize) compressed: impossible ratio (zip bomb)")
            }
            total += usize
            guard total <= limits.maximumTotalSize else {
                throw ArchiveError(.archiveTooLarge, archive: archive, entry: name,
                                   "entries add up to more than \(limits.maximumTotalSize) bytes")
            }
            raws.append(Raw(path: name, method: method, csize: csize, usize: usize, crc: crc,
                            offset: offset, nameLength: nameLength))
        }

        // Each entry must fit between its local header and the next one: overlapping
        // entries (a known zip-bomb construction) and entries running into the central
        // directory are refused.
        let order = raws.indices.sorted { raws[$0].offset < raws[$1].offset }
        var entries: [String: ArchiveEntry] = [:]
        entries.reserveCapacity(raws.count)
        for (rank, index) in order.enumerated() {
            let raw = raws[index]
            let spanEnd = rank + 1 < order.count ? raws[order[rank + 1]].offset : cdOffset
            if raw.offset + 30 + raw.nameLength + raw.csize > spanEnd {
                throw ArchiveError(.corrupt, archive: archive, entry: raw.path,
                                   "its data overlaps the next entry or the central directory")
            }
            entries[raw.path] = ArchiveEntry(
                path: raw.path, compression: raw.method == 0 ? .stored : .deflate,
                compressedSize: raw.csize, uncompressedSize: raw.usize, crc32: UInt32(raw.crc),
                localHeaderOffset: raw.offset, spanEnd: spanEnd, nameLength: raw.nameLength)
        }

        var directories: Set<String> = [""]
        for name in entries.keys {
            var prefix = name.hasSuffix("/") ? String(name.dropLast()) : name
            if name.hasSuffix("/") { directories.insert(name) }
            while let slash = prefix.lastIndex(of: "/") {
                prefix = String(prefix[..<slash])
                if !directories.insert(prefix + "/").inserted { break }
            }
        }
        for name in entries.keys where !name.hasSuffix("/") && directories.contains(name + "/") {
            throw ArchiveError(.duplicateEntry, archive: archive, entry: name, "is both a file and a directory")
        }
        return Result(baseOffset: baseOffset, entries: entries, directories: directories)
    }
}

extension TableOfContents {
    static func childrenIndex(entries: [String: ArchiveEntry], directories: Set<String>)
        -> [String: [(name: String, isDirectory: Bool)]] {
        var index: [String: [(name: String, isDirectory: Bool)]] = [:]
        func parent(of path: String) -> (String, String) {
            let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
            guard let slash = trimmed.lastIndex(of: "/") else { return ("", trimmed) }
            return (String(trimmed[...slash]), String(trimmed[trimmed.index(after: slash)...]))
        }
        for directory in directories where !directory.isEmpty {
            let (up, name) = parent(of: directory)
            index[up, default: []].append((name, true))
        }
        for path in entries.keys where !path.hasSuffix("/") {
            let (up, name) = parent(of: path)
            index[up, default: []].append((name, false))
        }
        for key in index.keys {
            index[key]!.sort { ZipWriter.byteOrder($0.name, $1.name) }
        }
        return index
    }
}

/// Reads one entry: its local header is checked against the central directory, then the
/// bytes are inflated by libdeflate in one call into a buffer of the declared size (a
/// stream that wants more fails) and checked against the central directory's CRC-32.
enum EntryReader {
    static func read(_ entry: ArchiveEntry, fd: Int32, baseOffset: Int, archive: String) throws -> [UInt8] {
        let headerOffset = baseOffset + entry.localHeaderOffset
        let header = try FileIO.readExactly(fd, count: 30, at: headerOffset, archive: archive, entry: entry.path,
                                            what: "the local header")
        guard header.u32(0) == ZipSignature.localHeader else {
            throw ArchiveError(.corrupt, archive: archive, entry: entry.path, "bad local header signature")
        }
        let nameLength = header.u16(26), extraLength = header.u16(28)
        guard nameLength == entry.nameLength else {
            throw ArchiveError(.corrupt, archive: archive, entry: entry.path, "local header name differs from the central directory")
        }
        let dataStart = 30 + nameLength + extraLength
        guard entry.localHeaderOffset + dataStart + entry.compressedSize <= entry.spanEnd else {
            throw ArchiveError(.corrupt, archive: archive, entry: entry.path, "data overlaps the next entry")
        }
        let rest = try FileIO.readExactly(fd, count: nameLength + extraLength + entry.compressedSize,
                                          at: headerOffset + 30, archive: archive, entry: entry.path,
                                          what: "the entry data")
        guard rest[0..<nameLength].elementsEqual(entry.path.utf8) else {
            throw ArchiveError(.corrupt, archive: archive, entry: entry.path, "local header name differs from the central directory")
        }
        if entry.uncompressedSize == 0 { return [] }
        let data = try rest.withUnsafeBytes { raw in
            try decompress(UnsafeRawBufferPointer(rebasing: raw[(nameLength + extraLength)...]), entry: entry, archive: archive)
        }
        let crc = data.withUnsafeBytes { UInt32(libdeflate_crc32(0, $0.baseAddress, $0.count)) }
        guard crc == entry.crc32 else {
            throw ArchiveError(.corrupt, archive: archive, entry: entry.path, "CRC-32 mismatch: the data is damaged")
        }
        return data
    }

    /// The entry's bytes from its stored data: copied, or inflated to exactly the declared
    /// size (less is a corrupt entry; more, a header that lies).
    static func decompress(_ stored: UnsafeRawBufferPointer, entry: ArchiveEntry, archive: String) throws -> [UInt8] {
        if entry.compression == .stored {
            guard stored.count == entry.uncompressedSize else {
                throw ArchiveError(.corrupt, archive: archive, entry: entry.path,
                                   "stored with \(stored.count) bytes, \(entry.uncompressedSize) declared")
            }
            return [UInt8](stored)
        }
        guard let decompressor = libdeflate_alloc_decompressor() else {
            throw ArchiveError(.ioFailure, archive: archive, entry: entry.path, "decompressing: out of memory")
        }
        defer { libdeflate_free_decompressor(decompressor) }
        var produced = 0
        var result = LIBDEFLATE_SUCCESS
        let output = [UInt8](unsafeUninitializedCapacity: entry.uncompressedSize) { buffer, initialized in
            result = libdeflate_deflate_decompress(decompressor, stored.baseAddress, stored.count,
                                                   buffer.baseAddress, buffer.count, &produced)
            initialized = result == LIBDEFLATE_SUCCESS ? produced : 0
        }
        switch result {
        case LIBDEFLATE_SUCCESS where produced == entry.uncompressedSize:
            return output
        case LIBDEFLATE_SUCCESS:
            throw ArchiveError(.corrupt, archive: archive, entry: entry.path,
                               "decompressed to \(produced) bytes, \(entry.uncompressedSize) declared")
        case LIBDEFLATE_INSUFFICIENT_SPACE:
            throw ArchiveError(.entryTooLarge, archive: archive, entry: entry.path,
                               "decompresses to more than the declared \(entry.uncompressedSize) bytes")
        default:
            throw ArchiveError(.corrupt, archive: archive, entry: entry.path, "decompressing: the deflate data is damaged")
        }
    }
}
