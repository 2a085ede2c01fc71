import Testing
import FrostSupervisor
import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

@Suite struct SupervisorUnitTests {
    @Test func workerMessagesRoundTrip() {
        for message in [WorkerMessage.ready, .heartbeat(served: 12, residentKiB: 34_000), .recycle(reason: "served 100 requests")] {
            #expect(WorkerMessage(line: String(message.line.dropLast())) == message)
        }
        #expect(WorkerMessage(line: "HEARTBEAT x") == nil)
        #expect(WorkerMessage(line: "NONSENSE") == nil)
    }

    @Test func systemdSocketsOnlyForThisProcess() {
        let pid = getpid()
        #expect(ListenSockets.fromSystemd(environment: ["LISTEN_PID": "\(pid)", "LISTEN_FDS": "2"], pid: pid) == [3, 4])
        #expect(ListenSockets.fromSystemd(environment: ["LISTEN_PID": "\(pid + 1)", "LISTEN_FDS": "2"], pid: pid).isEmpty)
        #expect(ListenSockets.fromSystemd(environment: ["LISTEN_FDS": "1"], pid: pid).isEmpty)
    }

    @Test func bindsTCPAndUnixSocketsAndDescribesThem() throws {
        let tcp = try ListenSockets.bind("127.0.0.1:0")
        defer { close(tcp) }
        #expect(localAddressDescription(of: tcp).hasPrefix("127.0.0.1:"))
        #expect(localAddressDescription(of: tcp) != "127.0.0.1:0")
        let path = "/tmp/frost-supervisor-test-\(getpid()).sock"
        let unix = try ListenSockets.bind("unix:" + path)
        defer { close(unix); unlink(path) }
        #expect(localAddressDescription(of: unix) == "unix:" + path)
        #expect(throws: SupervisorError.self) { try ListenSockets.bind("no-port") }
    }

    @Test func notifierSendsDatagramsToTheNotifySocket() throws {
        let path = "/tmp/frost-notify-test-\(getpid()).sock"
        unlink(path)
        let receiver = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(receiver); unlink(path) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(receiver, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"])
        #expect(notifier.watchdogInterval == 4)
        #expect(notifier.send(["READY=1", "STATUS=2 workers"]))
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = recv(receiver, &buffer, buffer.count, 0)
        #expect(String(decoding: buffer[..<max(0, count)], as: UTF8.self) == "READY=1\nSTATUS=2 workers")
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "100", "WATCHDOG_PID": "1"]).watchdogInterval == nil)
        #expect(!SystemdNotifier(environment: [:]).isActive)
    }
}
