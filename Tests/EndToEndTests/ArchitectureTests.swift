import Foundation
import Testing

/// Documentation/ARCHITECTURE.md's module table is the map: it must say what Package.swift
/// and the sources do, so it cannot go stale.
@Suite struct ArchitectureTests {
    /// The package's own targets (not tests) and the package targets each depends on.
    static func declaredEdges() throws -> [String: Set<String>] {
        try dumpPackage().edges
    }

    /// Package.swift as SwiftPM reads it: each target's dependencies and directory.
    static func dumpPackage() throws -> (edges: [String: Set<String>], paths: [String: String]) {
        let swift = ["/opt/swift/usr/bin/swift", "/usr/bin/swift"].first { FileManager.default.isExecutableFile(atPath: $0) }
        // A scratch path of its own: the running `swift test` holds the lock on .build.
        let scratch = ScratchDirectory("dump-package")
        let dump = try runProcess(try #require(swift), ["package", "--package-path", Repository.root.path,
                                                        "--scratch-path", scratch.path("build"), "dump-package"], timeout: 120)
        #expect(dump.status == 0, "\(dump.stderr)")
        let package = try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any] ?? [:]
        let targets = (package["targets"] as? [[String: Any]] ?? []).filter { $0["type"] as? String != "test" }
        let names = Set(targets.compactMap { $0["name"] as? String })
        var edges: [String: Set<String>] = [:]
        var paths: [String: String] = [:]
        for target in targets {
            guard let name = target["name"] as? String else { continue }
            paths[name] = target["path"] as? String ?? "Sources/\(name)"
            let dependencies = (target["dependencies"] as? [[String: Any]] ?? []).compactMap { dependency in
                dependency.values.first.flatMap { ($0 as? [Any])?.first as? String }
            }
            edges[name] = Set(dependencies).intersection(names)
        }
        return (edges, paths)
    }

    /// The table's rows: module → its main file, and the package modules its "may import"
    /// column names.
    static func documentedRows(modules: Set<String>) throws -> [String: (mainFile: String, edges: Set<String>)] {
        let text = try String(contentsOf: Repository.root.appendingPathComponent("Documentation/ARCHITECTURE.md"), encoding: .utf8)
        var rows: [String: (String, Set<String>)] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 5 else { continue }
            let unquoted = { (cell: String) in cell.trimmingCharacters(in: CharacterSet(charactersIn: "`")) }
            let words = cells[4].components(separatedBy: CharacterSet(charactersIn: ", ()")).filter { !$0.isEmpty }
            rows[unquoted(cells[1])] = (unquoted(cells[2]), Set(words).intersection(modules))
        }
        return rows
    }

    static func documentedEdges(modules: Set<String>) throws -> [String: Set<String>] {
        try documentedRows(modules: modules).mapValues(\.edges)
    }

    /// Someone new opens a module's main file (named in the table) and reads its role first.
    @Test func everyModulesMainFileOpensWithItsRole() throws {
        let package = try Self.dumpPackage()
        let rows = try Self.documentedRows(modules: Set(package.edges.keys))
        for module in package.edges.keys.sorted() {
            guard let row = rows[module], let directory = package.paths[module] else {
                Issue.record("\(module) has no row in the table")
                continue
            }
            let file = Repository.root.appendingPathComponent(directory).appendingPathComponent(row.mainFile)
            let text = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
            let first = text.split(separator: "\n").first.map(String.init) ?? ""
            #expect(first.hasPrefix("// \(module): ") && first.hasSuffix("."),
                    "\(directory)/\(row.mainFile) should open with '// \(module): <its role>.', not '\(first)'")
        }
    }

    @Test func theModuleTableIsThePackagesGraph() throws {
        let declared = try Self.declaredEdges()
        let documented = try Self.documentedEdges(modules: Set(declared.keys))
        #expect(Set(documented.keys) == Set(declared.keys), "modules in the table and in Package.swift differ")
        for (module, dependencies) in declared.sorted(by: { $0.key < $1.key }) {
            #expect(documented[module] == dependencies,
                    "\(module): the table says \(documented[module].map { $0.sorted() } ?? []), Package.swift \(dependencies.sorted())")
        }
    }

    /// No source imports a package module its target does not declare (SwiftPM would let
    /// a transitive one through, and the map would lie).
    @Test func sourcesImportOnlyWhatTheirTargetDeclares() throws {
        let declared = try Self.declaredEdges()
        let sources = Repository.root.appendingPathComponent("Sources")
        for (module, dependencies) in declared {
            let directory = sources.appendingPathComponent(module)
            guard let files = FileManager.default.enumerator(atPath: directory.path) else { continue }
            for case let file as String in files where file.hasSuffix(".swift") {
                let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
                for line in text.split(separator: "\n") {
                    let words = line.split(separator: " ")
                    guard let index = words.firstIndex(of: "import"), index + 1 < words.count else { continue }
                    guard words[..<index].allSatisfy({ $0.hasPrefix("@") }) else { continue }
                    let imported = String(words[index + 1].split(separator: ".").first ?? "")
                    guard declared[imported] != nil else { continue }  // not a package module
                    #expect(dependencies.contains(imported), "\(module)/\(file) imports \(imported), which \(module) does not declare")
                }
            }
        }
    }
}
