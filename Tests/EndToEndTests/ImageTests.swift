import Foundation
import Testing
import FrostBundle
#if canImport(Glibc)
import Glibc
#endif

/// `frost image`: the bundle as a reproducible OCI image, checked with Debian's skopeo and
/// umoci, and run from the unpacked root file system with its entry point and user.
@Suite(.serialized) struct ImageTests {
    static func json(_ text: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] ?? [:]
    }

    static func layers(_ archive: String) throws -> [String] {
        let inspect = try runProcess("/usr/bin/skopeo", ["inspect", "oci-archive:" + archive])
        #expect(inspect.status == 0, "\(inspect.output)")
        return try json(inspect.stdout)["Layers"] as? [String] ?? []
    }

    @Test func theImageIsReproducibleInspectableAndRunsAsItsUser() throws {
        let scratch = ScratchDirectory("image")
        let build = try frostBuild([Repository.root.appendingPathComponent("Bundles/hello.toml").path, "--quiet"],
                                   dist: scratch.path("dist"))
        #expect(build.status == 0, "\(build.output)")
        let bundle = scratch.path("dist/hello")
        let first = try runProcess(Products.frost, ["image", bundle, "-o", scratch.path("a.oci.tar")])
        #expect(first.status == 0, "\(first.output)")
        let second = try runProcess(Products.frost, ["image", bundle, "-o", scratch.path("b.oci.tar")])
        #expect(second.status == 0)
        let a = try Data(contentsOf: URL(fileURLWithPath: scratch.path("a.oci.tar")))
        #expect(a == (try Data(contentsOf: URL(fileURLWithPath: scratch.path("b.oci.tar")))), "the same bundle, the same bytes")

        // The config, as skopeo reads it.
        let inspect = try runProcess("/usr/bin/skopeo", ["inspect", "--config", "oci-archive:" + scratch.path("a.oci.tar")])
        #expect(inspect.status == 0, "\(inspect.output)")
        let config = try Self.json(inspect.stdout)
        let runtime = config["config"] as? [String: Any] ?? [:]
        #expect(runtime["User"] as? String == "10001:10001")
        #expect(runtime["Entrypoint"] as? [String] == ["/app/hello/_hello", "--listen", "0.0.0.0:8000", "--workers", "auto",
                                                       "--health-path", "/healthz"])
        #expect((runtime["ExposedPorts"] as? [String: Any])?.keys.sorted() == ["8000/tcp"])
        #expect(runtime["StopSignal"] as? String == "SIGTERM")
        let labels = runtime["Labels"] as? [String: String] ?? [:]
        #expect(labels["org.opencontainers.image.title"] == "hello")
        #expect(labels["org.opencontainers.image.created"] == "1970-01-01T00:00:00Z", "the sources' time, not now")
        #expect(labels["org.opencontainers.image.version"]?.count == 12)
        #expect(labels["org.opencontainers.image.base.name"]?.hasPrefix("glibc from Debian libc6 ") == true)
        #expect(config["architecture"] as? String == "amd64" && config["os"] as? String == "linux")
        // SOURCE_DATE_EPOCH sets the time.
        let dated = try runProcess(Products.frost, ["image", bundle, "-o", scratch.path("d.oci.tar")],
                                   environment: ["SOURCE_DATE_EPOCH": "1700000000"])
        #expect(dated.status == 0)
        let datedConfig = try Self.json(try runProcess("/usr/bin/skopeo", ["inspect", "oci-archive:" + scratch.path("d.oci.tar")]).stdout)
        #expect(datedConfig["Created"] as? String == "2023-11-14T22:13:20Z")

        // Small: the compressed image is no bigger than the bundle it carries (+10%).
        let bundleBytes = Int(try runProcess("/usr/bin/du", ["-sb", bundle]).stdout.split(separator: "\t").first ?? "0") ?? 0
        #expect(a.count <= bundleBytes * 11 / 10, "image \(a.count) bytes, bundle \(bundleBytes)")

        // podman loads it under the bundle's name.
        let version = labels["org.opencontainers.image.version"] ?? ""
        let load = try runProcess("/usr/bin/podman", ["load", "-i", scratch.path("a.oci.tar")], timeout: 120)
        #expect(load.status == 0 && load.output.contains("Loaded image: localhost/hello:\(version)"), "\(load.output)")
        _ = try runProcess("/usr/bin/podman", ["rmi", "-f", "localhost/hello:\(version)"], timeout: 60)
        // Unpacked by umoci, the root file system serves as the image's user.
        let layout = scratch.path("layout")
        #expect(try runProcess("/usr/bin/skopeo", ["copy", "oci-archive:" + scratch.path("a.oci.tar"), "oci:\(layout):hello"]).status == 0)
        let unpack = try runProcess("/usr/bin/umoci", ["unpack", "--image", "\(layout):hello", scratch.path("unpacked")])
        #expect(unpack.status == 0, "\(unpack.output)")
        let rootfs = scratch.path("unpacked/rootfs")
        // CA certificates come along when the bundle freezes ssl (hello does: http.client's imports).
        let hasSSL = (try FileManager.default.contentsOfDirectory(atPath: bundle + "/lib/lib-dynload")).contains { $0.hasPrefix("_ssl.") }
        #expect(FileManager.default.fileExists(atPath: rootfs + "/etc/ssl/certs/ca-certificates.crt") == hasSSL)
        #expect(FileManager.default.fileExists(atPath: rootfs + "/lib/x86_64-linux-gnu/libc.so.6"))
        #expect(try String(contentsOfFile: rootfs + "/etc/passwd", encoding: .utf8).contains("frost:x:10001:10001:"))
        let runtimeConfig = try Self.json(try String(contentsOfFile: scratch.path("unpacked/config.json"), encoding: .utf8))
        let process = runtimeConfig["process"] as? [String: Any] ?? [:]
        let user = process["user"] as? [String: Any] ?? [:]
        #expect(user["uid"] as? Int == 10001 && user["gid"] as? Int == 10001)
        // crun and podman cannot start containers on these machines: chroot with the entry point and user.
        var arguments = process["args"] as? [String] ?? []
        let port = freePort()
        if let at = arguments.firstIndex(of: "0.0.0.0:8000") { arguments[at] = "127.0.0.1:\(port)" }
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        server.arguments = ["-m", "/bin/sh", "-c", "mount -t proc proc \"$1/proc\" && shift && exec /usr/sbin/chroot --userspec=10001:10001 \"$@\"",
                            "sh", rootfs, rootfs] + arguments
        server.environment = (process["env"] as? [String] ?? []).reduce(into: [:]) { env, line in
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { env[parts[0]] = parts[1] }
        }
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        defer { kill(server.processIdentifier, SIGTERM); server.waitUntilExit() }
        func get(_ path: String) -> RawConnection.Response? {
            guard let connection = try? RawConnection(port: port),
                  (try? connection.send("GET \(path) HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")) != nil else { return nil }
            return try? connection.readResponse()
        }
        #expect(eventually(15) { get("/healthz")?.text == "ok\n" }, "the health path answers without Python")
        #expect(get("/")?.text == "Hello, world!\n")
    }

    @Test func aChangedAppChangesOnlyTheAppLayer() throws {
        let scratch = ScratchDirectory("image-layers")
        let app = scratch.path("app")
        try FileManager.default.createDirectory(atPath: app, withIntermediateDirectories: true)
        let source = try String(contentsOf: Repository.root.appendingPathComponent("Samples/hello.py"), encoding: .utf8)
        try source.write(toFile: app + "/greet.py", atomically: true, encoding: .utf8)
        #expect(try frostBuild([app + "/greet.py", "--quiet"], dist: scratch.path("dist")).status == 0)
        #expect(try runProcess(Products.frost, ["image", scratch.path("dist/greet"), "-o", scratch.path("one.oci.tar")]).status == 0)
        try source.replacingOccurrences(of: "Hello, world!", with: "Hello again!")
            .write(toFile: app + "/greet.py", atomically: true, encoding: .utf8)
        #expect(try frostBuild([app + "/greet.py", "--quiet"], dist: scratch.path("dist")).status == 0)
        #expect(try runProcess(Products.frost, ["image", scratch.path("dist/greet"), "-o", scratch.path("two.oci.tar")]).status == 0)
        let one = try Self.layers(scratch.path("one.oci.tar")), two = try Self.layers(scratch.path("two.oci.tar"))
        #expect(one.count == 2 && two.count == 2)
        #expect(one[0] == two[0], "the glibc layer is shared")
        #expect(one[1] != two[1], "the app layer changed")
    }

    @Test func theKubernetesManifestsReferenceTheImageDigest() throws {
        let scratch = ScratchDirectory("image-k8s")
        #expect(try frostBuild([Repository.root.appendingPathComponent("Bundles/advanced.toml").path, "--quiet"],
                               dist: scratch.path("dist")).status == 0)
        let image = try runProcess(Products.frost, ["image", scratch.path("dist/advanced"), "-o", scratch.path("advanced.oci.tar")])
        #expect(image.status == 0)
        let digest = try #require(image.stdout.split(separator: "\n").first { $0.contains("manifest sha256:") }?
            .split(separator: " ").last.map(String.init))
        let reference = "registry.example/advanced@\(digest)"
        let install = try runProcess(scratch.path("dist/advanced/advanced"),
                                     ["install", "--kubernetes", scratch.path("k8s"), "--image", reference, "--replicas", "3"])
        #expect(install.status == 0, "\(install.output)")
        let python = try ToolVenv.python(with: ["PyYAML==6.0.3"])
        let check = #"""
        import json, sys, yaml
        docs = list(yaml.safe_load_all(open(sys.argv[1])))
        print(json.dumps(docs))
        """#
        let parsed = try runProcess(python, ["-c", check, scratch.path("k8s/advanced.yaml")])
        #expect(parsed.status == 0, "\(parsed.output)")
        let documents = try JSONSerialization.jsonObject(with: Data(parsed.stdout.utf8)) as? [[String: Any]] ?? []
        #expect(documents.compactMap { $0["kind"] as? String } == ["Deployment", "Service", "PodDisruptionBudget"])
        let deployment = documents.first ?? [:]
        let spec = deployment["spec"] as? [String: Any] ?? [:]
        #expect(spec["replicas"] as? Int == 3)
        let pod = (spec["template"] as? [String: Any])?["spec"] as? [String: Any] ?? [:]
        #expect((pod["terminationGracePeriodSeconds"] as? Int ?? 0) > 30, "above the loader's graceful timeout")
        let container = (pod["containers"] as? [[String: Any]])?.first ?? [:]
        #expect(container["image"] as? String == reference)
        for probe in ["readinessProbe", "livenessProbe"] {
            let get = (container[probe] as? [String: Any])?["httpGet"] as? [String: Any] ?? [:]
            #expect(get["path"] as? String == "/healthz" && get["port"] as? Int == 8000, "\(probe)")
        }
        #expect((container["resources"] as? [String: Any])?["limits"] != nil)
        let service = documents.count > 1 ? documents[1] : [:]
        #expect(((service["spec"] as? [String: Any])?["ports"] as? [[String: Any]])?.first?["port"] as? Int == 80)
        let remove = try runProcess(scratch.path("dist/advanced/advanced"), ["remove", "--kubernetes", scratch.path("k8s")])
        #expect(remove.status == 0 && !FileManager.default.fileExists(atPath: scratch.path("k8s/advanced.yaml")))
    }
}
