import ArgumentParser
import Foundation
import FrostArchive

@main
struct Frost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "frost",
        abstract: "Freeze Python web extensions into self-contained Linux bundles.",
        version: "0.1.0",
        subcommands: [ArchiveCommand.self]
    )
}

struct ArchiveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "archive",
        abstract: "Write and inspect frost archives (deterministic zip files).",
        subcommands: [Create.self, List.self]
    )

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the files below a directory into an archive, deterministically.",
            discussion: """
                Entries are sorted and carry fixed timestamps and modes, so the same files \
                always give the same bytes. Symbolic links and special files are refused.
                """)

        @Argument(help: "The directory whose contents become the archive's root.")
        var source: String

        @Option(name: .shortAndLong, help: "The archive to write (replaced atomically).")
        var output: String?

        @Option(help: "Append the archive to this executable instead of writing a file.")
        var appendTo: String?

        @Flag(help: "Store entries without compression.")
        var store = false

        func validate() throws {
            if (output == nil) == (appendTo == nil) {
                throw ValidationError("give exactly one of --output and --append-to")
            }
        }

        func run() throws {
            var writer = ZipWriter(defaultCompression: store ? .stored : .deflate)
            let files = try DirectoryWalk.regularFiles(below: source)
            for file in files {
                let data = try Data(contentsOf: URL(fileURLWithPath: source + "/" + file))
                try writer.add(file, contents: [UInt8](data))
            }
            if let output {
                try writer.write(to: output)
                print("wrote \(output): \(files.count) entries")
            } else if let appendTo {
                try writer.append(to: appendTo)
                print("appended \(files.count) entries to \(appendTo)")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check an archive and list its entries.")

        @Argument(help: "An archive, or an executable with an archive appended.")
        var archive: String

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        func run() throws {
            let mounted = try MountedArchive(path: archive)
            let entries = mounted.paths.map { mounted.entries[$0]! }
            if json {
                let rows = entries.map {
                    ["path": $0.path, "size": $0.uncompressedSize, "compressed": $0.compressedSize,
                     "method": $0.compression == .stored ? "stored" : "deflate"] as [String: Any]
                }
                let object: [String: Any] = ["archive": archive, "offset": mounted.baseOffset, "entries": rows]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            for entry in entries {
                let method = entry.compression == .stored ? "stored " : "deflate"
                print("\(pad(entry.uncompressedSize, 10)) \(pad(entry.compressedSize, 10)) \(method) \(entry.path)")
            }
            let total = entries.reduce(0) { $0 + $1.uncompressedSize }
            print("\(entries.count) entries, \(total) bytes uncompressed"
                  + (mounted.baseOffset > 0 ? ", archive starts at byte \(mounted.baseOffset)" : ""))
        }

        func pad(_ n: Int, _ width: Int) -> String {
            let text = String(n)
            return String(repeating: " ", count: max(0, width - text.count)) + text
        }
    }
}

/// Lists regular files below a directory as relative `/` paths, refusing anything else.
enum DirectoryWalk {
    struct Refused: Error, CustomStringConvertible {
        let path: String
        let reason: String
        var description: String { "\(path): \(reason)" }
    }

    static func regularFiles(below root: String) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw Refused(path: root, reason: "not a directory")
        }
        var result: [String] = []
        func walk(_ relative: String) throws {
            let absolute = relative.isEmpty ? root : root + "/" + relative
            for name in try FileManager.default.contentsOfDirectory(atPath: absolute).sorted() {
                let childRelative = relative.isEmpty ? name : relative + "/" + name
                let attributes = try FileManager.default.attributesOfItem(atPath: root + "/" + childRelative)
                switch attributes[.type] as? FileAttributeType {
                case .typeDirectory?: try walk(childRelative)
                case .typeRegular?: result.append(childRelative)
                case .typeSymbolicLink?:
                    throw Refused(path: root + "/" + childRelative, reason: "symbolic links are not archived; copy the file instead")
                default:
                    throw Refused(path: root + "/" + childRelative, reason: "not a regular file")
                }
            }
        }
        try walk("")
        return result
    }
}
