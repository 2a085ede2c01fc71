import Foundation
import FrostBundle
import FrostSystem
import TOMLKit

/// What to freeze and how: from a spec file (`Bundles/NAME.toml`), a pyproject.toml's
/// `[tool.frost]`, or a bare script, with command-line flags applied on top.
public struct BuildSpec: Equatable, Sendable {
    public struct Resource: Equatable, Sendable {
        /// A file or directory on disk (absolute).
        public var source: String
        /// Where it goes in the archive (relative, `/`-separated).
        public var destination: String
    }

    public enum Workers: Equatable, Sendable {
        case count(Int)
        case auto
    }

    /// The bundle and entry module name.
    public var name: String
    /// The entry script (absolute); empty when `wsgi` names the entry instead.
    public var script: String
    /// `package.module:callable` (or `module:factory()`): frost generates the entry module,
    /// an extension over `isapi.wsgi.ISAPISimpleHandler` serving that application on the host's Python threads.
    public var wsgi: String?
    /// Where the app's own packages are found (absolute): the script's directory, or for a
    /// `wsgi` spec the directory of the spec file (the project's root).
    public var appRoot: String = ""
    /// A script the console (`NAME`) runs instead of the entry module, such as Django's
    /// manage.py (absolute).
    public var console: String?
    /// Python threads serving requests (the loader's default `--threads`, and the
    /// generated WSGI handler's pool).
    public var threads: Int = 8
    /// Packages placed on the filesystem inside the bundle (lib/app, lib/site-packages)
    /// whatever the default rule says, and packages kept in the archive whatever it says.
    public var filesystem: [String] = []
    public var archive: [String] = []
    /// The CPython to freeze with (3.10 to 3.13, with a shared libpython): its standard
    /// library, extension modules and libpython go into the bundle.
    public var python: String = "/usr/bin/python3"
    /// A requirements file installed into a cached build venv (absolute).
    public var requirements: String?
    /// Extra modules to include (with what they import).
    public var includes: [String] = []
    /// Modules never to include.
    public var excludes: [String] = []
    /// Whole packages, with every submodule and data file.
    public var packages: [String] = []
    public var resources: [Resource] = []
    /// Bytecode optimisation level, 0–2.
    public var optimize: Int = 0
    /// Deflate archive entries (stored when false).
    public var compress: Bool = true
    /// Default listen address of the loader.
    public var listen: String = "127.0.0.1:8000"
    /// Worker processes (one per core unless the spec says otherwise).
    public var workers: Workers = .auto
    /// Import the entry module at build time to see what really gets imported.
    public var trace: Bool = true
    /// The user's own hooks (a JSON file in the format of FrostFreeze's hooks.json; absolute).
    public var hooks: String?
    /// The file the spec came from (nil for a bare script).
    public var specFile: String?

    /// The module name the console script gets in the archive.
    public static let consoleModule = "__frost_console__"

    /// The options as recorded in the manifest.
    public var manifestOptions: [String: JSON] {
        var options: [String: JSON] = [
            "optimize": .number(Double(optimize)),
            "compress": .bool(compress),
            "listen": .string(listen),
            "includes": .array(includes.map { .string($0) }),
            "excludes": .array(excludes.map { .string($0) }),
            "packages": .array(packages.map { .string($0) }),
            "resources": .object(Dictionary(uniqueKeysWithValues: resources.map {
                ($0.destination, JSON.string(URL(fileURLWithPath: $0.source).lastPathComponent))
            })),
            "python": .string(python),
            "trace": .bool(trace),
            "threads": .number(Double(threads)),
            "filesystem": .array(filesystem.map { .string($0) }),
            "archive": .array(archive.map { .string($0) }),
        ]
        if let wsgi { options["wsgi"] = .string(wsgi) }
        if console != nil { options["console"] = .string(BuildSpec.consoleModule) }
        switch workers {
        case .auto: options["workers"] = .string("auto")
        case .count(let n): options["workers"] = .number(Double(n))
        }
        return options
    }
}

/// A problem with the spec: names the file, the key and the line.
public struct SpecError: Error, CustomStringConvertible, Equatable, Sendable {
    public let file: String
    public let line: Int?
    public let key: String?
    public let message: String

