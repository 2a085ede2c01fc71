import FrostSystem
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The few POSIX file operations this module needs, each turning errno into an
/// `ArchiveError` that names the file.
enum FileIO {
    static func writeAtomically(_ bytes: [UInt8], to path: String, archive: String) throws {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw ArchiveError(.cannotOpen, archive: archive, "cannot create \(temporary): \(errnoDescription())")
        }
        do {
            try writeAll(fd, bytes, archive: archive)
            guard fsync(fd) == 0 || errno == EINVAL else {
                throw ArchiveError(.ioFailure, archive: archive, "fsync failed: \(errnoDescription())")
            }
            close(fd)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let message = errnoDescription()
            unlink(temporary)
            throw ArchiveError(.ioFailure, archive: archive, "cannot rename into place: \(message)")
        }
    }

    static func append(_ bytes: [UInt8], to path: String, archive: String) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard fd >= 0 else {
            throw ArchiveError(.cannotOpen, archive: archive, "cannot open for appending: \(errnoDescription())")
        }
        defer { close(fd) }
        try writeAll(fd, bytes, archive: archive)
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], archive: String) throws {
        guard FrostSystem.writeAll(bytes, to: fd) else {
            throw ArchiveError(.ioFailure, archive: archive, "write failed: \(errnoDescription())")
        }
    }

    /// Reads exactly `count` bytes at `offset`, or throws `.truncated`.
    static func readExactly(_ fd: Int32, count: Int, at offset: Int, archive: String, entry: String? = nil,
                            what: String) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buffer.withUnsafeMutableBytes { raw in
                pread(fd, raw.baseAddress! + done, count - done, off_t(offset + done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw ArchiveError(.ioFailure, archive: archive, entry: entry, "reading \(what) failed: \(errnoDescription())")
            }
            if n == 0 {
                throw ArchiveError(.truncated, archive: archive, entry: entry,
                                   "\(what) at offset \(offset) runs past the end of the file")
            }
            done += n
        }
        return buffer
    }
}

