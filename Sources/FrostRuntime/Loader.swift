// FrostRuntime: the loader's Python side: the archive importer, `_isapi`, loading and reloading the entry module.

import FrostArchive
import FrostBundle
import FrostPython
import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// A start-up or shutdown failure: one line that says what failed and where, plus the
/// Python traceback when Python raised.
public struct LoaderError: Error, CustomStringConvertible, Sendable {
    public enum Stage: String, Sendable {
        case usage, archive, interpreter, entryModule = "import", factory, version, terminate, run
    }

    public let stage: Stage
    public let message: String
    public let traceback: String?

    public init(_ stage: Stage, _ message: String, traceback: String? = nil) {
        self.stage = stage
        self.message = message
        self.traceback = traceback?.isEmpty == true ? nil : traceback
    }

    public var description: String { message }
}

/// How the bundle's standard library was found, for `--check` and logs.
public enum StandardLibraryOrigin: Sendable, Equatable {
    /// The bundle's own `lib/`.
    case bundle(paths: [String])
    /// No `lib/` in the bundle: the system Python's (development only).
    case systemPython(paths: [String])

    public var summary: String {
        switch self {
        case .bundle(let paths): return "the bundle's lib/ (\(paths.joined(separator: ", ")))"
        case .systemPython(let paths):
            return "the system Python, for development: the bundle has no lib/ (\(paths.joined(separator: ", ")))"
        }
    }
}

/// The objects a bundle's entry module provides once its factories have run.
public struct LoadedEntry {
    public let module: PythonObject
    /// Where the module came from (`__file__`).
    public let file: String
    public let extensionObject: PythonObject?
    public let extensionInfo: ExtensionVersionInfo?
    public let filterObject: PythonObject?
    public let filterInfo: FilterVersionInfo?
}

/// Mounts the bundle, starts the interpreter and loads the entry module.
///
/// Create it on the thread that owns the interpreter's lifecycle; its Python work runs
/// under that thread's state (`withGIL`).
public final class Loader {
    /// IIS's HSE_TERM_MUST_UNLOAD, passed to Terminate* at shutdown.
    public static let terminateMustUnload = 2

    public let layout: BundleLayout
    public let moduleName: String
    public let archivePath: String
    public private(set) var archive: MountedArchive
    /// Which file was mounted (device, inode, size, modification time): a reload mounts
    /// the archive again when the file on disk is another one.
    private var archiveIdentity: [Int]
    public let standardLibrary: StandardLibraryOrigin
    public let interpreter: Interpreter
    /// The manifest the archives were checked against (nil for a hand-assembled bundle).
    public let manifest: BundleManifest?

