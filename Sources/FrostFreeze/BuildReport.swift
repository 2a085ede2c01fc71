import Foundation

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
    /// The five heaviest optional pulls: modules only imports inside functions, or inside a
    /// `try` that survives a failed import, reach (in the bundle, since a call may need them
    /// or the program is better with them; `excludes` drops those the program does without).
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
            lines.append("optional pulls (reached only by imports inside functions or a try that survives their failure; "
                         + "excludes drops what the program does without):")
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

func formatBytes(_ bytes: Int) -> String {
    if bytes >= 1 << 20 { return String(format: "%.1f MiB", Double(bytes) / Double(1 << 20)) }
    if bytes >= 1 << 10 { return String(format: "%.1f KiB", Double(bytes) / Double(1 << 10)) }
    return "\(bytes) B"
}
