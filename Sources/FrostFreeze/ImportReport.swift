import Foundation
import FrostArchive
import FrostBundle

/// The whole import graph of a built bundle, readable: every module and shared library,
/// where it is, its size, what brought it in (file and line), and whether only imports
/// inside functions reach it. `frost build --report FILE.html` (or `.json`) writes it from
/// the bundle's `lib/imports.json`, as PyInstaller's cross-reference file does.
public enum ImportReport {
    public struct Row: Codable, Sendable {
        public enum Kind: String, Codable, Sendable {
            case module, library
        }

        public let name: String
        public let kind: Kind
        public let location: String
        public let bytes: Int
        /// A module, a reason in angle brackets, or for a library who needs it.
        public let by: String
        public let file: String?
        public let line: Int?
        public let optional: Bool
    }

    public struct FormatError: Error, CustomStringConvertible, Sendable {
        public let path: String
        public var description: String { "--report \(path): the file name must end in .html or .json" }
    }

    /// Checks the report's file name before anything is built.
    public static func validate(_ path: String) throws {
        guard path.hasSuffix(".html") || path.hasSuffix(".json") else { throw FormatError(path: path) }
    }

    /// Every module and library of `bundle`, heaviest first.
    public static func rows(record: ImportRecord, bundle: String) -> [Row] {
        var archives: [String: MountedArchive] = [:]
        func size(of location: String) -> Int {
            if let range = location.range(of: ".zip/") {
                let archive = String(location[..<range.lowerBound]) + ".zip"
                if archives[archive] == nil { archives[archive] = try? MountedArchive(path: bundle + "/" + archive) }
                return archives[archive]?.entries[String(location[range.upperBound...])]?.uncompressedSize ?? 0
            }
            return (try? FileManager.default.attributesOfItem(atPath: bundle + "/" + location)[.size] as? Int) ?? 0
        }
        var rows: [Row] = []
        for (name, link) in record.modules {
            let location = record.locations[name] ?? ""
            rows.append(Row(name: name, kind: .module, location: location, bytes: location.isEmpty ? 0 : size(of: location),
                            by: link.by, file: link.file, line: link.line, optional: record.optional.contains(name)))
        }
        let libraryFiles = Set((try? FileManager.default.contentsOfDirectory(atPath: bundle + "/lib")) ?? [])
        for (name, users) in record.libraries {
            let location = libraryFiles.contains(name) ? "lib/" + name : ""
            rows.append(Row(name: name, kind: .library, location: location, bytes: location.isEmpty ? 0 : size(of: location),
                            by: users.joined(separator: ", "), file: nil, line: nil, optional: false))
        }
        return rows.sorted { ($0.bytes, $1.name) > ($1.bytes, $0.name) }
    }

    /// The `.json` form: the rows, the heaviest optional pulls, the code not followed.
    struct Document: Encodable {
        let entry: String
        let items: [Row]
        let optional_pulls: [String]
        let not_followed: [String: [String]]
    }

    public static func json(record: ImportRecord, bundle: String) throws -> String {
        let document = Document(entry: record.entry, items: rows(record: record, bundle: bundle),
                                optional_pulls: record.optionalPulls, not_followed: record.trimmed)
        return String(decoding: try canonicalJSON(document), as: UTF8.self)
    }

    public static func html(record: ImportRecord, bundle: String) -> String {
        func escape(_ text: String) -> String {
            text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        let rows = rows(record: record, bundle: bundle)
        let total = rows.reduce(0) { $0 + $1.bytes }
        var html = """
            <!doctype html>
            <html><head><meta charset="utf-8"><title>\(escape(record.entry)): what is in the bundle and why</title>
            <style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}
            td,th{padding:2px 8px;text-align:left;vertical-align:top}tr:nth-child(even){background:#f4f4f4}
            td.n{text-align:right}.opt{color:#a60}code{font-size:13px}</style></head><body>
            <h1>\(escape(record.entry))</h1>
            <p>\(rows.filter { $0.kind == .module }.count) modules and \(rows.filter { $0.kind == .library }.count) shared
            libraries, \(escape(formatBytes(total))) in all. “Brought in by” is the first import that reached each one;
            <span class="opt">optional</span> ones are reached only by imports inside functions, or inside a
            <code>try</code> that survives a failed import (in the bundle because a call may need them or the program is
            better with them; <code>excludes</code> leaves out those the program does without).</p>

            """
        if !record.optionalPulls.isEmpty {
            html += "<h2>Heaviest optional pulls</h2><ul>\n"
                + record.optionalPulls.map { "<li>\(escape($0))</li>\n" }.joined() + "</ul>\n"
        }
        html += "<h2>Everything</h2><table><tr><th>name</th><th>where</th><th>size</th><th>brought in by</th><th>at</th></tr>\n"
        for row in rows {
            let by = record.modules[row.by] != nil ? "<a href=\"#\(escape(row.by))\">\(escape(row.by))</a>" : escape(row.by)
            let at = row.file.map { escape($0) + (row.line.map { ":\($0)" } ?? "") } ?? ""
            html += "<tr id=\"\(escape(row.name))\"><td>\(escape(row.name))\(row.optional ? " <span class=\"opt\">optional</span>" : "")"
                + "</td><td><code>\(escape(row.location))</code></td><td class=\"n\">\(escape(formatBytes(row.bytes)))</td>"
                + "<td>\(by)</td><td><code>\(at)</code></td></tr>\n"
        }
        html += "</table>\n"
        if !record.trimmed.isEmpty {
            html += "<h2>Code whose imports were not followed</h2><p>It cannot run in a bundle (the module keeps it).</p><ul>\n"
            for (module, parts) in record.trimmed.sorted(by: { $0.key < $1.key }) {
                html += "<li><a href=\"#\(escape(module))\">\(escape(module))</a>: \(escape(parts.joined(separator: ", ")))</li>\n"
            }
            html += "</ul>\n"
        }
        return html + "</body></html>\n"
    }

    /// Writes the report of `bundle` to `path` (.html or .json).
    public static func write(bundle: String, to path: String) throws {
        try validate(path)
        let record = try ImportRecord.load(bundle: bundle)
        let text = path.hasSuffix(".json") ? try json(record: record, bundle: bundle) : html(record: record, bundle: bundle)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }
}
