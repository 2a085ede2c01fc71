import FrostArchive
import FrostBundle
import FrostPython
import FrostSystem

/// The state behind one `_frost.ArchiveImporter`: a mounted archive and the directory
/// inside it this importer serves (zipimport's `archive` and `prefix`).
final class ArchiveImporter {
    let archive: MountedArchive
    /// Extension modules stored in the archive (see `ModuleIndex.extensionModules`).
    let extensionModules: [String: String]
    /// Where the bundle keeps extension modules of archive packages (lib/site-packages).
    let extensionRoot: String?
    /// The archive's path as it stands on `sys.path`.
    let archivePath: String
    /// "" for the root, else "pkg/sub/".
    let prefix: String

    init(archive: MountedArchive, extensionModules: [String: String], extensionRoot: String?, archivePath: String,
         prefix: String) {
        self.archive = archive
        self.extensionModules = extensionModules
        self.extensionRoot = extensionRoot
        self.archivePath = archivePath
        self.prefix = prefix
    }

    func location(_ fullname: String) -> ModuleLocation? {
        ModuleIndex.locate(fullname, prefix: prefix, in: archive)
    }

    func pathInSys(_ entry: String) -> String { archivePath + "/" + entry }

    /// The archive entry for a path given to `get_data`: absolute below the archive, or
    /// already relative to it (as zipimport accepts).
    func entryPath(forDataPath path: String) -> String {
        if path.hasPrefix(archivePath + "/") { return String(path.dropFirst(archivePath.count + 1)) }
        return path
    }
}

/// The path hook, the importer type and their registration with `sys`.
///
/// Every archive path registered here is served by `_frost.ArchiveImporter`, a native
/// finder and loader that implements the standard protocols (`find_spec`,
/// `exec_module`, `get_code`, `get_source`, `get_data`, `get_filename`, `is_package`,
/// `get_resource_reader`, `iter_modules`), so `pkgutil`, `importlib.resources` and
/// tools that introspect loaders work as with zipimport.
public enum ArchiveImportSystem {
    /// Mounted archives by their `sys.path` entry; touched under the GIL only.
    nonisolated(unsafe) static var mounts: [String: (archive: MountedArchive, extensionModules: [String: String],
                                                     extensionRoot: String?)] = [:]
    nonisolated(unsafe) static var moduleSpecClass: PythonObject?
    nonisolated(unsafe) static var decodeSource: PythonObject?

    static let importerType: NativeType<ArchiveImporter> = {
        let type = NativeType<ArchiveImporter>(
            "_frost.ArchiveImporter",
            doc: "Finds and loads modules and resources from a mounted frost archive.")
        type.attribute("archive", get: { try PythonObject($0.archivePath) })
        type.attribute("prefix", get: { try PythonObject($0.prefix) })
        type.describe = { "<frost ArchiveImporter \"\($0.archivePath)/\($0.prefix)\">" }

        type.method("find_spec") { importer, arguments in
            let this = arguments.selfObject
            let fullname = try arguments.required(0, "fullname").asString()
            return try findSpec(importer, this, fullname) ?? .none
        }
        type.method("create_module") { _, _ in .none }
        type.method("exec_module") { importer, arguments in
            let module = try arguments.required(0, "module")
            let name = try module.attribute("__spec__").attribute("name").asString()
            let code = try getCode(importer, name)
            try Python.exec(code: code, in: module.attribute("__dict__"))
            return .none
        }
        type.method("load_module") { _, arguments in
            let this = arguments.selfObject
            // Deprecated protocol, still called by old code: delegate to importlib's shim.
            let fullname = try arguments.required(0, "fullname")
            let bootstrap = try Python.importModule("_frozen_importlib")
            return try bootstrap.attribute("_load_module_shim").call([this, fullname])
        }
        type.method("get_code") { importer, arguments in
            try getCode(importer, try arguments.required(0, "fullname").asString())
        }
        type.method("get_source") { importer, arguments in
            let fullname = try arguments.required(0, "fullname").asString()
            guard let location = importer.location(fullname) else { throw notFound(importer, fullname) }
            let sourceEntry = location.codeEntry.map { $0.hasSuffix(".pyc") ? String($0.dropLast()) : $0 }
            guard let sourceEntry, importer.archive.contains(sourceEntry) else { return .none }
            let bytes = try PythonObject(bytes: try readEntry(importer, sourceEntry))
            return try decoder().call([bytes])
        }
        type.method("get_filename") { importer, arguments in
            let fullname = try arguments.required(0, "fullname").asString()
            guard let entry = importer.location(fullname)?.codeEntry else { throw notFound(importer, fullname) }
            return try PythonObject(importer.pathInSys(entry))
        }
        type.method("is_package") { importer, arguments in
            let fullname = try arguments.required(0, "fullname").asString()
            guard let location = importer.location(fullname) else { throw notFound(importer, fullname) }
            return PythonObject(bool: location.isPackage)
        }
        type.method("get_data") { importer, arguments in
            let path = try arguments.required(0, "pathname").asString()
            return try PythonObject(bytes: try readEntry(importer, importer.entryPath(forDataPath: path)))
        }
        type.method("get_resource_reader") { importer, arguments in
            let this = arguments.selfObject
            let fullname = try arguments.required(0, "fullname").asString()
            guard let location = importer.location(fullname), location.kind == .package,
                  let directory = location.packageDirectory else { return .none }
            let support = try resourceSupport()
            return try support.attribute("ArchiveResourceReader").call([this, try PythonObject(directory)])
        }
        type.method("iter_modules") { importer, arguments in
            let namePrefix = try arguments.optional(0, "prefix")?.asString() ?? ""
            let items = try ModuleIndex.modules(under: importer.prefix, in: importer.archive).map {
                try PythonObject.tuple([try PythonObject(namePrefix + $0.name), PythonObject(bool: $0.isPackage)])
            }
            return try PythonObject.list(items).callMethod("__iter__")
        }
        type.method("invalidate_caches") { _, _ in .none }
        // Helpers for the resource reader (archive paths, not sys.path paths).
        type.method("_read") { importer, arguments in
            let path = try arguments.required(0, "path").asString()
            return try PythonObject(bytes: try readEntry(importer, path))
        }
        type.method("_is_file") { importer, arguments in
            let path = try arguments.required(0, "path").asString()
            return PythonObject(bool: importer.archive.entries[path].map { !$0.isDirectory } ?? false)
        }
        type.method("_is_dir") { importer, arguments in
            PythonObject(bool: importer.archive.directories.contains(try arguments.required(0, "path").asString()))
        }
        type.method("_children") { importer, arguments in
            let directory = try arguments.required(0, "path").asString()
            return try PythonObject.list(importer.archive.children(of: directory).map {
                try PythonObject.tuple([try PythonObject($0.name), PythonObject(bool: $0.isDirectory)])
            })
        }
        return type
    }()

