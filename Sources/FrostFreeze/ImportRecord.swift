import Foundation
import FrostBundle

/// Why each module and shared library is in a bundle: what first brought it in, with the
/// file and line of the import. Written as `lib/imports.json` (covered by bundle.json like
/// every file) and read by `frost inspect --why`.
public struct ImportRecord: Codable, Sendable {
    public static let fileName = "lib/imports.json"

    public struct Link: Codable, Sendable, Equatable {
        /// A module, or a reason in angle brackets ("<includes>", "<the traced import>").
        public let by: String
        public let file: String?
        public let line: Int?
    }

    public let entry: String
    /// Module name → what brought it in.
    public let modules: [String: Link]
    /// Module name → where it is in the bundle (archive path or file below lib/).
    public let locations: [String: String]
    /// Shared library name → the objects (the loader, libpython, extension modules, other
    /// libraries) that need it.
    public let libraries: [String: [String]]
    /// Modules only imports inside functions, or inside a `try` that survives a failed
    /// import, reach (in the bundle; a call may need them, or the program is better with them).
    public var optional: Set<String> = []
    /// The heaviest optional pulls, described.
    public var optionalPulls: [String] = []
    /// Module → the code of it whose imports were not followed (it cannot run in a bundle).
    public var trimmed: [String: [String]] = [:]

    enum CodingKeys: String, CodingKey {
        case entry, modules, locations, libraries, optional, trimmed
        case optionalPulls = "optional_pulls"
    }

    init(entry: String, modules: [String: Link], locations: [String: String], libraries: [String: [String]]) {
        self.entry = entry
        self.modules = modules
        self.locations = locations
        self.libraries = libraries
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        entry = try container.decode(String.self, forKey: .entry)
        modules = try container.decode([String: Link].self, forKey: .modules)
        locations = try container.decode([String: String].self, forKey: .locations)
        libraries = try container.decode([String: [String]].self, forKey: .libraries)
        optional = try container.decodeIfPresent(Set<String>.self, forKey: .optional) ?? []
        optionalPulls = try container.decodeIfPresent([String].self, forKey: .optionalPulls) ?? []
        trimmed = try container.decodeIfPresent([String: [String]].self, forKey: .trimmed) ?? [:]
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(entry, forKey: .entry)
        try container.encode(modules, forKey: .modules)
        try container.encode(locations, forKey: .locations)
        try container.encode(libraries, forKey: .libraries)
        try container.encode(optional.sorted(), forKey: .optional)  // a Set's order is not stable
        try container.encode(optionalPulls, forKey: .optionalPulls)
        try container.encode(trimmed, forKey: .trimmed)
    }

    /// `pythonLibrary`: libpython's name; the loader loads it at start (it links none).
    static func make(entry: String, analysis: Analysis, libraries: [LibraryResolver.Resolved], librarySize: (String) -> Int,
                     objects: [(String, String)], pythonLibrary: String) -> ImportRecord {
        var modules: [String: Link] = [:]
        var locations: [String: String] = [:]
        for module in analysis.modules {
            let link = analysis.brought_by[module.name]
            modules[module.name] = Link(by: link?.by ?? "<entry>", file: link?.file, line: link?.line)
            switch (module.kind, module.category, module.onFilesystem) {
            case (.extension, .stdlib, _): locations[module.name] = "lib/lib-dynload/" + URL(fileURLWithPath: module.file).lastPathComponent
            case (.extension, _, _): locations[module.name] = "lib/site-packages/" + module.archive_path
            case (_, .stdlib, _): locations[module.name] = "lib/python\(analysis.python.major)\(analysis.python.minor).zip/" + module.archive_path
            case (_, let category, true): locations[module.name] = Builder.filesystemDirectory(category: category) + "/" + module.archive_path
            default: locations[module.name] = entry + ".zip/" + module.archive_path
            }
        }
        var needed: [String: Set<String>] = [:]
        let wanted = Set(libraries.map(\.name))
        for (name, path) in objects + libraries.map({ ($0.name, $0.path) }) {
            guard let info = try? ELFReader.read(path) else { continue }
            for library in info.needed where wanted.contains(library) { needed[library, default: []].insert(name) }
        }
        needed[pythonLibrary, default: []].insert("the loader")
        var record = ImportRecord(entry: entry, modules: modules, locations: locations,
                                  libraries: needed.mapValues { $0.sorted() }.merging(
                                      Dictionary(uniqueKeysWithValues: libraries.filter { needed[$0.name] == nil }.map { ($0.name, ["<the traced import>"]) })
                                  ) { a, _ in a })
        record.optional = Set(analysis.modules.filter { $0.optional == true }.map(\.name))
        record.optionalPulls = Analysis.OptionalPull.weighed(analysis.optional_pulls ?? [], users: record.libraries,
                                                             size: librarySize).map(\.description)
        record.trimmed = analysis.trimmed ?? [:]
        return record
    }

