import FrostBundle
import FrostSystem

/// Where URLs go: virtual directories, each with a physical path and script maps that
/// say which URLs the extension handles; everything else under a virtual directory is a
/// static file from its physical path. Read from the JSON file the installer writes
/// (`--site FILE`):
///
///     {"virtual_directories": [
///        {"name": "/", "path": "/srv/www", "script_maps": ["*"]},
///        {"name": "/static", "path": "/srv/assets", "script_maps": []},
///        {"name": "/python", "path": "/srv/app", "script_maps": [".py", ".aspx"]}],
///      "filters": [{"name": "PythonRedirector", "description": "..."}]}
///
/// Without a site file the extension handles every URL.
public struct Site: Sendable, Equatable {
    public struct VirtualDirectory: Sendable, Equatable {
        /// The URL prefix: "/" or "/name" (no trailing slash).
        public var name: String
        /// The physical directory for static files and PATH_TRANSLATED.
        public var path: String
        /// "*" (every URL goes to the extension) or file extensions (".py").
        public var scriptMaps: [String]

        public init(name: String, path: String, scriptMaps: [String]) {
            self.name = name
            self.path = path
            self.scriptMaps = scriptMaps
        }
    }

    public var virtualDirectories: [VirtualDirectory]
    /// The filters the site installs (names and descriptions, as `FilterParameters`):
    /// the bundle's filter runs unless the file lists an empty `filters` array.
    public var filters: [String]?

    public var filtersEnabled: Bool { filters.map { !$0.isEmpty } ?? true }

    public init(virtualDirectories: [VirtualDirectory], filters: [String]? = nil) {
        self.virtualDirectories = virtualDirectories
        self.filters = filters
    }

    /// Every URL to the extension, the bundle directory as physical path.
    public static func extensionOnly(physicalPath: String) -> Site {
        Site(virtualDirectories: [VirtualDirectory(name: "/", path: physicalPath, scriptMaps: ["*"])])
    }

    public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
        public let file: String
        public let message: String
        public var description: String { "\(file): \(message)" }
    }

    /// Reads and checks a site file.
    public static func load(_ file: String) throws -> Site {
        func fail(_ message: String) -> ConfigurationError { ConfigurationError(file: file, message: message) }
        let json: JSON
        do {
            let bytes = try FileSystem.readFile(file)
            json = try JSON.parse(utf8: bytes)
        } catch {
            throw fail("\(error)")
        }
        guard let entries = json["virtual_directories"]?.array else { throw fail("no \"virtual_directories\" array") }
        var directories: [VirtualDirectory] = []
        for (index, entry) in entries.enumerated() {
            guard var name = entry["name"]?.string, let path = entry["path"]?.string else {
                throw fail("virtual_directories[\(index)] needs \"name\" and \"path\" strings")
            }
            if !name.hasPrefix("/") { name = "/" + name }
            while name.count > 1 && name.hasSuffix("/") { name.removeLast() }
            guard path.hasPrefix("/") else { throw fail("virtual_directories[\(index)].path must be absolute: \(path)") }
            guard FileSystem.isDirectory(path) else { throw fail("virtual_directories[\(index)].path is not a directory: \(path)") }
            let maps = entry["script_maps"]?.array?.compactMap(\.string) ?? ["*"]
            for map in maps where map != "*" && !map.hasPrefix(".") {
                throw fail("virtual_directories[\(index)]: script map '\(map)' must be \"*\" or an extension like \".py\"")
            }
            guard !directories.contains(where: { $0.name == name }) else { throw fail("virtual directory \(name) is listed twice") }
            directories.append(VirtualDirectory(name: name, path: path, scriptMaps: maps))
        }
        var filters: [String]?
        if let list = json["filters"] {
            guard let entries = list.array else { throw fail("\"filters\" must be an array") }
            filters = try entries.enumerated().map { index, entry in
                guard let name = entry["name"]?.string ?? entry.string else {
                    throw fail("filters[\(index)] needs a \"name\" string")
                }
                return name
            }
        }
        return Site(virtualDirectories: directories, filters: filters)
    }

    /// What serves a URL path (decoded, without the query).
    public enum Route: Equatable, Sendable {
        /// The extension, with SCRIPT_NAME / PATH_INFO as the virtual directory splits them.
        case extensionCall(directory: VirtualDirectory, scriptName: String, pathInfo: String)
        /// A static file below the directory's path (`relative` may still be unsafe).
        case file(directory: VirtualDirectory, relative: String)
        case notFound
    }

    public func route(_ path: String) -> Route {
        let candidates = virtualDirectories.filter { directory in
            directory.name == "/" || path == directory.name || path.hasPrefix(directory.name + "/")
        }
        guard let directory = candidates.max(by: { $0.name.count < $1.name.count }) else { return .notFound }
        let rest = directory.name == "/" ? path : String(path.dropFirst(directory.name.count))
        let scriptName = directory.name == "/" ? "" : directory.name
        if directory.scriptMaps.contains("*") {
            return .extensionCall(directory: directory, scriptName: scriptName, pathInfo: rest)
        }
        let lastSegment = rest.split(separator: "/").last.map(String.init) ?? ""
        if let dot = lastSegment.lastIndex(of: "."),
           directory.scriptMaps.contains(where: { $0.lowercased() == lastSegment[dot...].lowercased() }) {
            return .extensionCall(directory: directory, scriptName: scriptName, pathInfo: rest)
        }
        return .file(directory: directory, relative: rest)
    }
}
