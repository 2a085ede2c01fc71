import CArchive
import CArchiveStatic

/// The one place libarchive is called: an owned writer handle (the packager writes zip
/// and tar with it; the loader reads archives without libarchive) and one checker for its
/// return codes. Nothing outside this module sees libarchive.
final class LibArchiveHandle {
    let pointer: OpaquePointer
    let archiveName: String

    init(archiveName: String) throws {
        _ = frost_archive_static_linked()
        guard let p = archive_write_new() else {
            throw ArchiveError(.ioFailure, archive: archiveName, "libarchive could not allocate a handle")
        }
        self.pointer = p
        self.archiveName = archiveName
    }

    deinit { archive_write_free(pointer) }

    /// Turns a libarchive status into a typed error carrying libarchive's own message.
    /// Warnings pass: libarchive uses them for conditions we check ourselves.
    @discardableResult
    func check(_ status: Int32, _ what: String, entry: String? = nil,
               kind: ArchiveError.Kind = .ioFailure) throws -> Int32 {
        if status >= ARCHIVE_WARN { return status }
        throw ArchiveError(kind, archive: archiveName, entry: entry, "\(what): \(lastError)")
    }

    /// Same for calls that return a byte count (negative on failure).
    func check(count: Int, _ what: String, entry: String? = nil,
               kind: ArchiveError.Kind = .ioFailure) throws -> Int {
        if count >= 0 { return count }
        throw ArchiveError(kind, archive: archiveName, entry: entry, "\(what): \(lastError)")
    }

    var lastError: String {
        if let message = archive_error_string(pointer) { return String(cString: message) }
        return "libarchive gave no message"
    }
}

/// An owned `struct archive_entry`.
final class LibArchiveEntry {
    let pointer: OpaquePointer
    init() {
        // archive_entry_new only fails when malloc does.
        self.pointer = archive_entry_new()!
    }
    deinit { archive_entry_free(pointer) }
}