    /// Finds and mounts the archive, then starts an isolated interpreter whose search
    /// path is the archive and the bundle's standard library.
    public init(executablePath: String, moduleOverride: String? = nil, arguments: [String] = [],
                console: Bool = false) throws {
        let layout = BundleLayout(executablePath: executablePath)
        self.layout = layout
        StartupTimings.mark("locate")
        let manifest = try Loader.checkManifest(layout)
        StartupTimings.mark("verify")
        // The console runs the bundle's console script (such as manage.py) when it has one.
        let consoleModule = console ? manifest?.options["console"]?.string : nil
        let name = moduleOverride ?? consoleModule ?? layout.name
        if let problem = BundleLayout.problemWithModuleName(name) {
            throw LoaderError(.usage, "cannot load module from \(executablePath): \(problem)")
        }
        moduleName = name
        self.manifest = manifest
        Loader.exportStateDirectory(layout)
        let (mainArchivePath, mainArchive) = try Loader.mountArchive(layout)
        (archivePath, archive) = (mainArchivePath, mainArchive)
        archiveIdentity = Loader.identity(of: mainArchivePath)

        StartupTimings.mark("mount")
        let python = try Loader.loadPythonLibrary(layout, manifest)
        StartupTimings.mark("load libpython")
        var searchPath = [mainArchivePath]
        if FileSystem.isDirectory(layout.appDirectory) { searchPath.append(layout.appDirectory) }
        var mounts = [(mainArchivePath, mainArchive)]
        let source: StandardLibrarySource
        if layout.hasOwnStandardLibrary(major: python.major, minor: python.minor) {
            let stdlibPath = layout.standardLibraryArchive(major: python.major, minor: python.minor)
            do {
                mounts.append((stdlibPath, try MountedArchive(path: stdlibPath)))
            } catch {
                throw LoaderError(.archive, "cannot mount the standard library: \(error)")
            }
            searchPath += [stdlibPath, layout.extensionModuleDirectory]
            source = .inSearchPath
            if FileSystem.isDirectory(layout.siteExtensionDirectory) { searchPath.append(layout.siteExtensionDirectory) }
        } else {
            source = .systemPython
        }

        // certifi's CA bundle, when the bundle has it, is what ssl uses by default (OpenSSL
        // reads SSL_CERT_FILE; set now, while the process has one thread).
        if FileSystem.isRegularFile(layout.certificateFile), getenv("SSL_CERT_FILE") == nil {
            setenv("SSL_CERT_FILE", layout.certificateFile, 1)
        }
        do {
            interpreter = try Interpreter.start(InterpreterConfiguration(
                executable: executablePath, searchPath: searchPath, standardLibrary: source,
                home: layout.libraryDirectory, arguments: [executablePath] + arguments,
                builtinModules: [ArchiveImportSystem.builtinModule, IsapiNative.builtinModule]))
        } catch {
            throw LoaderError(.interpreter, "cannot start Python \(python): \(error)")
        }
        StartupTimings.mark("python init")
        if let manifest {
            let magic = SHA256.hexString(interpreter.mainThreadState.withGIL { Python.bytecodeMagic })
            guard magic == manifest.bytecodeMagic.lowercased() else {
                throw LoaderError(.interpreter, """
                    Python \(python) (\(PythonLibrary.loaded?.path ?? "?")) reads bytecode magic \(magic) but the bundle's \
                    is \(manifest.bytecodeMagic) (\(layout.manifestPath)): the library belongs to another build; rebuild the bundle
                    """)
            }
        }
        let stdlib = interpreter.standardLibraryPath.filter { $0 != mainArchivePath }
        standardLibrary = source == .inSearchPath ? .bundle(paths: stdlib) : .systemPython(paths: stdlib)
        try interpreter.mainThreadState.withGIL {
            let extensionRoot = FileSystem.isDirectory(layout.siteExtensionDirectory) ? layout.siteExtensionDirectory : nil
            for (path, mounted) in mounts {
                ArchiveImportSystem.register(mounted, at: path, extensionRoot: path == mainArchivePath ? extensionRoot : nil)
            }
            do {
                try ArchiveImportSystem.install()
            } catch let error as PythonError {
                throw LoaderError(.interpreter, "cannot install the archive importer: \(error)", traceback: error.traceback)
            }
        }
    }

    /// Where the app keeps what it writes (its SQLite database, uploads, sessions): the
    /// bundle directory is read-only in production. Exported to Python as FROST_STATE_DIR:
    /// as given, else systemd's STATE_DIRECTORY (StateDirectory=), else
    /// $XDG_STATE_HOME/frost/NAME, ~/.local/state/frost/NAME, or /var/lib/frost/NAME for a
    /// process without a home. Created when missing (mode 0750).
    static func exportStateDirectory(_ layout: BundleLayout) {
        var directory: String
        if let given = getenv("FROST_STATE_DIR").map({ String(cString: $0) }), !given.isEmpty {
            directory = given
        } else if let systemd = getenv("STATE_DIRECTORY").map({ String(cString: $0) }), !systemd.isEmpty {
            directory = String(systemd.split(separator: ":").first ?? Substring(systemd))
        } else if let state = getenv("XDG_STATE_HOME").map({ String(cString: $0) }), state.hasPrefix("/") {
            directory = state + "/frost/" + layout.name
        } else if let home = getenv("HOME").map({ String(cString: $0) }), home.hasPrefix("/"), home != "/" {
            directory = home + "/.local/state/frost/" + layout.name
        } else {
            directory = "/var/lib/frost/" + layout.name
        }
        FileSystem.makeDirectories(directory, mode: 0o750)
        setenv("FROST_STATE_DIR", directory, 1)
    }

    /// Runs `body` holding the GIL on the lifecycle thread.
    public func withGIL<R>(_ body: () throws -> R) rethrows -> R {
        try interpreter.mainThreadState.withGIL(body)
    }

