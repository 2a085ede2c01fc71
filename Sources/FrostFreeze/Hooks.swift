import Foundation

/// What the traced import cannot know about a package, as data (no code): modules imported
/// only on a later call, whole packages read by name at run time, parts never needed at run
/// time, and data files that are build or test material. Keyed by top-level package (or a
/// module inside one, such as `logging.config`) and applied only when that is in the bundle. The built-in set is
/// `Resources/hooks.json`; a spec's `hooks = "file.json"` adds its own in the same format.
public struct Hooks: Equatable, Sendable {
    public struct Package: Codable, Equatable, Sendable {
        /// Modules to add when the package is in the bundle (a missing one is skipped).
        public var hidden_imports: [String] = []
        /// Packages to add whole: every submodule and data file.
        public var packages: [String] = []
        /// Modules left out unless the traced import shows they are used.
        public var excludes: [String] = []
        /// Globs of data files to leave out, relative to the top package's directory
        /// (`*` also matches `/`).
        public var exclude_data: [String] = []
        /// The package reads its own files by path: it goes to a real directory inside the
        /// bundle, whole, with its data files (unless the spec's `archive` names it).
        public var filesystem: Bool = false

        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable { case hidden_imports, packages, excludes, exclude_data, filesystem }

        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            hidden_imports = try container.decodeIfPresent([String].self, forKey: .hidden_imports) ?? []
            packages = try container.decodeIfPresent([String].self, forKey: .packages) ?? []
            excludes = try container.decodeIfPresent([String].self, forKey: .excludes) ?? []
            exclude_data = try container.decodeIfPresent([String].self, forKey: .exclude_data) ?? []
            filesystem = try container.decodeIfPresent(Bool.self, forKey: .filesystem) ?? false
        }

        /// Another hook's lists added to this one's.
        mutating func add(_ other: Package) {
            hidden_imports += other.hidden_imports.filter { !hidden_imports.contains($0) }
            packages += other.packages.filter { !packages.contains($0) }
            excludes += other.excludes.filter { !excludes.contains($0) }
            exclude_data += other.exclude_data.filter { !exclude_data.contains($0) }
            filesystem = filesystem || other.filesystem
        }
    }

    /// By top-level package name.
    public var packages: [String: Package]

    public struct FormatError: Error, CustomStringConvertible, Sendable {
        public let file: String
        public let message: String
        public var description: String { "\(file): \(message)" }
    }

    /// The hooks frost ships.
    public static func builtIn() throws -> Hooks {
        guard let url = Bundle.module.url(forResource: "hooks", withExtension: "json") else {
            throw FormatError(file: "hooks.json", message: "missing from frost's resources")
        }
        return try load(url.path)
    }

    /// Reads a hooks file; keys starting with `_` are comments. Unknown fields, wrong types
    /// and names that are not module names are errors naming the package and field.
    public static func load(_ path: String) throws -> Hooks {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw FormatError(file: path, message: "cannot read: \(error.localizedDescription)")
        }
        do {
            return Hooks(packages: try JSONDecoder().decode(HooksFile.self, from: data).packages)
        } catch let problem as HooksFile.Problem {
            throw FormatError(file: path, message: problem.message)
        } catch DecodingError.dataCorrupted(let context) {
            let detail = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String ?? context.debugDescription
            throw FormatError(file: path, message: "invalid JSON: \(detail)")
        } catch {
            throw FormatError(file: path, message: "not a JSON object of packages")
        }
    }

    /// The file's top level, checked field by field so every mistake names the package
    /// and field (a plain Codable decode would accept unknown fields).
    struct HooksFile: Decodable {
        struct Problem: Error {
            let message: String
        }

        struct Key: CodingKey {
            let stringValue: String
            init(stringValue: String) { self.stringValue = stringValue }
            var intValue: Int? { nil }
            init?(intValue: Int) { nil }
        }

        var packages: [String: Package] = [:]

        init(from decoder: Decoder) throws {
            let top = try decoder.container(keyedBy: Key.self)
            for key in top.allKeys.sorted(by: { $0.stringValue < $1.stringValue }) where !key.stringValue.hasPrefix("_") {
                let name = key.stringValue
                guard let fields = try? top.nestedContainer(keyedBy: Key.self, forKey: key) else {
                    throw Problem(message: "package '\(name)': expected an object of hidden_imports, packages, excludes, exclude_data, filesystem")
                }
                let known = Set(Package.CodingKeys.allCases.map(\.rawValue))
                for field in fields.allKeys.map(\.stringValue).sorted() where !known.contains(field) {
                    throw Problem(message: "package '\(name)': unknown field '\(field)' (known: \(known.sorted().joined(separator: ", ")))")
                }
                var package = Package()
                for field in fields.allKeys {
                    if field.stringValue == "filesystem" {
                        guard let value = try? fields.decode(Bool.self, forKey: field) else {
                            throw Problem(message: "package '\(name)': 'filesystem' must be true or false")
                        }
                        package.filesystem = value
                        continue
                    }
                    guard let strings = try? fields.decode([String].self, forKey: field) else {
                        throw Problem(message: "package '\(name)': '\(field.stringValue)' must be an array of strings")
                    }
                    if field.stringValue != "exclude_data", let bad = strings.first(where: { !Hooks.isModuleName($0) }) {
                        throw Problem(message: "package '\(name)': '\(bad)' in '\(field.stringValue)' is not a module name")
                    }
                    switch field.stringValue {
                    case "hidden_imports": package.hidden_imports = strings
                    case "packages": package.packages = strings
                    case "excludes": package.excludes = strings
                    default: package.exclude_data = strings
                    }
                }
                guard Hooks.isModuleName(name) else {
                    throw Problem(message: "'\(name)' is not a package or module name")
                }
                packages[name] = package
            }
        }
    }

    /// These hooks with `other`'s added (lists extend, per package).
    public func adding(_ other: Hooks) -> Hooks {
        var merged = self
        for (name, package) in other.packages { merged.packages[name, default: Package()].add(package) }
        return merged
    }

    static func isModuleName(_ name: String) -> Bool {
        !name.isEmpty && name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { part in
            guard let first = part.unicodeScalars.first, !CharacterSet.decimalDigits.contains(first) else { return false }
            return part.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || $0 == "_" }
        }
    }
}
