import CArchive

/// Writes tar archives (POSIX pax, restricted: extended headers only where a name needs
/// one), optionally gzip-compressed, deterministically: entries in the order given (the
/// caller sorts), one fixed modification time, explicit owners and modes, no user or group
/// names, and a gzip header without a timestamp — the same entries give the same bytes.
/// Used for OCI image layers and the oci-archive around them.
public struct TarWriter: Sendable {
    public enum Kind: Sendable, Equatable {
        case file([UInt8])
        case directory
        case symbolicLink(String)
        /// Another entry of the same archive (as tar stores hard links).
        case hardLink(String)
    }

    public struct Entry: Sendable, Equatable {
        public var path: String
        public var kind: Kind
        public var mode: Int
        public var uid: Int
        public var gid: Int

        public init(path: String, kind: Kind, mode: Int, uid: Int = 0, gid: Int = 0) {
            self.path = path
            self.kind = kind
            self.mode = mode
            self.uid = uid
            self.gid = gid
        }
    }

    public var entries: [Entry] = []
    /// Seconds since the epoch, for every entry.
    public var modificationTime: Int
    public var gzip: Bool

    public init(modificationTime: Int = 0, gzip: Bool) {
        self.modificationTime = modificationTime
        self.gzip = gzip
    }

    public mutating func add(_ entry: Entry) { entries.append(entry) }

    /// The archive's bytes.
    public func bytes() throws -> [UInt8] {
        let handle = try LibArchiveHandle(archiveName: "<tar writer>")
        let a = handle.pointer
        try handle.check(archive_write_set_format_pax_restricted(a), "selecting the pax format")
        if gzip {
            try handle.check(archive_write_add_filter_gzip(a), "adding gzip")
            // No time stamp (or name) in the gzip header: the same input, the same bytes.
            try handle.check(archive_write_set_filter_option(a, "gzip", "timestamp", nil), "leaving the gzip time stamp out")
        }
        try handle.check(archive_write_set_bytes_per_block(a, 10240), "setting the block size")
        try handle.check(archive_write_set_bytes_in_last_block(a, 1), "setting the last block size")
        let sink = TarOutputSink()
        let context = Unmanaged.passRetained(sink).toOpaque()
        defer { Unmanaged<TarOutputSink>.fromOpaque(context).release() }
        try handle.check(archive_write_open2(a, context, nil, { _, context, buffer, length in
            guard let context, let buffer else { return -1 }
            let sink = Unmanaged<TarOutputSink>.fromOpaque(context).takeUnretainedValue()
            sink.bytes.append(contentsOf: UnsafeRawBufferPointer(start: buffer, count: length))
            return length
        }, nil, nil), "opening the output")
        for item in entries {
            let entry = LibArchiveEntry()
            let e = entry.pointer
            archive_entry_set_pathname_utf8(e, item.path)
            archive_entry_set_perm(e, UInt32(item.mode & 0o7777))
            archive_entry_set_uid(e, Int64(item.uid))
            archive_entry_set_gid(e, Int64(item.gid))
            archive_entry_set_mtime(e, modificationTime, 0)
            var data: [UInt8] = []
            switch item.kind {
            case .file(let bytes):
                archive_entry_set_filetype(e, frost_ae_ifreg())
                archive_entry_set_size(e, Int64(bytes.count))
                data = bytes
            case .directory:
                archive_entry_set_filetype(e, frost_ae_ifdir())
                archive_entry_set_size(e, 0)
            case .symbolicLink(let target):
                archive_entry_set_filetype(e, frost_ae_iflnk())
                archive_entry_set_symlink_utf8(e, target)
                archive_entry_set_size(e, 0)
            case .hardLink(let target):
                archive_entry_set_filetype(e, frost_ae_ifreg())
                archive_entry_set_hardlink_utf8(e, target)
                archive_entry_set_size(e, 0)
            }
            try handle.check(archive_write_header(a, e), "writing the header", entry: item.path, kind: .invalidInput)
            if !data.isEmpty {
                let written = data.withUnsafeBytes { raw in archive_write_data(a, raw.baseAddress, raw.count) }
                _ = try handle.check(count: written, "writing the data", entry: item.path)
            }
            try handle.check(archive_write_finish_entry(a), "finishing the entry", entry: item.path)
        }
        try handle.check(archive_write_close(a), "closing the archive")
        return sink.bytes
    }
}

private final class TarOutputSink {
    var bytes: [UInt8] = []
}