    /// Imports the entry module, runs `__ExtensionFactory__()` and/or
    /// `__FilterFactory__()` and their Version calls.
    public func loadEntry() throws -> LoadedEntry {
        try withGIL {
            let module = try importEntryModule()
            StartupTimings.mark("import \(moduleName)")
            let file = (try? module.attribute("__file__").asString()) ?? archivePath
            let where_ = "module '\(moduleName)' (\(file))"
            let extensionFactory = try? module.attributeIfPresent("__ExtensionFactory__")
            let filterFactory = try? module.attributeIfPresent("__FilterFactory__")
            guard extensionFactory != nil || filterFactory != nil else {
                throw LoaderError(.factory, "\(where_) defines neither __ExtensionFactory__() nor __FilterFactory__()")
            }
            var extensionObject: PythonObject?, extensionInfo: ExtensionVersionInfo?
            if let factory = extensionFactory ?? nil {
                let object = try call(.factory, "\(moduleName).__ExtensionFactory__()") { try factory.call() }
                let info = ExtensionVersionInfo()
                _ = try call(.version, "GetExtensionVersion of \(moduleName)'s extension") {
                    try object.callMethod("GetExtensionVersion", [try IsapiNative.extensionVersionType.wrap(info)])
                }
                (extensionObject, extensionInfo) = (object, info)
            }
            var filterObject: PythonObject?, filterInfo: FilterVersionInfo?
            if let factory = filterFactory ?? nil {
                let object = try call(.factory, "\(moduleName).__FilterFactory__()") { try factory.call() }
                let info = FilterVersionInfo()
                _ = try call(.version, "GetFilterVersion of \(moduleName)'s filter") {
                    try object.callMethod("GetFilterVersion", [try IsapiNative.filterVersionType.wrap(info)])
                }
                (filterObject, filterInfo) = (object, info)
            }
            StartupTimings.mark("factories")
            return LoadedEntry(module: module, file: file, extensionObject: extensionObject, extensionInfo: extensionInfo,
                               filterObject: filterObject, filterInfo: filterInfo)
        }
    }

    /// Calls `TerminateExtension` / `TerminateFilter`; returns what was terminated.
    public func terminate(_ entry: LoadedEntry) throws -> [String] {
        try terminate(extensionObject: entry.extensionObject, filterObject: entry.filterObject)
    }

    /// The same for the objects serving now (a reload replaces the entry's).
    public func terminate(extensionObject: PythonObject?, filterObject: PythonObject?) throws -> [String] {
        try withGIL {
            var done: [String] = []
            let status = try PythonObject(Loader.terminateMustUnload)
            if let object = extensionObject {
                _ = try call(.terminate, "TerminateExtension of \(moduleName)'s extension") {
                    try object.callMethod("TerminateExtension", [status])
                }
                done.append("extension")
            }
            if let object = filterObject {
                _ = try call(.terminate, "TerminateFilter of \(moduleName)'s filter") {
                    try object.callMethod("TerminateFilter", [status])
                }
                done.append("filter")
            }
            return done
        }
    }

    /// For `InternalReloadException`, on a Python thread that holds the GIL: terminates the
    /// running extension, re-imports the entry module, runs `__ExtensionFactory__()` and
    /// calls `GetExtensionVersion(None)`, as pywin32 does after a reload.
    public func reloadExtension(_ running: PythonObject?) throws -> PythonObject? {
        if let running { _ = try? running.callMethod("TerminateExtension", [try PythonObject(Loader.terminateMustUnload)]) }
        let module = try reimportEntryModule()
        guard let factory = try module.attributeIfPresent("__ExtensionFactory__") else { return nil }
        let object = try call(.factory, "\(moduleName).__ExtensionFactory__()") { try factory.call() }
        _ = try call(.version, "GetExtensionVersion of \(moduleName)'s extension") {
            try object.callMethod("GetExtensionVersion", [.none])
        }
        return object
    }

    /// The same for the filter: `TerminateFilter`, re-import, `__FilterFactory__()`,
    /// `GetFilterVersion(None)`.
    public func reloadFilter(_ running: PythonObject?) throws -> PythonObject? {
        if let running { _ = try? running.callMethod("TerminateFilter", [try PythonObject(Loader.terminateMustUnload)]) }
        let module = try reimportEntryModule()
        guard let factory = try module.attributeIfPresent("__FilterFactory__") else { return nil }
        let object = try call(.factory, "\(moduleName).__FilterFactory__()") { try factory.call() }
        _ = try call(.version, "GetFilterVersion of \(moduleName)'s filter") {
            try object.callMethod("GetFilterVersion", [.none])
        }
        return object
    }

