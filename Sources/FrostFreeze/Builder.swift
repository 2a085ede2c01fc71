// FrostFreeze: the packager: spec, analysis by the target interpreter, ELF closure, dist, report and image writing.

import Foundation
import FrostArchive
import FrostBundle
import FrostSystem
import IsapiPackage

/// A build failure other than a bad spec.
/// Why a build failed: the kind of failure, what it is about (a file, a spec key, a
/// requirements file) and a message that says what to fix.
public struct BuildError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// The spec's `python` cannot be run, is not a supported CPython, or lacks a shared libpython.
        case interpreter
        /// The build venv: locking, creating it, installing requirements.
        case buildEnvironment
        /// The import analysis failed (a syntax error, a crash) or reported nonsense.
        case analysis
        /// A shared library an included module needs is not on this machine.
        case sharedLibraries
        /// The frost-stub to copy in is missing or cannot be stripped.
        case loader
        /// A spec value the build cannot use.
        case spec
        /// Reading or writing a file.
        case io
    }

    public let kind: Kind
    /// The file, spec key (`python = …`) or requirements file concerned.
    public let subject: String
    public let message: String

    public init(_ kind: Kind, subject: String, _ message: String) {
        self.kind = kind
        self.subject = subject
        self.message = message
    }

    public var description: String { message }
}

/// Where the build puts things and how it talks.
public struct BuildOptions: Sendable {
    /// The directory that receives `NAME/`.
    public var distDirectory: String
    /// The frost-stub executable to copy in as the loader and console.
    public var stubPath: String
    /// Caches: build venvs, compiled bytecode, up-to-date stamps.
    public var cacheDirectory: String

    public init(distDirectory: String, stubPath: String, cacheDirectory: String = BuildOptions.defaultCacheDirectory) {
        self.distDirectory = distDirectory
        self.stubPath = stubPath
        self.cacheDirectory = cacheDirectory
    }

    public static var defaultCacheDirectory: String {
        let environment = ProcessInfo.processInfo.environment
        if let explicit = environment["FROST_CACHE"], !explicit.isEmpty { return explicit }
        let base = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache")
        return base + "/frost"
    }
}

/// What a build produced, for the summary and `--json`.
public struct BuildReport: Sendable {
    public var name: String
    public var output: String
    public var upToDate: Bool
    public var moduleCounts: [String: Int]
    public var extensionModules: Int
    public var sharedLibraries: Int
    public var sizes: [(part: String, bytes: Int)]
    public var fileCount: Int
    public var warnings: [String]
    public var seconds: Double
    /// Packages placed on the filesystem inside the bundle (or kept in the archive by the
    /// spec), with the reason: "name: where (why)".
    public var placements: [String] = []
    /// The five heaviest modules and libraries, with what brought each one in.
    public var heaviest: [String] = []
    /// The five heaviest optional pulls: modules only imports inside functions reach (in the
    /// bundle, since a call may need them; `excludes` drops those the program never calls).
    public var optionalPulls: [String] = []

    /// `frost build --json`: indented, sorted keys, ending in a newline.
    public func jsonText() throws -> String {
        String(decoding: try canonicalJSON(self), as: UTF8.self)
    }

    public var summary: String {
        var lines: [String] = []
        let state = upToDate ? "up to date" : "built"
        lines.append("\(state): \(output) in \(String(format: "%.1f", seconds)) s")
        let counts = ["app", "isapi", "site", "stdlib"].compactMap { key in moduleCounts[key].map { "\($0) \(key)" } }
        lines.append("modules: \(counts.joined(separator: ", ")); \(extensionModules) extension modules; \(sharedLibraries) shared libraries")
        if !placements.isEmpty {
            lines.append("on the filesystem (lib/app, lib/site-packages) rather than in the archive:")
            lines += placements.map { "  " + $0 }
        }
        for (part, bytes) in sizes { lines.append(String(format: "  %-28@ %10@", part as NSString, formatBytes(bytes) as NSString)) }
        if !heaviest.isEmpty {
            lines.append("heaviest (frost inspect DIST --why NAME tells the whole chain):")
            lines += heaviest.map { "  " + $0 }
        }
        if !optionalPulls.isEmpty {
            lines.append("optional pulls (reached only by imports inside functions; excludes drops what is never called):")
            lines += optionalPulls.map { "  " + $0 }
        }
        lines.append("  \(fileCount) files")
        if upToDate {
            lines += warnings  // from the build that made the bundle; nothing was printed above
        } else {
            let notes = warnings.filter { $0.hasPrefix("note:") }.count, count = warnings.count - notes
            var parts: [String] = []
            if count > 0 { parts.append("\(count) warning\(count == 1 ? "" : "s")") }
            if notes > 0 { parts.append("\(notes) note\(notes == 1 ? "" : "s")") }
            if !parts.isEmpty { lines.append(parts.joined(separator: ", ") + " (above)") }
        }
        return lines.joined(separator: "\n")
    }
}

