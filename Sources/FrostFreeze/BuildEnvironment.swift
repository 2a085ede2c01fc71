import Foundation
import FrostArchive
import FrostBundle
import FrostSystem
import IsapiPackage

/// The interpreter and the loader a build uses: checked first, then the build venv.
extension Builder {
    func checkLoader() throws {
        guard FileManager.default.isExecutableFile(atPath: options.stubPath) else {
            throw BuildError(.loader, subject: options.stubPath, "no loader at \(options.stubPath): build frost-stub (swift build) or pass --stub")
        }
    }

    /// The spec's interpreter must be a CPython the loader runs: 3.10 to 3.13, with the
    /// GIL, built with a shared libpython (the bundle carries it).
    func checkInterpreter() throws {
        let probe = """
            import sys, sysconfig
            print(sys.implementation.name, *sys.version_info[:3], int(bool(sysconfig.get_config_var('Py_GIL_DISABLED'))),
                  int(bool(sysconfig.get_config_var('Py_ENABLE_SHARED'))))
            """
        let result: (status: Int32, stdout: Data, stderr: String)
        do {
            result = try PythonRunner.run(spec.python, ["-I", "-c", probe])
        } catch {
            throw BuildError(.interpreter, subject: "python = \(spec.python)", "python = \(spec.python): cannot run it (\(error)); name an installed CPython 3.10 to 3.13")
        }
        let fields = String(decoding: result.stdout, as: UTF8.self).split(separator: " ").map {
            $0.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard result.status == 0, fields.count == 6, let minor = Int(fields[2]) else {
            throw BuildError(.interpreter, subject: "python = \(spec.python)", "python = \(spec.python) does not run as a Python 3 interpreter: \(result.stderr)")
        }
        let version = fields[1...3].joined(separator: ".")
        let supported = BundleLayout.supportedPythonMinorVersions
        let range = "CPython 3.\(supported.lowerBound) to 3.\(supported.upperBound)"
        guard fields[0] == "cpython", fields[1] == "3", supported.contains(minor) else {
            throw BuildError(.interpreter, subject: "python = \(spec.python)", "python = \(spec.python) is \(fields[0]) \(version); frost freezes with \(range)")
        }
        guard fields[4] == "0" else {
            throw BuildError(.interpreter, subject: "python = \(spec.python)", "python = \(spec.python) is a free-threaded build of Python \(version) (3.\(minor)t), "
                             + "which frost does not support yet; use the default build of \(range)")
        }
        guard fields[5] == "1" else {
            throw BuildError(.interpreter, subject: "python = \(spec.python)", "python = \(spec.python) (Python \(version)) has no shared libpython (built without "
                             + "--enable-shared); the loader loads one: use a build with it (pyenv: "
                             + "PYTHON_CONFIGURE_OPTS=--enable-shared, Debian's python3)")
        }
    }

    /// The interpreter to analyse with: the spec's, or a cached venv of it with the
    /// requirements installed.
    func buildInterpreter() throws -> String {
        guard let requirements = spec.requirements else { return spec.python }
        let requirementsText = try String(contentsOfFile: requirements, encoding: .utf8)
        let version = try PythonRunner.run(spec.python, ["-I", "-c", "import sys; print(sys.version)"])
        let key = SHA256.hex(Array((spec.python + "\n" + String(decoding: version.stdout, as: UTF8.self) + "\n" + requirementsText).utf8))
        let venv = options.cacheDirectory + "/venvs/" + String(key.prefix(24))
        let python = venv + "/bin/python"
        if FileManager.default.fileExists(atPath: venv + "/.frost-complete") { return python }
        // Another build may be making the same venv: one at a time, then look again.
        try FileManager.default.createDirectory(atPath: options.cacheDirectory + "/venvs", withIntermediateDirectories: true)
        let lock = open(venv + ".lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard lock >= 0 else { throw BuildError(.buildEnvironment, subject: venv + ".lock", "cannot lock \(venv).lock: \(errnoDescription())") }
        defer { close(lock) }
        while flock(lock, LOCK_EX) != 0 && errno == EINTR {}
        if FileManager.default.fileExists(atPath: venv + "/.frost-complete") { return python }
        progress.detail("creating a build venv for \(URL(fileURLWithPath: requirements).lastPathComponent)")
        try? FileManager.default.removeItem(atPath: venv)
        let create = try PythonRunner.run(spec.python, ["-I", "-m", "venv", venv])
        guard create.status == 0 else {
            throw BuildError(.buildEnvironment, subject: venv, "cannot create a venv with \(spec.python) (on Debian: apt-get install python3-venv): \(create.stderr)")
        }
        progress.detail("installing \(URL(fileURLWithPath: requirements).lastPathComponent)")
        let install = try PythonRunner.run(python, ["-I", "-m", "pip", "install", "--disable-pip-version-check",
                                                    "--no-input", "-q", "-r", requirements])
        guard install.status == 0 else {
            throw BuildError(.buildEnvironment, subject: requirements, "pip could not install \(requirements):\n\(install.stderr)")
        }
        _ = FileManager.default.createFile(atPath: venv + "/.frost-complete", contents: Data())
        return python
    }
}