    /// Reloads the entry module (`importlib.reload`, as pywin32 does: its globals survive,
    /// so a module can count its reloads); when the bundle's archive was replaced on disk
    /// (a redeploy), the new archive is mounted first.
    private func reimportEntryModule() throws -> PythonObject {
        try remountIfReplaced()
        let importlib = try Python.importModule("importlib")
        try importlib.callMethod("invalidate_caches")
        guard let module = try Python.sys().attribute("modules").item(moduleName) else { return try importEntryModule() }
        do {
            return try importlib.callMethod("reload", [module])
        } catch let error as PythonError {
            throw LoaderError(.entryModule, "reloading module '\(moduleName)' from \(archivePath) failed: \(error)",
                              traceback: error.traceback)
        }
    }

    /// Console mode: runs the entry module as `__main__` (like `python -m NAME`) and
    /// returns the exit status, honouring `SystemExit`.
    public func runAsMain() throws -> Int32 {
        try withGIL {
            do {
                let runpy = try Python.importModule("runpy")
                try runpy.callMethod("run_module", [try PythonObject(moduleName)],
                                     keywords: [("run_name", try PythonObject("__main__")), ("alter_sys", .true)])
                return 0
            } catch let error as PythonError where error.typeName == "SystemExit" {
                return Loader.exitStatus(of: error)
            } catch let error as PythonError {
                // runpy's own message when the module is not there at all.
                if error.typeName == "ImportError", error.message == "No module named \(moduleName)" {
                    throw LoaderError(.entryModule, "module '\(moduleName)' not found in \(archivePath)")
                }
                throw LoaderError(.run, "\(moduleName) raised \(error)", traceback: error.traceback)
            }
        }
    }

    /// Flushes and finalises Python (atexit handlers run); false when that failed.
    @discardableResult
    public func finalize() -> Bool { interpreter.finalize() }

    // MARK: - Internals

    private func importEntryModule() throws -> PythonObject {
        do {
            return try Python.importModule(moduleName)
        } catch let error as PythonError {
            let missing = (try? error.exception?.attribute("name").asString()) ?? nil
            if error.typeName == "ModuleNotFoundError", missing == moduleName {
                throw LoaderError(.entryModule, "module '\(moduleName)' not found in \(archivePath)")
            }
            throw LoaderError(.entryModule, "importing module '\(moduleName)' from \(archivePath) failed: \(error)",
                              traceback: error.traceback)
        }
    }

    private func call(_ stage: LoaderError.Stage, _ what: String, _ body: () throws -> PythonObject) throws -> PythonObject {
        do {
            return try body()
        } catch let error as PythonError {
            throw LoaderError(stage, "\(what) raised \(error)", traceback: error.traceback)
        }
    }

    static func identity(of path: String) -> [Int] {
        var info = stat()
        guard stat(path, &info) == 0 else { return [] }
        return [Int(info.st_dev), Int(info.st_ino), Int(info.st_size), Int(info.st_mtim.tv_sec), Int(info.st_mtim.tv_nsec)]
    }

    /// A redeployed archive (another file, or the same file rewritten) is checked against
    /// the bundle's manifest and mounted in place of the old one. GIL held.
    private func remountIfReplaced() throws {
        let now = Loader.identity(of: archivePath)
        guard !now.isEmpty, now != archiveIdentity, archivePath == layout.archivePath else { return }
        _ = try Loader.checkManifest(layout)
        let fresh: MountedArchive
        do {
            fresh = try MountedArchive(path: archivePath)
        } catch {
            throw LoaderError(.archive, "cannot mount the redeployed archive: \(error)")
        }
        try ArchiveImportSystem.remount(fresh, at: archivePath)
        archive = fresh
        archiveIdentity = now
    }

    static func exitStatus(of error: PythonError) -> Int32 {
        guard let code = try? error.exception?.attribute("code") else { return 0 }
        if code.isNone { return 0 }
        if code.isInt, let value = try? code.asInt() { return Int32(truncatingIfNeeded: value) }
        printError((try? code.str()) ?? "")
        return 1
    }

