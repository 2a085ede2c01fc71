import ArgumentParser
import Foundation
import FrostArchive
import FrostBundle
import FrostFreeze

@main
struct Frost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "frost",
        abstract: "Freeze Python web extensions into self-contained Linux bundles.",
        version: "0.1.0",
        subcommands: [BuildCommand.self, RunCommand.self, InitCommand.self, InspectCommand.self, VerifyCommand.self, ImageCommand.self,
                      ArchiveCommand.self]
    )
}

struct ArchiveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "archive",
        abstract: "Write and inspect frost archives (deterministic zip files).",
        subcommands: [Create.self, List.self]
    )

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the files below a directory into an archive, deterministically.",
            discussion: """
                Entries are sorted and carry fixed timestamps and modes, so the same files \
                always give the same bytes. Symbolic links and special files are refused.
                """)

        @Argument(help: "The directory whose contents become the archive's root.")
        var source: String

        @Option(name: .shortAndLong, help: "The archive to write (replaced atomically).")
        var output: String?

        @Option(help: "Append the archive to this executable instead of writing a file.")
        var appendTo: String?

        @Flag(help: "Store entries without compression.")
        var store = false

        func validate() throws {
            if (output == nil) == (appendTo == nil) {
                throw ValidationError("give exactly one of --output and --append-to")
            }
        }

        func run() throws {
            var writer = ZipWriter(defaultCompression: store ? .stored : .deflate)
            let files = try DirectoryWalk.regularFiles(below: source)
            for file in files {
                let data = try Data(contentsOf: URL(fileURLWithPath: source + "/" + file))
                try writer.add(file, contents: [UInt8](data))
            }
            if let output {
                try writer.write(to: output)
                print("wrote \(output): \(files.count) entries")
            } else if let appendTo {
                try writer.append(to: appendTo)
                print("appended \(files.count) entries to \(appendTo)")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check an archive and list its entries.")

        @Argument(help: "An archive, or an executable with an archive appended.")
        var archive: String

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        func run() throws {
            let mounted = try MountedArchive(path: archive)
            let entries = mounted.paths.map { mounted.entries[$0]! }
            if json {
                let rows = entries.map {
                    ["path": $0.path, "size": $0.uncompressedSize, "compressed": $0.compressedSize,
                     "method": $0.compression == .stored ? "stored" : "deflate"] as [String: Any]
                }
                let object: [String: Any] = ["archive": archive, "offset": mounted.baseOffset, "entries": rows]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            for entry in entries {
                let method = entry.compression == .stored ? "stored " : "deflate"
                print("\(pad(entry.uncompressedSize, 10)) \(pad(entry.compressedSize, 10)) \(method) \(entry.path)")
            }
            let total = entries.reduce(0) { $0 + $1.uncompressedSize }
            print("\(entries.count) entries, \(total) bytes uncompressed"
                  + (mounted.baseOffset > 0 ? ", archive starts at byte \(mounted.baseOffset)" : ""))
        }

        func pad(_ n: Int, _ width: Int) -> String {
            let text = String(n)
            return String(repeating: " ", count: max(0, width - text.count)) + text
        }
    }
}

/// Lists regular files below a directory as relative `/` paths (FrostBundle's walk),
/// refusing anything else.
enum DirectoryWalk {
    struct Refused: Error, CustomStringConvertible {
        let path: String
        let reason: String
        var description: String { "\(path): \(reason)" }
    }

    static func regularFiles(below root: String) throws -> [String] {
        guard FileSystem.isDirectory(root) else { throw Refused(path: root, reason: "not a directory") }
        return try FileSystem.listFiles(below: root).map { file in
            guard file.isRegular else {
                let path = root + "/" + file.path
                let isLink = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) != nil
                throw Refused(path: path, reason: isLink ? "symbolic links are not archived; copy the file instead"
                                                         : "not a regular file")
            }
            return file.path
        }
    }
}

