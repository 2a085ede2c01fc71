import Foundation

/// What the target interpreter found (the JSON written by `analyse.py`).
public struct Analysis: Decodable, Sendable {
    /// Where a module comes from; decides where it goes in the bundle.
    public enum Category: String, Codable, Sendable {
        /// The program's own code (the entry script's directory, the project root).
        case app
        /// The `isapi` package frost ships.
        case isapi
        /// Third-party packages (site-packages of the build venv).
        case site
        /// The interpreter's standard library.
        case stdlib
    }

    public enum ModuleKind: String, Codable, Sendable {
        case source
        case `extension`
    }

    /// Where a package's files live in the bundle.
    public enum Placement: String, Codable, Sendable {
        /// NAME.zip, or the standard library zip.
        case archive
        /// lib/app for the program's code, lib/site-packages for third-party code.
        case filesystem
    }

    public struct PythonInfo: Decodable, Sendable {
        public let version: String
        public let major: Int
        public let minor: Int
        public let magic: String
        /// `sys.version`: the build line, for the manifest.
        public let build: String
        public let libpython: String?
        public let dynload: String
        public let stdlib: [String]
        public let site: [String]
        public let executable: String
    }

    public struct Module: Decodable, Sendable {
        public let name: String
        public let file: String
        public let package: Bool
        public let category: Category
        public let kind: ModuleKind
        /// Where it goes: in an archive for sources, below lib/ for extensions.
        public let archive_path: String
        public let pyc: String?
        public let root: String
        public let distribution: String?
        public let placement: Placement?
        public var onFilesystem: Bool { placement == .filesystem }
        /// Reached only by imports inside functions.
        public let optional: Bool?
    }

    /// Where a top-level package went, and why.
    public struct PackagePlacement: Decodable, Sendable {
        public let name: String
        public let `where`: String
        public let why: String
    }

    public struct Warning: Decodable, Sendable, Equatable {
        public enum Kind: String, Codable, Sendable {
            /// An import that names a module not found.
            case missing
            /// An import whose name is computed (`importlib.import_module(x)`).
            case dynamic
            /// The traced import of the entry module stopped with an error.
            case trace
            /// A module the traced import saw could not be bundled.
            case traced
        }

        public let kind: Kind
        public let module: String?
        public let importer: String?
        public let file: String?
        public let line: Int?
        public let category: Category?
        public let message: String

        public var description: String {
            var location = ""
            if let file { location = file + (line.map { ":\($0)" } ?? "") + ": " }
            return "warning: \(location)\(message)"
        }
    }

    public struct DataFile: Decodable, Sendable {
        public let source: String
        /// The path relative to the package root (in the archive, or below lib/app or
        /// lib/site-packages).
        public let archive: String
        public let placement: Placement?
        public let category: Category?
    }

    /// What the traced import saw.
    public struct Trace: Decodable, Sendable {
        public let ran: Bool
        public let error: String?
        /// How many modules the import added to sys.modules.
        public let modules: Int
        /// Shared objects it mapped that are neither extension modules nor libpython.
        public let libraries: [String]
    }

    public let python: PythonInfo
    public let modules: [Module]
    /// What may break at run time.
    public let warnings: [Warning]
    /// Imports in third-party code that only some code paths make, which were not found.
    public let optional: [Warning]
    public let trace: Trace
    /// Data files left out by the hooks' exclude_data.
    public let data_left_out: Int
    /// The packages placed on the filesystem (and those the spec kept in the archive).
    public let placement: [PackagePlacement]

    /// What first brought a module in: the importing module (with the file and line of the
    /// import), or a reason in angle brackets (`<includes>`, `<the traced import>`, ...).
    public struct BroughtBy: Codable, Sendable {
        public let by: String
        public let file: String?
        public let line: Int?
    }
    public let brought_by: [String: BroughtBy]
    /// Modules only imports inside functions reach, by the module each such import names
    /// first; heaviest first.
    public let optional_pulls: [OptionalPull]?
    /// Module → the code of it whose imports were not followed (it cannot run in a bundle).
    public let trimmed: [String: [String]]?

