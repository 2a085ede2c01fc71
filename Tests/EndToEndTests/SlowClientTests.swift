import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Slow and greedy clients against one worker with four Python threads and short
/// time-outs: each attack is bounded in count and time, the time-outs end it, and a
/// well-behaved client keeps getting its answers within its usual latency meanwhile.
@Suite(.serialized) struct SlowClientTests {
    static let arguments = ["--workers", "1", "--threads", "4", "--header-timeout", "2", "--idle-timeout", "2",
                            "--send-timeout", "2", "--no-access-log"]

    /// Seconds each of `count` fresh-connection GETs takes, in order.
    static func latencies(_ server: RunningServer, count: Int) throws -> [Double] {
        try (0..<count).map { _ in
            let start = Date()
            let response = try server.get("/")
            #expect(response.status == 200)
            return Date().timeIntervalSince(start)
        }
    }

    static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    /// A reader of the serving worker's resident set (KiB), found by asking the fixture's
    /// `/` for its pid.
    static func workerResidentKiB(_ server: RunningServer) throws -> () -> Int {
        let workerPID = try server.get("/").text.split(separator: " ").last.map(String.init) ?? ""
        return {
            let status = (try? String(contentsOfFile: "/proc/\(workerPID)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
    }

    /// `count` connections to `server`, each sent `opening` (a head cut short, a head and
    /// the first part of a body).
    static func attackers(_ server: RunningServer, count: Int, each opening: [UInt8]) throws -> [RawConnection] {
        try (0..<count).map { _ in
            let connection = try RawConnection(port: server.port)
            try connection.send(opening)
            return connection
        }
    }

    /// The usual latency, and the bound an attack may not push a request past: generous
    /// for shared 2-core machines, far below any time-out the attacks wait on.
    static func baseline(_ server: RunningServer) throws -> (median: Double, bound: Double) {
        _ = try latencies(server, count: 10)  // warm
        let median = Self.median(try latencies(server, count: 40))
        return (median, max(0.25, median * 20))
    }

    /// A writer of one byte every 100 ms to each connection, until stopped.
    final class Trickler: @unchecked Sendable {
        // @unchecked: `running` is guarded by `lock`.
        private let lock = NSLock()
        private var running = true
        private var finished = false

        init(_ connections: [RawConnection]) {
            let descriptors = connections.map(\.fd)
            Thread.detachNewThread { [self] in
                while lock.withLock({ running }) {
                    var byte = UInt8(ascii: "a")
                    for fd in descriptors { _ = send(fd, &byte, 1, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                    usleep(100_000)
                }
                lock.withLock { finished = true }
            }
        }

        func stop() {
            lock.withLock { running = false }
            while !lock.withLock({ finished }) { usleep(10_000) }
        }
    }

    @Test func slowlorisHeadsAreCutAtTheHeaderTimeoutAndOthersAreServed() throws {
        let scratch = ScratchDirectory("slowloris")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch), arguments: Self.arguments)
        let (usual, bound) = try Self.baseline(server)
        let attackers = try Self.attackers(server, count: 300, each: Array("GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ".utf8))
        let trickler = Trickler(attackers)
        let during = try Self.latencies(server, count: 40)
        #expect(Self.median(during) < bound && during.max()! < 2 * bound,
                "during the attack: median \(Self.median(during)), worst \(during.max()!), usual \(usual)")
        usleep(4_000_000)  // past --header-timeout (2 s) and the sweeper's tick
        trickler.stop()
        let closed = attackers.filter { $0.isClosedByServer() }.count
        #expect(closed == attackers.count, "\(closed) of \(attackers.count) trickled heads closed at the header time-out")
        print("slowloris: usual \(usual) s, during median \(Self.median(during)) s, worst \(during.max()!) s; \(closed) closed")
        _ = server.stop()
    }

    /// Sixteen uploads (four times the Python threads) of bodies smaller than the
    /// read-ahead, each trickled at 10 bytes/s (far faster than --body-timeout): the loop
    /// holds them, not Python, so others keep their latency, and each gets 408 once its
    /// pace falls behind --body-min-rate; the handler never sees them.
    @Test func slowBodiesWaitInTheLoopAndAreCutAtTheirMinimumRate() throws {
        let scratch = ScratchDirectory("slow-body")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch),
                                       arguments: Self.arguments + ["--body-timeout", "2", "--body-min-rate", "2000",
                                                                    "--lingering-timeout", "1"])
        let (usual, bound) = try Self.baseline(server)
        let attackers = try Self.attackers(server, count: 16, each: Array("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 20000\r\n\r\n".utf8))
        let started = Date()
        let trickler = Trickler(attackers)
        let during = try Self.latencies(server, count: 40)
        #expect(Self.median(during) < bound && during.max()! < 2 * bound,
                "during the attack: median \(Self.median(during)), worst \(during.max()!), usual \(usual)")
        // Allowed: 2 s plus a second per 2,000 bytes received (a few dozen): cut after about 2 s.
        let answers = attackers.map { try? $0.readResponse() }
        let cutAfter = Date().timeIntervalSince(started)
        trickler.stop()
        #expect(answers.allSatisfy { $0?.status == 408 }, "\(answers.map { $0?.status ?? -1 })")
        #expect(answers.allSatisfy { $0?.text.contains("--body-min-rate") == true && $0?.header("connection") == "close" },
                "\(answers.first??.text ?? "")")
        #expect(cutAfter < 8, "the last slow body was cut \(cutAfter) s into the attack")
        let closed = attackers.filter { $0.isClosedByServer() }.count
        #expect(closed == attackers.count, "\(closed) of \(attackers.count) closed after their 408")
        print("slow body: usual \(usual) s, during median \(Self.median(during)) s, worst \(during.max()!) s; cut after \(cutAfter) s")
        _ = server.stop()
    }

    /// Eight uploads (twice the threads) that send the read-ahead at once, so their
    /// handlers run, then trickle the rest: each handler's read fails once the body falls
    /// behind --body-min-rate, the log names it, and the threads serve others again.
    @Test func aBodyTrickledIntoItsHandlerFailsItsReadAtTheMinimumRate() throws {
        let scratch = ScratchDirectory("slow-body-handler")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch),
                                       arguments: Self.arguments + ["--body-timeout", "2", "--body-min-rate", "50000",
                                                                    "--lingering-timeout", "1"])
        let (usual, bound) = try Self.baseline(server)
        let readAhead = [UInt8](repeating: UInt8(ascii: "b"), count: 48 * 1024)
        let attackers = try Self.attackers(server, count: 8,
                                           each: Array("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n".utf8) + readAhead)
        let start = Date()
        let trickler = Trickler(attackers)
        // Each handler may wait 2 s plus a second per 50,000 bytes (about 3 s): four at a
        // time, so within about 6 s every thread is free again.
        var recovered: Double?
        while Date().timeIntervalSince(start) < 20 {
            let began = Date()
            if (try? server.get("/"))?.status == 200, Date().timeIntervalSince(began) < bound {
                recovered = Date().timeIntervalSince(start)
                if attackers.allSatisfy({ $0.hasInput(within: 0) }) { break }  // every handler answered
            }
            usleep(100_000)
        }
        #expect(recovered != nil && recovered! < 15, "served again \(recovered ?? -1) s into the attack")
        let answers = attackers.map { try? $0.readResponse() }
        trickler.stop()
        for answer in answers {
            #expect(answer?.text.hasPrefix("read failed after ") == true && answer?.text.contains("--body-min-rate") == true
                    && answer?.header("connection") == "close", "\(answer?.text ?? "no answer")")
        }
        let after = try Self.latencies(server, count: 20)
        #expect(Self.median(after) < bound, "after: \(Self.median(after)), usual \(usual)")
        let stopped = server.stop()
        let logged = stopped.stderr.components(separatedBy: "--body-min-rate").count - 1
        #expect(logged == attackers.count, "one log line per slow body: \(stopped.stderr.suffix(1500))")
        #expect(!stopped.stderr.contains("replaced by"))
    }

    @Test func clientsThatStopReadingAreCutAtTheSendTimeoutAndFreeTheirThreads() throws {
        let scratch = ScratchDirectory("no-reader")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch), arguments: Self.arguments)
        let (usual, bound) = try Self.baseline(server)
        // Eight clients (twice the Python threads) ask for 64 MiB each and read nothing.
        var attackers: [RawConnection] = []
        for _ in 0..<8 {
            let connection = try RawConnection(port: server.port)
            var small: Int32 = 4096
            setsockopt(connection.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            try connection.send("GET /stream?64 HTTP/1.1\r\nHost: h\r\n\r\n")
            attackers.append(connection)
        }
        // Their handlers block on their writes, then fail at --send-timeout (2 s): within a few
        // seconds every thread is free again, and the writers' connections are cut.
        let start = Date()
        var recovered: Double?
        while Date().timeIntervalSince(start) < 15 {
            let began = Date()
            if (try? server.get("/"))?.status == 200, Date().timeIntervalSince(began) < bound {
                recovered = Date().timeIntervalSince(start)
                if recovered! > 3 { break }  // past the send time-out: the attack is over
            }
            usleep(100_000)
        }
        #expect(recovered != nil && recovered! < 12, "served again \(recovered ?? -1) s into the attack")
        let after = try Self.latencies(server, count: 20)
        #expect(Self.median(after) < bound, "after: \(Self.median(after)), usual \(usual)")
        // What was sent before the cut is still in the clients' buffers: read it to the end.
        let cut = attackers.filter { connection in
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            var total = 0
            while true {
                let n = recv(connection.fd, &chunk, chunk.count, 0)
                // Cut: a reset, or the end before the whole response (not the idle close after it).
                if n <= 0 { return (n == 0 || errno == ECONNRESET) && total < 64 << 20 }
                total += n
            }
        }.count
        #expect(cut == attackers.count, "\(cut) of \(attackers.count) non-reading clients cut")
        let stopped = server.stop()
        #expect(stopped.stderr.contains("--send-timeout"), "the log says why: \(stopped.stderr.suffix(1500))")
        #expect(!stopped.stderr.contains("replaced by"))
    }

    /// A small keep-alive response goes out without waiting for its write, so that the next
    /// request is read at once; a client that pipelines requests and reads nothing still
    /// cannot make the worker queue their answers: once the channel is past NIO's high-water
    /// mark, each response waits for its write again, and --send-timeout cuts a client that
    /// takes nothing of it.
    @Test func pipelinedRequestsOfAClientThatReadsNothingQueueABoundedAmount() throws {
        let scratch = ScratchDirectory("pipelined-no-reader")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch), arguments: Self.arguments)
        let (usual, bound) = try Self.baseline(server)
        let resident = try Self.workerResidentKiB(server)
        let before = resident()
        // 2,000 requests for 60,000 bytes each (120 MB of answers), sent at once, none read.
        let greedy = try RawConnection(port: server.port)
        var small: Int32 = 4096
        setsockopt(greedy.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        try greedy.send(String(repeating: "GET /sized?60000 HTTP/1.1\r\nHost: h\r\n\r\n", count: 2000))
        usleep(1_000_000)
        let grown = resident() - before
        #expect(grown < 16 * 1024, "a non-reading pipeliner grew the worker by \(grown) KiB")
        let during = try Self.latencies(server, count: 20)
        #expect(Self.median(during) < bound, "during: \(Self.median(during)), usual \(usual)")
        // What reached the client's socket is a few answers, not the 120 MB asked for.
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var total = 0
        while case let n = recv(greedy.fd, &chunk, chunk.count, Int32(MSG_DONTWAIT)), n > 0 { total += n }
        #expect(total > 0 && total < 8 << 20, "the non-reading client had \(total) bytes waiting")
        // Past --send-timeout (2 s) with nothing taken, the connection is cut (a reset).
        var cut = false
        let start = Date()
        while !cut && Date().timeIntervalSince(start) < 8 {
            usleep(100_000)
            let n = recv(greedy.fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            cut = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        }
        #expect(cut, "the non-reading client is still connected \(Date().timeIntervalSince(start)) s later")
        #expect(try server.get("/").status == 200)
        let stopped = server.stop()
        #expect(stopped.stderr.contains("the client took nothing of the response for 2 s (--send-timeout): connection cut after GET /sized"),
                "\(stopped.stderr.suffix(1500))")
    }

    /// A client that pipelines requests and half-closes at once gets every answer whole,
    /// though the host reads its end of input while answers are still queued (some not
    /// waited for, some waiting for their writes).
    @Test func pipelinedRequestsThenAHalfCloseGetEveryAnswer() throws {
        let scratch = ScratchDirectory("pipelined-half-close")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch), arguments: Self.arguments)
        let client = try RawConnection(port: server.port)
        let count = 200, size = 60_000  // 12 MB: more than the sockets' buffers hold
        try client.send(String(repeating: "GET /sized?\(size) HTTP/1.1\r\nHost: h\r\n\r\n", count: count))
        shutdown(client.fd, Int32(SHUT_WR))
        usleep(500_000)  // the host reads the end of input while answers are still queued
        var received: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 1 << 16)
        while case let n = recv(client.fd, &chunk, chunk.count, 0), n > 0 { received += chunk[0..<n] }
        let text = String(decoding: received, as: UTF8.self)
        let answers = text.components(separatedBy: "HTTP/1.1 200").count - 1
        #expect(answers == count && received.count > count * size, "\(answers) answers, \(received.count) bytes")
        _ = server.stop()
    }

    @Test func aThousandIdleConnectionsCostLittleAndDoNotSlowOthers() throws {
        let scratch = ScratchDirectory("idle-many")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch),
                                       arguments: ["--workers", "1", "--threads", "4", "--idle-timeout", "30", "--no-access-log"])
        let (usual, bound) = try Self.baseline(server)
        let resident = try Self.workerResidentKiB(server)
        let before = resident()
        var idle: [RawConnection] = []
        for _ in 0..<1000 {
            let connection = try RawConnection(port: server.port)
            try connection.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            _ = try connection.readResponse()
            idle.append(connection)  // kept open, idle
        }
        let during = try Self.latencies(server, count: 40)
        let grown = resident() - before
        #expect(Self.median(during) < bound, "with 1,000 idle connections: \(Self.median(during)), usual \(usual)")
        #expect(grown < 64 * 1024, "1,000 idle connections cost \(grown) KiB of the worker's RSS")
        print("idle: 1000 connections, +\(grown) KiB RSS, median \(Self.median(during)) s (usual \(usual) s)")
        _ = server.stop()
    }
}
