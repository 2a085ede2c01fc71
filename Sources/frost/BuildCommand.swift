import ArgumentParser
import Foundation
import FrostBundle
import FrostFreeze

/// `frost build`: a spec, project or script to `dist/NAME/`.
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
        if let report { try ImportReport.validate(report) }  // before the build, not after it
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
        let spec = try SpecLoader.load(input, overrides: overrides)
        let options = BuildOptions(distDirectory: dist, stubPath: stub ?? defaultStubPath())
        let builder = Builder(spec: spec, options: options, progress: .automatic(quiet: quiet || json))
        if quiet && !json { builder.onWarning = { _ in } }
        let report = try builder.build()
        if json {
            print(try report.jsonText(), terminator: "")
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
    }
}