    /// Loads the bundle's CPython library: the one bundle.json names, from `lib/`; for a
    /// bundle without a manifest the one `lib/` holds; for a bundle without `lib/`
    /// (assembled by hand, in development) the system's. Refuses a library whose version
    /// is not the one the bundle was built with.
    static func loadPythonLibrary(_ layout: BundleLayout, _ manifest: BundleManifest?) throws -> PythonLibrary.Version {
        var path: String?
        if let manifest {
            let candidate = layout.libraryDirectory + "/" + manifest.pythonLibraryName
            if let size = FileSystem.fileSize(candidate) {
                // Not loaded when it is not the file the build put there: a library cut short
                // would fault as it is mapped.
                if let recorded = manifest.files["lib/" + manifest.pythonLibraryName]?.size, recorded != size {
                    throw LoaderError(.interpreter, """
                        the bundle's Python library \(candidate) is \(size) bytes but bundle.json says \(recorded) \
                        (Python \(manifest.pythonVersion)): its lib/ comes from another build, or was changed; rebuild the bundle
                        """)
                }
                path = candidate
            } else if FileSystem.isDirectory(layout.libraryDirectory) {
                throw LoaderError(.interpreter, """
                    the bundle's Python library \(candidate) is missing (bundle.json says Python \(manifest.pythonVersion)); \
                    rebuild the bundle
                    """)
            }
            // What libpython and the extension modules will map: nothing extra, missing or cut short.
            try checkLibraryDirectory(layout, manifest)
        } else if let name = FileSystem.names(in: layout.libraryDirectory).filter({
            $0.hasPrefix("libpython3.") && $0.hasSuffix(".so.1.0")
        }).sorted().last {
            path = layout.libraryDirectory + "/" + name
        }
        let version: PythonLibrary.Version
        do {
            version = try path.map { try PythonLibrary.load($0) } ?? PythonLibrary.loadDevelopmentDefault()
        } catch {
            throw LoaderError(.interpreter, "cannot load Python: \(error)")
        }
        if let manifest, let expected = PythonLibrary.Version(line: manifest.pythonVersion),
           (expected.major, expected.minor) != (version.major, version.minor) {
            throw LoaderError(.interpreter, """
                \(PythonLibrary.loaded?.path ?? "the Python library") is Python \(version) but the bundle was built with \
                Python \(manifest.pythonVersion) (\(layout.manifestPath)): its lib/ comes from another build; rebuild the bundle
                """)
        }
        return version
    }

    /// A bundle built by frost carries bundle.json: its archives must match it before
    /// anything runs (and lib/ too, checked once the library is known: `checkLibraryDirectory`).
    /// Hand-assembled bundles (no manifest) are not checked.
    private static func checkManifest(_ layout: BundleLayout) throws -> BundleManifest? {
        let manifest: BundleManifest?
        do {
            manifest = try BundleManifest.load(bundleDirectory: layout.directory)
        } catch {
            throw LoaderError(.archive, "unreadable manifest: \(error)")
        }
        guard let manifest else { return nil }
        let differences = BundleVerifier.verifyArchives(bundleDirectory: layout.directory, manifest: manifest)
        if !differences.isEmpty { throw mismatch(layout, differences) }
        return manifest
    }

    private static func mismatch(_ layout: BundleLayout, _ differences: [BundleDifference]) -> LoaderError {
        LoaderError(.archive, "the bundle does not match \(layout.manifestPath): \(differences[0])"
                    + (differences.count > 1 ? " and \(differences.count - 1) more" : "")
                    + "; refusing to start (frost verify \(layout.directory) lists every difference)")
    }

    /// Everything below lib/ present, listed in bundle.json and of its recorded size.
    private static func checkLibraryDirectory(_ layout: BundleLayout, _ manifest: BundleManifest?) throws {
        guard let manifest else { return }
        let differences = BundleVerifier.verifyLibraryDirectory(bundleDirectory: layout.directory, manifest: manifest)
        if !differences.isEmpty { throw mismatch(layout, differences) }
    }

    private static func mountArchive(_ layout: BundleLayout) throws -> (String, MountedArchive) {
        if FileSystem.isRegularFile(layout.archivePath) {
            do {
                return (layout.archivePath, try MountedArchive(path: layout.archivePath))
            } catch {
                throw LoaderError(.archive, "cannot mount the bundle archive: \(error)")
            }
        }
        // No NAME.zip: the archive may be appended to the executable itself.
        do {
            return (layout.executablePath, try MountedArchive(path: layout.executablePath))
        } catch let error as ArchiveError where error.kind == .notAZip || error.kind == .truncated {
            throw LoaderError(.archive, "no archive: neither \(layout.archivePath) exists nor is one appended to \(layout.executablePath)")
        } catch {
            throw LoaderError(.archive, "cannot mount the archive appended to the executable: \(error)")
        }
    }
}
