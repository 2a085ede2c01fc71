import ArgumentParser
import Foundation
import FrostArchive
import FrostBundle
import FrostFreeze
import FrostSystem

/// `frost archive create|list`: frost's deterministic zip files on their own.
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
            let files = try regularFiles(below: source)
            for file in files {
                let path = source + "/" + file
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw CommandError(.failure, subject: path, "\(path): cannot read it")
                }
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

        /// Regular files below `root` as relative `/` paths (FrostBundle's walk), refusing
        /// anything else.
        func regularFiles(below root: String) throws -> [String] {
            guard FileSystem.isDirectory(root) else { throw CommandError(.badInput, subject: root, "\(root): not a directory") }
            return try FileSystem.listFiles(below: root).map { file in
                guard file.isRegular else {
                    let path = root + "/" + file.path
                    let isLink = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) != nil
                    throw CommandError(.badInput, subject: path, isLink ? "\(path): symbolic links are not archived; copy the file instead"
                                                                        : "\(path): not a regular file")
                }
                return file.path
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

        /// What `--json` prints.
        struct Listing: Encodable {
            struct Entry: Encodable {
                let path: String
                let size: Int
                let compressed: Int
                let method: String
            }
            let archive: String
            let offset: Int
            let entries: [Entry]
        }

        func run() throws {
            let mounted = try MountedArchive(path: archive)
            let entries = mounted.paths.map { mounted.entries[$0]! }
            if json {
                let listing = Listing(archive: archive, offset: Int(mounted.baseOffset), entries: entries.map {
                    .init(path: $0.path, size: $0.uncompressedSize, compressed: $0.compressedSize,
                          method: $0.compression == .stored ? "stored" : "deflate")
                })
                print(try prettyJSON(listing), terminator: "")
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
    }
}

/// Right-aligned in `width` columns.
func pad(_ n: Int, _ width: Int) -> String {
    let text = String(n)
    return String(repeating: " ", count: max(0, width - text.count)) + text
}

/// What the commands' `--json` flags print (FrostFreeze's canonical JSON).
func prettyJSON(_ value: some Encodable) throws -> String {
    String(decoding: try canonicalJSON(value), as: UTF8.self)
}