    public struct OptionalPull: Decodable, Sendable {
        public let module: String
        public let by: String
        public let file: String?
        public let line: Int?
        public let modules: Int
        public let bytes: Int
        /// How the import that pulls it stands: "function" (inside a function of `by`) or
        /// "try" (at module level, inside a `try` whose `except` survives its failure).
        public let how: String?
        /// Its extension modules, whose shared libraries weigh in too.
        public let extensions: [String]?
        /// The shared libraries only this pull needs, and their bytes (set by the builder).
        public var libraries = 0, libraryBytes = 0

        private enum CodingKeys: String, CodingKey { case module, by, file, line, modules, bytes, how, extensions }

        /// "readline 590.3 KiB in 1 module and 2 shared libraries: imported inside a
        /// function of code (code.py:298)", "ssl 1.1 MiB in 1 module and 2 shared libraries:
        /// imported inside a try of http.client (client.py:1394)"
        public var description: String {
            let location = file.map { " (" + URL(fileURLWithPath: $0).lastPathComponent + (line.map { ":\($0)" } ?? "") + ")" } ?? ""
            let shared = libraries == 0 ? "" : " and \(libraries) shared librar\(libraries == 1 ? "y" : "ies")"
            return "\(module) \(formatBytes(bytes + libraryBytes)) in \(modules) module\(modules == 1 ? "" : "s")\(shared): "
                + "imported inside a \(how == "try" ? "try" : "function") of \(by)\(location)"
        }

        /// The pulls with the shared libraries each alone needs (`users`: library → the
        /// extension modules and libraries that need it; `size`: a library's bytes in the
        /// bundle) weighed in, heaviest first.
        public static func weighed(_ pulls: [OptionalPull], users: [String: [String]], size: (String) -> Int) -> [OptionalPull] {
            pulls.map { pull in
                var pull = pull
                // A library is the pull's alone when every user is one of its extension
                // modules or a library that is the pull's alone.
                var own = Set(pull.extensions ?? [])
                var libraries: Set<String> = []
                var grew = !own.isEmpty
                while grew {
                    grew = false
                    for (library, needers) in users where !libraries.contains(library) && !needers.isEmpty
                        && needers.allSatisfy(own.contains) {
                        libraries.insert(library)
                        own.insert(library)
                        grew = true
                    }
                }
                pull.libraries = libraries.count
                pull.libraryBytes = libraries.reduce(0) { $0 + size($1) }
                return pull
            }.sorted { ($0.bytes + $0.libraryBytes, $1.module) > ($1.bytes + $1.libraryBytes, $0.module) }
        }
    }
    public let stdlib_missing_skipped: Int
    public let package_data: [DataFile]
    public let distributions: [String]
}

/// Runs the target interpreter.
enum PythonRunner {
    /// The program could not be started at all.
    struct Failure: Error, CustomStringConvertible {
        let executable: String
        let reason: String
        var description: String { "cannot run \(executable): \(reason)" }
    }

    @discardableResult
    static func run(_ executable: String, _ arguments: [String], input: Data? = nil,
                    environment: [String: String]? = nil) throws -> (status: Int32, stdout: Data, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe(), err = Pipe(), inPipe = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = inPipe
        do { try process.run() } catch {
            throw Failure(executable: executable, reason: error.localizedDescription)
        }
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data()
        nonisolated(unsafe) var errData = Data()
        group.enter()
        DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        if let input { inPipe.fileHandleForWriting.write(input) }
        try? inPipe.fileHandleForWriting.close()
        group.wait()
        process.waitUntilExit()
        return (process.terminationStatus, outData, String(decoding: errData, as: UTF8.self))
    }
}
