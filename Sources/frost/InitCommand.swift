import ArgumentParser
import Foundation
import FrostFreeze

/// `frost init`: a starting spec for a script or a WSGI project.
struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init", abstract: "Write a starting spec for a script.")

    @Argument(help: "The entry script (.py), or a project directory holding a WSGI application.") var script: String
    @Option(name: .shortAndLong, help: "Where to write the spec (default: Bundles/NAME.toml, or NAME.toml; for a project directory, DIR/NAME.toml).")
    var output: String?

    func run() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: script, isDirectory: &isDirectory),
              isDirectory.boolValue || script.hasSuffix(".py") else {
            throw CommandError(.badInput, subject: script, "\(script): not an existing .py file or project directory")
        }
        let root = isDirectory.boolValue ? URL(fileURLWithPath: script).standardizedFileURL.path
            : URL(fileURLWithPath: script).standardizedFileURL.deletingLastPathComponent().path
        let found = isDirectory.boolValue ? WSGIFinder.find(inProject: root)
            : WSGIFinder.find(inScript: URL(fileURLWithPath: script).standardizedFileURL.path, root: root)
        if isDirectory.boolValue && found == nil {
            throw CommandError(.badInput, subject: script,
                               "\(script): found no WSGI application (Django's manage.py, or a module with app, application or create_app)")
        }
        let name: String
        if let found, let entry = WSGIEntry(found.wsgi) {
            name = entry.defaultName(root: root)
        } else {
            name = URL(fileURLWithPath: script).deletingPathExtension().lastPathComponent
        }
        let target = output ?? (isDirectory.boolValue ? root + "/\(name).toml"
            : FileManager.default.fileExists(atPath: "Bundles") ? "Bundles/\(name).toml" : "\(name).toml")
        guard !FileManager.default.fileExists(atPath: target) else {
            throw CommandError(.badInput, subject: target, "\(target) exists; not overwriting it")
        }
        let specDirectory = URL(fileURLWithPath: target).deletingLastPathComponent().standardizedFileURL.path
        var entryLines: String
        if let found {
            entryLines = "wsgi = \"\(found.wsgi)\"                  # found: \(found.why)\n"
            if specDirectory != root { entryLines += "root = \"\(relativePath(from: specDirectory, to: root))\"\n" }
            if let console = found.console { entryLines += "console = \"\(relativePath(from: specDirectory, to: console))\"\n" }
            if FileManager.default.fileExists(atPath: root + "/requirements.txt") {
                entryLines += "requirements = \"\(relativePath(from: specDirectory, to: root + "/requirements.txt"))\"\n"
            }
        } else {
            let scriptPath = URL(fileURLWithPath: script).standardizedFileURL.path
            entryLines = "script = \"\(relativePath(from: specDirectory, to: scriptPath))\"\n"
        }
        let text = """
            # frost build \(target)
            name = "\(name)"
            \(entryLines)# python = "/usr/bin/python3"          # the CPython (3.10 to 3.13, shared libpython) to freeze with
            # requirements = "requirements.txt"    # installed into a cached build venv
            # includes = []                         # modules imported in ways the analysis cannot see
            # excludes = []                         # modules never to bundle
            # packages = []                         # whole packages, with all submodules and data
            # filesystem = []                       # packages placed on the filesystem (read by path)
            # archive = []                          # packages kept in the archive
            # optimize = 0                          # bytecode optimisation: 0, 1 or 2
            # compress = true                       # deflate archive entries
            # listen = "127.0.0.1:8000"
            # workers = "auto"                      # one per core, or a number

            # [resources]                           # "source" = "path in the archive"
            # "static" = "static"

            """
        try text.write(toFile: target, atomically: true, encoding: .utf8)
        print("wrote \(target)")
    }

    func relativePath(from directory: String, to file: String) -> String {
        let base = directory.split(separator: "/"), target = file.split(separator: "/")
        var common = 0
        while common < base.count, common < target.count, base[common] == target[common] { common += 1 }
        let up = Array(repeating: "..", count: base.count - common)
        return (up + target[common...].map(String.init)).joined(separator: "/")
    }
}