    public var description: String {
        var location = file
        if let line { location += ":\(line)" }
        if let key { return "\(location): key '\(key)': \(message)" }
        return "\(location): \(message)"
    }
}

/// Command-line flags: scalar flags replace the spec's value; list flags add to it.
public struct SpecOverrides: Sendable {
    public var name: String?
    public var python: String?
    public var requirements: String?
    public var includes: [String] = []
    public var excludes: [String] = []
    public var packages: [String] = []
    /// "SOURCE=DESTINATION"
    public var resources: [String] = []
    public var optimize: Int?
    public var compress: Bool?
    public var listen: String?
    public var workers: String?
    public var trace: Bool?
    public var hooks: String?
    public var wsgi: String?
    public var console: String?
    public var threads: Int?
    public var filesystem: [String] = []
    public var archive: [String] = []
    public init() {}
}

public enum SpecLoader {
    static let knownKeys = ["name", "script", "python", "requirements", "includes", "excludes", "packages",
                            "resources", "optimize", "compress", "listen", "workers", "trace", "hooks", "wsgi", "console",
                            "threads", "filesystem", "archive", "root"]

    /// Loads a spec from `path` (a .toml spec, a pyproject.toml or a .py script) and
    /// applies `overrides`. Paths in a spec file are relative to the file's directory.
    public static func load(_ path: String, overrides: SpecOverrides = SpecOverrides(),
                            currentDirectory: String = FileManager.default.currentDirectoryPath) throws -> BuildSpec {
        let absolute = resolve(path, against: currentDirectory)
        guard FileManager.default.fileExists(atPath: absolute) else {
            throw SpecError(file: path, line: nil, key: nil, message: "no such file")
        }
        var spec: BuildSpec
        var isDirectory: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: absolute, isDirectory: &isDirectory)
        if absolute.hasSuffix(".py") {
            let stem = URL(fileURLWithPath: absolute).deletingPathExtension().lastPathComponent
            spec = BuildSpec(name: stem, script: absolute)
            spec.appRoot = URL(fileURLWithPath: absolute).deletingLastPathComponent().path
        } else if isDirectory.boolValue, let wsgi = overrides.wsgi {
            // A project directory and --wsgi: the directory is the app's root.
            guard let app = WSGIEntry(wsgi) else {
                throw SpecError(file: "command line", line: nil, key: "wsgi",
                                message: "'\(wsgi)' is not package.module:callable (or module:factory())")
            }
            spec = BuildSpec(name: app.defaultName(root: absolute), script: "")
            spec.appRoot = absolute
        } else if absolute.hasSuffix(".toml") {
            let isPyproject = URL(fileURLWithPath: absolute).lastPathComponent == "pyproject.toml"
            spec = try loadToml(absolute, displayPath: path, tablePath: isPyproject ? ["tool", "frost"] : [])
        } else {
            throw SpecError(file: path, line: nil, key: nil,
                            message: "expected a spec (.toml), a pyproject.toml, a script (.py), or a project directory with --wsgi")
        }
        try apply(overrides, to: &spec, currentDirectory: currentDirectory)
        try validate(spec, file: path)
        return spec
    }

    static func resolve(_ path: String, against directory: String) -> String {
        let url = path.hasPrefix("/") ? URL(fileURLWithPath: path) : URL(fileURLWithPath: directory).appendingPathComponent(path)
        return url.standardizedFileURL.path
    }

    static func loadToml(_ absolute: String, displayPath: String, tablePath: [String]) throws -> BuildSpec {
        let text: String
        do { text = try String(contentsOfFile: absolute, encoding: .utf8) } catch {
            throw SpecError(file: displayPath, line: nil, key: nil, message: "cannot read: \(error.localizedDescription)")
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw SpecError(file: displayPath, line: error.source.begin.line, key: nil, message: "TOML syntax: \(error.description)")
        }
        var table = root
        for part in tablePath {
            guard let next = table[part]?.table else {
                throw SpecError(file: displayPath, line: nil, key: nil,
                                message: "no [\(tablePath.joined(separator: "."))] table")
            }
            table = next
        }
        let lines = KeyLines(text: text, tablePath: tablePath)
        let directory = URL(fileURLWithPath: absolute).deletingLastPathComponent().path
        func fail(_ key: String, _ message: String) -> SpecError {
            SpecError(file: displayPath, line: lines.line(of: key), key: key, message: message)
        }
        for key in table.keys where !knownKeys.contains(key) {
            throw fail(key, "unknown key (known keys: \(knownKeys.joined(separator: ", ")))")
        }
        func string(_ key: String) throws -> String? {
            guard let value = table[key] else { return nil }
            guard let s = value.string else { throw fail(key, "expected a string, found \(value.type)") }
            return s
        }
        func strings(_ key: String) throws -> [String] {
            guard let value = table[key] else { return [] }
            guard let array = value.array else { throw fail(key, "expected an array of strings, found \(value.type)") }
            return try array.map {
                guard let s = $0.string else { throw fail(key, "expected an array of strings, found an element of type \($0.type)") }
                return s
            }
        }
        let wsgi = try string("wsgi")
        let script = try string("script")
        if script != nil && wsgi != nil {
            throw fail("wsgi", "a spec has either script or wsgi, not both")
        }
        var spec: BuildSpec
        if let wsgi {
            guard let app = WSGIEntry(wsgi) else {
                throw fail("wsgi", "'\(wsgi)' is not package.module:callable (or module:factory())")
            }
            // The project's root: where the spec lies, unless `root` points elsewhere.
            let root = try string("root").map { resolve($0, against: directory) } ?? directory
            spec = BuildSpec(name: try string("name") ?? app.defaultName(root: root), script: "")
            spec.wsgi = wsgi
            spec.appRoot = root
        } else {
            guard let script else {
                throw SpecError(file: displayPath, line: nil, key: "script",
                                message: "missing (the entry script to freeze, or wsgi = \"package.module:callable\")")
            }
            let scriptPath = resolve(script, against: directory)
            spec = BuildSpec(
                name: try string("name") ?? URL(fileURLWithPath: scriptPath).deletingPathExtension().lastPathComponent,
                script: scriptPath)
            spec.appRoot = URL(fileURLWithPath: scriptPath).deletingLastPathComponent().path
        }
        spec.specFile = absolute
        if let python = try string("python") { spec.python = python.contains("/") ? resolve(python, against: directory) : python }
        if let requirements = try string("requirements") { spec.requirements = resolve(requirements, against: directory) }
        spec.includes = try strings("includes")
        spec.excludes = try strings("excludes")
        spec.packages = try strings("packages")
        spec.filesystem = try strings("filesystem")
        spec.archive = try strings("archive")
        if let console = try string("console") { spec.console = resolve(console, against: directory) }
        if let value = table["threads"] {
            guard let n = value.int else { throw fail("threads", "expected a number of threads, found \(value.type)") }
            spec.threads = n
        }
        if let value = table["resources"] {
            guard let resources = value.table else {
                throw fail("resources", "expected a table of \"source\" = \"archive path\", found \(value.type)")
            }
            for source in resources.keys.sorted() {
                guard let destination = resources[source]?.string else {
                    throw fail("resources", "the archive path for '\(source)' must be a string")
                }
                spec.resources.append(.init(source: resolve(source, against: directory), destination: destination))
            }
        }
        if let value = table["optimize"] {
            guard let level = value.int else { throw fail("optimize", "expected an integer 0, 1 or 2, found \(value.type)") }
            spec.optimize = level
        }
        if let value = table["compress"] {
            guard let flag = value.bool else { throw fail("compress", "expected true or false, found \(value.type)") }
            spec.compress = flag
        }
        if let listen = try string("listen") { spec.listen = listen }
        if let value = table["trace"] {
            guard let flag = value.bool else { throw fail("trace", "expected true or false, found \(value.type)") }
            spec.trace = flag
        }
        if let hooks = try string("hooks") { spec.hooks = resolve(hooks, against: directory) }
        if let value = table["workers"] {
            if let n = value.int { spec.workers = .count(n) } else if value.string == "auto" { spec.workers = .auto } else {
                throw fail("workers", "expected a number of workers or \"auto\", found \(value.type)")
            }
        }
        do {
            try validate(spec, file: displayPath)
        } catch let error as SpecError where error.line == nil && error.key != nil {
            throw SpecError(file: error.file, line: lines.line(of: error.key!), key: error.key, message: error.message)
        }
        return spec
    }

    static func apply(_ overrides: SpecOverrides, to spec: inout BuildSpec, currentDirectory: String) throws {
        if let name = overrides.name { spec.name = name }
        if let python = overrides.python { spec.python = python.contains("/") ? resolve(python, against: currentDirectory) : python }
        if let requirements = overrides.requirements { spec.requirements = resolve(requirements, against: currentDirectory) }
        spec.includes += overrides.includes
        spec.excludes += overrides.excludes
        spec.packages += overrides.packages
        for resource in overrides.resources {
            let parts = resource.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw SpecError(file: "command line", line: nil, key: "resource",
                                message: "'\(resource)' is not SOURCE=ARCHIVE_PATH")
            }
            spec.resources.append(.init(source: resolve(parts[0], against: currentDirectory), destination: parts[1]))
        }
        if let optimize = overrides.optimize { spec.optimize = optimize }
        if let compress = overrides.compress { spec.compress = compress }
        if let listen = overrides.listen { spec.listen = listen }
        if let trace = overrides.trace { spec.trace = trace }
        if let wsgi = overrides.wsgi {
            guard WSGIEntry(wsgi) != nil else {
                throw SpecError(file: "command line", line: nil, key: "wsgi",
                                message: "'\(wsgi)' is not package.module:callable (or module:factory())")
            }
            if spec.wsgi == nil && !spec.script.isEmpty {
                spec.appRoot = spec.specFile.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path } ?? spec.appRoot
            }
            spec.wsgi = wsgi
            spec.script = ""
        }
        if let console = overrides.console { spec.console = resolve(console, against: currentDirectory) }
        if let threads = overrides.threads { spec.threads = threads }
        spec.filesystem += overrides.filesystem
        spec.archive += overrides.archive
        if let hooks = overrides.hooks { spec.hooks = resolve(hooks, against: currentDirectory) }
        if let workers = overrides.workers {
            if workers == "auto" { spec.workers = .auto } else if let n = Int(workers) { spec.workers = .count(n) } else {
                throw SpecError(file: "command line", line: nil, key: "workers", message: "'\(workers)' is not a number or auto")
            }
        }
    }

    /// Checks values, whatever their origin.
    static func validate(_ spec: BuildSpec, file: String) throws {
        func fail(_ key: String, _ message: String) -> SpecError { SpecError(file: file, line: nil, key: key, message: message) }
        if spec.name.contains(".") { throw fail("name", "'\(spec.name)' must be a plain module name (no dots)") }
        if let problem = BundleLayout.problemWithModuleName(spec.name) { throw fail("name", problem) }
        var isDirectory: ObjCBool = false
        if spec.wsgi == nil {
            guard FileManager.default.fileExists(atPath: spec.script, isDirectory: &isDirectory), !isDirectory.boolValue else {
                throw fail("script", "no such file: \(spec.script)")
            }
            guard spec.script.hasSuffix(".py") else { throw fail("script", "\(spec.script) is not a .py file") }
        }
        if let wsgi = spec.wsgi, let app = WSGIEntry(wsgi), app.topLevelModule == spec.name {
            throw fail("name", "'\(spec.name)' is also the application's module (\(wsgi)); the bundle's entry module "
                       + "would hide it: choose another name")
        }
        if spec.wsgi != nil {
            var isRootDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: spec.appRoot, isDirectory: &isRootDirectory), isRootDirectory.boolValue else {
                throw fail("root", "no such directory: \(spec.appRoot)")
            }
        }
        if let console = spec.console {
            guard FileManager.default.fileExists(atPath: console, isDirectory: &isDirectory), !isDirectory.boolValue,
                  console.hasSuffix(".py") else {
                throw fail("console", "no such script: \(console)")
            }
        }
        guard (1...256).contains(spec.threads) else { throw fail("threads", "must be between 1 and 256, not \(spec.threads)") }
        for (key, names) in [("filesystem", spec.filesystem), ("archive", spec.archive)] {
            for name in names where BundleLayout.problemWithModuleName(name) != nil || name.contains(".") {
                throw fail(key, "'\(name)' is not a top-level package name")
            }
        }
        if let both = spec.filesystem.first(where: spec.archive.contains) {
            throw fail("archive", "'\(both)' is in both filesystem and archive")
        }
        let python = spec.python
        if python.contains("/") {
            guard FileManager.default.isExecutableFile(atPath: python) else { throw fail("python", "no such interpreter: \(python)") }
        }
        if let requirements = spec.requirements, !FileManager.default.fileExists(atPath: requirements) {
            throw fail("requirements", "no such file: \(requirements)")
        }
        for (key, names) in [("includes", spec.includes), ("excludes", spec.excludes), ("packages", spec.packages)] {
            for name in names where BundleLayout.problemWithModuleName(name) != nil {
                throw fail(key, "'\(name)' is not a module name")
            }
        }
        for resource in spec.resources {
            guard FileManager.default.fileExists(atPath: resource.source) else {
                throw fail("resources", "no such file or directory: \(resource.source)")
            }
            let parts = resource.destination.split(separator: "/", omittingEmptySubsequences: false)
            if resource.destination.hasPrefix("/") || parts.contains("..") || parts.contains(".") || resource.destination.contains("\\") {
                throw fail("resources", "archive path '\(resource.destination)' must be relative, without '.' or '..'")
            }
        }
        if let hooks = spec.hooks {
            do {
                _ = try Hooks.load(hooks)
            } catch let error as Hooks.FormatError {
                throw fail("hooks", error.description)
            }
        }
        guard (0...2).contains(spec.optimize) else { throw fail("optimize", "must be 0, 1 or 2, not \(spec.optimize)") }
        if !ListenAddress.isValid(spec.listen) {
            throw fail("listen", "'\(spec.listen)' is not HOST:PORT (port 1-65535) or unix:PATH")
        }
        if case .count(let n) = spec.workers, n < 0 || n > 1024 {
            throw fail("workers", "must be between 0 and 1024 or \"auto\", not \(n)")
        }
    }
}

