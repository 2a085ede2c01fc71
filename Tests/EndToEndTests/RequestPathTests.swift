import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// How a response leaves the host: buffered while the handler runs and written once,
/// flushed as it fills when it is large, with bounded memory.
@Suite(.serialized) struct RequestPathTests {
    /// The write system calls a process makes to the socket that carries HTTP responses,
    /// while `body` runs (strace attached to every thread).
    static func responseWrites(pid: Int32, _ body: () throws -> Void) throws -> [String] {
        try responseSocketCalls(pid: pid, body).writes
    }

    /// The same, and the `epoll_ctl` calls about that socket (changes of read interest).
    static func responseSocketCalls(pid: Int32, _ body: () throws -> Void) throws -> (writes: [String], epoll: [String]) {
        let scratch = ScratchDirectory("strace")
        let trace = scratch.path("trace.txt")
        let strace = Process()
        // Through Python, to clear the signal mask the test's thread would hand down (strace
        // keeps it while it waits, and would never see the SIGTERM that detaches it).
        strace.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        strace.arguments = ["-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv(sys.argv[1], sys.argv[1:])",
                            "/usr/bin/strace", "-f", "-qq", "-e", "trace=write,writev,sendmsg,sendto,epoll_ctl", "-s", "24", "-o", trace,
                            "-p", String(pid)]
        strace.standardError = FileHandle.nullDevice
        try strace.run()
        // Wait until every thread of the process is traced (attaching takes a moment).
        let limit = Date().addingTimeInterval(20)
        while Date() < limit {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            let traced = tasks.allSatisfy { task in
                let status = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8)) ?? ""
                return status.split(separator: "\n").contains { $0.hasPrefix("TracerPid:") && !$0.hasSuffix("\t0") }
            }
            if !tasks.isEmpty && traced { break }
            usleep(50_000)
        }
        try body()
        usleep(200_000)
        kill(strace.processIdentifier, SIGTERM)  // detaches
        strace.waitUntilExit()
        let lines = (try? String(contentsOfFile: trace, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
        // The socket is the descriptor the first response head went to.
        func descriptor(_ line: String) -> String? {
            guard let open = line.firstIndex(of: "("), let comma = line[open...].firstIndex(of: ",") else { return nil }
            return String(line[line.index(after: open)..<comma])
        }
        guard let socket = lines.first(where: { $0.contains("HTTP/1.1 ") }).flatMap(descriptor) else { return ([], []) }
        let writes = lines.filter { descriptor($0) == socket && !$0.contains("epoll_ctl(") && !$0.contains("resumed>") }
        let epoll = lines.filter { $0.contains("epoll_ctl(") && $0.contains(", \(socket), ") }
        return (writes, epoll)
    }

    @Test func aHandlersHeadAndBodyLeaveInOneWrite() throws {
        let scratch = ScratchDirectory("one-write")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch), arguments: ["--workers", "0", "--no-access-log"])
        let requests = 20
        let (writes, epoll) = try Self.responseSocketCalls(pid: server.process.processIdentifier) {
            let connection = try RawConnection(port: server.port)
            for _ in 0..<requests {
                try connection.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                #expect(try connection.readResponse().text.hasPrefix("pid "))
            }
        }
        // SendResponseHeaders and WriteClient, then return: one write per response.
        #expect(writes.count == requests, "\(writes.count) writes for \(requests) responses:\n\(writes.prefix(6).joined(separator: "\n"))")
        // Reading goes on while a response is owed: the connection's registration and
        // close (six calls), not a change of read interest per request (NIO's pipelining
        // handler made two each: 40 here).
        #expect(epoll.count <= 8, "\(epoll.count) epoll_ctl calls for \(requests) requests:\n\(epoll.joined(separator: "\n"))")
        #expect(server.stop().status == 0)
    }

    /// Pipelined responses to a client that reads them as fast as they come: the socket
    /// takes part of a response, NIO queues the rest, and the next response, which the
    /// host would write to the socket itself, must wait behind it. Every response arrives
    /// whole and in order (alternately 14 bytes and 60–72 KiB, each its own length; those
    /// of 64 KiB and more leave from the handler's bytes object, and what the socket does
    /// not take of them is copied). (Checked: with the wait left out, the second response
    /// already lands inside the first.)
    @Test func responsesStayInOrderWhenTheSocketTakesPartOfOne() throws {
        let scratch = ScratchDirectory("partial-writes")
        let server = try Self.inlineServer(try WireFixture.bundle(scratch))
        let connection = try RawConnection(port: server.port)
        let sizes = (0..<300).map { $0 % 2 == 0 ? 14 : 60000 + $0 * 40 }
        for round in 0..<3 {
            try connection.send(sizes.map { "GET /sized?\($0) HTTP/1.1\r\nHost: h\r\n\r\n" }.joined())
            // Everything that comes until the line is quiet, read in a tight loop.
            var received: [UInt8] = []
            received.reserveCapacity(32 << 20)
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            while connection.hasInput(within: 1) {
                let count = recv(connection.fd, &chunk, chunk.count, 0)
                if count <= 0 { break }
                received += chunk[..<count]
            }
            var offset = 0
            for (index, size) in sizes.enumerated() {
                let head = Self.headEnd(received, from: offset).map { String(decoding: received[offset..<$0], as: UTF8.self) } ?? ""
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
                let bodyStart = offset + head.utf8.count + 4
                let whole = head.hasPrefix("HTTP/1.1 200 ") && length == size && bodyStart + size <= received.count
                    && received[bodyStart..<(bodyStart + size)].allSatisfy { $0 == UInt8(ascii: "z") }
                #expect(whole, "round \(round), response \(index) of \(size) bytes: \(head.debugDescription.prefix(200))")
                if !whole { break }
                offset = bodyStart + size
            }
            #expect(offset == received.count, "round \(round): \(received.count - offset) bytes after the last response")
        }
        #expect(server.stop().status == 0)
    }

    /// Where the head that starts at `offset` ends (its CR LF CR LF), if it does.
    static func headEnd(_ bytes: [UInt8], from offset: Int) -> Int? {
        var index = offset
        while index + 3 < bytes.count {
            if bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 { return index }
            index += 1
        }
        return nil
    }

    /// 100 MiB in 64 KiB writes: flushed as the buffer fills, the writer held back while
    /// the socket is behind, so the worker's memory stays far below the response's size.
    @Test func aLargeStreamedResponseKeepsMemoryBounded() throws {
        let scratch = ScratchDirectory("stream-100")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch), arguments: ["--workers", "0", "--no-access-log"])
        func peakKiB() -> Int {
            let status = (try? String(contentsOfFile: "/proc/\(server.process.processIdentifier)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        #expect(try server.get("/").status == 200)
        let before = peakKiB()
        let connection = try RawConnection(port: server.port)
        try connection.send("GET /stream?100 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        // A slow start: the handler gets ahead of the client and must wait for it.
        usleep(500_000)
        let response = try connection.readResponse()
        #expect(response.status == 200 && response.body.count == 100 << 20)
        let growth = peakKiB() - before
        #expect(before > 0 && growth < 32 * 1024, "peak memory grew by \(growth) KiB for a 100 MiB response")
        #expect(server.stop().status == 0)
    }

    /// A handler that sleeps 2 s holds one Python thread: a fast request on another
    /// connection of the same worker is answered meanwhile, within milliseconds.
    @Test func aSleepingHandlerDoesNotDelayAFastOne() throws {
        let scratch = ScratchDirectory("sleeping")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch), arguments: ["--workers", "0", "--no-access-log"])
        let sleeping = try RawConnection(port: server.port)
        try sleeping.send("GET /sleep HTTP/1.1\r\nHost: h\r\n\r\n")
        usleep(200_000)
        let fast = try RawConnection(port: server.port)
        for _ in 0..<5 {
            let started = Date()
            try fast.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            #expect(try fast.readResponse().text.hasPrefix("pid "))
            let seconds = Date().timeIntervalSince(started)
            // Far below the 2 s sleep (the bound is loose: other tests share the cores).
            #expect(seconds < 1.0, "a fast request took \(seconds) s beside a sleeping one")
        }
        #expect(try sleeping.readResponse().text == "slept")
        #expect(server.stop().status == 0)
    }

    /// A handler that returns `HSE_STATUS_PENDING` gives its Python thread back: the one
    /// thread serves other requests while a thread of the extension's own finishes the
    /// pending one a second later with `DoneWithSession`, and the connection then serves
    /// the next request.
    @Test func aPendingRequestFinishedFromAThreadASecondLater() throws {
        let scratch = ScratchDirectory("pending")
        // One Python thread and no handler on the loop: the fast requests need the thread
        // the pending one ran on.
        let server = try RunningServer(loader: try WireFixture.bundle(scratch),
                                       arguments: ["--workers", "0", "--threads", "1", "--no-inline", "--no-access-log"])
        let pending = try RawConnection(port: server.port)
        let started = Date()
        try pending.send("GET /pending HTTP/1.1\r\nHost: h\r\n\r\n")
        usleep(100_000)
        let fast = try RawConnection(port: server.port)
        for _ in 0..<3 {
            try fast.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            #expect(try fast.readResponse().text.hasPrefix("pid "))
        }
        #expect(Date().timeIntervalSince(started) < 0.9, "the fast requests waited for the pending one")
        let response = try pending.readResponse()
        #expect(response.status == 200)
        #expect(response.text == "finished by later")
        #expect(Date().timeIntervalSince(started) >= 1.0)
        try pending.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(try pending.readResponse().text.hasPrefix("pid "))
        #expect(server.stop().status == 0)
    }

    /// A read of the body waits for a good share of what is still to come, not for each
    /// piece, but what has come is handed over once the client pauses: here the client
    /// sends the read-ahead (48 KiB) of a 200 KiB body, which calls the handler, whose read
    /// then waits; 10 KiB more come, and the client waits for the answer.
    @Test func aReadGetsWhatArrivedWhenTheClientPauses() throws {
        let scratch = ScratchDirectory("first-read")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch), arguments: ["--workers", "0", "--no-access-log"])
        let connection = try RawConnection(port: server.port)
        try connection.send("POST /first-read HTTP/1.1\r\nHost: h\r\nContent-Length: 204800\r\n\r\n" + String(repeating: "b", count: 48 * 1024))
        usleep(300_000)
        try connection.send(String(repeating: "c", count: 10 * 1024))
        let started = Date()
        let text = try connection.readResponse().text
        #expect(text.hasPrefix("first read "), "answer: \(text)")
        let parts = text.split(separator: " ")
        let (read, before) = parts.count == 5 ? (Int(parts[2]) ?? 0, Int(parts[4]) ?? 0) : (0, 0)
        #expect(read > 0 && before + read <= 58 * 1024, "answer: \(text)")
        let seconds = Date().timeIntervalSince(started)
        #expect(seconds < 5, "the read waited \(seconds) s for body the client had not sent")
        connection.reset()  // the rest of the body never comes
        #expect(server.stop().status == 0)
    }

    /// The OS threads that ran a path's handler, request after request on one connection
    /// (a GET, or a POST of `body`).
    static func threads(_ connection: RawConnection, _ target: String, _ count: Int, body: String? = nil) throws -> [String] {
        let request = body.map { "POST \(target) HTTP/1.1\r\nHost: h\r\nContent-Length: \($0.utf8.count)\r\n\r\n\($0)" }
            ?? "GET \(target) HTTP/1.1\r\nHost: h\r\n\r\n"
        return try (0..<count).map { _ in
            try connection.send(request)
            return try connection.readResponse().text
        }
    }

    /// The wire fixture's `loader` in one process with `arguments` and an inline budget of
    /// 1 s, which no preemption reaches on a loaded machine: these tests are of the move to
    /// the loop and back, not of the 2 ms.
    static func inlineServer(_ loader: String, _ arguments: [String] = []) throws -> RunningServer {
        try RunningServer(loader: loader, arguments: ["--workers", "0", "--no-access-log", "--inline-budget", "1000"] + arguments)
    }

    /// A path's first calls run on a Python thread and are timed there; once they have
    /// shown they are fast, its handler runs on the event loop that read the request (no
    /// thread hop). `--no-inline` keeps every call on the Python threads.
    @Test func fastHandlersMoveOntoTheEventLoop() throws {
        let scratch = ScratchDirectory("inline")
        let bundle = try WireFixture.bundle(scratch)
        let server = try Self.inlineServer(bundle)
        let seen = try Self.threads(try RawConnection(port: server.port), "/nap", 8)
        #expect(!seen[0].hasPrefix("NIO-ELT"), "the first call ran on \(seen[0])")
        #expect(seen.suffix(4).allSatisfy { $0.hasPrefix("NIO-ELT") }, "threads: \(seen)")
        #expect(server.stop().status == 0)

        let pooled = try Self.inlineServer(bundle, ["--no-inline"])
        let threads = try Self.threads(try RawConnection(port: pooled.port), "/nap", 8)
        #expect(threads.allSatisfy { !$0.hasPrefix("NIO-ELT") }, "with --no-inline: \(threads)")
        #expect(pooled.stop().status == 0)
    }

    /// A response written whole, however large, does not make its handler wait: the
    /// handler never holds more than it made, so a path that answers 4 MiB in one write
    /// moves onto the loop like any fast one. A handler that streams 16 MiB in 64 KiB
    /// writes to a client that reads late (more than the kernel's socket buffers hold) had
    /// to wait for the socket: its path stays on the Python threads.
    @Test func aLargeResponseInOneWriteRunsOnTheLoopAndAStreamDoesNot() throws {
        let scratch = ScratchDirectory("inline-large")
        let server = try Self.inlineServer(try WireFixture.bundle(scratch))
        let connection = try RawConnection(port: server.port)
        for (path, size) in [("/whole?4", 4 << 20), ("/pieces?16", 16 << 20)] {
            let answers = try (0..<6).map { _ in
                try connection.send("GET \(path) HTTP/1.1\r\nHost: h\r\n\r\n")
                usleep(200_000)
                return try connection.readResponse()
            }
            #expect(answers.allSatisfy { $0.status == 200 && $0.body.count > size }, "\(path): short answers")
            let threads = answers.map { String(decoding: $0.body.prefix { $0 != 10 }, as: UTF8.self) }
            if path.hasPrefix("/whole") {
                #expect(threads.suffix(3).allSatisfy { $0.hasPrefix("NIO-ELT") }, "\(path) ran on \(threads)")
            } else {
                #expect(threads.allSatisfy { !$0.hasPrefix("NIO-ELT") }, "\(path) ran on \(threads)")
            }
        }
        #expect(server.stop().status == 0)
    }

    /// A path whose handler turns slow on the event loop (1.2 s, over the stall threshold
    /// of a 1 s budget: its loop's other connections waited) is logged, and its next calls
    /// run on the Python threads.
    @Test func aPathThatStallsTheLoopMovesBackToThePythonThreads() throws {
        let scratch = ScratchDirectory("inline-stall")
        let server = try Self.inlineServer(try WireFixture.bundle(scratch))
        let connection = try RawConnection(port: server.port)
        let warm = try Self.threads(connection, "/nap?0", 8)
        #expect(warm.last?.hasPrefix("NIO-ELT") == true, "threads: \(warm)")
        let stalled = try Self.threads(connection, "/nap?1.2", 1)
        #expect(stalled[0].hasPrefix("NIO-ELT"), "the slow call ran on \(stalled[0])")
        let after = try Self.threads(connection, "/nap?0", 4)
        #expect(after.allSatisfy { !$0.hasPrefix("NIO-ELT") }, "after the stall: \(after)")
        let stopped = server.stop()
        #expect(stopped.status == 0)
        #expect(stopped.stderr.contains("GET /nap took 1"), "stderr: \(stopped.stderr)")
        #expect(stopped.stderr.contains("its path now runs on the Python threads for 20 s"), "stderr: \(stopped.stderr)")
    }

    /// A handler on the loop reads bodies like one on a Python thread: a request without
    /// a body reads as empty (its end may not have been seen yet), and a small body that
    /// came whole is read whole.
    @Test func handlersOnTheLoopReadWholeBodies() throws {
        let scratch = ScratchDirectory("inline-read")
        let server = try Self.inlineServer(try WireFixture.bundle(scratch))
        let connection = try RawConnection(port: server.port)
        let empty = try Self.threads(connection, "/nap", 6)
        #expect(empty.suffix(3).allSatisfy { $0.hasPrefix("NIO-ELT") && $0.hasSuffix(" 0") }, "\(empty)")
        let posted = try Self.threads(connection, "/nap", 6, body: "hello")
        #expect(posted.suffix(3).allSatisfy { $0.hasPrefix("NIO-ELT") && $0.hasSuffix(" 5") }, "\(posted)")
        #expect(server.stop().status == 0)
    }

    /// SendResponseHeaders' status, read in place: an int (its standard reason), str or
    /// bytes, blanks around it dropped, a missing reason filled in; a malformed one is the
    /// handler's error (500). The same on the loop and on a Python thread.
    @Test func statusLinesInEveryForm() throws {
        let scratch = ScratchDirectory("status-forms")
        let server = try Self.inlineServer(try WireFixture.bundle(scratch))
        let connection = try RawConnection(port: server.port)
        let expected = [("int", 201, "Created"), ("bytes", 202, "Accepted"), ("spaced", 203, "Custom Reason"),
                        ("bare", 204, "No Content")]
        for _ in 0..<3 {  // the first on a Python thread, the later ones on the loop
            for (form, status, reason) in expected {
                try connection.send("GET /status?\(form) HTTP/1.1\r\nHost: h\r\n\r\n")
                let response = try connection.readResponse()
                #expect(response.status == status && response.reason == reason, "\(form): \(response.status) \(response.reason)")
            }
        }
        let bad = try RawConnection(port: server.port)
        try bad.send("GET /status?bad HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(try bad.readResponse().status == 500)
        let stopped = server.stop()
        #expect(stopped.stderr.contains("status must look like '200 OK', not \"20x Nope\""), "\(stopped.stderr)")
    }
}
