import ArgumentParser
import Foundation
import FrostArchive
import FrostBundle
import FrostFreeze

/// `frost inspect`: what a bundle or archive holds, and why a module is in it.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Show a bundle's manifest, entries, sizes and largest modules.")

    @Argument(help: "A bundle directory (dist/NAME) or an archive.") var target: String
    @Flag(help: "Print JSON.") var json = false
    @Option(help: "How many of the largest entries to list.") var top = 10
    @Option(help: "Explain why a module or shared library is in the bundle: the chain of imports from the entry module.")
    var why: String?

    /// What inspect finds; `--json` prints it as it is, the text form reads from it.
    struct Inspection: Encodable {
        struct Python: Encodable {
            let version: String
            let magic: String
            let library: String
            let build: String
        }
        struct Largest: Encodable {
            let path: String
            let bytes: Int
        }
        struct Archive: Encodable {
            let entries: Int
            let uncompressedBytes: Int
            let compressedBytes: Int
            let largest: [Largest]

            enum CodingKeys: String, CodingKey {
                case entries, largest
                case uncompressedBytes = "uncompressed_bytes", compressedBytes = "compressed_bytes"
            }
        }
        /// The manifest's part: nil when the target is an archive.
        struct Bundle: Encodable {
            let name: String
            let entry: String
            let python: Python
            let options: [String: JSON]
            let files: [String: Int]
            let totalBytes: Int
        }

        let bundle: Bundle?
        let archives: [String: Archive]

        func encode(to encoder: Encoder) throws {
            enum Keys: String, CodingKey { case name, entry, python, options, files, total_bytes, archives }
            var container = encoder.container(keyedBy: Keys.self)
            if let bundle {
                try container.encode(bundle.name, forKey: .name)
                try container.encode(bundle.entry, forKey: .entry)
                try container.encode(bundle.python, forKey: .python)
                try container.encode(bundle.options, forKey: .options)
                try container.encode(bundle.files, forKey: .files)
                try container.encode(bundle.totalBytes, forKey: .total_bytes)
            }
            try container.encode(archives, forKey: .archives)
        }
    }

    func run() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory) else {
            throw CommandError(.badInput, subject: target, "\(target): no such file or directory")
        }
        if let why {
            let lines = try ImportRecord.load(bundle: target).why(why)
            lines.forEach { print($0) }
            if lines.first?.hasSuffix("is not in the bundle") == true { throw ExitCode(ExitStatus.failure) }
            return
        }
        let inspection = try inspect(isDirectory: isDirectory.boolValue)
        if json {
            print(try prettyJSON(inspection), terminator: "")
        } else {
            printText(inspection)
        }
    }

    func inspect(isDirectory: Bool) throws -> Inspection {
        var bundle: Inspection.Bundle?
        var archives = [target]
        if isDirectory {
            guard let manifest = try BundleManifest.load(bundleDirectory: target) else {
                throw CommandError(.badInput, subject: target, "\(target): no bundle.json (not a bundle built by frost build)")
            }
            bundle = Inspection.Bundle(
                name: manifest.name, entry: manifest.entry,
                python: .init(version: manifest.pythonVersion, magic: manifest.bytecodeMagic, library: manifest.pythonLibraryName,
                              build: manifest.pythonBuild ?? "unrecorded"),
                options: manifest.options, files: manifest.files.mapValues(\.size),
                totalBytes: manifest.files.values.reduce(0) { $0 + $1.size })
            archives = manifest.archives.keys.sorted().map { target + "/" + $0 }
        }
        var reports: [String: Inspection.Archive] = [:]
        for path in archives {
            let mounted = try MountedArchive(path: path)
            let entries = mounted.entries.values.filter { !$0.isDirectory }
            let largest = entries.sorted { ($0.uncompressedSize, $1.path) > ($1.uncompressedSize, $0.path) }.prefix(top)
            reports[URL(fileURLWithPath: path).lastPathComponent] = Inspection.Archive(
                entries: entries.count,
                uncompressedBytes: entries.reduce(0) { $0 + $1.uncompressedSize },
                compressedBytes: entries.reduce(0) { $0 + $1.compressedSize },
                largest: largest.map { .init(path: $0.path, bytes: $0.uncompressedSize) })
        }
        return Inspection(bundle: bundle, archives: reports)
    }

    func printText(_ inspection: Inspection) {
        if let bundle = inspection.bundle {
            print("bundle: \(bundle.name) (entry module \(bundle.entry))")
            print("python: \(bundle.python.version) (bytecode magic \(bundle.python.magic), lib/\(bundle.python.library))")
            print("python build: \(bundle.python.build.split(separator: "\n").joined(separator: " "))")
            print("options: " + bundle.options.sorted { $0.key < $1.key }.map { "\($0.key)=\(compact($0.value))" }.joined(separator: " "))
            print("files: \(bundle.files.count), \(bundle.totalBytes) bytes")
            for (path, size) in bundle.files.sorted(by: { $0.key < $1.key }) where !path.hasPrefix("lib/lib-dynload/") {
                print("  \(pad(size, 10))  \(path)")
            }
            let dynload = bundle.files.filter { $0.key.hasPrefix("lib/lib-dynload/") }
            if !dynload.isEmpty {
                print("  \(pad(dynload.values.reduce(0, +), 10))  lib/lib-dynload/ (\(dynload.count) modules)")
            }
        }
        for (name, archive) in inspection.archives.sorted(by: { $0.key < $1.key }) {
            print("archive \(name): \(archive.entries) entries, \(archive.uncompressedBytes) bytes "
                  + "(\(archive.compressedBytes) compressed); largest:")
            for item in archive.largest { print("  \(pad(item.bytes, 10))  \(item.path)") }
        }
    }

    /// A manifest option on one line: strings bare, lists and objects without spaces.
    func compact(_ value: JSON) -> String {
        switch value {
        case .string(let s): return s
        case .array(let items): return "[" + items.map(compact).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { "\($0):\(compact(o[$0]!))" }.joined(separator: ",") + "}"
        default: return value.serialized().trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }
}
