import FrostArchive
import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// `bundle.json`: what the bundle is and a SHA-256 for every file and archive entry.
public struct BundleManifest: Equatable, Sendable {
    public static let fileName = "bundle.json"
    public static let formatVersion = 1

    public struct FileRecord: Equatable, Sendable {
        public var sha256: String
        public var size: Int
        public init(sha256: String, size: Int) { self.sha256 = sha256; self.size = size }
    }

    public var name: String
    /// The entry module.
    public var entry: String
    /// "3.11.2".
    public var pythonVersion: String
    /// The bytecode magic number, hex ("a70d0d0a").
    public var bytecodeMagic: String
    /// The CPython library in `lib/` the loader runs ("libpython3.12.so.1.0"); nil in
    /// manifests written before frost ran more than one version (then it is Python 3.11's).
    public var pythonLibrary: String?
    /// The interpreter's build line (`sys.version`), for the record.
    public var pythonBuild: String?
    /// The library file name `lib/` should hold for this manifest.
    public var pythonLibraryName: String {
        if let pythonLibrary { return pythonLibrary }
        let parts = pythonVersion.split(separator: ".")
        return "libpython\(parts.first ?? "3").\(parts.dropFirst().first ?? "11").so.1.0"
    }
    /// The build options as given (spec and flags), for the record.
    public var options: [String: JSON]
    /// Every file of the bundle except the manifest, by path relative to the bundle.
    public var files: [String: FileRecord]
    /// For each archive (relative path), every entry's SHA-256.
    public var archives: [String: [String: String]]

    public init(name: String, entry: String, pythonVersion: String, bytecodeMagic: String,
                pythonLibrary: String? = nil, pythonBuild: String? = nil,
                options: [String: JSON] = [:], files: [String: FileRecord] = [:], archives: [String: [String: String]] = [:]) {
        self.name = name
        self.entry = entry
        self.pythonVersion = pythonVersion
        self.bytecodeMagic = bytecodeMagic
        self.pythonLibrary = pythonLibrary
        self.pythonBuild = pythonBuild
        self.options = options
        self.files = files
        self.archives = archives
    }

    public var json: JSON {
        var python: [String: JSON] = ["version": .string(pythonVersion), "magic": .string(bytecodeMagic)]
        if let pythonLibrary { python["library"] = .string(pythonLibrary) }
        if let pythonBuild { python["build"] = .string(pythonBuild) }
        return .object([
            "format": .number(Double(BundleManifest.formatVersion)),
            "name": .string(name),
            "entry": .string(entry),
            "python": .object(python),
            "options": .object(options),
            "files": .object(files.mapValues { .object(["sha256": .string($0.sha256), "size": .number(Double($0.size))]) }),
            "archives": .object(archives.mapValues { .object($0.mapValues { .string($0) }) }),
        ])
    }

    public init(json: JSON, source: String) throws {
        func fail(_ what: String) -> ManifestError { ManifestError(path: source, message: what) }
        guard json["format"]?.int == BundleManifest.formatVersion else {
            throw fail("unsupported manifest format \(json["format"].map { "\($0)" } ?? "(missing)"); rebuild the bundle")
        }
        guard let name = json["name"]?.string, let entry = json["entry"]?.string,
              let version = json["python"]?["version"]?.string, let magic = json["python"]?["magic"]?.string,
              let files = json["files"]?.object, let archives = json["archives"]?.object else {
            throw fail("missing name, entry, python, files or archives")
        }
        var records: [String: FileRecord] = [:]
        for (path, value) in files {
            guard let hash = value["sha256"]?.string, let size = value["size"]?.int else { throw fail("bad record for \(path)") }
            records[path] = FileRecord(sha256: hash, size: size)
        }
        var entries: [String: [String: String]] = [:]
        for (archive, value) in archives {
            guard let object = value.object else { throw fail("bad entry list for \(archive)") }
            var hashes: [String: String] = [:]
            for (entry, hash) in object {
                guard let hash = hash.string else { throw fail("bad hash for \(archive):\(entry)") }
                hashes[entry] = hash
            }
            entries[archive] = hashes
        }
        self.init(name: name, entry: entry, pythonVersion: version, bytecodeMagic: magic,
                  pythonLibrary: json["python"]?["library"]?.string, pythonBuild: json["python"]?["build"]?.string,
                  options: json["options"]?.object ?? [:], files: records, archives: entries)
    }

    /// Reads `bundle.json` from a bundle directory; nil when there is none.
    public static func load(bundleDirectory: String) throws -> BundleManifest? {
        let path = FileSystem.join(bundleDirectory, fileName)
        guard FileSystem.isRegularFile(path) else { return nil }
        let bytes = try FileSystem.readFile(path)
        do {
            return try BundleManifest(json: try JSON.parse(utf8: bytes), source: path)
        } catch let error as JSON.ParseError {
            throw ManifestError(path: path, message: error.description)
        }
    }
}

public struct ManifestError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public var description: String { "\(path): \(message)" }
}

/// One way a bundle differs from its manifest.
public struct BundleDifference: Equatable, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        case missing, changed, unexpected, unreadable
        case entryMissing = "entry missing", entryChanged = "entry changed", entryUnexpected = "entry unexpected"
    }
    public let kind: Kind
    public let path: String
    public let detail: String

    public var description: String { "\(kind.rawValue): \(path)\(detail.isEmpty ? "" : " (\(detail))")" }
}

