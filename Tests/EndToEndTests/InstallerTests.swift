import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `NAME install` registers the bundle with systemd and nginx: the files it writes are
/// checked by the real tools, and a real nginx serves through them.
enum InstallerFixture {
    static let module = #"""
    import os
    from isapi import isapicon
    from isapi.simple import SimpleExtension

    class Extension(SimpleExtension):
        "installer test"

        def HttpExtensionProc(self, ecb):
            text = "REMOTE_ADDR=%s HTTPS=%s PATH_INFO=%s" % (
                ecb.GetServerVariable("REMOTE_ADDR").decode(), ecb.GetServerVariable("HTTPS").decode(), ecb.PathInfo.decode())
            body = text.encode()
            ecb.SendResponseHeaders("200 OK", "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body), False)
            ecb.WriteClient(body)
            return isapicon.HSE_STATUS_SUCCESS

    def __ExtensionFactory__():
        return Extension()

    if __name__ == "__main__":
        from isapi.install import HandleCommandLine, ISAPIParameters, ScriptMapParams, VirtualDirParameters
        HandleCommandLine(ISAPIParameters(ServerName="siteapp.test", VirtualDirs=[
            VirtualDirParameters(Name="app", Description="the extension", ScriptMaps=[ScriptMapParams(Extension="*")]),
            VirtualDirParameters(Name="files", Path=os.environ["SITEAPP_FILES"], ScriptMaps=[]),
        ]))
    """#

    /// Plays systemd's part: binds the socket unit's unix socket once, hands it to the
    /// loader as fd 3 with LISTEN_FDS/LISTEN_PID, and restarts the loader on request while
    /// keeping the socket (connections wait in its backlog meanwhile).
    static let socketActivation = #"""
    import os, socket, subprocess, sys, time
    path, control, loader = sys.argv[1:4]
    arguments = sys.argv[4:]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    listener.bind(path)
    os.chmod(path, 0o666)
    listener.listen(512)
    os.dup2(listener.fileno(), 3)
    os.set_inheritable(3, True)
    def start():
        return subprocess.Popen(["/bin/sh", "-c", 'LISTEN_FDS=1 LISTEN_PID=$$ exec "$0" "$@"', loader] + arguments, pass_fds=(3,))
    loader_process = start()
    for step in ("restart", "stop"):
        while not os.path.exists(control + "." + step):
            time.sleep(0.02)
        loader_process.terminate()
        loader_process.wait()
        if step == "restart":
            loader_process = start()
    """#
}

/// A free TCP port on loopback (bound, then released).
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Every regular file and link below a directory, with its content (a link: its target).
func treeContents(_ root: String) throws -> [String: Data] {
    var result: [String: Data] = [:]
    guard let walker = FileManager.default.enumerator(atPath: root) else { return result }
    for case let relative as String in walker {
        let path = root + "/" + relative
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path) {
            result[relative] = Data(("link:" + target).utf8)
        } else if FileManager.default.fileExists(atPath: path), let data = FileManager.default.contents(atPath: path) {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
                result[relative] = data
            }
        }
    }
    return result
}

/// nginx -t on the generated server block inside a minimal http {}.
func nginxAccepts(_ serverBlock: String, scratch: ScratchDirectory) throws -> ProcessResult {
    let prefix = scratch.path("nginx-check")
    try FileManager.default.createDirectory(atPath: prefix + "/logs", withIntermediateDirectories: true)
    try """
        pid \(prefix)/nginx.pid;
        error_log stderr;
        events {}
        http { access_log off; include \(serverBlock); }
        """.write(toFile: prefix + "/nginx.conf", atomically: true, encoding: .utf8)
    return try runProcess("/usr/sbin/nginx", ["-t", "-q", "-c", prefix + "/nginx.conf", "-p", prefix + "/"])
}

@Suite(.serialized) struct InstallerTests {
    @Test func theSamplesInstallUnderARootAsTheToolsAcceptAndRemoveCleanly() throws {
        let scratch = ScratchDirectory("install-samples")
        for name in ["redirector_with_filter", "advanced"] {
            let build = try frostBuild([Repository.root.appendingPathComponent("Bundles/\(name).toml").path, "--quiet"],
                                       dist: scratch.path("dist"))
            #expect(build.status == 0, "\(build.output)")
            let console = scratch.path("dist/\(name)/\(name)")
            let root = scratch.path("root-" + name)
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            // --dry-run changes nothing.
            let dry = try runProcess(console, ["install", "--root", root, "--dry-run"])
            #expect(dry.status == 0 && dry.stdout.contains("would write \(root)/etc/systemd/system/frost-\(name).service"), "\(dry.output)")
            #expect(try treeContents(root).isEmpty)
            let install = try runProcess(console, ["install", "--root", root])
            #expect(install.status == 0, "\(install.output)")
            let tree = try treeContents(root)
            let units = root + "/etc/systemd/system"
            for unit in ["frost-\(name).service", "frost-\(name).socket"] {
                #expect(FileManager.default.fileExists(atPath: units + "/" + unit))
            }
            // systemd's own checker says nothing about the units.
            let verify = try runProcess("/usr/bin/systemd-analyze", ["verify", units + "/frost-\(name).service",
                                                                      units + "/frost-\(name).socket"])
            #expect(verify.status == 0 && verify.output.isEmpty, "\(verify.output)")
            let server = root + "/etc/nginx/sites-available/frost-\(name).conf"
            let nginx = try nginxAccepts(server, scratch: scratch)
            #expect(nginx.status == 0, "\(nginx.output)")
            #expect(tree["etc/nginx/sites-enabled/frost-\(name).conf"] == Data("link:/etc/nginx/sites-available/frost-\(name).conf".utf8))
            // Twice: one registration, nothing rewritten.
            let again = try runProcess(console, ["install", "--root", root])
            #expect(again.status == 0 && again.stdout.contains("already installed, nothing changed"), "\(again.output)")
            #expect(try treeContents(root) == tree)
            let remove = try runProcess(console, ["remove", "--root", root])
            #expect(remove.status == 0, "\(remove.output)")
            #expect(try treeContents(root).isEmpty, "the tree as it was before")
            // A foreign file where the unit would go is refused and left alone.
            try FileManager.default.createDirectory(atPath: units, withIntermediateDirectories: true)
            try "[Unit]\n".write(toFile: units + "/frost-\(name).service", atomically: true, encoding: .utf8)
            let refused = try runProcess(console, ["install", "--root", root])
            #expect(refused.status == 1 && refused.stderr.contains("was not written by this installer"), "\(refused.output)")
            #expect(try treeContents(root) == ["etc/systemd/system/frost-\(name).service": Data("[Unit]\n".utf8)])
        }
    }

    /// Several installs at once leave one registration, the same as a single install; an
    /// install killed at any point (files half written, temporaries left, no record) is
    /// repaired by the next run, and remove then leaves the tree as it was.
    @Test func parallelAndInterruptedInstallsEndInOneConsistentRegistration() throws {
        let scratch = ScratchDirectory("install-races")
        let name = "redirector_with_filter"
        let build = try frostBuild([Repository.root.appendingPathComponent("Bundles/\(name).toml").path, "--quiet"],
                                   dist: scratch.path("dist"))
        #expect(build.status == 0, "\(build.output)")
        let console = scratch.path("dist/\(name)/\(name)")
        let root = scratch.path("root")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        #expect(try runProcess(console, ["install", "--root", root]).status == 0)
        let reference = try treeContents(root)
        #expect(reference.count >= 4, "\(reference.keys.sorted())")
        #expect(try runProcess(console, ["remove", "--root", root]).status == 0)

        // Four at once.
        let runs = (0..<4).map { _ -> Process in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: console)
            process.arguments = ["install", "--root", root]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            return process
        }
        for process in runs { try process.run() }
        for process in runs { process.waitUntilExit() }
        #expect(runs.allSatisfy { $0.terminationStatus == 0 }, "\(runs.map(\.terminationStatus))")
        let afterParallel = try treeContents(root)
        #expect(afterParallel == reference, "four parallel installs: \(afterParallel.keys.sorted())")
        #expect(try runProcess(console, ["remove", "--root", root]).status == 0)

        // Killed as soon as it has written something, at a later point each time.
        var partial = 0
        for attempt in 0..<12 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: console)
            process.arguments = ["install", "--root", root]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            while try process.isRunning && treeContents(root).isEmpty { usleep(200) }
            usleep(UInt32(attempt * 300))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let left = try treeContents(root)
            if left != reference { partial += 1 }
            let repaired = try runProcess(console, ["install", "--root", root])
            #expect(repaired.status == 0, "attempt \(attempt): \(repaired.output)")
            let afterRepair = try treeContents(root)
            #expect(afterRepair == reference, "attempt \(attempt): after the repair \(afterRepair.keys.sorted()), killed with \(left.keys.sorted())")
            #expect(try runProcess(console, ["remove", "--root", root]).status == 0)
            #expect(try treeContents(root).isEmpty)
        }
        print("installer: \(partial) of 12 kills left a partial registration; every one was repaired")

        // What a kill can leave at each point, made on purpose (a real kill rarely lands
        // inside the few milliseconds of writing): the first k files of the registration in
        // place, the next one's temporary beside it, no record yet (k = all: only the record
        // is missing, which the next run must write, or remove would find nothing to remove).
        let order = reference.keys.sorted().filter { !$0.hasSuffix("frost-install.json") }
        for k in 0...order.count {
            for path in order.prefix(k) {
                let target = root + "/" + path
                try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                let data = reference[path]!
                if let text = String(data: data, encoding: .utf8), text.hasPrefix("link:") {
                    try FileManager.default.createSymbolicLink(atPath: target, withDestinationPath: String(text.dropFirst(5)))
                } else {
                    try data.write(to: URL(fileURLWithPath: target))
                }
            }
            // Files go through a temporary renamed into place; links are made directly.
            if k < order.count, let text = String(data: reference[order[k]]!, encoding: .utf8), !text.hasPrefix("link:") {
                let next = root + "/" + order[k]
                try FileManager.default.createDirectory(atPath: (next as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try Data("half".utf8).write(to: URL(fileURLWithPath: next + ".frost-999999.tmp"))
            }
            let repaired = try runProcess(console, ["install", "--root", root])
            #expect(repaired.status == 0, "\(k) files in place: \(repaired.output)")
            let afterRepair = try treeContents(root)
            #expect(afterRepair == reference, "\(k) files in place: after the repair \(afterRepair.keys.sorted())")
            #expect(try runProcess(console, ["remove", "--root", root]).status == 0)
            #expect(try treeContents(root).isEmpty, "\(k) files in place: removed cleanly")
        }
    }

    /// Installed into a root, served by Debian's nginx (a normal process on a loopback port)
    /// through the unix socket the socket unit names, handed to the loader as systemd would.
    @Test func aRealNginxServesTheInstalledBundleAcrossALoaderRestart() throws {
        let scratch = ScratchDirectory("install-nginx")
        let files = scratch.path("files")
        try FileManager.default.createDirectory(atPath: files, withIntermediateDirectories: true)
        try "served by nginx\n".write(toFile: files + "/a.txt", atomically: true, encoding: .utf8)
        let loader = try makeBundle(in: scratch, name: "siteapp", files: ["siteapp.py": InstallerFixture.module])
        try FileManager.default.linkItem(atPath: loader, toPath: scratch.path("siteapp"))  // the console, as frost build makes it
        let root = scratch.path("root")
        let socketPath = scratch.path("siteapp.sock")
        let port = freePort()
        let install = try runProcess(scratch.path("siteapp"), [
            "install", "--root", root, "--listen", "unix:" + socketPath, "--nginx-listen", "127.0.0.1:\(port)", "-q",
        ], environment: ["SITEAPP_FILES": files])
        #expect(install.status == 0, "\(install.output)")
        let service = try String(contentsOfFile: root + "/etc/systemd/system/frost-siteapp.service", encoding: .utf8)
        #expect(service.contains("ExecStart=\(loader) --workers auto --trusted-proxy unix\n"), "\(service)")
        let site = root + scratch.path("site.json")
        let prefix = scratch.path("nginx")
        try FileManager.default.createDirectory(atPath: prefix + "/logs", withIntermediateDirectories: true)
        try """
            user root;
            pid \(prefix)/nginx.pid;
            error_log \(prefix)/error.log;
            events {}
            http { access_log off; include \(root)/etc/nginx/sites-available/frost-siteapp.conf; }
            """.write(toFile: prefix + "/nginx.conf", atomically: true, encoding: .utf8)
        // systemd's part, then nginx.
        let control = scratch.path("control")
        try InstallerFixture.socketActivation.write(toFile: scratch.path("activate.py"), atomically: true, encoding: .utf8)
        let activation = Process()
        activation.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        activation.arguments = [scratch.path("activate.py"), socketPath, control, loader,
                                "--workers", "1", "--trusted-proxy", "unix", "--site", site]
        activation.environment = ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"]
        activation.standardOutput = FileHandle.nullDevice
        try activation.run()
        defer {
            _ = FileManager.default.createFile(atPath: control + ".stop", contents: Data())
            activation.waitUntilExit()
        }
        let nginx = Process()
        nginx.executableURL = URL(fileURLWithPath: "/usr/sbin/nginx")
        nginx.arguments = ["-c", prefix + "/nginx.conf", "-p", prefix + "/", "-g", "daemon off;"]
        try nginx.run()
        defer { nginx.terminate(); nginx.waitUntilExit() }
        func get(_ path: String, _ headers: String = "") throws -> RawConnection.Response {
            let connection = try RawConnection(port: port)
            try connection.send("GET \(path) HTTP/1.1\r\nHost: siteapp.test\r\n\(headers)Connection: close\r\n\r\n")
            return try connection.readResponse()
        }
        #expect(eventually(15) { (try? get("/app/hello").status) == 200 }, "nginx reaches the loader")
        // The extension answers under its virtual directory and sees the client, not the proxy.
        let page = try get("/app/hello", "X-Forwarded-For: 6.6.6.6\r\n")
        #expect(page.text == "REMOTE_ADDR=127.0.0.1 HTTPS=off PATH_INFO=/hello", "forwarded by nginx, forgery not believed: \(page.text)")
        #expect(page.header("server")?.hasPrefix("nginx") == true)
        // A static directory is nginx's own; a URL outside the virtual directories is nobody's.
        let file = try get("/files/a.txt")
        #expect(file.status == 200 && file.text == "served by nginx\n")
        #expect(try get("/elsewhere").status == 404)
        // A direct client's X-Forwarded-For is ignored (the loader trusts only its proxy).
        let direct = try RunningServer(loader: loader, arguments: ["--workers", "0", "--trusted-proxy", "unix"])
        let forged = try direct.get("/x", headers: "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n")
        #expect(forged.text == "REMOTE_ADDR=127.0.0.1 HTTPS=off PATH_INFO=/x", "\(forged.text)")
        let trusted = try RunningServer(loader: loader, arguments: ["--workers", "0", "--trusted-proxy", "127.0.0.1"])
        let believed = try trusted.get("/x", headers: "X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n")
        #expect(believed.text == "REMOTE_ADDR=10.1.2.3 HTTPS=on PATH_INFO=/x", "\(believed.text)")
        _ = direct.stop(); _ = trusted.stop()
        // The loader restarts on the same socket: nginx loses no request meanwhile.
        let load = LoadLoop(port: port, path: "/app/during")
        usleep(400_000)
        _ = FileManager.default.createFile(atPath: control + ".restart", contents: Data())
        usleep(1_500_000)
        let (succeeded, failures) = load.stop()
        #expect(succeeded > 20)
        #expect(failures.isEmpty, "requests through nginx during the restart: \(failures.prefix(5))")
        #expect(try get("/app/after").status == 200)
    }
}
