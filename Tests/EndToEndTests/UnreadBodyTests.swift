import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A response sent before the request body has arrived: the close is announced, the rest
/// of the body is read and dropped (the connection kept when it can), and no client sees
/// a reset. The handler is called at the head here (`--read-ahead 0`), so that it can
/// answer after the first 100 bytes; with the default read-ahead it is called once 48 KiB
/// or the whole body have arrived (`theHandlerIsCalledOnceTheBodyIsReadAhead`).
@Suite(.serialized) struct UnreadBodyTests {
    static let atTheHead = ["--workers", "0", "--read-ahead", "0"]

    /// What one early-answered upload looked like to the client.
    struct Outcome {
        let status: Int
        let announcedClose: Bool
        /// The second request on the same connection was answered.
        let reused: Bool
        /// A send or receive failed (reset, broken pipe).
        let failure: String?
    }

    /// `POST /` (a handler that never reads) with `size` body bytes: the first 100 bytes,
    /// a pause in which the response comes, then the rest and a second request.
    static func earlyAnswer(port: Int, size: Int, chunked: Bool) throws -> Outcome {
        let connection = try RawConnection(port: port)
        let body = [UInt8](repeating: UInt8(ascii: "x"), count: size)
        let head = "POST / HTTP/1.1\r\nHost: h\r\n" + (chunked ? "Transfer-Encoding: chunked\r\n\r\n" : "Content-Length: \(size)\r\n\r\n")
        var first = Array(head.utf8)
        var rest: [UInt8]
        if chunked {
            first += Array("64\r\n".utf8) + body[..<100] + [13, 10]
            rest = Array(String(size - 100, radix: 16).utf8) + [13, 10] + body[100...] + Array("\r\n0\r\n\r\n".utf8)
        } else {
            first += body[..<100]
            rest = Array(body[100...])
        }
        try connection.send(first)
        let response = try connection.readResponse()
        let announcedClose = response.header("connection")?.lowercased() == "close"
        var failure: String?
        do {
            // In pieces, as a client streaming a file does.
            var offset = 0
            while offset < rest.count {
                let end = min(rest.count, offset + 256 * 1024)
                try connection.send(Array(rest[offset..<end]))
                offset = end
            }
            try connection.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        } catch {
            failure = "\(error)"
        }
        var reused = false
        if !announcedClose {
            do {
                reused = try connection.readResponse().text.hasPrefix("pid ")
            } catch {
                failure = failure ?? "\(error)"
            }
        } else {
            // The server closes without a reset: an orderly end of stream, nothing else.
            var byte: UInt8 = 0
            let n = recv(connection.fd, &byte, 1, 0)
            if n < 0 { failure = failure ?? "recv: \(String(cString: strerror(errno)))" }
            if n > 0 { failure = failure ?? "an answer after Connection: close" }
        }
        return Outcome(status: response.status, announcedClose: announcedClose, reused: reused, failure: failure)
    }

