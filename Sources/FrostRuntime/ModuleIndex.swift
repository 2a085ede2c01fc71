import FrostArchive

/// Where a module lives inside a mounted archive, found the way zipimport looks:
/// `name/__init__.pyc`, `name/__init__.py`, `name.pyc`, `name.py`, then a bare
/// directory (a namespace package portion).
public struct ModuleLocation: Equatable, Sendable {
    public enum Kind: Sendable { case package, module, namespace }
    public let kind: Kind
    /// The entry holding the code (`pkg/__init__.pyc`, `mod.py`); nil for namespaces.
    public let codeEntry: String?
    /// The package's directory inside the archive ("pkg/sub/"), for packages and namespaces.
    public let packageDirectory: String?

    public var isBytecode: Bool { codeEntry?.hasSuffix(".pyc") ?? false }
    public var isPackage: Bool { kind != .module }
}

public enum ModuleIndex {
    /// Looks up `fullname` (dotted) for an importer whose directory is `prefix`
    /// ("" for the archive root, else "pkg/"). Only the last component is used, as the
    /// parent package's `__path__` already led to `prefix`.
    public static func locate(_ fullname: String, prefix: String, in archive: MountedArchive) -> ModuleLocation? {
        let tail = fullname.split(separator: ".").last.map(String.init) ?? fullname
        let base = prefix + tail
        for initFile in ["/__init__.pyc", "/__init__.py"] where archive.contains(base + initFile) {
            return ModuleLocation(kind: .package, codeEntry: base + initFile, packageDirectory: base + "/")
        }
        for suffix in [".pyc", ".py"] where archive.contains(base + suffix) {
            return ModuleLocation(kind: .module, codeEntry: base + suffix, packageDirectory: nil)
        }
        if archive.directories.contains(base + "/") {
            return ModuleLocation(kind: .namespace, codeEntry: nil, packageDirectory: base + "/")
        }
        return nil
    }

    /// Extension modules (`.so`) stored in the archive, by module path ("pkg/_speedups"
    /// for "pkg/_speedups.cpython-311-x86_64-linux-gnu.so"). They cannot be loaded from
    /// there (nothing is extracted), which deserves its own message; built once per
    /// archive so that a miss costs one lookup.
    public static func extensionModules(in archive: MountedArchive) -> [String: String] {
        var found: [String: String] = [:]
        for path in archive.entries.keys where path.hasSuffix(".so") {
            let slash = path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex
            guard let dot = path[slash...].firstIndex(of: ".") else { continue }
            found[String(path[..<dot])] = path
        }
        return found
    }

    /// The modules directly inside `prefix`, as `pkgutil.iter_modules` lists them:
    /// sorted names, each with whether it is a package.
    public static func modules(under prefix: String, in archive: MountedArchive) -> [(name: String, isPackage: Bool)] {
        var found: [String: Bool] = [:]
        for child in archive.children(of: prefix) {
            if child.isDirectory {
                let directory = prefix + child.name + "/"
                if archive.contains(directory + "__init__.pyc") || archive.contains(directory + "__init__.py") {
                    found[child.name] = true
                }
            } else {
                for suffix in [".pyc", ".py"] where child.name.hasSuffix(suffix) {
                    let stem = String(child.name.dropLast(suffix.count))
                    if stem != "__init__", !stem.isEmpty, !stem.contains("."), found[stem] == nil {
                        found[stem] = false
                    }
                }
            }
        }
        return found.keys.sorted().map { ($0, found[$0]!) }
    }
}
