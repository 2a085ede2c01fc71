import ArgumentParser
import Foundation
import FrostFreeze

/// `frost image`: a bundle as an OCI image, without a container engine.
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
        print(try ImageCommand.write(bundle: bundle, to: output ?? "\(name).oci.tar", tag: tag, version: version))
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
