import Foundation
import FrostArchive
import FrostBundle
import FrostSystem

/// Writes a bundle as an OCI image (an `oci-archive`: the image layout in a tar), without a
/// container engine, a Dockerfile or a base image to pull — as `ko` does for Go: a base
/// layer with glibc's own files from this machine's libc6 package and a non-root user, and
/// a layer with the bundle at `/app/NAME/`. Reproducible: sorted entries, one modification
/// time (`SOURCE_DATE_EPOCH`, else the epoch), fixed owners, gzip without a time stamp; a
/// rebuilt bundle changes only its own layer.
public struct OCIImage {
    public struct Options: Sendable {
        /// The port the loader listens on inside the container.
        public var port = 8000
        /// The user the container runs as (not root), and its group.
        public var uid = 10001
        /// `org.opencontainers.image.version` (default: derived from the bundle's manifest).
        public var version: String?
        /// The reference recorded in the layout's index (`org.opencontainers.image.ref.name`;
        /// default NAME:VERSION).
        public var tag: String?
        /// The time recorded for the layers' files and the config (seconds since the epoch).
        public var sourceTime: Int = 0
        /// The path the loader answers itself, for orchestrators' probes.
        public var healthPath = "/healthz"

        public init() {}
    }

    /// What was written.
    public struct Report: Sendable {
        public var manifestDigest: String
        public var configDigest: String
        /// (what, digest of the compressed layer, its size).
        public var layers: [(name: String, digest: String, size: Int)]
        public var bytes: Int
    }

    /// Why an image could not be written: which file, and what to do.
    public struct ImageError: Error, CustomStringConvertible, Sendable {
        public enum Kind: String, Sendable {
            /// The directory is not a bundle frost built.
            case notABundle
            /// This machine's glibc files cannot be found (the base layer's source).
            case noGlibc
            case cannotRead, cannotWrite
        }

        public let kind: Kind
        /// The file or directory concerned.
        public let subject: String
        public let message: String

        init(_ kind: Kind, subject: String, _ message: String) {
            self.kind = kind
            self.subject = subject
            self.message = message
        }

        public var description: String { message }
    }

    let bundle: String
    let name: String
    let options: Options

    public init(bundle: String, options: Options = Options()) throws {
        let manifestPath = bundle + "/" + BundleManifest.fileName
        guard FileManager.default.fileExists(atPath: manifestPath),
              let manifest = try? BundleManifest.load(bundleDirectory: bundle) else {
            throw ImageError(.notABundle, subject: bundle, "\(bundle): not a bundle (no readable bundle.json): build it with frost build first")
        }
        self.bundle = bundle
        self.name = manifest.name
        self.options = options
    }

    /// The glibc files of this machine's libc6 package: (path in the image, file on disk).
    static func glibcFiles() throws -> (version: String, files: [(String, String)]) {
        let list = (try? String(contentsOfFile: "/var/lib/dpkg/info/libc6:amd64.list", encoding: .utf8))
            ?? (try? String(contentsOfFile: "/var/lib/dpkg/info/libc6:arm64.list", encoding: .utf8)) ?? ""
        var files: [(String, String)] = []
        for line in list.split(separator: "\n") {
            let path = String(line)
            guard path.hasPrefix("/lib/") || path.hasPrefix("/lib64/") || path.hasPrefix("/usr/lib/"),
                  path.contains(".so"), !path.contains("/gconv/"), !path.contains("/audit/") else { continue }
            let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: real, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            // Merged /usr: the image keeps the classic paths the dynamic linker uses.
            let inImage = path.hasPrefix("/usr/lib/") ? String(path.dropFirst(4)) : path
            files.append((String(inImage.dropFirst()), real))
        }
        guard !files.isEmpty else {
            throw ImageError(.noGlibc, subject: "/var/lib/dpkg/info/libc6:*.list", "cannot find glibc's files: the libc6 package's file list is missing (/var/lib/dpkg/info/libc6:*.list)")
        }
        let version = (try? String(contentsOfFile: "/var/lib/dpkg/status", encoding: .utf8)).flatMap { status in
            status.components(separatedBy: "\n\n").first { $0.hasPrefix("Package: libc6\n") }?
                .split(separator: "\n").first { $0.hasPrefix("Version: ") }.map { String($0.dropFirst(9)) }
        } ?? "unknown"
        return (version, files.sorted { $0.0 < $1.0 })
    }

