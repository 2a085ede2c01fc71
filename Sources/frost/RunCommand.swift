import ArgumentParser
import Foundation
import FrostBundle
import FrostFreeze
import FrostSystem

/// `frost run`: build if needed, then serve in the foreground.
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
            let spec = try SpecLoader.load(target)
            let builder = Builder(spec: spec, options: BuildOptions(distDirectory: dist, stubPath: stub ?? defaultStubPath()),
                                  progress: .automatic(quiet: false))
            let report = try builder.build()
            printError(report.upToDate ? "frost: \(report.output) is up to date" : "frost: built \(report.output)")
            bundle = report.output
        }
        guard let manifest = try BundleManifest.load(bundleDirectory: bundle) else {
            throw CommandError(.badInput, subject: bundle, "\(bundle) is not a bundle (no bundle.json)")
        }
        let loader = URL(fileURLWithPath: bundle).appendingPathComponent("_" + manifest.name).path
        // Replace this process: signals (Ctrl-C, SIGTERM) reach the loader directly.
        var argv: [UnsafeMutablePointer<CChar>?] = ([loader] + loaderArguments).map { strdup($0) } + [nil]
        execv(loader, &argv)
        throw CommandError(.failure, subject: loader, "cannot run \(loader): \(errnoDescription())")
    }
}
