import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A deliberately small HTTP/1.x client over a real socket, so tests control every byte
/// (pipelining, HTTP/1.0, slow bodies).
final class RawConnection {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else { close(fd); throw ClientError(message: "connect: \(String(cString: strerror(errno)))") }
    }

    private var isOpen = true

    deinit { if isOpen { close(fd) } }

    /// Closes with a reset (SO_LINGER 0), as a client that vanishes does.
    func reset() {
        var option = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close(fd)
        isOpen = false
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw ClientError(message: "send: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &chunk, chunk.count, 0)
        if n < 0 { throw ClientError(message: "recv: \(String(cString: strerror(errno)))") }
        if n == 0 { return false }
        buffer += chunk[..<n]
        return true
    }

    struct Response {
        let status: Int
        let headers: [(String, String)]
        let body: [UInt8]
        /// The status line's reason phrase.
        var reason = ""
        var text: String { String(decoding: body, as: UTF8.self) }
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    }

    /// Reads one response (Content-Length, chunked, or up to the close).
    func readResponse(forHead: Bool = false) throws -> Response {
        while true {
            if let end = find([13, 10, 13, 10]) {
                let head = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeFirst(end + 4)
                var lines = head.components(separatedBy: "\r\n")
                let statusLine = lines.removeFirst()
                let status = Int(statusLine.split(separator: " ")[1]) ?? 0
                let headers = lines.map { line -> (String, String) in
                    let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                    return (parts[0], parts.count > 1 ? parts[1] : "")
                }
                let reason = statusLine.split(separator: " ", maxSplits: 2).dropFirst(2).first.map(String.init) ?? ""
                let response = Response(status: status, headers: headers, body: [], reason: reason)
                if status == 100 { continue }
                if forHead || status == 204 || status == 304 { return response }
                if let length = response.header("content-length").flatMap(Int.init) {
                    while buffer.count < length { guard try fill() else { throw ClientError(message: "short body") } }
                    let body = Array(buffer[..<length])
                    buffer.removeFirst(length)
                    return Response(status: status, headers: headers, body: body, reason: response.reason)
                }
                if response.header("transfer-encoding")?.lowercased() == "chunked" {
                    var body: [UInt8] = []
                    while true {
                        while find([13, 10]) == nil { guard try fill() else { throw ClientError(message: "short chunk") } }
                        let lineEnd = find([13, 10])!
                        let size = Int(String(decoding: buffer[..<lineEnd], as: UTF8.self), radix: 16) ?? 0
                        buffer.removeFirst(lineEnd + 2)
                        while buffer.count < size + 2 { guard try fill() else { throw ClientError(message: "short chunk") } }
                        body += buffer[..<size]
                        buffer.removeFirst(size + 2)
                        if size == 0 { return Response(status: status, headers: headers, body: body, reason: response.reason) }
                    }
                }
                while try fill() {}
                let body = buffer
                buffer = []
                return Response(status: status, headers: headers, body: body, reason: response.reason)
            }
            guard try fill() else { throw ClientError(message: "connection closed before a response") }
        }
    }

    /// Whether the server has closed the connection (after what has been read).
    /// Whether the server sends something (or closes) within `seconds`.
    func hasInput(within seconds: Double) -> Bool {
        if !buffer.isEmpty { return true }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, Int32(seconds * 1000)) > 0
    }

    func isClosedByServer() -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }

    private func find(_ needle: [UInt8]) -> Int? {
        guard buffer.count >= needle.count else { return nil }
        for i in 0...(buffer.count - needle.count) where buffer[i] == needle[0] {
            if Array(buffer[i..<(i + needle.count)]) == needle { return i }
        }
        return nil
    }
}

struct ClientError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// A loader running in the background, stopped (SIGTERM) when the test is done.
final class RunningServer {
    let process: Process
    let port: Int
    private let output: Pipe
    private let collector: OutputCollector

    convenience init(loader: String, arguments: [String] = []) throws {
        try self.init(command: loader, arguments: ["--listen", "127.0.0.1:0"] + arguments)
    }

    convenience init(command: String, arguments: [String], environment: [String: String] = [:]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command)
        process.arguments = arguments
        process.environment = ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "FROST_CACHE": BuildCache.shared,
                               "HOME": NSTemporaryDirectory()].merging(environment) { _, new in new }
        try self.init(process: process)
    }

    /// Starts a configured process that prints "... http://127.0.0.1:PORT ..." first.
    init(process: Process) throws {
        self.process = process
        output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // The first line says where it listens.
        var line: [UInt8] = []
        let handle = output.fileHandleForReading
        while true {
            let byte = handle.readData(ofLength: 1)
            if byte.isEmpty { break }
            if byte[0] == 10 { break }
            line.append(byte[0])
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let range = text.range(of: "http://127.0.0.1:"),
              let port = Int(text[range.upperBound...].prefix { $0.isNumber }) else {
            process.terminate()
            throw ClientError(message: "the loader did not start: \(text) \(String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self))")
        }
        self.port = port
        collector = OutputCollector(out: output, err: errors)
    }

    /// Sends SIGTERM and returns the exit status and what was logged.
    func stop() -> (status: Int32, stdout: String, stderr: String) {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        process.waitUntilExit()
        let (out, err) = collector.finish()
        return (process.terminationStatus, out, err)
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    func request(_ raw: String) throws -> RawConnection.Response {
        let connection = try RawConnection(port: port)
        try connection.send(raw)
        return try connection.readResponse(forHead: raw.hasPrefix("HEAD "))
    }

    func get(_ path: String, headers: String = "") throws -> RawConnection.Response {
        try request("GET \(path) HTTP/1.1\r\nHost: test.local\r\n\(headers)Connection: close\r\n\r\n")
    }
}