    /// Writes the oci-archive to `output` (replaced atomically).
    public func write(to output: String) throws -> Report {
        let (libcVersion, glibc) = try OCIImage.glibcFiles()
        let uid = options.uid
        // The base layer: glibc, a user, an empty /tmp, CA certificates when the bundle has ssl.
        var base: [TarWriter.Entry] = []
        func directory(_ path: String, mode: Int = 0o755, owner: Int = 0) -> TarWriter.Entry {
            TarWriter.Entry(path: path, kind: .directory, mode: mode, uid: owner, gid: owner)
        }
        var directories: Set<String> = ["etc", "proc", "tmp", "var", "var/lib", "var/lib/frost", "app"]
        for (path, _) in glibc {
            var parent = (path as NSString).deletingLastPathComponent
            while !parent.isEmpty && parent != "/" { directories.insert(parent); parent = (parent as NSString).deletingLastPathComponent }
        }
        let usesSSL = (try? FileManager.default.contentsOfDirectory(atPath: bundle + "/lib/lib-dynload"))?
            .contains { $0.hasPrefix("_ssl.") } ?? false
        let caFile = "/etc/ssl/certs/ca-certificates.crt"
        let addCertificates = usesSSL && FileManager.default.fileExists(atPath: caFile)
        if addCertificates { directories.formUnion(["etc/ssl", "etc/ssl/certs"]) }
        var files: [String: TarWriter.Entry] = [:]
        for path in directories {
            files[path] = path == "tmp" ? directory(path, mode: 0o1777) : directory(path)
        }
        files["etc/passwd"] = .init(path: "etc/passwd", kind: .file(Array(
            "root:x:0:0:root:/root:/usr/sbin/nologin\nfrost:x:\(uid):\(uid):frost:/var/lib/frost:/usr/sbin/nologin\n".utf8)), mode: 0o644)
        files["etc/group"] = .init(path: "etc/group", kind: .file(Array("root:x:0:\nfrost:x:\(uid):\n".utf8)), mode: 0o644)
        for (path, source) in glibc {
            files[path] = .init(path: path, kind: .file(try OCIImage.read(source)), mode: 0o755)
        }
        if addCertificates {
            files["etc/ssl/certs/ca-certificates.crt"] = .init(path: "etc/ssl/certs/ca-certificates.crt",
                                                               kind: .file(try OCIImage.read(caFile)), mode: 0o644)
        }
        base = files.keys.sorted(by: OCIImage.tarOrder).map { files[$0]! }

        // The app layer: the bundle, read-only for the user, and its state directory.
        var app: [String: TarWriter.Entry] = [:]
        let root = "app/" + name
        app[root] = directory(root)
        var seenInodes: [UInt64: String] = [:]
        for file in try FileSystem.listFiles(below: bundle) {
            let path = root + "/" + file.path
            var parent = (path as NSString).deletingLastPathComponent
            while parent != "app" && app[parent] == nil { app[parent] = directory(parent); parent = (parent as NSString).deletingLastPathComponent }
            let attributes = try FileManager.default.attributesOfItem(atPath: bundle + "/" + file.path)
            let permissions = (attributes[.posixPermissions] as? Int) ?? 0o644
            let mode = permissions & 0o111 != 0 ? 0o755 : 0o644
            if let type = attributes[.type] as? FileAttributeType, type == .typeSymbolicLink {
                let target = try FileManager.default.destinationOfSymbolicLink(atPath: bundle + "/" + file.path)
                app[path] = .init(path: path, kind: .symbolicLink(target), mode: 0o777)
                continue
            }
            // The console is a hard link to the loader: stored once.
            let inode = (attributes[.systemFileNumber] as? UInt64) ?? 0
            if inode != 0, let first = seenInodes[inode] {
                app[path] = .init(path: path, kind: .hardLink(first), mode: mode)
                continue
            }
            seenInodes[inode] = path
            app[path] = .init(path: path, kind: .file(try OCIImage.read(bundle + "/" + file.path)), mode: mode)
        }
        app["var/lib/frost/" + name] = directory("var/lib/frost/" + name, mode: 0o750, owner: uid)
        // Hard links must follow their target: tar order is path order, and the loader (_NAME)
        // sorts before the console (NAME) only by chance, so order explicitly.
        let appEntries = OCIImage.orderedForLinks(app)

        var blobs: [String: [UInt8]] = [:]
        var layers: [(name: String, digest: String, size: Int, diffID: String)] = []
        for (what, entries) in [("glibc \(libcVersion)", base), (name, appEntries)] {
            var plain = TarWriter(modificationTime: options.sourceTime, gzip: false)
            var compressed = TarWriter(modificationTime: options.sourceTime, gzip: true)
            for entry in entries { plain.add(entry); compressed.add(entry) }
            let diffID = "sha256:" + SHA256.hex(try plain.bytes())
            let blob = try compressed.bytes()
            let digest = "sha256:" + SHA256.hex(blob)
            blobs[digest] = blob
            layers.append((what, digest, blob.count, diffID))
        }

        let created = OCIImage.timestamp(options.sourceTime)
        let bundleDigest = try FileSystem.sha256(ofFile: bundle + "/" + BundleManifest.fileName).0
        let version = options.version ?? String(bundleDigest.prefix(12))
        let labels = [
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.created": created,
            "org.opencontainers.image.base.name": "glibc from Debian libc6 \(libcVersion)",
            "dev.frost.bundle.manifest.sha256": bundleDigest,
        ]
        let loader = "/app/\(name)/_\(name)"
        let config = ImageConfig(
            architecture: OCIImage.architecture, os: "linux", created: created,
            config: .init(User: "\(uid):\(uid)",
                          Entrypoint: [loader, "--listen", "0.0.0.0:\(options.port)", "--workers", "auto", "--health-path", options.healthPath],
                          ExposedPorts: ["\(options.port)/tcp": [:]], StopSignal: "SIGTERM", WorkingDir: "/app/\(name)",
                          Env: ["PATH=/usr/bin:/bin", "FROST_STATE_DIR=/var/lib/frost/\(name)", "HOME=/var/lib/frost/\(name)"],
                          Labels: labels),
            rootfs: .init(type: "layers", diff_ids: layers.map(\.diffID)),
            history: layers.map { .init(created: created, created_by: "frost image: \($0.name)") })
        let configBytes = try OCIImage.encode(config)
        let configDigest = "sha256:" + SHA256.hex(configBytes)
        blobs[configDigest] = configBytes
        let manifest = ImageManifest(
            schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
            config: .init(mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: configBytes.count),
            layers: layers.map { .init(mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $0.digest, size: $0.size) },
            annotations: labels)
        let manifestBytes = try OCIImage.encode(manifest)
        let manifestDigest = "sha256:" + SHA256.hex(manifestBytes)
        blobs[manifestDigest] = manifestBytes
        let index = ImageIndex(schemaVersion: 2, manifests: [.init(
            mediaType: "application/vnd.oci.image.manifest.v1+json", digest: manifestDigest, size: manifestBytes.count,
            // NAME:VERSION, so `podman load` names the image after the bundle.
            annotations: ["org.opencontainers.image.ref.name": options.tag ?? "\(name):\(version)"],
            platform: .init(architecture: OCIImage.architecture, os: "linux"))])
        var layout = TarWriter(modificationTime: options.sourceTime, gzip: false)
        layout.add(.init(path: "blobs", kind: .directory, mode: 0o755))
        layout.add(.init(path: "blobs/sha256", kind: .directory, mode: 0o755))
        for digest in blobs.keys.sorted() {
            layout.add(.init(path: "blobs/sha256/" + digest.dropFirst(7), kind: .file(blobs[digest]!), mode: 0o644))
        }
        layout.add(.init(path: "index.json", kind: .file(try OCIImage.encode(index)), mode: 0o644))
        layout.add(.init(path: "oci-layout", kind: .file(Array("{\"imageLayoutVersion\": \"1.0.0\"}\n".utf8)), mode: 0o644))
        let archive = try layout.bytes()
        let temporary = output + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(archive)) else {
            throw ImageError(.cannotWrite, subject: output, "cannot write \(output)")
        }
        _ = rename(temporary, output)
        return Report(manifestDigest: manifestDigest, configDigest: configDigest,
                      layers: layers.map { ($0.name, $0.digest, $0.size) }, bytes: archive.count)
    }

    /// Canonical JSON: the same image gives the same digests.
    static func encode(_ value: some Encodable) throws -> [UInt8] {
        Array(try canonicalJSON(value))
    }

    static var architecture: String {
        #if arch(arm64)
        return "arm64"
        #else
        return "amd64"
        #endif
    }

    static func read(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ImageError(.cannotRead, subject: path, "cannot read \(path)")
        }
        return [UInt8](data)
    }

    /// Parents before children, then byte order.
    static func tarOrder(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

    /// Path order, except that a hard link comes after the file it names.
    static func orderedForLinks(_ entries: [String: TarWriter.Entry]) -> [TarWriter.Entry] {
        let sorted = entries.keys.sorted(by: tarOrder).map { entries[$0]! }
        let files = sorted.filter { if case .hardLink = $0.kind { return false }; return true }
        let links = sorted.filter { if case .hardLink = $0.kind { return true }; return false }
        return files + links
    }

    /// RFC 3339 in UTC.
    static func timestamp(_ seconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }
}

