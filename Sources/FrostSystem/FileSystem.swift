#if canImport(Glibc)
import Glibc
#endif

/// File-system queries without Foundation: what the loader, the bundle layout and the
/// packager share.
public enum FileSystem {
    public static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    /// A regular file's size in bytes; nil when it is not one (or not there).
    public static func fileSize(_ path: String) -> Int? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int(info.st_size)
    }

    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates a directory and its missing parents (errors are left to the first use).
    public static func makeDirectories(_ path: String, mode: mode_t) {
        var prefix = ""
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if !isDirectory(prefix) { mkdir(prefix, mode) }
        }
    }

    /// The running executable's absolute path (`/proc/self/exe` on Linux).
    public static func currentExecutablePath() -> String? {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = buffer.withUnsafeMutableBufferPointer { raw in
            raw.baseAddress!.withMemoryRebound(to: CChar.self, capacity: raw.count) {
                readlink("/proc/self/exe", $0, raw.count - 1)
            }
        }
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n], as: UTF8.self)
    }

    /// A file or directory that could not be read: its path and the system's reason.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let path: String
        public let message: String

        public init(path: String, message: String) {
            self.path = path
            self.message = message
        }

        public var description: String { "\(path): \(message)" }
    }

    public struct ListedFile: Sendable, Equatable {
        public let path: String
        public let isRegular: Bool
    }

    /// Every non-directory below `root`, relative and sorted; symbolic links are listed
    /// (not followed) and reported as not regular.
    public static func listFiles(below root: String) throws -> [ListedFile] {
        var result: [ListedFile] = []
        func walk(_ relative: String) throws {
            for name in try entryNames(relative.isEmpty ? root : FileSystem.join(root, relative)).sorted() {
                let child = relative.isEmpty ? name : relative + "/" + name
                var info = stat()
                guard lstat(FileSystem.join(root, child), &info) == 0 else { continue }
                switch info.st_mode & S_IFMT {
                case S_IFDIR: try walk(child)
                case S_IFREG: result.append(ListedFile(path: child, isRegular: true))
                default: result.append(ListedFile(path: child, isRegular: false))
                }
            }
        }
        try walk("")
        return result
    }

    /// The names in a directory (without "." and ".."), unsorted; none when it cannot be read.
    public static func names(in directory: String) -> [String] {
        (try? entryNames(directory)) ?? []
    }

    static func entryNames(_ path: String) throws -> [String] {
        guard let directory = opendir(path) else {
            throw Failure(path: path, message: errnoDescription())
        }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(path: path, message: errnoDescription()) }
        defer { close(fd) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw Failure(path: path, message: errnoDescription()) }
            if n == 0 { break }
            result.append(contentsOf: buffer[..<n])
        }
        return result
    }

    /// `directory/name`, without doubling a trailing slash.
    public static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }
}
