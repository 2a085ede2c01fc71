import CArchive

/// How one entry's bytes are stored.
public enum ZipCompression: Sendable, Equatable {
    case stored
    case deflate
}

/// Writes zip archives that CPython's zipimport and this module's `MountedArchive` read,
/// deterministically: the same entries give the same bytes on every machine.
///
/// - Entries are sorted by their UTF-8 path, whatever order they were added in.
/// - Every entry has the same fixed timestamp, owner 0:0 and mode 0644.
/// - Every entry carries its size up front, so no Zip64 record is ever written
///   (CPython 3.11's zipimport cannot read Zip64); an archive that would need one is
///   refused with an error instead.
public struct ZipWriter: Sendable {
    struct PendingEntry: Sendable {
        let path: String
        let contents: [UInt8]
        let compression: ZipCompression
    }

    /// The fixed modification time of every entry: 1979-12-31T00:00:00Z. libarchive
    /// converts it to a DOS date in local time and clamps anything before 1980 to the
    /// DOS minimum, so every time zone writes the same 1980-01-01 00:00 (and no
    /// environment variable has to be touched).
    public static let fixedTimestamp = 315_446_400

    /// Entries over this size cannot be written without Zip64.
    public static let maximumEntrySize = Int(UInt32.max) - 1

    public var defaultCompression: ZipCompression
    private var pending: [String: PendingEntry] = [:]

    public init(defaultCompression: ZipCompression = .deflate) {
        self.defaultCompression = defaultCompression
    }

    /// The paths added so far, sorted as they will be written.
    public var paths: [String] { pending.keys.sorted(by: ZipWriter.byteOrder) }

    /// Adds a file entry. `path` is relative, with `/` separators, no `..`, `.` or empty
    /// components. Adding the same path twice is an error.
    public mutating func add(_ path: String, contents: [UInt8], compression: ZipCompression? = nil) throws {
        try EntryPath.validate(path, archive: "<writer>", allowDirectory: false)
        guard pending[path] == nil else {
            throw ArchiveError(.duplicateEntry, archive: "<writer>", entry: path, "added twice")
        }
        guard contents.count <= ZipWriter.maximumEntrySize else {
            throw ArchiveError(.entryTooLarge, archive: "<writer>", entry: path,
                               "\(contents.count) bytes needs Zip64, which CPython's zipimport cannot read")
        }
        pending[path] = PendingEntry(path: path, contents: contents,
                                     compression: compression ?? defaultCompression)
    }

    /// Adds a text file, UTF-8 encoded.
    public mutating func add(_ path: String, text: String, compression: ZipCompression? = nil) throws {
        try add(path, contents: Array(text.utf8), compression: compression)
    }

    /// The archive's bytes.
    public func bytes() throws -> [UInt8] {
        let handle = try LibArchiveHandle(archiveName: "<writer>")
        let a = handle.pointer
        try handle.check(archive_write_set_format_zip(a), "selecting the zip format")
        // Unblocked output: no padding after the end of the archive.
        try handle.check(archive_write_set_bytes_per_block(a, 0), "setting the block size")
        try handle.check(archive_write_set_bytes_in_last_block(a, 1), "setting the last block size")
        // Names are always flagged UTF-8, whatever the process locale.
        try handle.check(archive_write_set_format_option(a, "zip", "hdrcharset", "UTF-8"), "setting hdrcharset")
        // Refuse rather than write Zip64 records.
        try handle.check(archive_write_set_format_option(a, "zip", "zip64", nil), "disabling zip64")

        let sink = OutputSink()
        let context = Unmanaged.passRetained(sink).toOpaque()
        defer { Unmanaged<OutputSink>.fromOpaque(context).release() }
        try handle.check(archive_write_open2(a, context, nil, { _, context, buffer, length in
            guard let context, let buffer else { return -1 }
            let sink = Unmanaged<OutputSink>.fromOpaque(context).takeUnretainedValue()
            sink.bytes.append(contentsOf: UnsafeRawBufferPointer(start: buffer, count: length))
            return length
        }, nil, nil), "opening the output")

        for path in paths {
            let item = pending[path]!
            switch item.compression {
            case .stored: try handle.check(archive_write_zip_set_compression_store(a), "selecting store", entry: path)
            case .deflate: try handle.check(archive_write_zip_set_compression_deflate(a), "selecting deflate", entry: path)
            }
            let entry = LibArchiveEntry()
            let e = entry.pointer
            archive_entry_set_pathname_utf8(e, path)
            archive_entry_set_filetype(e, frost_ae_ifreg())
            archive_entry_set_perm(e, 0o644)
            archive_entry_set_uid(e, 0)
            archive_entry_set_gid(e, 0)
            archive_entry_set_mtime(e, ZipWriter.fixedTimestamp, 0)
            archive_entry_set_size(e, Int64(item.contents.count))
            try handle.check(archive_write_header(a, e), "writing the header", entry: path, kind: .invalidInput)
            if !item.contents.isEmpty {
                let written = item.contents.withUnsafeBytes { raw in
                    archive_write_data(a, raw.baseAddress, raw.count)
                }
                _ = try handle.check(count: written, "writing the data", entry: path)
                guard written == item.contents.count else {
                    throw ArchiveError(.ioFailure, archive: "<writer>", entry: path,
                                       "wrote \(written) of \(item.contents.count) bytes")
                }
            }
            try handle.check(archive_write_finish_entry(a), "finishing the entry", entry: path)
        }
        try handle.check(archive_write_close(a), "closing the archive")
        return sink.bytes
    }

    /// Writes the archive to `path`, replacing it atomically (write to a temporary file
    /// beside it, then rename), so a reader never sees half an archive.
    public func write(to path: String) throws {
        try FileIO.writeAtomically(try bytes(), to: path, archive: path)
    }

    /// Appends the archive to the end of an executable (or any file) at `path`. The
    /// archive keeps offsets relative to its own start; readers find it from the end.
    public func append(to path: String) throws {
        try FileIO.append(try bytes(), to: path, archive: path)
    }

    static func byteOrder(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }
}

private final class OutputSink {
    var bytes: [UInt8] = []
}
