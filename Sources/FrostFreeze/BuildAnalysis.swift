import Foundation
import FrostArchive
import FrostBundle
import FrostSystem
import IsapiPackage

/// Running the analysis in the target interpreter, and what it says.
extension Builder {
    func analyse(python: String) throws -> Analysis {
        // A bad hooks file reaches the user as Hooks.FormatError, naming the file and field.
        var hooks = try Hooks.builtIn()
        if let own = spec.hooks { hooks = hooks.adding(try Hooks.load(own)) }
        guard let tracer = Bundle.module.url(forResource: "trace", withExtension: "py") else {
            throw BuildError(.io, subject: "trace.py", "trace.py is missing from frost's resources")
        }
        let named = Set(spec.includes + spec.packages)
        let request = AnalysisRequest(
            name: spec.name, script: try entryScript(), app_root: spec.appRoot, console: spec.console,
            console_module: BuildSpec.consoleModule, filesystem: spec.filesystem, archive: spec.archive,
            isapi_parent: IsapiPackage.directory.deletingLastPathComponent().path,
            optimize: spec.optimize, cache: options.cacheDirectory + "/bytecode",
            includes: spec.includes,
            excludes: spec.excludes + Builder.defaultExcludes.filter { !spec.includes.contains($0) && !spec.packages.contains($0) },
            packages: spec.packages,
            provided_modules: Builder.providedModules,
            runtime_modules: Builder.runtimeModules.filter { !spec.excludes.contains($0) },
            whole_packages: Builder.wholePackages,
            hooks: hooks.packages,
            default_excludes: Builder.toolingExcludes.filter { !named.contains($0) },
            trace: spec.trace, trace_script: tracer.path, trace_timeout: Builder.traceTimeout)
        let script = Bundle.module.url(forResource: "analyse", withExtension: "py")!.path
        let result = try PythonRunner.run(python, ["-I", script],
                                          input: try JSONEncoder().encode(request))
        guard result.status == 0 else {
            let lastLine = result.stderr.split(separator: "\n").last.map(String.init) ?? ""
            if lastLine.contains("SyntaxError") || result.stderr.contains("SyntaxError") {
                throw BuildError(.analysis, subject: spec.script, "the analysis could not compile a module:\n\(result.stderr)")
            }
            throw BuildError(.analysis, subject: spec.script, "the analysis failed with \(python):\n\(result.stderr)")
        }
        do {
            return try JSONDecoder().decode(Analysis.self, from: result.stdout)
        } catch {
            throw BuildError(.analysis, subject: python, "the analysis wrote an unreadable report: \(error)")
        }
    }

