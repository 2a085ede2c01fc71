// FrostFreeze: the packager: spec, analysis by the target interpreter, ELF closure, dist, report and image writing.

import Foundation
import FrostArchive
import FrostBundle
import FrostSystem
import IsapiPackage

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
        let libraryPaths = Dictionary(libraries.map { ($0.name, $0.path) }, uniquingKeysWith: { first, _ in first })
        let record = ImportRecord.make(entry: spec.name, analysis: analysis, libraries: libraries,
                                       librarySize: { name in
                                           libraryPaths[name].flatMap { try? fm.attributesOfItem(atPath: $0)[.size] as? Int } ?? 0
                                       },
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
            optionalPulls: Array(record.optionalPulls.prefix(5)))
        try writeStamp(stampPath, analysis: analysis, report: report)
        return report
    }

    /// The closure and the traced libraries, each name once (the traced file wins: it is
    /// what the process really loaded).
    static func merge(_ closure: [LibraryResolver.Resolved], _ loaded: [LibraryResolver.Resolved]) -> [LibraryResolver.Resolved] {
        var byName: [String: LibraryResolver.Resolved] = [:]
        for library in closure { byName[library.name] = library }
        for library in loaded { byName[library.name] = library }
        return byName.values.sorted { $0.name < $1.name }
    }

    // MARK: - Steps

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