    /// `lib/imports.json`: sorted keys, so the same build writes the same bytes.
    public func jsonData() throws -> Data {
        try canonicalJSON(self)
    }

    /// `lib/imports.json` is missing or unreadable.
    public struct ReadError: Error, CustomStringConvertible, Sendable {
        public let path: String
        public var description: String { "\(path): missing or unreadable (a bundle built by an older frost: rebuild it)" }
    }

    /// Reads a bundle's record.
    public static func load(bundle: String) throws -> ImportRecord {
        let path = bundle + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path),
              let record = try? JSONDecoder().decode(ImportRecord.self, from: data) else {
            throw ReadError(path: path)
        }
        return record
    }

    /// The chain from `name` back to the entry (or to the reason that brought it in).
    public func chain(of name: String) -> [(module: String, link: Link)] {
        var result: [(String, Link)] = []
        var current = name
        var seen: Set<String> = []
        while let link = modules[current], seen.insert(current).inserted {
            result.append((current, link))
            if link.by.hasPrefix("<") || link.by == entry { break }
            current = link.by
        }
        return result
    }

    /// Lines explaining why `name` (a module or a shared library) is in the bundle.
    public func why(_ name: String) -> [String] {
        func describe(_ module: String, _ link: Link) -> String {
            if link.by.hasPrefix("<") {
                return link.by == "<entry>" ? "\(module): the entry module" : "\(module): brought in by \(link.by)"
            }
            let place = link.file.map { $0 + (link.line.map { ":\($0)" } ?? "") } ?? ""
            return "\(module): imported by \(link.by)" + (place.isEmpty ? "" : " (\(place))")
        }
        if modules[name] != nil {
            var lines = chain(of: name).map { describe($0.module, $0.link) }
            if let location = locations[name] { lines.insert("\(name) is at \(location)", at: 0) }
            if optional.contains(name) {
                lines.append("optional: only imports inside functions, or inside a try that survives a failed import, "
                             + "reach \(name); if the program does without it, excludes = [\"\(name)\"] leaves it out")
            }
            return lines
        }
        if let users = libraries[name] {
            var lines = ["\(name) is a shared library in lib/, needed by \(users.joined(separator: ", "))"]
            if let module = users.first(where: { modules[$0] != nil }) {
                lines += chain(of: module).map { "  " + describe($0.module, $0.link) }
            }
            return lines
        }
        return ["\(name) is not in the bundle"]
    }

    /// The `count` heaviest modules and libraries of a built bundle, with what brought each in.
    func heaviest(in bundle: String, count: Int) -> [String] {
        var sizes: [(String, Int)] = []
        for (name, location) in locations where !location.contains(".zip/") {
            let size = (try? FileManager.default.attributesOfItem(atPath: bundle + "/" + location)[.size] as? Int) ?? 0
            sizes.append((name, size))
        }
        for library in libraries.keys {
            let path = (try? FileManager.default.contentsOfDirectory(atPath: bundle + "/lib"))?.contains(library) == true
                ? bundle + "/lib/" + library : nil
            if let path, let size = try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int {
                sizes.append((library, size))
            }
        }
        return sizes.sorted { ($0.1, $1.0) > ($1.1, $0.0) }.prefix(count).map { name, size in
            let reason: String
            if let link = modules[name] {
                reason = link.by.hasPrefix("<") ? link.by : "imported by \(link.by)"
            } else {
                reason = "needed by " + (libraries[name] ?? []).prefix(3).joined(separator: ", ")
            }
            return "\(name) \(formatBytes(size)): \(reason)"
        }
    }
}