/// Compares a bundle directory with its manifest.
public enum BundleVerifier {
    /// Everything: every file's hash, files the manifest does not list, and every entry
    /// of every archive.
    public static func verify(bundleDirectory: String, manifest: BundleManifest) -> [BundleDifference] {
        var (differences, present) = presence(bundleDirectory: bundleDirectory, below: "", manifest: manifest)
        for (path, record) in present {
            differences += check(file: path, record: record, in: bundleDirectory)
        }
        for (archivePath, expected) in manifest.archives.sorted(by: { $0.key < $1.key }) {
            differences += checkEntries(archivePath, expected: expected, in: bundleDirectory)
        }
        return differences.sorted { ($0.path, $0.kind.rawValue) < ($1.path, $1.kind.rawValue) }
    }

    /// What the loader checks below `lib/` (where code is loaded from) before Python
    /// starts, cheaply: every file present, listed and of its recorded size, so nothing
    /// dropped in or cut short there runs. Archives are hashed (`verifyArchives`); hashing
    /// every shared library at every start would cost more than it buys (`frost verify`
    /// does it).
    public static func verifyLibraryDirectory(bundleDirectory: String, manifest: BundleManifest) -> [BundleDifference] {
        var (differences, present) = presence(bundleDirectory: bundleDirectory, below: "lib/", manifest: manifest)
        for (path, record) in present {
            if manifest.archives[path] == nil, let size = FileSystem.fileSize(FileSystem.join(bundleDirectory, path)), size != record.size {
                differences.append(BundleDifference(kind: .changed, path: path, detail: "\(size) bytes, manifest says \(record.size)"))
            }
        }
        return differences.sorted { ($0.path, $0.kind.rawValue) < ($1.path, $1.kind.rawValue) }
    }

    /// What is below `prefix` ("" for the whole bundle, else a directory ending in "/")
    /// against the manifest's list: files it does not list or that are not regular files,
    /// and listed files that are not there; `present` are the listed ones that are, sorted,
    /// for the caller to check further. bundle.json itself is not in its own list.
    static func presence(bundleDirectory: String, below prefix: String, manifest: BundleManifest)
        -> (differences: [BundleDifference], present: [(String, BundleManifest.FileRecord)]) {
        let root = prefix.isEmpty ? bundleDirectory : FileSystem.join(bundleDirectory, String(prefix.dropLast()))
        let listed = FileSystem.isDirectory(root) ? ((try? FileSystem.listFiles(below: root)) ?? []) : []
        var differences: [BundleDifference] = []
        var seen = Set<String>()
        for file in listed {
            let path = prefix + file.path
            if path == BundleManifest.fileName { continue }
            seen.insert(path)
            if !file.isRegular {
                differences.append(BundleDifference(kind: .unexpected, path: path, detail: "not a regular file"))
            } else if manifest.files[path] == nil {
                differences.append(BundleDifference(kind: .unexpected, path: path, detail: "not in the manifest"))
            }
        }
        var present: [(String, BundleManifest.FileRecord)] = []
        for (path, record) in manifest.files.sorted(by: { $0.key < $1.key }) where path.hasPrefix(prefix) {
            if seen.contains(path) {
                present.append((path, record))
            } else {
                differences.append(BundleDifference(kind: .missing, path: path, detail: ""))
            }
        }
        return (differences, present)
    }

    /// The archives' own hashes.
    public static func verifyArchives(bundleDirectory: String, manifest: BundleManifest) -> [BundleDifference] {
        manifest.archives.keys.sorted().flatMap { archive -> [BundleDifference] in
            guard let record = manifest.files[archive] else {
                return [BundleDifference(kind: .missing, path: archive, detail: "archive without a file record")]
            }
            guard FileSystem.isRegularFile(FileSystem.join(bundleDirectory, archive)) else {
                return [BundleDifference(kind: .missing, path: archive, detail: "")]
            }
            return check(file: archive, record: record, in: bundleDirectory)
        }
    }

    static func check(file path: String, record: BundleManifest.FileRecord, in directory: String) -> [BundleDifference] {
        do {
            let (hash, size) = try FileSystem.sha256(ofFile: FileSystem.join(directory, path))
            if hash != record.sha256 || size != record.size {
                return [BundleDifference(kind: .changed, path: path,
                                         detail: size != record.size ? "\(size) bytes, manifest says \(record.size)" : "SHA-256 differs")]
            }
            return []
        } catch {
            return [BundleDifference(kind: .unreadable, path: path, detail: "\(error)")]
        }
    }

    static func checkEntries(_ archivePath: String, expected: [String: String], in directory: String) -> [BundleDifference] {
        let mounted: MountedArchive
        do {
            mounted = try MountedArchive(path: FileSystem.join(directory, archivePath))
        } catch {
            return [BundleDifference(kind: .unreadable, path: archivePath, detail: "\(error)")]
        }
        var differences: [BundleDifference] = []
        for entry in mounted.paths where !entry.hasSuffix("/") {
            guard let hash = expected[entry] else {
                differences.append(BundleDifference(kind: .entryUnexpected, path: "\(archivePath):\(entry)", detail: ""))
                continue
            }
            do {
                if SHA256.hex(try mounted.read(entry)) != hash {
                    differences.append(BundleDifference(kind: .entryChanged, path: "\(archivePath):\(entry)", detail: ""))
                }
            } catch {
                differences.append(BundleDifference(kind: .unreadable, path: "\(archivePath):\(entry)", detail: "\(error)"))
            }
        }
        for entry in expected.keys where !mounted.contains(entry) {
            differences.append(BundleDifference(kind: .entryMissing, path: "\(archivePath):\(entry)", detail: ""))
        }
        return differences
    }
}

extension FileSystem {
    /// The SHA-256 (hex) and size of a file, read in blocks.
    public static func sha256(ofFile path: String) throws -> (String, Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(path: path, message: errnoDescription()) }
        defer { close(fd) }
        var hasher = SHA256()
        var size = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw Failure(path: path, message: errnoDescription()) }
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(buffer: UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            size += n
        }
        return (SHA256.hexString(hasher.finalize()), size)
    }
}
