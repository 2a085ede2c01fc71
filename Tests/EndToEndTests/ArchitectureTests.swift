import Foundation
import Testing

/// Documentation/ARCHITECTURE.md's module table is the map: it must say what Package.swift
/// and the sources do, so it cannot go stale.
@Suite struct ArchitectureTests {
    /// The package's own targets (not tests) and the package targets each depends on.
    static func declaredEdges() throws -> [String: Set<String>] {
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
        for target in targets {
            guard let name = target["name"] as? String else { continue }
            let dependencies = (target["dependencies"] as? [[String: Any]] ?? []).compactMap { dependency in
                dependency.values.first.flatMap { ($0 as? [Any])?.first as? String }
            }
            edges[name] = Set(dependencies).intersection(names)
        }
        return edges
    }

    /// The table's rows: module → the package modules its "may import" column names.
    static func documentedEdges(modules: Set<String>) throws -> [String: Set<String>] {
        let text = try String(contentsOf: Repository.root.appendingPathComponent("Documentation/ARCHITECTURE.md"), encoding: .utf8)
        var edges: [String: Set<String>] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 4 else { continue }
            let module = cells[1].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            let words = cells[3].components(separatedBy: CharacterSet(charactersIn: ", ()")).filter { !$0.isEmpty }
            edges[module] = Set(words).intersection(modules)
        }
        return edges
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