    /// The `_frost` builtin module: the path hook and the importer type.
    public static let builtinModule = NativeModule(
        name: "_frost", doc: "frost runtime: the archive path hook and importer."
    ) { module in
        try module.setAttribute("ArchiveImporter", importerType.typeObject())
        try module.setAttribute("path_hook", Python.function(
            "path_hook", doc: "Returns an ArchiveImporter for a path inside a mounted archive.", module: module
        ) { args, _ in
            let path = try requiredArgument(args, [], 0, "path").asString()
            return try importer(forPath: path)
        })
    }

    /// Registers `archive` under `path` (its sys.path entry). Packages of the archive
    /// whose directory also exists below `extensionRoot` get that directory on their
    /// `__path__`, so their extension modules load from the file system. Needs the GIL.
    public static func register(_ archive: MountedArchive, at path: String, extensionRoot: String? = nil) {
        mounts[path] = (archive, ModuleIndex.extensionModules(in: archive), extensionRoot)
    }

    /// Replaces the archive under `path` (a redeployed bundle) and forgets the finders
    /// made for the old one. Needs the GIL.
    public static func remount(_ archive: MountedArchive, at path: String) throws {
        let extensionRoot = mounts[path]?.extensionRoot
        register(archive, at: path, extensionRoot: extensionRoot)
        let cache = try Python.sys().attribute("path_importer_cache")
        for key in try cache.callMethod("keys").elements() {
            guard key.isString, let entry = try? key.asString(), entry == path || entry.hasPrefix(path + "/") else { continue }
            try cache.callMethod("pop", [key, .none])
        }
    }

    /// Puts the path hook first in `sys.path_hooks` and forgets cached finders, so every
    /// registered archive is served natively from now on. Needs the GIL.
    public static func install() throws {
        let sys = try Python.sys()
        let frost = try Python.importModule("_frost")
        let hook = try frost.attribute("path_hook")
        try sys.attribute("path_hooks").callMethod("insert", [try PythonObject(0), hook])
        try sys.attribute("path_importer_cache").callMethod("clear")
    }

    static func importer(forPath path: String) throws -> PythonObject {
        for (archivePath, (archive, extensionModules, extensionRoot)) in mounts {
            if path == archivePath {
                return try importerType.wrap(ArchiveImporter(archive: archive, extensionModules: extensionModules,
                                                             extensionRoot: extensionRoot, archivePath: archivePath, prefix: ""))
            }
            if path.hasPrefix(archivePath + "/") {
                var prefix = String(path.dropFirst(archivePath.count + 1))
                if !prefix.hasSuffix("/") { prefix += "/" }
                guard archive.directories.contains(prefix) else { break }
                return try importerType.wrap(ArchiveImporter(archive: archive, extensionModules: extensionModules,
                                                             extensionRoot: extensionRoot, archivePath: archivePath,
                                                             prefix: prefix))
            }
        }
        throw PythonError.raise(.importError, "not a mounted frost archive: \(path)")
    }

