import Foundation
import Testing
import FrostArchive

/// Where `swift build` put the executables (beside the test bundle).
enum Products {
    static let directory: URL = {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        // .../debug/FrostPackageTests.xctest (a file on Linux, a bundle elsewhere)
        while url.pathExtension == "xctest" || !FileManager.default.fileExists(atPath: url.appendingPathComponent("frost-stub").path) {
            let parent = url.deletingLastPathComponent()
            if parent.path == url.path { break }
            url = parent
        }
        return url
    }()
    static var stub: String { directory.appendingPathComponent("frost-stub").path }
    /// The release-built loader beside the debug one, when Scripts/build-release.sh made it
    /// (Scripts/test.sh does): what users run, where NIO's debug assertions are off.
    static var releaseStub: String? {
        let path = directory.deletingLastPathComponent().appendingPathComponent("release/frost-stub").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }
    static var frost: String { directory.appendingPathComponent("frost").path }
}

/// The repository root, for the isapi package and the samples.
enum Repository {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static var isapiDirectory: URL { root.appendingPathComponent("Python/isapi") }

    /// The isapi package's files as archive entries ("isapi/simple.py": contents).
    static func isapiSources() throws -> [String: String] {
        var result: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: isapiDirectory.path) where name.hasSuffix(".py") {
            result["isapi/" + name] = try String(contentsOf: isapiDirectory.appendingPathComponent(name), encoding: .utf8)
        }
        return result
    }
}

/// A directory removed when the test is done.
final class ScratchDirectory {
    let url: URL
    init(_ label: String = "e2e") {
        url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("frost-\(label)-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    var path: String { url.path }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

struct ProcessResult {
    let status: Int32
    let stdout: String
    let stderr: String
    var output: String { stdout + stderr }
}

/// Runs a program with a clean, explicit environment and a time limit.
func runProcess(_ executable: String, _ arguments: [String] = [], environment: [String: String] = [:],
                stdin: String? = nil, timeout: TimeInterval = 60) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var env = ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"]
    for (key, value) in environment { env[key] = value }
    process.environment = env
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let input = Pipe()
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try? input.fileHandleForWriting.close()
    let collector = OutputCollector(out: out, err: err)
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning {
        process.terminate()
        Issue.record("\(executable) \(arguments) did not finish in \(timeout) s")
    }
    process.waitUntilExit()
    let (stdout, stderr) = collector.finish()
    return ProcessResult(status: process.terminationStatus, stdout: stdout, stderr: stderr)
}

/// Reads both pipes on background threads so a chatty child never blocks.
final class OutputCollector: @unchecked Sendable {
    private var outData = Data(), errData = Data()
    private let group = DispatchGroup()
    init(out: Pipe, err: Pipe) {
        group.enter()
        DispatchQueue.global().async { self.outData = out.fileHandleForReading.readDataToEndOfFile(); self.group.leave() }
        group.enter()
        DispatchQueue.global().async { self.errData = err.fileHandleForReading.readDataToEndOfFile(); self.group.leave() }
    }
    func finish() -> (String, String) {
        group.wait()
        return (String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }
}

/// Compiles Python sources with the target interpreter into unchecked-hash .pyc bytes
/// (the packager's format), keyed like the input ("pkg/mod.py" → "pkg/mod.pyc").
func compileToBytecode(_ sources: [String: String]) throws -> [String: [UInt8]] {
    let scratch = ScratchDirectory("pyc")
    for (path, text) in sources {
        let url = scratch.url.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: true, encoding: .utf8)
    }
    let script = """
    import py_compile, sys
    root = sys.argv[1]
    for rel in sys.argv[2:]:
        py_compile.compile(root + "/" + rel, cfile=root + "/" + rel + "c", dfile=rel, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    """
    let result = try runProcess("/usr/bin/python3", ["-I", "-c", script, scratch.path] + sources.keys.sorted())
    guard result.status == 0 else { throw CompileFailure(message: result.output) }
    var compiled: [String: [UInt8]] = [:]
    for path in sources.keys {
        compiled[path + "c"] = [UInt8](try Data(contentsOf: scratch.url.appendingPathComponent(path + "c")))
    }
    return compiled
}

struct CompileFailure: Error { let message: String }

/// Assembles a bundle directory by hand: the stub as `_NAME`, and `NAME.zip` holding
/// `files` (text entries) and `binary` entries.
func makeBundle(in scratch: ScratchDirectory, name: String, files: [String: String],
                binary: [String: [UInt8]] = [:], includeIsapi: Bool = true, stub: String = Products.stub) throws -> String {
    var writer = ZipWriter()
    var all = files
    if includeIsapi { all.merge(try Repository.isapiSources()) { a, _ in a } }
    for (path, text) in all { try writer.add(path, text: text) }
    for (path, bytes) in binary { try writer.add(path, contents: bytes) }
    try writer.write(to: scratch.path(name + ".zip"))
    let loader = scratch.path("_" + name)
    try FileManager.default.copyItem(atPath: stub, toPath: loader)
    return loader
}

/// A venv of Debian's Python with packages from PyPI, for test clients (h11, ...); kept in
/// the shared build cache, keyed by the package list, made once under a lock.
enum ToolVenv {
    static func python(with packages: [String]) throws -> String {
        let key = packages.sorted().joined(separator: "-").replacingOccurrences(of: "=", with: "_")
        let venv = BuildCache.shared + "/tool-venv-" + key
        let python = venv + "/bin/python"
        try FileManager.default.createDirectory(atPath: BuildCache.shared, withIntermediateDirectories: true)
        let lock = open(venv + ".lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        defer { close(lock) }
        flock(lock, LOCK_EX)
        if FileManager.default.fileExists(atPath: venv + "/.complete") { return python }
        try? FileManager.default.removeItem(atPath: venv)
        let create = try runProcess("/usr/bin/python3", ["-m", "venv", venv], timeout: 120)
        guard create.status == 0 else { throw ClientError(message: "venv: \(create.output)") }
        let install = try runProcess(python, ["-m", "pip", "install", "-q", "--disable-pip-version-check"] + packages,
                                     environment: ["HOME": NSTemporaryDirectory()], timeout: 600)
        guard install.status == 0 else { throw ClientError(message: "pip install \(packages): \(install.output)") }
        _ = FileManager.default.createFile(atPath: venv + "/.complete", contents: Data())
        return python
    }
}

/// Python the extension fixtures share (interpolated at the top level of their modules;
/// `isapicon` must be imported).
enum PythonFixture {
    /// `reply(ecb, text)`: a complete 200 text/plain response.
    static let reply = #"""
    def reply(ecb, text):
        body = text.encode()
        ecb.SendResponseHeaders("200 OK", f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n", False)
        ecb.WriteClient(body)
        return isapicon.HSE_STATUS_SUCCESS
    """#
}