    @Test func anUnreadBodyIsDrainedOrTheCloseIsAnnouncedAndNothingIsReset() throws {
        let scratch = ScratchDirectory("unread-body")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch), arguments: Self.atTheHead)
        for size in [1024, 1 << 20, 20 << 20] {
            for chunked in [false, true] {
                let label = "\(size) bytes \(chunked ? "chunked" : "with Content-Length")"
                let outcome = try Self.earlyAnswer(port: server.port, size: size, chunked: chunked)
                #expect(outcome.status == 200, "\(label)")
                #expect(outcome.failure == nil, "\(label): \(outcome.failure ?? "")")
                // Kept: a known remainder within --discard-max (1 MiB). Closed, announced:
                // a larger one, or a chunked one (its remainder is unknown when the head goes).
                let kept = !chunked && size <= 1 << 20
                #expect(outcome.announcedClose == !kept, "\(label)")
                #expect(outcome.reused == kept, "\(label)")
            }
        }
        let stopped = server.stop()
        #expect(stopped.status == 0)
    }

    /// With the default read-ahead (48 KiB, IIS's uploadReadAheadSize) the handler is
    /// called once that much of the body, or all of a smaller one, has arrived, and finds
    /// it in `AvailableData`; until then no Python thread holds the request.
    @Test func theHandlerIsCalledOnceTheBodyIsReadAhead() throws {
        let scratch = ScratchDirectory("read-ahead")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch), arguments: ["--workers", "0"])
        for (size, chunked) in [(1000, false), (1000, true), (200_000, false), (200_000, true)] {
            let label = "\(size) bytes \(chunked ? "chunked" : "with Content-Length")"
            let connection = try RawConnection(port: server.port)
            let body = [UInt8](repeating: UInt8(ascii: "r"), count: size)
            func framed(_ piece: ArraySlice<UInt8>) -> [UInt8] {
                chunked ? Array(String(piece.count, radix: 16).utf8) + [13, 10] + piece + [13, 10] : Array(piece)
            }
            try connection.send("POST /available HTTP/1.1\r\nHost: h\r\n"
                                + (chunked ? "Transfer-Encoding: chunked\r\n\r\n" : "Content-Length: \(size)\r\n\r\n"))
            try connection.send(framed(body[..<100]))
            #expect(!connection.hasInput(within: 0.5), "\(label): no answer before the read-ahead is complete")
            let readAhead = min(size, 48 * 1024)
            try connection.send(framed(body[100..<readAhead]) + (size == readAhead && chunked ? Array("0\r\n\r\n".utf8) : []))
            let response = try connection.readResponse()
            let total = chunked ? 0xFFFF_FFFF : size  // TotalBytes: Content-Length, or IIS's "unknown" when chunked
            #expect(response.text == "available \(readAhead) of \(total)", "\(label)")
            if size > readAhead {
                // The unread rest: read and dropped after the answer (Content-Length), or the
                // close announced (chunked: its length is unknown).
                try connection.send(framed(body[readAhead...]) + (chunked ? Array("0\r\n\r\n".utf8) : []))
            }
            #expect((response.header("connection") == "close") == (chunked && size > readAhead), "\(label)")
            if response.header("connection") != "close" {
                try connection.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                #expect(try connection.readResponse().text.hasPrefix("pid "), "\(label): the connection serves on")
            }
        }
        #expect(server.stop().status == 0)
    }

    /// A response that announced the close ends the connection: a request the client
    /// pipelined after it, even one that arrived before the response was finished, is
    /// not answered.
    @Test func nothingIsAnsweredAfterAnAnnouncedClose() throws {
        let scratch = ScratchDirectory("unread-closing")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch), arguments: Self.atTheHead)
        let connection = try RawConnection(port: server.port)
        let sent = Date()
        try connection.send("POST /slow-finish HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        let response = try connection.readResponse()
        #expect(response.text == "answered" && response.header("connection") == "close")
        // The handler sleeps 2 s after its synchronous write (a loose bound: shared cores).
        #expect(Date().timeIntervalSince(sent) < 1.5, "the synchronous write left before the handler returned")
        // The rest of the body and the next request, while the handler still runs.
        try connection.send("5\r\nworld\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
        var byte: UInt8 = 0
        let n = recv(connection.fd, &byte, 1, 0)
        #expect(n == 0, "an orderly end of stream, not another answer (\(n))")
        #expect(server.stop().status == 0)
    }

    @Test func theHostsOwnEarlyAnswersAreReadByAClientStillSending() throws {
        let scratch = ScratchDirectory("unread-413")
        let www = scratch.path("www")
        try FileManager.default.createDirectory(atPath: www, withIntermediateDirectories: true)
        try "static".write(toFile: www + "/page.txt", atomically: true, encoding: .utf8)
        let site = scratch.path("site.json")
        try #"{"virtual_directories": [{"name": "/", "path": "\#(www)", "script_maps": []}]}"#
            .write(toFile: site, atomically: true, encoding: .utf8)
        let server = try RunningServer(loader: try WireFixture.bundle(scratch), arguments: ["--workers", "0", "--site", site])
        // 413 for 2 GiB announced: curl starts sending and shows the 413, not a send failure.
        let curl = try runProcess("/bin/sh", ["-c", """
            head -c 2147483648 /dev/zero | curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Length: 2147483648' \
              -H 'Transfer-Encoding:' -H 'Expect:' -T - http://127.0.0.1:\(server.port)/upload
            """], timeout: 60)
        #expect(curl.status == 0 && curl.stdout == "413", "\(curl.output)")
        // 405 from the static-file path, answered while the body still comes.
        let connection = try RawConnection(port: server.port)
        try connection.send("POST /page.txt HTTP/1.1\r\nHost: h\r\nContent-Length: 5000000\r\n\r\n" + String(repeating: "y", count: 1000))
        let response = try connection.readResponse()
        #expect(response.status == 405 && response.header("connection") == "close")
        var sent = 1000
        while sent < 5_000_000 {
            try connection.send([UInt8](repeating: 0x79, count: 100_000))
            sent += 100_000
        }
        #expect(connection.isClosedByServer(), "an orderly close after the client sent the rest")
        #expect(server.stop().status == 0)
    }

    /// A strict client (h11) streams a body the handler does not read, reads the early
    /// answer, finishes its body and reuses the connection when the server allowed it.
    @Test func h11StreamsItsBodyAndReusesTheConnectionWhenAllowed() throws {
        let python = try ToolVenv.python(with: ["h11==0.16.0"])
        let scratch = ScratchDirectory("unread-h11")
        let server = try RunningServer(loader: try WireFixture.bundle(scratch), arguments: Self.atTheHead)
        let client = #"""
        import h11, json, socket, sys, time
        port = int(sys.argv[1])
        def events(sock, conn):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(sock.recv(65536))
                    continue
                yield event
                if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    return
        results = []
        for size, chunked in [(1024, False), (1 << 20, False), (20 << 20, False), (1024, True), (3 << 20, True)]:
            sock = socket.create_connection(("127.0.0.1", port)); sock.settimeout(10)
            conn = h11.Connection(h11.CLIENT)
            framing = [("Transfer-Encoding", "chunked")] if chunked else [("Content-Length", str(size))]
            sock.sendall(conn.send(h11.Request(method="POST", target="/", headers=[("Host", "h")] + framing)))
            body = b"z" * size
            sock.sendall(conn.send(h11.Data(data=body[:100])))
            time.sleep(0.2)
            answer = [e for e in events(sock, conn)]
            for offset in range(100, size, 65536):
                sock.sendall(conn.send(h11.Data(data=body[offset:offset + 65536])))
            sock.sendall(conn.send(h11.EndOfMessage()))
            reused = False
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
                sock.sendall(conn.send(h11.Request(method="GET", target="/", headers=[("Host", "h")])))
                second = [e for e in events(sock, conn)]
                reused = b"".join(e.data for e in second if isinstance(e, h11.Data)).startswith(b"pid ")
            results.append({"size": size, "chunked": chunked, "status": answer[0].status_code, "reused": reused})
            sock.close()
        print(json.dumps(results))
        """#
        let result = try runProcess(python, ["-c", client, String(server.port)], timeout: 120)
        #expect(result.status == 0, "\(result.output)")
        let outcomes = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]] ?? []
        #expect(outcomes.count == 5)
        for outcome in outcomes {
            let size = outcome["size"] as? Int ?? 0, chunked = outcome["chunked"] as? Bool ?? true
            #expect(outcome["status"] as? Int == 200)
            #expect(outcome["reused"] as? Bool == (!chunked && size <= 1 << 20), "\(outcome)")
        }
        #expect(server.stop().status == 0)
    }
}
