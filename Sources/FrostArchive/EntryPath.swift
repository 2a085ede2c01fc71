/// The rules for a path inside an archive: relative, `/`-separated, no `.`, `..` or
/// empty components, no backslashes or NUL bytes. Directory entries end with `/`.
enum EntryPath {
    static func validate(_ path: String, archive: String, allowDirectory: Bool) throws {
        guard !path.isEmpty else {
            throw ArchiveError(.corrupt, archive: archive, entry: path, "empty entry name")
        }
        if path.utf8.contains(0) {
            throw ArchiveError(.corrupt, archive: archive, entry: path, "entry name contains a NUL byte")
        }
        if path.hasPrefix("/") {
            throw ArchiveError(.absolutePath, archive: archive, entry: path, "absolute path")
        }
        if path.contains("\\") {
            throw ArchiveError(.absolutePath, archive: archive, entry: path,
                               "backslash in entry name (Windows path or traversal attempt)")
        }
        let bytes = Array(path.utf8)
        if bytes.count >= 2, bytes[1] == UInt8(ascii: ":"),
           (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(bytes[0] & 0xDF) {
            throw ArchiveError(.absolutePath, archive: archive, entry: path, "drive-letter path")
        }
        var components = path.split(separator: "/", omittingEmptySubsequences: false)
        if path.hasSuffix("/") {
            guard allowDirectory else {
                throw ArchiveError(.invalidInput, archive: archive, entry: path, "a file name cannot end with '/'")
            }
            components.removeLast()
        }
        for component in components {
            if component == ".." {
                throw ArchiveError(.parentReference, archive: archive, entry: path, "'..' component escapes the archive")
            }
            if component == "." || component.isEmpty {
                throw ArchiveError(.parentReference, archive: archive, entry: path,
                                   "'.' or empty path component (paths must be normalised)")
            }
        }
    }
}