/// `package.module:callable`, `module:attribute.path` or `module:factory()`.
public struct WSGIEntry: Equatable, Sendable {
    public let module: String
    public let attribute: String
    /// `factory()`: the attribute is called (without arguments) to make the application.
    public let isFactory: Bool

    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, BundleLayout.problemWithModuleName(parts[0]) == nil else { return nil }
        var attribute = parts[1]
        isFactory = attribute.hasSuffix("()")
        if isFactory { attribute = String(attribute.dropLast(2)) }
        guard BundleLayout.problemWithModuleName(attribute) == nil else { return nil }
        module = parts[0]
        self.attribute = attribute
    }

    /// The application's top-level module, which the bundle's entry module must not shadow.
    public var topLevelModule: String { String(module.split(separator: ".").first ?? "") }

    /// The bundle name when the spec gives none: the project directory's name, unless that
    /// is the application's own top-level module (then NAME_wsgi).
    public func defaultName(root: String) -> String {
        let directory = URL(fileURLWithPath: root).lastPathComponent
        if BundleLayout.problemWithModuleName(directory) == nil, !directory.contains("."), directory != topLevelModule {
            return directory
        }
        return topLevelModule + "_wsgi"
    }
}

extension ListenAddress {
    /// What a spec's `listen` may say: a unix socket, or a host and a fixed port (a
    /// bundle's default address is not "any port").
    static func isValid(_ address: String) -> Bool {
        switch ListenAddress(address) {
        case .unix: return true
        case .tcp(let host, let port): return !host.isEmpty && port > 0
        case nil: return false
        }
    }
}

/// Finds the line on which a key of the spec's table is defined: TOMLKit reports lines
/// for syntax errors only.
struct KeyLines {
    private var lines: [String: Int] = [:]

    init(text: String, tablePath: [String]) {
        var current: [String] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[") {
                let header = line.trimmingCharacters(in: CharacterSet(charactersIn: "[] "))
                current = header.split(separator: ".").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\" ")) }
                // A sub-table of the spec table ([resources], [tool.frost.resources]).
                if current.count == tablePath.count + 1, Array(current.prefix(tablePath.count)) == tablePath,
                   lines[current.last!] == nil {
                    lines[current.last!] = index + 1
                }
                continue
            }
            guard current == tablePath, let equals = line.firstIndex(of: "="), !line.hasPrefix("#") else { continue }
            let key = line[..<equals].trimmingCharacters(in: CharacterSet(charactersIn: "\"' \t"))
            let top = key.split(separator: ".").first.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"' ")) } ?? key
            if lines[top] == nil { lines[top] = index + 1 }
        }
    }

    func line(of key: String) -> Int? { lines[key] }
}
