import Foundation
import FrostArchive
import FrostBundle
import FrostSystem
import IsapiPackage

/// Skipping a build when nothing it read has changed.
extension Builder {
    /// The inputs of the last build: the spec, the stub and every file it read.
    func fingerprint(files: [String]) -> String {
        var text = "\(spec)\n"
        // frost's own analysis and hooks are inputs too: a new frost rebuilds.
        let own = ["analyse.py", "trace.py", "hooks.json"].compactMap {
            Bundle.module.url(forResource: ($0 as NSString).deletingPathExtension, withExtension: ($0 as NSString).pathExtension)?.path
        }
        // So is frost itself (it writes generated entry modules, the manifest, the layout).
        let frost = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).map { [$0] } ?? []
        for path in [options.stubPath, spec.python] + frost + own + (spec.hooks.map { [$0] } ?? []) + files {
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            let size = attributes?[.size] as? Int ?? -1
            let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? -1
            text += "\(path)\t\(size)\t\(modified)\n"
        }
        return SHA256.hex(Array(text.utf8))
    }

    func writeStamp(_ path: String, analysis: Analysis, report: BuildReport) throws {
        var files = analysis.modules.map(\.file) + analysis.package_data.map(\.source)
        // Their directories too: a file added beside them (a new template) is a change.
        files += Set(analysis.package_data.map { ($0.source as NSString).deletingLastPathComponent }).sorted()
        files += spec.resources.map(\.source)
        if let console = spec.console { files.append(console) }
        if let requirements = spec.requirements { files.append(requirements) }
        let stamp = BuildStamp(fingerprint: fingerprint(files: files), files: files,
                               manifest: try FileSystem.sha256(ofFile: output + "/" + BundleManifest.fileName).0, report: report)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try JSONEncoder().encode(stamp).write(to: URL(fileURLWithPath: path))
    }

    /// When nothing the last build read has changed and the bundle is as it left it,
    /// the build is skipped.
    func upToDateReport(stampPath: String, started: Date) throws -> BuildReport? {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: stampPath)),
              let stamp = try? JSONDecoder().decode(BuildStamp.self, from: data),
              stamp.fingerprint == fingerprint(files: stamp.files),
              (try? FileSystem.sha256(ofFile: output + "/" + BundleManifest.fileName).0) == stamp.manifest,
              let manifest = try? BundleManifest.load(bundleDirectory: output),
              BundleVerifier.verifyArchives(bundleDirectory: output, manifest: manifest).isEmpty else { return nil }
        // Quick check of the other files: present with the recorded size.
        for (path, record) in manifest.files {
            let size = (try? FileManager.default.attributesOfItem(atPath: output + "/" + path)[.size] as? Int) ?? -1
            if size != record.size { return nil }
        }
        var report = stamp.report
        report.output = output
        report.upToDate = true
        report.seconds = Date().timeIntervalSince(started)
        return report
    }
}

/// What the last build read and wrote, to skip the next one when nothing changed.
struct BuildStamp: Codable {
    /// Over the sizes and times of `files`.
    let fingerprint: String
    let files: [String]
    /// bundle.json's SHA-256.
    let manifest: String
    let report: BuildReport
}