// MARK: - The OCI image-spec documents (field names as the spec spells them)

/// application/vnd.oci.image.config.v1+json
struct ImageConfig: Encodable {
    struct Config: Encodable {
        let User: String
        let Entrypoint: [String]
        let ExposedPorts: [String: [String: String]]
        let StopSignal: String
        let WorkingDir: String
        let Env: [String]
        let Labels: [String: String]
    }
    struct RootFS: Encodable {
        let type: String
        let diff_ids: [String]
    }
    struct History: Encodable {
        let created: String
        let created_by: String
    }
    let architecture: String
    let os: String
    let created: String
    let config: Config
    let rootfs: RootFS
    let history: [History]
}

/// A content descriptor: what a manifest or index points at.
struct ImageDescriptor: Encodable {
    let mediaType: String
    let digest: String
    let size: Int
}

/// application/vnd.oci.image.manifest.v1+json
struct ImageManifest: Encodable {
    let schemaVersion: Int
    let mediaType: String
    let config: ImageDescriptor
    let layers: [ImageDescriptor]
    let annotations: [String: String]
}

/// index.json of the image layout.
struct ImageIndex: Encodable {
    struct Platform: Encodable {
        let architecture: String
        let os: String
    }
    struct Manifest: Encodable {
        let mediaType: String
        let digest: String
        let size: Int
        let annotations: [String: String]
        let platform: Platform
    }
    let schemaVersion: Int
    let manifests: [Manifest]
}