    /// The entry script: the spec's, or for `wsgi` one generated into the cache (keyed by
    /// its content, so builds stay reproducible).
    func entryScript() throws -> String {
        guard let wsgi = spec.wsgi else { return spec.script }
        guard let app = WSGIEntry(wsgi) else { throw BuildError(.spec, subject: "wsgi", "wsgi '\(wsgi)' is not package.module:callable") }
        let source = Builder.wsgiEntrySource(app, text: wsgi, name: spec.name, threads: spec.threads)
        let directory = options.cacheDirectory + "/entries/" + String(SHA256.hex(Array(source.utf8)).prefix(24))
        let path = directory + "/" + spec.name + ".py"
        if !FileManager.default.fileExists(atPath: path) {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Data(source.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        }
        return path
    }

    /// The extension module frost writes for a WSGI application: it imports the
    /// application when the loader starts (so an import error stops the loader with its
    /// traceback) and runs it in HttpExtensionProc, on the host's own pool of `threads`
    /// Python threads (isapi.wsgi's ISAPIThreadPoolHandler would add a second pool and a
    /// hand-off between them to every request). The request goes straight to the control
    /// block's ServeWSGI, isapi.wsgi's native path (ISAPISimpleHandler.handle's first
    /// step), without that method's frame.
    static func wsgiEntrySource(_ app: WSGIEntry, text: String, name: String, threads: Int) -> String {
        let call = app.isFactory ? "()" : ""
        return """
            \"\"\"The entry module frost generated for wsgi = "\(text)".\"\"\"
            import sys

            from isapi import isapicon
            from isapi.wsgi import FileWrapper, ISAPISimpleHandler, constant_environ

            import \(app.module) as _module

            application = _module.\(app.attribute)\(call)
            _ENVIRON = constant_environ(multithread=True)


            class WSGIExtension(ISAPISimpleHandler):
                "\(name): the WSGI application \(text)"

                def HttpExtensionProc(self, ecb):
                    # Called by the host on its \(threads) Python threads, concurrently. No
                    # input stream given: the control block's own is wsgi.input.
                    ecb.ServeWSGI(application, _ENVIRON, None, sys.stderr, FileWrapper)
                    return isapicon.HSE_STATUS_SUCCESS


            def __ExtensionFactory__():
                return WSGIExtension(application)

            """
    }

    /// Warnings about the application's own code one by one; those inside third-party
    /// packages one line per missing module (or per package for computed imports).
    static func presentWarnings(_ warnings: [Analysis.Warning]) -> [String] {
        var lines = warnings.filter { $0.category != .site }.map(\.description)
        let site = warnings.filter { $0.category == .site }
        for (module, group) in Dictionary(grouping: site.filter { $0.kind == .missing }, by: { $0.module ?? "?" })
            .sorted(by: { $0.key < $1.key }) {
            let first = group[0]
            let location = (first.file.map(shortSitePath) ?? "?") + (first.line.map { ":\($0)" } ?? "")
            let more = group.count > 1 ? " and \(group.count - 1) more place\(group.count > 2 ? "s" : "")" : ""
            lines.append("warning: module \(module) not found, imported in third-party code at \(location)\(more)")
        }
        let dynamic = site.filter { $0.kind == .dynamic }
        for (package, group) in Dictionary(grouping: dynamic, by: { ($0.module ?? "?").split(separator: ".").first.map(String.init) ?? "?" })
            .sorted(by: { $0.key < $1.key }) {
            let first = group[0]
            lines.append("warning: \(group.count) call\(group.count == 1 ? "" : "s") with computed module names in \(package) "
                         + "(first at \(first.file.map(shortSitePath) ?? "?"):\(first.line ?? 0)); add what they load to includes if it is missing")
        }
        return lines
    }

    /// One line for the imports third-party code makes only on some paths and that are not
    /// installed: they break nothing the app's start used (the traced import saw that).
    static func optionalNote(_ optional: [Analysis.Warning]) -> String? {
        let missing = Set(optional.filter { $0.kind == .missing }.compactMap(\.module)).sorted()
        let computed = optional.filter { $0.kind == .dynamic }.count
        guard !missing.isEmpty || computed > 0 else { return nil }
        var parts: [String] = []
        if !missing.isEmpty {
            let shown = missing.prefix(6).joined(separator: ", ") + (missing.count > 6 ? ", …" : "")
            parts.append("\(missing.count) module\(missing.count == 1 ? "" : "s") that third-party code imports only on some code paths \(missing.count == 1 ? "is" : "are") not installed (\(shown))")
        }
        if computed > 0 { parts.append("\(computed) computed import\(computed == 1 ? "" : "s") in third-party code") }
        return "note: " + parts.joined(separator: "; ") + ". The app's start did not need them (traced); if a later "
            + "call does, install the module or add it to includes (`--json` lists them under 'optional')"
    }

    static func shortSitePath(_ path: String) -> String {
        for marker in ["/site-packages/", "/dist-packages/"] {
            if let range = path.range(of: marker) { return String(path[range.upperBound...]) }
        }
        return path
    }
}

/// What `analyse.py` is asked to do (its stdin), in its own key names.
struct AnalysisRequest: Encodable {
    let name: String
    let script: String
    let app_root: String
    let console: String?
    let console_module: String
    let filesystem: [String]
    let archive: [String]
    let isapi_parent: String
    let optimize: Int
    let cache: String
    let includes: [String]
    let excludes: [String]
    let packages: [String]
    let provided_modules: [String]
    let runtime_modules: [String]
    let whole_packages: [String]
    let hooks: [String: Hooks.Package]
    let default_excludes: [String]
    let trace: Bool
    let trace_script: String
    let trace_timeout: Int
}
