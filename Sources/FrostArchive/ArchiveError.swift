/// Why an archive could not be written, mounted or read.
///
/// Every error names the archive and, where there is one, the entry, so the message
/// alone tells the user which file to fix.
public struct ArchiveError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The class of failure; tests and callers switch on this, users read `description`.
    public enum Kind: String, Sendable {
        case cannotOpen          // missing file, permissions
        case ioFailure           // a read or write that failed or came up short
        case empty               // zero-byte file
        case notAZip             // no end-of-central-directory record
        case truncated           // records that point past the data there is
        case corrupt             // records that contradict each other
        case unsupported         // zip64, multi-disk, encryption, unknown compression
        case absolutePath        // "/etc/passwd", "C:\\x", backslashes
        case parentReference     // ".." or "." or empty path components
        case notARegularFile     // symlinks, devices, fifos, sockets
        case duplicateEntry
        case entryTooLarge       // an entry over the per-entry limit (zip bombs)
        case archiveTooLarge     // the sum of entries or their count over the limit
        case noSuchEntry
        case isADirectory
        case invalidInput        // bad arguments to the writer
    }

    public let kind: Kind
    /// The archive's path (or a label such as "<memory>" for an in-memory archive).
    public let archive: String
    /// The entry concerned, when the failure is about one entry.
    public let entry: String?
    /// What exactly is wrong, in words.
    public let detail: String

    public init(_ kind: Kind, archive: String, entry: String? = nil, _ detail: String) {
        self.kind = kind
        self.archive = archive
        self.entry = entry
        self.detail = detail
    }

    public var description: String {
        if let entry {
            return "archive \(archive): entry '\(entry)': \(detail)"
        }
        return "archive \(archive): \(detail)"
    }
}