/// Exit codes: 0 success, 1 a build or verification failure, 2 a bad spec or usage.
enum ExitStatus {
    static let failure: Int32 = 1
    static let badInput: Int32 = 2
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// The frost-stub next to this executable (as `swift build` and installs lay them out).
func defaultStubPath() -> String {
    let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    let beside = executable.deletingLastPathComponent().appendingPathComponent("frost-stub").path
    if FileManager.default.fileExists(atPath: beside) { return beside }
    if let self = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        return URL(fileURLWithPath: self).deletingLastPathComponent().appendingPathComponent("frost-stub").path
    }
    return beside
}

struct BuildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Freeze a script and everything it imports into dist/NAME/.",
        discussion: """
            INPUT is a spec (Bundles/NAME.toml), a pyproject.toml with [tool.frost], or a \
            script (.py). Flags override the file: scalar flags replace its value, list flags \
            (--include, --exclude, --package, --resource) add to it.
            """)

    @Argument(help: "A spec (.toml), a pyproject.toml or a script (.py).")
    var input: String

    @Option(help: "Bundle and entry module name.") var name: String?
    @Option(help: "The interpreter to freeze with (default /usr/bin/python3).") var python: String?
    @Option(help: "A requirements file to install into the build venv.") var requirements: String?
    @Option(name: .customLong("include"), help: "A module to include (repeatable).") var includes: [String] = []
    @Option(name: .customLong("exclude"), help: "A module to exclude (repeatable).") var excludes: [String] = []
    @Option(name: .customLong("package"), help: "A whole package to include (repeatable).") var packages: [String] = []
    @Option(name: .customLong("resource"), help: "SOURCE=ARCHIVE_PATH (repeatable).") var resources: [String] = []
    @Option(help: "Bytecode optimisation level: 0, 1 or 2.") var optimize: Int?
    @Flag(inversion: .prefixedNo, help: "Deflate archive entries.") var compress: Bool?
    @Option(help: "Default listen address (HOST:PORT or unix:PATH).") var listen: String?
    @Option(help: "Default number of workers, or auto.") var workers: String?
    @Flag(inversion: .prefixedNo, help: "Import the entry module at build time to see what it really imports.") var trace: Bool?
    @Option(help: "A hooks file of your own (JSON, the format of the README's 'Hooks').") var hooks: String?
    @Option(help: "Serve this WSGI application (package.module:callable); the spec is then a project directory or file.") var wsgi: String?
    @Option(help: "A script the console runs instead of the entry module (such as manage.py).") var console: String?
    @Option(help: "Python threads serving requests.") var threads: Int?
    @Option(name: .customLong("filesystem"), help: "A package to place on the filesystem inside the bundle (repeatable).") var filesystem: [String] = []
    @Option(name: .customLong("archive"), help: "A package to keep in the archive (repeatable).") var archive: [String] = []
    @Option(help: "Where NAME/ is written.") var dist: String = "dist"
    @Option(help: "The frost-stub executable to use as the loader.") var stub: String?
    @Flag(help: "Print nothing but errors.") var quiet = false
    @Flag(help: "Print the build report as JSON.") var json = false
    @Option(help: "Also write the bundle as an OCI image (an oci-archive tarball) to this file.") var image: String?
    @Option(help: "Write what is in the bundle and why (every module and library, its size, the import that brought it) to FILE.html or FILE.json.")
    var report: String?

    func run() throws {
        if let report {
            do { try ImportReport.validate(report) } catch {
                printError("frost: \(error)")
                throw ExitCode(ExitStatus.badInput)
            }
        }
        var overrides = SpecOverrides()
        overrides.name = name
        overrides.python = python
        overrides.requirements = requirements
        overrides.includes = includes
        overrides.excludes = excludes
        overrides.packages = packages
        overrides.resources = resources
        overrides.optimize = optimize
        overrides.compress = compress
        overrides.trace = trace
        overrides.hooks = hooks
        overrides.wsgi = wsgi
        overrides.console = console
        overrides.threads = threads
        overrides.filesystem = filesystem
        overrides.archive = archive
        overrides.listen = listen
        overrides.workers = workers
        let spec: BuildSpec
        do {
            spec = try SpecLoader.load(input, overrides: overrides)
        } catch let error as SpecError {
            printError("frost: \(error)")
            throw ExitCode(ExitStatus.badInput)
        }
        let options = BuildOptions(distDirectory: dist, stubPath: stub ?? defaultStubPath())
        let builder = Builder(spec: spec, options: options, progress: .automatic(quiet: quiet || json))
        if quiet && !json { builder.onWarning = { _ in } }
        do {
            let report = try builder.build()
            if json {
                print(report.json.serialized(), terminator: "")
            } else if !quiet {
                print(report.summary)
            }
            if let image {
                let written = try ImageCommand.write(bundle: report.output, to: image, tag: nil, version: nil)
                if !quiet && !json { print(written) }
            }
            if let path = self.report {
                try ImportReport.write(bundle: report.output, to: path)
                if !quiet && !json { print("report: \(path)") }
            }
        } catch {
            // Whatever failed (the build, an ELF or archive read, a subprocess, the image,
            // the report) reaches the user as one `frost:` line, with exit status 1.
            printError("frost: \(error)")
            throw ExitCode(ExitStatus.failure)
        }
    }
}

struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Write a bundle as a reproducible OCI image (oci-archive), without a container engine.",
        discussion: """
            The image has a base layer with glibc's own files (this machine's libc6 package) and a \
            non-root user, and a layer with the bundle at /app/NAME/. Its entry point is the loader \
            with --listen 0.0.0.0:8000 --workers auto --health-path /healthz. File times and the \
            image's creation time come from SOURCE_DATE_EPOCH (else the epoch), so the same bundle \
            gives the same digest. Load it with `skopeo copy oci-archive:FILE docker-daemon:NAME:TAG`, \
            `podman load -i FILE` or `ctr import`.
            """)

    @Argument(help: "The bundle directory (dist/NAME).") var bundle: String
    @Option(name: .shortAndLong, help: "The oci-archive to write (default NAME.oci.tar).") var output: String?
    @Option(help: "The reference recorded in the image index (default NAME:VERSION).") var tag: String?
    @Option(help: "org.opencontainers.image.version (default: from the bundle's manifest digest).") var version: String?

    func run() throws {
        let name = URL(fileURLWithPath: bundle).standardizedFileURL.lastPathComponent
        do {
            print(try ImageCommand.write(bundle: bundle, to: output ?? "\(name).oci.tar", tag: tag, version: version))
        } catch let error as OCIImage.ImageError {
            printError("frost: \(error)")
            throw ExitCode(ExitStatus.failure)
        }
    }

    /// Writes the image and returns the lines to print.
    static func write(bundle: String, to output: String, tag: String?, version: String?) throws -> String {
        var options = OCIImage.Options()
        options.tag = tag
        options.version = version
        if let epoch = ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"].flatMap(Int.init) { options.sourceTime = epoch }
        let report = try OCIImage(bundle: bundle, options: options).write(to: output)
        var lines = ["image: \(output) (\(report.bytes) bytes)", "  manifest \(report.manifestDigest)"]
        for layer in report.layers { lines.append("  layer \(layer.digest) \(layer.size) bytes: \(layer.name)") }
        return lines.joined(separator: "\n")
    }
}

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
            printError("frost: \(script): not an existing .py file or project directory")
            throw ExitCode(ExitStatus.badInput)
        }
        let root = isDirectory.boolValue ? URL(fileURLWithPath: script).standardizedFileURL.path
            : URL(fileURLWithPath: script).standardizedFileURL.deletingLastPathComponent().path
        let found = isDirectory.boolValue ? WSGIFinder.find(inProject: root)
            : WSGIFinder.find(inScript: URL(fileURLWithPath: script).standardizedFileURL.path, root: root)
        if isDirectory.boolValue && found == nil {
            printError("frost: \(script): found no WSGI application (Django's manage.py, or a module with app, application or create_app)")
            throw ExitCode(ExitStatus.badInput)
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
            printError("frost: \(target) exists; not overwriting it")
            throw ExitCode(ExitStatus.badInput)
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
            # workers = 1                           # or "auto"

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

/// Finds a WSGI application the way a user would point at one: Django's manage.py and
/// its settings package's wsgi.py, or a module with a top-level `application`, `app` or
/// `create_app` (Flask's application factory).
enum WSGIFinder {
    struct Found {
        let wsgi: String
        let console: String?
        let why: String
    }

    static func find(inProject root: String) -> Found? {
        let fm = FileManager.default
        if let manage = try? String(contentsOfFile: root + "/manage.py", encoding: .utf8),
           let settings = settingsModule(in: manage) {
            let package = String(settings.split(separator: ".").first ?? "")
            if fm.fileExists(atPath: root + "/" + package + "/wsgi.py") {
                return Found(wsgi: package + ".wsgi:application", console: root + "/manage.py",
                             why: "Django's manage.py (\(settings))")
            }
        }
        var candidates: [(module: String, path: String)] = []
        for name in ((try? fm.contentsOfDirectory(atPath: root)) ?? []).sorted() {
            let path = root + "/" + name
            if name.hasSuffix(".py"), name != "setup.py", name != "manage.py" {
                candidates.append((String(name.dropLast(3)), path))
            } else if fm.fileExists(atPath: path + "/__init__.py") {
                for inner in ["__init__", "app", "wsgi", "main"] where fm.fileExists(atPath: "\(path)/\(inner).py") {
                    candidates.append((inner == "__init__" ? name : "\(name).\(inner)", "\(path)/\(inner).py"))
                }
            }
        }
        for candidate in candidates {
            if let found = find(inScript: candidate.path, module: candidate.module) { return found }
        }
        return nil
    }

    /// A script that defines a WSGI callable (and no ISAPI factory of its own).
    static func find(inScript path: String, root: String) -> Found? {
        find(inScript: path, module: URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent)
    }

    private static func find(inScript path: String, module: String) -> Found? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8), !text.contains("__ExtensionFactory__") else {
            return nil
        }
        let lines = text.split(separator: "\n").map(String.init)
        for (name, suffix) in [("application", ""), ("app", ""), ("create_app", "()")] {
            let defined = lines.contains { line in
                line.hasPrefix("\(name) =") || line.hasPrefix("\(name)=") || line.hasPrefix("def \(name)(")
                    || line.hasPrefix("\(name): ")
            }
            if defined { return Found(wsgi: "\(module):\(name)\(suffix)", console: nil, why: "\(name) in \(path)") }
        }
        return nil
    }

    /// 'mysite.settings' from `os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')`.
    static func settingsModule(in manage: String) -> String? {
        guard let range = manage.range(of: "DJANGO_SETTINGS_MODULE") else { return nil }
        let rest = manage[range.upperBound...].drop { $0 != "," }.dropFirst().drop { $0 == " " }
        guard let quote = rest.first, quote == "'" || quote == "\"" else { return nil }
        let value = rest.dropFirst().prefix { $0 != quote }
        return value.isEmpty ? nil : String(value)
    }
}

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Show a bundle's manifest, entries, sizes and largest modules.")

    @Argument(help: "A bundle directory (dist/NAME) or an archive.") var target: String
    @Flag(help: "Print JSON.") var json = false
    @Option(help: "How many of the largest entries to list.") var top = 10
    @Option(help: "Explain why a module or shared library is in the bundle: the chain of imports from the entry module.")
    var why: String?

    func run() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory) else {
            printError("frost: \(target): no such file or directory")
            throw ExitCode(ExitStatus.badInput)
        }
        if let why {
            do {
                let record = try ImportRecord.load(bundle: target)
                let lines = record.why(why)
                lines.forEach { print($0) }
                if lines.first?.hasSuffix("is not in the bundle") == true { throw ExitCode(ExitStatus.failure) }
            } catch let error as ImportRecord.ReadError {
                printError("frost: \(error)")
                throw ExitCode(ExitStatus.badInput)
            }
            return
        }
        var object: [String: JSON] = [:]
        var archives: [String] = []
        if isDirectory.boolValue {
            guard let manifest = try BundleManifest.load(bundleDirectory: target) else {
                printError("frost: \(target): no bundle.json (not a bundle built by frost build)")
                throw ExitCode(ExitStatus.badInput)
            }
            object["name"] = .string(manifest.name)
            object["entry"] = .string(manifest.entry)
            object["python"] = .object(["version": .string(manifest.pythonVersion), "magic": .string(manifest.bytecodeMagic),
                                        "library": .string(manifest.pythonLibraryName),
                                        "build": .string(manifest.pythonBuild ?? "unrecorded")])
            object["options"] = .object(manifest.options)
            object["files"] = .object(manifest.files.mapValues { .number(Double($0.size)) })
            object["total_bytes"] = .number(Double(manifest.files.values.reduce(0) { $0 + $1.size }))
            archives = manifest.archives.keys.sorted().map { target + "/" + $0 }
        } else {
            archives = [target]
        }
        var archiveReports: [String: JSON] = [:]
        for path in archives {
            let mounted = try MountedArchive(path: path)
            let entries = mounted.entries.values.filter { !$0.isDirectory }
            let largest = entries.sorted { ($0.uncompressedSize, $1.path) > ($1.uncompressedSize, $0.path) }.prefix(top)
            archiveReports[URL(fileURLWithPath: path).lastPathComponent] = .object([
                "entries": .number(Double(entries.count)),
                "uncompressed_bytes": .number(Double(entries.reduce(0) { $0 + $1.uncompressedSize })),
                "compressed_bytes": .number(Double(entries.reduce(0) { $0 + $1.compressedSize })),
                "largest": .array(largest.map { .object(["path": .string($0.path), "bytes": .number(Double($0.uncompressedSize))]) }),
            ])
        }
        object["archives"] = .object(archiveReports)
        if json {
            print(JSON.object(object).serialized(), terminator: "")
            return
        }
        if let name = object["name"]?.string {
            print("bundle: \(name) (entry module \(object["entry"]?.string ?? name))")
            let python = object["python"]
            print("python: \(python?["version"]?.string ?? "?") (bytecode magic \(python?["magic"]?.string ?? "?"), "
                  + "lib/\(python?["library"]?.string ?? "?"))")
            if let build = python?["build"]?.string { print("python build: \(build.split(separator: "\n").joined(separator: " "))") }
            let options = (object["options"]?.object ?? [:]).sorted { $0.key < $1.key }
                .map { "\($0.key)=\(compact($0.value))" }.joined(separator: " ")
            print("options: \(options)")
            let files = object["files"]?.object ?? [:]
            print("files: \(files.count), \(object["total_bytes"]?.int ?? 0) bytes")
            for (path, size) in files.sorted(by: { $0.key < $1.key }) where !path.hasPrefix("lib/lib-dynload/") {
                print(String(format: "  %10d  %@", size.int ?? 0, path as NSString))
            }
            let dynload = files.filter { $0.key.hasPrefix("lib/lib-dynload/") }
            if !dynload.isEmpty {
                print(String(format: "  %10d  lib/lib-dynload/ (%d modules)", dynload.values.reduce(0) { $0 + ($1.int ?? 0) }, dynload.count))
            }
        }
        for (name, report) in archiveReports.sorted(by: { $0.key < $1.key }) {
            print("archive \(name): \(report["entries"]?.int ?? 0) entries, \(report["uncompressed_bytes"]?.int ?? 0) bytes "
                  + "(\(report["compressed_bytes"]?.int ?? 0) compressed); largest:")
            for item in report["largest"]?.array ?? [] {
                print(String(format: "  %10d  %@", item["bytes"]?.int ?? 0, (item["path"]?.string ?? "") as NSString))
            }
        }
    }

    func compact(_ value: JSON) -> String {
        switch value {
        case .string(let s): return s
        case .array(let items): return "[" + items.map(compact).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { "\($0):\(compact(o[$0]!))" }.joined(separator: ",") + "}"
        default: return value.serialized().trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }
}

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Re-hash a bundle against its manifest and list every difference.")

    @Argument(help: "A bundle directory (dist/NAME).") var bundle: String

    func run() throws {
        let manifest: BundleManifest
        do {
            guard let loaded = try BundleManifest.load(bundleDirectory: bundle) else {
                printError("frost: \(bundle): no bundle.json")
                throw ExitCode(ExitStatus.badInput)
            }
            manifest = loaded
        } catch let error as ManifestError {
            printError("frost: \(error)")
            throw ExitCode(ExitStatus.failure)
        }
        let differences = BundleVerifier.verify(bundleDirectory: bundle, manifest: manifest)
        for difference in differences { print(difference) }
        if differences.isEmpty {
            print("ok: \(manifest.files.count) files and \(manifest.archives.values.reduce(0) { $0 + $1.count }) archive entries match bundle.json")
        } else {
            printError("frost: \(differences.count) difference\(differences.count == 1 ? "" : "s") from bundle.json")
            throw ExitCode(ExitStatus.failure)
        }
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Build a spec if needed, then serve it in the foreground.",
        discussion: """
            `frost run Bundles/NAME.toml` builds (or finds up to date) dist/NAME and runs its \
            loader; `frost run dist/NAME` runs an existing bundle. Arguments after -- go to the \
            loader (--listen, --threads, --site, ...).
            """)

    @Argument(help: "A spec (.toml), a script (.py) or a bundle directory.") var target: String
    @Option(help: "Where NAME/ is written when building.") var dist: String = "dist"
    @Option(help: "The frost-stub executable to use as the loader.") var stub: String?
    @Argument(parsing: .postTerminator, help: "Arguments for the loader.") var loaderArguments: [String] = []

    func run() throws {
        var isDirectory: ObjCBool = false
        var bundle = target
        if !(FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory) && isDirectory.boolValue) {
            let spec: BuildSpec
            do { spec = try SpecLoader.load(target) } catch let error as SpecError {
                printError("frost: \(error)")
                throw ExitCode(ExitStatus.badInput)
            }
            let builder = Builder(spec: spec, options: BuildOptions(distDirectory: dist, stubPath: stub ?? defaultStubPath()),
                                  progress: .automatic(quiet: false))
            do {
                let report = try builder.build()
                printError(report.upToDate ? "frost: \(report.output) is up to date" : "frost: built \(report.output)")
                bundle = report.output
            } catch let error as BuildError {
                printError("frost: \(error)")
                throw ExitCode(ExitStatus.failure)
            }
        }
        guard let manifest = try? BundleManifest.load(bundleDirectory: bundle) else {
            printError("frost: \(bundle) is not a bundle (no bundle.json)")
            throw ExitCode(ExitStatus.badInput)
        }
        let loader = URL(fileURLWithPath: bundle).appendingPathComponent("_" + manifest.name).path
        // Replace this process: signals (Ctrl-C, SIGTERM) reach the loader directly.
        var argv: [UnsafeMutablePointer<CChar>?] = ([loader] + loaderArguments).map { strdup($0) } + [nil]
        execv(loader, &argv)
        printError("frost: cannot run \(loader): \(String(cString: strerror(errno)))")
        throw ExitCode(ExitStatus.failure)
    }
}