    static func findSpec(_ importer: ArchiveImporter, _ this: PythonObject, _ fullname: String) throws -> PythonObject? {
        guard let location = importer.location(fullname) else {
            let tail = fullname.split(separator: ".").last.map(String.init) ?? fullname
            if let so = importer.extensionModules[importer.prefix + tail] {
                throw PythonError.raise(.importError, """
                    extension module \(importer.pathInSys(so)) cannot be loaded from inside the archive \
                    (frost never extracts files); the packager puts extension modules in lib/
                    """)
            }
            return nil
        }
        let specClass = try moduleSpec()
        let name = try PythonObject(fullname)
        guard let entry = location.codeEntry else {
            // A namespace package portion: no loader, just a search location.
            let spec = try specClass.call([name, .none], keywords: [("is_package", .true)])
            let directory = String(location.packageDirectory!.dropLast())
            try spec.attribute("submodule_search_locations").callMethod("append",
                                                                        [try PythonObject(importer.pathInSys(directory))])
            return spec
        }
        let spec = try specClass.call([name, this], keywords: [
            ("origin", try PythonObject(importer.pathInSys(entry))),
            ("is_package", PythonObject(bool: location.isPackage)),
        ])
        try spec.setAttribute("has_location", .true)
        if let directory = location.packageDirectory {
            var locations = [try PythonObject(importer.pathInSys(String(directory.dropLast())))]
            if let root = importer.extensionRoot, FileSystem.isDirectory(root + "/" + directory) {
                locations.append(try PythonObject(root + "/" + String(directory.dropLast())))
            }
            try spec.setAttribute("submodule_search_locations", try PythonObject.list(locations))
        }
        return spec
    }

    static func getCode(_ importer: ArchiveImporter, _ fullname: String) throws -> PythonObject {
        guard let location = importer.location(fullname), let entry = location.codeEntry else {
            throw notFound(importer, fullname)
        }
        let path = importer.pathInSys(entry)
        if location.isBytecode {
            let data = try readEntry(importer, entry)
            let magic = Python.bytecodeMagic
            if data.count >= 16, Array(data[0..<4]) == magic {
                return try Python.unmarshalCode(data[16...], filename: path)
            }
            let sourceEntry = String(entry.dropLast())
            if importer.archive.contains(sourceEntry) {
                // A stale .pyc next to its source: the source wins, as with zipimport.
                return try Python.compile(bytes: try readEntry(importer, sourceEntry),
                                          filename: importer.pathInSys(sourceEntry))
            }
            guard data.count >= 16 else {
                throw PythonError.raise(.importError, "\(path) is truncated: \(data.count) bytes is not a .pyc")
            }
            throw PythonError.raise(.importError, """
                bad magic number in \(path): it was compiled for another Python \
                (magic \(hex(Array(data[0..<4])))) but this loader runs Python \(Python.version) \
                (magic \(hex(magic))); rebuild the bundle with that interpreter
                """)
        }
        return try Python.compile(bytes: try readEntry(importer, entry), filename: path)
    }

    static func readEntry(_ importer: ArchiveImporter, _ entry: String) throws -> [UInt8] {
        do {
            return try importer.archive.read(entry)
        } catch let error as ArchiveError {
            switch error.kind {
            case .noSuchEntry: throw PythonError.raise(.fileNotFoundError, "no such file in \(importer.archivePath): \(entry)")
            case .isADirectory: throw PythonError.raise(.osError, "is a directory in \(importer.archivePath): \(entry)")
            default: throw PythonError.raise(.osError, error.description)
            }
        }
    }

    static func notFound(_ importer: ArchiveImporter, _ fullname: String) -> PythonError {
        PythonError.raise(.importError, "can't find module '\(fullname)' in \(importer.archivePath)/\(importer.prefix)")
    }

    static func moduleSpec() throws -> PythonObject {
        if let moduleSpecClass { return moduleSpecClass }
        let spec = try Python.importModule("_frozen_importlib").attribute("ModuleSpec")
        moduleSpecClass = spec
        return spec
    }

    static func decoder() throws -> PythonObject {
        if let decodeSource { return decodeSource }
        let decode = try Python.importModule("_frozen_importlib_external").attribute("decode_source")
        decodeSource = decode
        return decode
    }

    static func resourceSupport() throws -> PythonObject {
        let modules = try Python.sys().attribute("modules")
        if let existing = try modules.item(ResourceSupport.moduleName) { return existing }
        let module = try Python.importModule("types").attribute("ModuleType").call([try PythonObject(ResourceSupport.moduleName)])
        let namespace = try module.attribute("__dict__")
        try namespace.setItem("__builtins__", try Python.importModule("builtins"))
        try Python.run(ResourceSupport.source, filename: "<frost>/\(ResourceSupport.moduleName).py", globals: namespace)
        try modules.setItem(ResourceSupport.moduleName, module)
        return module
    }

    static func hex(_ bytes: [UInt8]) -> String {
        "0x" + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
