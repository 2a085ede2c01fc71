import ArgumentParser
import FrostBundle

/// `frost verify`: a bundle against its manifest.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Re-hash a bundle against its manifest and list every difference.")

    @Argument(help: "A bundle directory (dist/NAME).") var bundle: String

    func run() throws {
        guard let manifest = try BundleManifest.load(bundleDirectory: bundle) else {
            throw CommandError(.badInput, subject: bundle, "\(bundle): no bundle.json (not a bundle built by frost build)")
        }
        let differences = BundleVerifier.verify(bundleDirectory: bundle, manifest: manifest)
        for difference in differences { print(difference) }
        if differences.isEmpty {
            print("ok: \(manifest.files.count) files and \(manifest.archives.values.reduce(0) { $0 + $1.count }) archive entries match bundle.json")
        } else {
            throw CommandError(.failure, subject: bundle,
                               "\(bundle): \(differences.count) difference\(differences.count == 1 ? "" : "s") from bundle.json")
        }
    }
}
