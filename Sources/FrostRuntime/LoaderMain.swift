import FrostBundle
import FrostPython
#if canImport(Glibc)
import Glibc
#endif

/// Writes straight to a file descriptor, unbuffered like Python's own stdio here, so
/// Swift's and Python's output stay in order.
func writeOut(_ text: String, to fd: Int32) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        bytes = bytes.dropFirst(n)
    }
}

func printLine(_ text: String) { writeOut(text + "\n", to: 1) }
func printError(_ text: String) { writeOut(text + "\n", to: 2) }

/// The command line of the generic executable in every bundle.
///
/// `_NAME` is the loader of module NAME; `NAME` (no underscore) is the console, which
/// runs NAME as `__main__` with the remaining arguments.
public enum LoaderMain {
    public static let usage = """
        usage: _NAME --check [--module NAME]
               NAME [ARGUMENTS...]        (the console: runs module NAME as __main__)

          --check          mount the archive, import the entry module, run its factories
                           and Version calls, print what it provides, call Terminate*, exit
          --module NAME    load module NAME instead of the one named by this executable
          --version        print the frost and Python versions
          --help           this text
        """

    /// Runs the command line and returns the process exit status: 0 success, 1 a
    /// failure while loading (printed as one line and a traceback), 2 a usage error.
    public static func run(_ arguments: [String]) -> Int32 {
        guard let executablePath = FileSystem.currentExecutablePath() else {
            printError("frost: cannot find this executable's path (/proc/self/exe)")
            return 1
        }
        let layout = BundleLayout(executablePath: executablePath)
        let label = layout.executableName
        let rest = Array(arguments.dropFirst())

        if layout.role == .console, BundleLayout.problemWithModuleName(layout.name) != nil {
            // The generic stub itself (frost-stub), not yet copied into a bundle.
            if rest.first == "--version" {
                printLine("frost loader for Python \(Python.linkedVersion)")
                return 0
            }
            printError("\(label): this is the generic frost loader; frost build copies it into a bundle as _NAME and NAME")
            return 2
        }
        if layout.role == .console {
            return runConsole(executablePath: executablePath, label: label, arguments: rest)
        }

        var check = false
        var module: String?
        var index = 0
        while index < rest.count {
            let argument = rest[index]
            switch argument {
            case "--check": check = true
            case "--help", "-h":
                printLine(usage)
                return 0
            case "--version":
                printLine("frost loader for Python \(Python.linkedVersion)")
                return 0
            case "--module":
                guard index + 1 < rest.count else { return usageError(label, "--module needs a module name") }
                module = rest[index + 1]
                index += 1
            default:
                if argument.hasPrefix("--module=") {
                    module = String(argument.dropFirst("--module=".count))
                } else {
                    return usageError(label, "unknown option '\(argument)'")
                }
            }
            index += 1
        }
        guard check else {
            return usageError(label, "serving HTTP is not available in this build yet; run with --check")
        }
        return runCheck(executablePath: executablePath, label: label, module: module)
    }

    static func runCheck(executablePath: String, label: String, module: String?) -> Int32 {
        do {
            let loader = try Loader(executablePath: executablePath, moduleOverride: module)
            printLine("bundle: \(loader.layout.directory) (loader \(label), module \(loader.moduleName))")
            printLine("archive: \(loader.archivePath) (\(loader.archive.entries.count) entries)")
            printLine("python: \(Python.linkedVersion), standard library from \(loader.standardLibrary.summary)")
            if let manifest = loader.manifest {
                printLine("manifest: archives match bundle.json (\(manifest.files.count) files recorded)")
            } else {
                printLine("manifest: none (a hand-assembled bundle: not verified)")
            }
            let entry = try loader.loadEntry()
            printLine("module: \(loader.moduleName) from \(entry.file)")
            if let info = entry.extensionInfo {
                printLine("extension: \(info.extensionDescription.isEmpty ? "(no description)" : info.extensionDescription)")
            }
            if let info = entry.filterInfo {
                printLine("filter: \(info.filterDescription.isEmpty ? "(no description)" : info.filterDescription); "
                          + "flags 0x\(String(info.flags, radix: 16)) (\(FilterFlags.describe(info.flags)))")
            }
            let terminated = try loader.terminate(entry)
            printLine("terminated: \(terminated.joined(separator: ", "))")
            guard loader.finalize() else {
                printError("\(label): error: Python could not flush its output at shutdown")
                return 1
            }
            printLine("check: ok")
            return 0
        } catch {
            return report(label, error)
        }
    }

    static func runConsole(executablePath: String, label: String, arguments: [String]) -> Int32 {
        do {
            let loader = try Loader(executablePath: executablePath, arguments: arguments)
            let status = try loader.runAsMain()
            return loader.finalize() ? status : (status == 0 ? 1 : status)
        } catch {
            return report(label, error)
        }
    }

    static func report(_ label: String, _ error: Error) -> Int32 {
        if let error = error as? LoaderError {
            printError("\(label): error: \(error.message)")
            if let traceback = error.traceback { writeOut(traceback, to: 2) }
            return error.stage == .usage ? 2 : 1
        }
        printError("\(label): error: \(error)")
        return 1
    }

    static func usageError(_ label: String, _ message: String) -> Int32 {
        printError("\(label): \(message)\n\(usage)")
        return 2
    }
}