/// The JSON form (`--json`, the build stamp): snake_case keys, sizes as an object.
extension BuildReport: Codable {
    enum CodingKeys: String, CodingKey {
        case name, output, warnings, seconds, heaviest, sizes, files
        case upToDate = "up_to_date", moduleCounts = "modules", extensionModules = "extension_modules"
        case sharedLibraries = "shared_libraries", placements = "placement", optionalPulls = "optional_pulls"
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(output, forKey: .output)
        try container.encode(upToDate, forKey: .upToDate)
        try container.encode(moduleCounts, forKey: .moduleCounts)
        try container.encode(extensionModules, forKey: .extensionModules)
        try container.encode(sharedLibraries, forKey: .sharedLibraries)
        try container.encode(Dictionary(uniqueKeysWithValues: sizes.map { ($0.part, $0.bytes) }), forKey: .sizes)
        try container.encode(fileCount, forKey: .files)
        try container.encode(warnings, forKey: .warnings)
        try container.encode((seconds * 1000).rounded() / 1000, forKey: .seconds)
        try container.encode(placements, forKey: .placements)
        try container.encode(heaviest, forKey: .heaviest)
        try container.encode(optionalPulls, forKey: .optionalPulls)
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        output = try container.decode(String.self, forKey: .output)
        upToDate = try container.decode(Bool.self, forKey: .upToDate)
        moduleCounts = try container.decode([String: Int].self, forKey: .moduleCounts)
        extensionModules = try container.decode(Int.self, forKey: .extensionModules)
        sharedLibraries = try container.decode(Int.self, forKey: .sharedLibraries)
        sizes = try container.decode([String: Int].self, forKey: .sizes).map { ($0.key, $0.value) }.sorted { $0.1 > $1.1 }
        fileCount = try container.decode(Int.self, forKey: .files)
        warnings = try container.decode([String].self, forKey: .warnings)
        seconds = try container.decode(Double.self, forKey: .seconds)
        placements = try container.decode([String].self, forKey: .placements)
        heaviest = try container.decode([String].self, forKey: .heaviest)
        optionalPulls = try container.decode([String].self, forKey: .optionalPulls)
    }
}

/// What `analyse.py` is asked to do (its stdin), in its own key names.
struct AnalysisRequest: Encodable {
    let name: String
    let script: String
    let app_root: String
    let console: String?
    let console_module: String
    let filesystem: [String]
    let archive: [String]
    let isapi_parent: String
    let optimize: Int
    let cache: String
    let includes: [String]
    let excludes: [String]
    let packages: [String]
    let provided_modules: [String]
    let runtime_modules: [String]
    let whole_packages: [String]
    let hooks: [String: Hooks.Package]
    let default_excludes: [String]
    let trace: Bool
    let trace_script: String
    let trace_timeout: Int
}

/// What the last build read and wrote, to skip the next one when nothing changed.
struct BuildStamp: Codable {
    /// Over the sizes and times of `files`.
    let fingerprint: String
    let files: [String]
    /// bundle.json's SHA-256.
    let manifest: String
    let report: BuildReport
}

func formatBytes(_ bytes: Int) -> String {
    if bytes >= 1 << 20 { return String(format: "%.1f MiB", Double(bytes) / Double(1 << 20)) }
    if bytes >= 1 << 10 { return String(format: "%.1f KiB", Double(bytes) / Double(1 << 10)) }
    return "\(bytes) B"
}

/// Freezes a spec into `dist/NAME/`.
public final class Builder {
    /// Modules the loader itself needs at run time, whatever the script imports.
    /// (importlib.resources.abc is 3.11's name for what 3.10 has in importlib.abc.)
    /// The isapi package itself (the host raises its exception classes); its submodules
    /// come when the program imports them.
    static let runtimeModules = ["encodings", "isapi", "traceback", "runpy", "types", "importlib.resources.abc",
                                 "importlib.abc", "linecache"]
    /// Packages always included whole: none (encodings contributes the codecs the code
    /// names, isapi the submodules it imports).
    static let wholePackages: [String] = []
    /// Standard-library parts no server bundle runs (GUI, IDE, test suite, installers);
    /// excluded unless the spec includes them.
    static let defaultExcludes = ["tkinter", "_tkinter", "idlelib", "lib2to3", "ensurepip", "turtle", "turtledemo",
                                  "test", "pydoc_data"]
    /// Build and packaging tooling and the host's site customisation: left out unless the
    /// traced import shows the app uses them (or the spec includes them). The test suites
    /// of third-party packages (their `tests` subpackages) are left out the same way.
    static let toolingExcludes = ["setuptools", "pkg_resources", "_distutils_hack", "pip", "distutils", "wheel",
                                  "sitecustomize", "usercustomize", "apport_python_hook", "_pytest", "pytest"]
    /// Where code placed on the filesystem goes: the app's own below lib/app (first on
    /// sys.path after the archive, as the script's directory is in development), third-party
    /// code below lib/site-packages, beside the extension modules.
    static func filesystemDirectory(category: Analysis.Category) -> String {
        category == .app ? "lib/app" : "lib/site-packages"
    }

