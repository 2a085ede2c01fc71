import Testing
import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

@Suite struct FileSystemTests {
    @Test func queriesTellFilesFromDirectories() {
        #expect(FileSystem.isRegularFile("/etc/passwd"))
        #expect(!FileSystem.isRegularFile("/etc"))
        #expect(FileSystem.isDirectory("/etc"))
        #expect(!FileSystem.isDirectory("/etc/passwd"))
        #expect(FileSystem.currentExecutablePath()?.hasPrefix("/") == true)
        #expect(FileSystem.join("/a/", "b") == "/a/b" && FileSystem.join("/a", "b") == "/a/b")
    }

    @Test func walksListEveryFileSortedAndFlagWhatIsNotRegular() throws {
        let root = "/tmp/frost-system-walk-\(getpid())"
        FileSystem.makeDirectories(root + "/b/c", mode: 0o755)
        defer { _ = system("rm -rf \(root)") }
        for path in ["a.txt", "b/c/d.txt", "b/z.txt"] {
            #expect(writeAll(Array(path.utf8), to: open(root + "/" + path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)))
        }
        symlink("/etc/passwd", root + "/b/link")
        let listed = try FileSystem.listFiles(below: root)
        #expect(listed.map(\.path) == ["a.txt", "b/c/d.txt", "b/link", "b/z.txt"])
        #expect(listed.filter { !$0.isRegular }.map(\.path) == ["b/link"], "a link is listed, not followed")
        #expect(try FileSystem.readFile(root + "/b/c/d.txt") == Array("b/c/d.txt".utf8))
        #expect(Set(FileSystem.names(in: root + "/b")) == ["c", "link", "z.txt"])
        #expect(throws: FileSystem.Failure.self) { try FileSystem.readFile(root + "/absent") }
        #expect(throws: FileSystem.Failure.self) { try FileSystem.listFiles(below: root + "/absent") }
    }
}

@Suite struct AddressTests {
    @Test func listenAddressesParse() {
        #expect(ListenAddress("127.0.0.1:8000") == .tcp(host: "127.0.0.1", port: 8000))
        #expect(ListenAddress("[::1]:0") == .tcp(host: "::1", port: 0))
        #expect(ListenAddress(":80") == .tcp(host: "", port: 80))
        #expect(ListenAddress("unix:/run/x.sock") == .unix(path: "/run/x.sock"))
        for bad in ["", "localhost", "host:port", "unix:", "1.2.3.4:70000"] { #expect(ListenAddress(bad) == nil, "\(bad)") }
    }

    @Test func unixSocketAddressesFitOrAreRefused() {
        #expect(unixSocketAddress("/tmp/a.sock")?.length == socklen_t(2 + 11 + 1))
        #expect(unixSocketAddress("@name", abstractNames: true)?.length == socklen_t(2 + 5), "abstract: exact, no NUL")
        #expect(unixSocketAddress("/" + String(repeating: "x", count: 200)) == nil)
    }

    @Test func boundSocketsDescribeThemselves() {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let description = localAddressDescription(of: fd)
        #expect(description.hasPrefix("127.0.0.1:") && description != "127.0.0.1:0", "\(description)")
        #expect(localAddressDescription(of: -1) == "fd -1")
    }

    /// The host binds its own socket when no master hands it one: TCP on any free port
    /// and unix paths (an old socket file replaced) listen; a bad address, a path that
    /// fits no socket and a port in use are refused with their kind and the address.
    @Test func listeningSocketsBindOrSayWhyNot() throws {
        let tcp = try bindListeningSocket("127.0.0.1:0", backlog: 16)
        defer { close(tcp) }
        let bound = localAddressDescription(of: tcp)
        #expect(bound.hasPrefix("127.0.0.1:") && bound != "127.0.0.1:0", "\(bound)")
        #expect(fcntl(tcp, F_GETFD) & FD_CLOEXEC != 0)
        do {
            _ = try bindListeningSocket(bound, backlog: 16)
            Issue.record("\(bound) was bound twice")
        } catch {
            #expect(error.kind == .cannotListen && error.address == bound && error.message.contains(bound), "\(error)")
        }
        let path = "/tmp/frost-listen-\(getpid()).sock"
        for _ in 0..<2 {  // the second replaces the first one's socket file
            let unix = try bindListeningSocket("unix:" + path, backlog: 16)
            #expect(localAddressDescription(of: unix) == "unix:" + path)
            close(unix)
        }
        unlink(path)
        // (Not a name that does not resolve: without a network, the resolver may take
        // its time to say so.)
        for (address, kind) in [("no-port", ListenFailure.Kind.badAddress), ("unix:/" + String(repeating: "x", count: 200), .badAddress)] {
            do {
                _ = try bindListeningSocket(address, backlog: 16)
                Issue.record("\(address) was bound")
            } catch {
                #expect(error.kind == kind && error.address == address, "\(address): \(error)")
            }
        }
    }
}

@Suite struct ClockAndMonitorTests {
    @Test func theClockIsMonotonicAndDeadlinesLieAhead() {
        let first = monotonicSeconds()
        usleep(2000)
        #expect(monotonicSeconds() - first >= 0.002)
        #expect(monotonicMicroseconds() > UInt64(first * 1_000_000))
        // Monitor.wait(until:) takes CLOCK_REALTIME deadlines (pthread_cond_timedwait's default).
        func realtime() -> Double {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
        }
        let before = realtime()
        let later = deadline(afterSeconds: 1.5)
        let after = realtime()
        let at = Double(later.tv_sec) + Double(later.tv_nsec) / 1e9
        #expect(at >= before + 1.5 - 1e-6 && at <= after + 1.5 + 1e-6)
        #expect((0..<1_000_000_000).contains(later.tv_nsec))
    }

    @Test func aMonitorWaitsForItsConditionAndTimesOut() {
        let monitor = Monitor()
        var thread = pthread_t()
        let context = Unmanaged.passRetained(monitor).toOpaque()
        pthread_create(&thread, nil, { raw in
            let monitor = Unmanaged<Monitor>.fromOpaque(raw!).takeRetainedValue()
            usleep(20_000)
            monitor.locked {
                readyFlag.value = true
                monitor.broadcast()
            }
            return nil
        }, context)
        let woke = monitor.locked { () -> Bool in
            let limit = deadline(afterSeconds: 5)
            while !readyFlag.value { if !monitor.wait(until: limit) { return false } }
            return true
        }
        pthread_join(thread, nil)
        #expect(woke)
        let timedOut = monitor.locked { monitor.wait(until: deadline(afterSeconds: 0.01)) }
        #expect(!timedOut, "nobody signals: the wait ends at its deadline")
    }

    @Test func errnoIsDescribedInWords() {
        #expect(errnoDescription(ENOENT).contains("No such file or directory"))
        #expect(!writeAll([1, 2, 3], to: -1))
    }
}

/// Set by the helper thread of `aMonitorWaitsForItsConditionAndTimesOut` under the monitor.
final class Flag: @unchecked Sendable { var value = false }
let readyFlag = Flag()