    /// How long the traced import may take before what it imported so far is used.
    static let traceTimeout = 60
    /// Modules the loader provides itself (builtin, native).
    static let providedModules = ["_isapi", "_frost", "_frost_resources"]

    let spec: BuildSpec
    let options: BuildOptions
    let progress: BuildProgress
    /// Warnings printed as they are found.
    public var onWarning: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }

    public init(spec: BuildSpec, options: BuildOptions, progress: BuildProgress) {
        self.spec = spec
        self.options = options
        self.progress = progress
    }

    var output: String { URL(fileURLWithPath: options.distDirectory).appendingPathComponent(spec.name).path }

    public func build() throws -> BuildReport {
        let started = Date()
        let fm = FileManager.default
        let stages = 6

        progress.stage(1, stages, "checking the interpreter and the loader")
        try checkLoader()
        try checkInterpreter()
        let python = try buildInterpreter()
        let stampPath = options.cacheDirectory + "/stamps/" + SHA256.hex(Array(output.utf8)) + ".json"
        if let report = try upToDateReport(stampPath: stampPath, started: started) { return report }

        progress.stage(2, stages, "analysing imports with \(python)")
        let analysis = try analyse(python: python)
        var warnings = Builder.presentWarnings(analysis.warnings)
        if let note = Builder.optionalNote(analysis.optional) { warnings.append(note) }
        warnings.forEach(onWarning)
        let byCategory = Dictionary(grouping: analysis.modules, by: \.category)
        progress.detail("\(analysis.modules.count) modules")

        // Everything is written to a staging directory next to the output, then swapped in.
        try fm.createDirectory(atPath: options.distDirectory, withIntermediateDirectories: true)
        let staging = options.distDirectory + "/.\(spec.name).building-\(getpid())"
        try? fm.removeItem(atPath: staging)
        try fm.createDirectory(atPath: staging + "/lib", withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: staging) }

        progress.stage(3, stages, "writing \(spec.name).zip")
        let archiveName = spec.name + ".zip"
        var archive = ZipWriter(defaultCompression: spec.compress ? .deflate : .stored)
        for module in analysis.modules where module.kind == .source && module.category != .stdlib {
            guard let pyc = module.pyc else { continue }
            if module.onFilesystem {
                try copy(pyc, to: staging + "/" + Builder.filesystemDirectory(category: module.category) + "/" + module.archive_path)
            } else {
                try archive.add(module.archive_path, contents: try bytes(pyc))
            }
        }
        for data in analysis.package_data {
            if data.placement == .filesystem {
                try copy(data.source, to: staging + "/" + Builder.filesystemDirectory(category: data.category ?? .site) + "/" + data.archive)
            } else {
                try archive.add(data.archive, contents: try bytes(data.source))
            }
        }
        for distribution in analysis.distributions {
            let directory = URL(fileURLWithPath: distribution)
            for file in try DirectoryListing.files(below: distribution) {
                try archive.add(directory.lastPathComponent + "/" + file, contents: try bytes(distribution + "/" + file))
            }
        }
        for resource in spec.resources {
            var isDirectory: ObjCBool = false
            _ = fm.fileExists(atPath: resource.source, isDirectory: &isDirectory)
            if isDirectory.boolValue {
                for file in try DirectoryListing.files(below: resource.source) {
                    try archive.add(resource.destination + "/" + file, contents: try bytes(resource.source + "/" + file))
                }
            } else {
                try archive.add(resource.destination, contents: try bytes(resource.source))
            }
        }
        try archive.write(to: staging + "/" + archiveName)

        progress.stage(4, stages, "writing the standard library")
        let stdlibName = "lib/python\(analysis.python.major)\(analysis.python.minor).zip"
        var stdlib = ZipWriter(defaultCompression: spec.compress ? .deflate : .stored)
        for module in byCategory[.stdlib, default: []] where module.kind == .source {
            try stdlib.add(module.archive_path, contents: try bytes(module.pyc!))
        }
        try stdlib.write(to: staging + "/" + stdlibName)
        var extensionFiles: [String] = []
        for module in analysis.modules where module.kind == .extension {
            let target = module.category == .stdlib ? "lib/lib-dynload/" + URL(fileURLWithPath: module.file).lastPathComponent
                : "lib/site-packages/" + module.archive_path
            try copyStripped(module.file, to: staging + "/" + target)
            extensionFiles.append(module.file)
        }
        if let certifi = analysis.modules.first(where: { $0.name == "certifi" && $0.package }) {
            let pem = URL(fileURLWithPath: certifi.file).deletingLastPathComponent().appendingPathComponent("cacert.pem").path
            if fm.fileExists(atPath: pem) { try copy(pem, to: staging + "/lib/cacert.pem") }
        }

        progress.stage(5, stages, "collecting shared libraries")
        guard let libpython = analysis.python.libpython else {
            throw BuildError(.interpreter, subject: python, "\(python) has no shared libpython (built without --enable-shared); the loader needs one")
        }
        let resolver = LibraryResolver()
        let libraries: [LibraryResolver.Resolved]
        // What the traced import mapped besides extension modules (ctypes, cffi, plugins'
        // libraries), under the name the dynamic linker looks for.
        var loaded: [LibraryResolver.Resolved] = []
        for path in analysis.trace.libraries {
            let name = (try? ELFReader.read(path).soname).flatMap { $0 } ?? URL(fileURLWithPath: path).lastPathComponent
            if LibraryResolver.systemLibraries.contains(name) || !fm.fileExists(atPath: path) { continue }
            loaded.append(.init(name: name, path: URL(fileURLWithPath: path).resolvingSymlinksInPath().path))
        }
        // The loader links no libpython: it loads this one from lib/ at start. As one of
        // the libraries, its own dependencies come along and name it as their user.
        let pythonLibraryName = try ELFReader.read(libpython).soname ?? URL(fileURLWithPath: libpython).lastPathComponent
        loaded.append(.init(name: pythonLibraryName, path: URL(fileURLWithPath: libpython).resolvingSymlinksInPath().path))
        do {
            libraries = Builder.merge(try resolver.closure(of: [options.stubPath] + extensionFiles + loaded.map(\.path)),
                                      loaded)
        } catch let error as LibraryResolver.Unresolved {
            throw BuildError(.sharedLibraries, subject: error.neededBy, "cannot collect shared libraries: \(error)")
        }
        let siteRoots = analysis.python.site
        for library in libraries {
            if let root = siteRoots.first(where: { library.path.hasPrefix($0 + "/") }) {
                // Libraries vendored in site-packages (foo.libs/) keep their place, so
                // the RUNPATH of the extension modules that use them still points there.
                try copyStripped(library.path, to: staging + "/lib/site-packages/" + String(library.path.dropFirst(root.count + 1)))
            } else {
                try copyStripped(library.path, to: staging + "/lib/" + library.name)
            }
        }

        // Why each module and library is here, for `frost inspect --why` (and the summary).
        let record = ImportRecord.make(entry: spec.name, analysis: analysis, libraries: libraries,
                                       objects: [("the loader", options.stubPath)]
                                           + analysis.modules.filter { $0.kind == .extension }.map { ($0.name, $0.file) },
                                       pythonLibrary: pythonLibraryName)
        try record.jsonData().write(to: URL(fileURLWithPath: staging + "/" + ImportRecord.fileName))

        progress.stage(6, stages, "writing the loaders and bundle.json")
        try installStub(to: staging + "/_" + spec.name)
        // The console is the same executable: a hard link (tar and rsync -H keep it one file).
        try FileManager.default.linkItem(atPath: staging + "/_" + spec.name, toPath: staging + "/" + spec.name)
        let manifest = try makeManifest(directory: staging, analysis: analysis, pythonLibrary: pythonLibraryName,
                                        archives: [archiveName, stdlibName])
        try Data(manifest.json.serialized().utf8).write(to: URL(fileURLWithPath: staging + "/" + BundleManifest.fileName))

        // Swap the new bundle in.
        let old = options.distDirectory + "/.\(spec.name).old-\(getpid())"
        if fm.fileExists(atPath: output) { try fm.moveItem(atPath: output, toPath: old) }
        try fm.moveItem(atPath: staging, toPath: output)
        try? fm.removeItem(atPath: old)

        var counts: [String: Int] = [:]
        for (category, modules) in byCategory { counts[category.rawValue] = modules.filter { $0.kind == .source }.count }
        let placements = analysis.placement.map { "\($0.name): \($0.where) (\($0.why))" }
        let heaviest = record.heaviest(in: output, count: 5)
        let report = BuildReport(
            name: spec.name, output: output, upToDate: false, moduleCounts: counts,
            extensionModules: extensionFiles.count, sharedLibraries: libraries.count + 0,
            sizes: try partSizes(), fileCount: manifest.files.count + 1, warnings: warnings,
            seconds: Date().timeIntervalSince(started), placements: placements, heaviest: heaviest,
            optionalPulls: (analysis.optional_pulls ?? []).prefix(5).map(\.description))
        try writeStamp(stampPath, analysis: analysis, report: report)
        return report
    }

    /// Warnings about the application's own code one by one; those inside third-party
    /// packages one line per missing module (or per package for computed imports).
    static func presentWarnings(_ warnings: [Analysis.Warning]) -> [String] {
        var lines = warnings.filter { $0.category != .site }.map(\.description)
        let site = warnings.filter { $0.category == .site }
        for (module, group) in Dictionary(grouping: site.filter { $0.kind == .missing }, by: { $0.module ?? "?" })
            .sorted(by: { $0.key < $1.key }) {
            let first = group[0]
            let location = (first.file.map(shortSitePath) ?? "?") + (first.line.map { ":\($0)" } ?? "")
            let more = group.count > 1 ? " and \(group.count - 1) more place\(group.count > 2 ? "s" : "")" : ""
            lines.append("warning: module \(module) not found, imported in third-party code at \(location)\(more)")
        }
        let dynamic = site.filter { $0.kind == .dynamic }
        for (package, group) in Dictionary(grouping: dynamic, by: { ($0.module ?? "?").split(separator: ".").first.map(String.init) ?? "?" })
            .sorted(by: { $0.key < $1.key }) {
            let first = group[0]
            lines.append("warning: \(group.count) call\(group.count == 1 ? "" : "s") with computed module names in \(package) "
                         + "(first at \(first.file.map(shortSitePath) ?? "?"):\(first.line ?? 0)); add what they load to includes if it is missing")
        }
        return lines
    }

    /// One line for the imports third-party code makes only on some paths and that are not
    /// installed: they break nothing the app's start used (the traced import saw that).
    static func optionalNote(_ optional: [Analysis.Warning]) -> String? {
        let missing = Set(optional.filter { $0.kind == .missing }.compactMap(\.module)).sorted()
        let computed = optional.filter { $0.kind == .dynamic }.count
        guard !missing.isEmpty || computed > 0 else { return nil }
        var parts: [String] = []
        if !missing.isEmpty {
            let shown = missing.prefix(6).joined(separator: ", ") + (missing.count > 6 ? ", …" : "")
            parts.append("\(missing.count) module\(missing.count == 1 ? "" : "s") that third-party code imports only on some code paths \(missing.count == 1 ? "is" : "are") not installed (\(shown))")
        }
        if computed > 0 { parts.append("\(computed) computed import\(computed == 1 ? "" : "s") in third-party code") }
        return "note: " + parts.joined(separator: "; ") + ". The app's start did not need them (traced); if a later "
            + "call does, install the module or add it to includes (`--json` lists them under 'optional')"
    }

    /// The closure and the traced libraries, each name once (the traced file wins: it is
    /// what the process really loaded).
    static func merge(_ closure: [LibraryResolver.Resolved], _ loaded: [LibraryResolver.Resolved]) -> [LibraryResolver.Resolved] {
        var byName: [String: LibraryResolver.Resolved] = [:]
        for library in closure { byName[library.name] = library }
        for library in loaded { byName[library.name] = library }
        return byName.values.sorted { $0.name < $1.name }
    }

    static func shortSitePath(_ path: String) -> String {
        for marker in ["/site-packages/", "/dist-packages/"] {
            if let range = path.range(of: marker) { return String(path[range.upperBound...]) }
        }
        return path
    }

    // MARK: - Steps

    func checkLoader() throws {
        guard FileManager.default.isExecutableFile(atPath: options.stubPath) else {
            throw BuildError(.loader, subject: options.stubPath, "no loader at \(options.stubPath): build frost-stub (swift build) or pass --stub")
        }
    }

    /// The spec's interpreter must be a CPython the loader runs: 3.10 to 3.13, with the
    /// GIL, built with a shared libpython (the bundle carries it).
    func checkInterpreter() throws {
        let probe = """
            import sys, sysconfig
            print(sys.implementation.name, *sys.version_info[:3], int(bool(sysconfig.get_config_var('Py_GIL_DISABLED'))),
                  int(bool(sysconfig.get_config_var('Py_ENABLE_SHARED'))))
            """
        let result: (status: Int32, stdout: Data, stderr: String)
        do {
            result = try PythonRunner.run(spec.python, ["-I", "-c", probe])
        } catch {
            throw BuildError(.interpreter, subject: "python = \(spec.python)", "python = \(spec.python): cannot run it (\(error)); name an installed CPython 3.10 to 3.13")
        }
        let fields = String(decoding: result.stdout, as: UTF8.self).split(separator: " ").map {
            $0.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard result.status == 0, fields.count == 6, let minor = Int(fields[2]) else {
            throw BuildError(.interpreter, subject: "python = \(spec.python)", "python = \(spec.python) does not run as a Python 3 interpreter: \(result.stderr)")
        }
        let version = fields[1...3].joined(separator: ".")
        let supported = BundleLayout.supportedPythonMinorVersions
        let range = "CPython 3.\(supported.lowerBound) to 3.\(supported.upperBound)"
        guard fields[0] == "cpython", fields[1] == "3", supported.contains(minor) else {
            throw BuildError(.interpreter, subject: "python = \(spec.python)", "python = \(spec.python) is \(fields[0]) \(version); frost freezes with \(range)")
        }
        guard fields[4] == "0" else {
            throw BuildError(.interpreter, subject: "python = \(spec.python)", "python = \(spec.python) is a free-threaded build of Python \(version) (3.\(minor)t), "
                             + "which frost does not support yet; use the default build of \(range)")
        }
        guard fields[5] == "1" else {
            throw BuildError(.interpreter, subject: "python = \(spec.python)", "python = \(spec.python) (Python \(version)) has no shared libpython (built without "
                             + "--enable-shared); the loader loads one: use a build with it (pyenv: "
                             + "PYTHON_CONFIGURE_OPTS=--enable-shared, Debian's python3)")
        }
    }

    /// The interpreter to analyse with: the spec's, or a cached venv of it with the
    /// requirements installed.
    func buildInterpreter() throws -> String {
        guard let requirements = spec.requirements else { return spec.python }
        let requirementsText = try String(contentsOfFile: requirements, encoding: .utf8)
        let version = try PythonRunner.run(spec.python, ["-I", "-c", "import sys; print(sys.version)"])
        let key = SHA256.hex(Array((spec.python + "\n" + String(decoding: version.stdout, as: UTF8.self) + "\n" + requirementsText).utf8))
        let venv = options.cacheDirectory + "/venvs/" + String(key.prefix(24))
        let python = venv + "/bin/python"
        if FileManager.default.fileExists(atPath: venv + "/.frost-complete") { return python }
        // Another build may be making the same venv: one at a time, then look again.
        try FileManager.default.createDirectory(atPath: options.cacheDirectory + "/venvs", withIntermediateDirectories: true)
        let lock = open(venv + ".lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard lock >= 0 else { throw BuildError(.buildEnvironment, subject: venv + ".lock", "cannot lock \(venv).lock: \(errnoDescription())") }
        defer { close(lock) }
        while flock(lock, LOCK_EX) != 0 && errno == EINTR {}
        if FileManager.default.fileExists(atPath: venv + "/.frost-complete") { return python }
        progress.detail("creating a build venv for \(URL(fileURLWithPath: requirements).lastPathComponent)")
        try? FileManager.default.removeItem(atPath: venv)
        let create = try PythonRunner.run(spec.python, ["-I", "-m", "venv", venv])
        guard create.status == 0 else {
            throw BuildError(.buildEnvironment, subject: venv, "cannot create a venv with \(spec.python) (on Debian: apt-get install python3-venv): \(create.stderr)")
        }
        progress.detail("installing \(URL(fileURLWithPath: requirements).lastPathComponent)")
        let install = try PythonRunner.run(python, ["-I", "-m", "pip", "install", "--disable-pip-version-check",
                                                    "--no-input", "-q", "-r", requirements])
        guard install.status == 0 else {
            throw BuildError(.buildEnvironment, subject: requirements, "pip could not install \(requirements):\n\(install.stderr)")
        }
        _ = FileManager.default.createFile(atPath: venv + "/.frost-complete", contents: Data())
        return python
    }

    func analyse(python: String) throws -> Analysis {
        // A bad hooks file reaches the user as Hooks.FormatError, naming the file and field.
        var hooks = try Hooks.builtIn()
        if let own = spec.hooks { hooks = hooks.adding(try Hooks.load(own)) }
        guard let tracer = Bundle.module.url(forResource: "trace", withExtension: "py") else {
            throw BuildError(.io, subject: "trace.py", "trace.py is missing from frost's resources")
        }
        let named = Set(spec.includes + spec.packages)
        let request = AnalysisRequest(
            name: spec.name, script: try entryScript(), app_root: spec.appRoot, console: spec.console,
            console_module: BuildSpec.consoleModule, filesystem: spec.filesystem, archive: spec.archive,
            isapi_parent: IsapiPackage.directory.deletingLastPathComponent().path,
            optimize: spec.optimize, cache: options.cacheDirectory + "/bytecode",
            includes: spec.includes,
            excludes: spec.excludes + Builder.defaultExcludes.filter { !spec.includes.contains($0) && !spec.packages.contains($0) },
            packages: spec.packages,
            provided_modules: Builder.providedModules,
            runtime_modules: Builder.runtimeModules.filter { !spec.excludes.contains($0) },
            whole_packages: Builder.wholePackages,
            hooks: hooks.packages,
            default_excludes: Builder.toolingExcludes.filter { !named.contains($0) },
            trace: spec.trace, trace_script: tracer.path, trace_timeout: Builder.traceTimeout)
        let script = Bundle.module.url(forResource: "analyse", withExtension: "py")!.path
        let result = try PythonRunner.run(python, ["-I", script],
                                          input: try JSONEncoder().encode(request))
        guard result.status == 0 else {
            let lastLine = result.stderr.split(separator: "\n").last.map(String.init) ?? ""
            if lastLine.contains("SyntaxError") || result.stderr.contains("SyntaxError") {
                throw BuildError(.analysis, subject: spec.script, "the analysis could not compile a module:\n\(result.stderr)")
            }
            throw BuildError(.analysis, subject: spec.script, "the analysis failed with \(python):\n\(result.stderr)")
        }
        do {
            return try JSONDecoder().decode(Analysis.self, from: result.stdout)
        } catch {
            throw BuildError(.analysis, subject: python, "the analysis wrote an unreadable report: \(error)")
        }
    }

    /// The entry script: the spec's, or for `wsgi` one generated into the cache (keyed by
    /// its content, so builds stay reproducible).
    func entryScript() throws -> String {
        guard let wsgi = spec.wsgi else { return spec.script }
        guard let app = WSGIEntry(wsgi) else { throw BuildError(.spec, subject: "wsgi", "wsgi '\(wsgi)' is not package.module:callable") }
        let source = Builder.wsgiEntrySource(app, text: wsgi, name: spec.name, threads: spec.threads)
        let directory = options.cacheDirectory + "/entries/" + String(SHA256.hex(Array(source.utf8)).prefix(24))
        let path = directory + "/" + spec.name + ".py"
        if !FileManager.default.fileExists(atPath: path) {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Data(source.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        }
        return path
    }

    /// The extension module frost writes for a WSGI application: it imports the
    /// application when the loader starts (so an import error stops the loader with its
    /// traceback) and runs it in HttpExtensionProc, on the host's own pool of `threads`
    /// Python threads (isapi.wsgi's ISAPIThreadPoolHandler would add a second pool and a
    /// hand-off between them to every request).
    static func wsgiEntrySource(_ app: WSGIEntry, text: String, name: String, threads: Int) -> String {
        let call = app.isFactory ? "()" : ""
        return """
            \"\"\"The entry module frost generated for wsgi = "\(text)".\"\"\"
            from isapi import isapicon
            from isapi.wsgi import ISAPISimpleHandler

            import \(app.module) as _module

            application = _module.\(app.attribute)\(call)


            class WSGIExtension(ISAPISimpleHandler):
                "\(name): the WSGI application \(text)"

                def HttpExtensionProc(self, ecb):
                    # Called by the host on its \(threads) Python threads, concurrently.
                    self.handle(ecb, multithread=True)
                    return isapicon.HSE_STATUS_SUCCESS


            def __ExtensionFactory__():
                return WSGIExtension(application)

            """
    }

    /// binutils' strip, when the build machine has it.
    static let stripTool = ["/usr/bin/strip", "/bin/strip"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Copies a shared library or extension module that carries debug information without
    /// the symbols the dynamic linker does not use (`--strip-unneeded`); a pyenv-built
    /// libpython goes from 30 to 7 MiB. Files without debug information (Debian's, binary
    /// wheels') are copied as they are: patchelf-rewritten wheel libraries are what strip
    /// breaks. A result whose segments the dynamic linker would refuse is not used either.
    func copyStripped(_ source: String, to destination: String) throws {
        guard let strip = Builder.stripTool, ELFReader.isELF(source), ELFReader.hasDebugInformation(source),
              !FileManager.default.fileExists(atPath: destination) else {
            return try copy(source, to: destination)
        }
        try FileManager.default.createDirectory(atPath: (destination as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        let result = try PythonRunner.run(strip, ["--strip-unneeded", "-o", destination, source])
        if result.status != 0 || !ELFReader.loadSegmentsAreAligned(destination) {
            try? FileManager.default.removeItem(atPath: destination)
            return try copy(source, to: destination)
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: destination)
    }

    func installStub(to path: String) throws {
        // Stripped of debug sections; deterministic for the same input.
        if let strip = Builder.stripTool {
            let result = try PythonRunner.run(strip, ["--strip-all", "-o", path, options.stubPath])
            guard result.status == 0 else { throw BuildError(.loader, subject: options.stubPath, "strip failed on \(options.stubPath): \(result.stderr)") }
        } else {
            try copy(options.stubPath, to: path)
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
    }

    func makeManifest(directory: String, analysis: Analysis, pythonLibrary libraryName: String,
                      archives: [String]) throws -> BundleManifest {
        var manifest = BundleManifest(name: spec.name, entry: spec.name, pythonVersion: analysis.python.version,
                                      bytecodeMagic: analysis.python.magic, pythonLibrary: libraryName,
                                      pythonBuild: analysis.python.build, options: spec.manifestOptions)
        for file in try FileSystem.listFiles(below: directory) {
            let (hash, size) = try FileSystem.sha256(ofFile: directory + "/" + file.path)
            manifest.files[file.path] = .init(sha256: hash, size: size)
        }
        for archive in archives {
            let mounted = try MountedArchive(path: directory + "/" + archive)
            var entries: [String: String] = [:]
            for entry in mounted.paths where !entry.hasSuffix("/") { entries[entry] = SHA256.hex(try mounted.read(entry)) }
            manifest.archives[archive] = entries
        }
        return manifest
    }

    func partSizes() throws -> [(part: String, bytes: Int)] {
        var parts: [String: Int] = [:]
        for file in try FileSystem.listFiles(below: output) where file.path != spec.name {  // the console is a hard link
            let size = (try? FileManager.default.attributesOfItem(atPath: output + "/" + file.path)[.size] as? Int) ?? 0
            let part: String
            switch file.path {
            case "_" + spec.name: part = "loader (console: a hard link)"
            case spec.name + ".zip": part = spec.name + ".zip"
            case let p where p.hasPrefix("lib/python") && p.hasSuffix(".zip"): part = "standard library (zip)"
            case let p where p.hasPrefix("lib/lib-dynload/"): part = "lib-dynload"
            case ImportRecord.fileName, BundleManifest.fileName: part = "other"
            case let p where p.hasPrefix("lib/app/"): part = "app on the filesystem"
            case let p where p.hasPrefix("lib/site-packages/"): part = "site-packages (filesystem)"
            case let p where p.hasPrefix("lib/libpython"): part = "libpython"
            case let p where p.hasPrefix("lib/"): part = "shared libraries"
            default: part = "other"
            }
            parts[part, default: 0] += size
        }
        let total = parts.values.reduce(0, +)
        return parts.sorted { $0.value > $1.value }.map { ($0.key, $0.value) } + [("total", total)]
    }

    // MARK: - Up-to-date check

    /// The inputs of the last build: the spec, the stub and every file it read.
    func fingerprint(files: [String]) -> String {
        var text = "\(spec)\n"
        // frost's own analysis and hooks are inputs too: a new frost rebuilds.
        let own = ["analyse.py", "trace.py", "hooks.json"].compactMap {
            Bundle.module.url(forResource: ($0 as NSString).deletingPathExtension, withExtension: ($0 as NSString).pathExtension)?.path
        }
        // So is frost itself (it writes generated entry modules, the manifest, the layout).
        let frost = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).map { [$0] } ?? []
        for path in [options.stubPath, spec.python] + frost + own + (spec.hooks.map { [$0] } ?? []) + files {
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            let size = attributes?[.size] as? Int ?? -1
            let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? -1
            text += "\(path)\t\(size)\t\(modified)\n"
        }
        return SHA256.hex(Array(text.utf8))
    }

    func writeStamp(_ path: String, analysis: Analysis, report: BuildReport) throws {
        var files = analysis.modules.map(\.file) + analysis.package_data.map(\.source)
        // Their directories too: a file added beside them (a new template) is a change.
        files += Set(analysis.package_data.map { ($0.source as NSString).deletingLastPathComponent }).sorted()
        files += spec.resources.map(\.source)
        if let console = spec.console { files.append(console) }
        if let requirements = spec.requirements { files.append(requirements) }
        let stamp = BuildStamp(fingerprint: fingerprint(files: files), files: files,
                               manifest: try FileSystem.sha256(ofFile: output + "/" + BundleManifest.fileName).0, report: report)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try JSONEncoder().encode(stamp).write(to: URL(fileURLWithPath: path))
    }

    /// When nothing the last build read has changed and the bundle is as it left it,
    /// the build is skipped.
    func upToDateReport(stampPath: String, started: Date) throws -> BuildReport? {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: stampPath)),
              let stamp = try? JSONDecoder().decode(BuildStamp.self, from: data),
              stamp.fingerprint == fingerprint(files: stamp.files),
              (try? FileSystem.sha256(ofFile: output + "/" + BundleManifest.fileName).0) == stamp.manifest,
              let manifest = try? BundleManifest.load(bundleDirectory: output),
              BundleVerifier.verifyArchives(bundleDirectory: output, manifest: manifest).isEmpty else { return nil }
        // Quick check of the other files: present with the recorded size.
        for (path, record) in manifest.files {
            let size = (try? FileManager.default.attributesOfItem(atPath: output + "/" + path)[.size] as? Int) ?? -1
            if size != record.size { return nil }
        }
        var report = stamp.report
        report.output = output
        report.upToDate = true
        report.seconds = Date().timeIntervalSince(started)
        return report
    }

    // MARK: - Files

    func bytes(_ path: String) throws -> [UInt8] {
        do { return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) } catch {
            throw BuildError(.io, subject: path, "cannot read \(path): \(error.localizedDescription)")
        }
    }

    func copy(_ source: String, to destination: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if fm.fileExists(atPath: destination) { return }
        let data = try Data(contentsOf: URL(fileURLWithPath: source))
        guard fm.createFile(atPath: destination, contents: data) else { throw BuildError(.io, subject: destination, "cannot write \(destination)") }
        let executable = ELFReader.isELF(destination)
        try fm.setAttributes([.posixPermissions: executable ? 0o755 : 0o644], ofItemAtPath: destination)
    }
}

/// Regular files below a directory, relative and sorted, skipping __pycache__.
enum DirectoryListing {
    static func files(below root: String) throws -> [String] {
        try FileSystem.listFiles(below: root).filter { $0.isRegular && !$0.path.contains("__pycache__/") }.map(\.path)
    }
}
