import FrostHTTP
import NIOCore
import NIOHTTP1
#if canImport(Glibc)
import Glibc
#endif

/// Static files of a virtual directory, served on the event loop (no Python), with
/// validators, conditional requests and single byte ranges, and never from outside the
/// directory: `..` and `.` components are refused and the resolved path (symbolic links
/// followed) must stay below the directory's own resolved path.
enum StaticFiles {
    /// A static response, decided before anything is written.
    struct Response {
        enum Body { case none, text(String), file(path: String, start: Int, length: Int) }
        var status: HTTPResponseStatus
        var headers: [(String, String)]
        var body: Body

        static func plain(_ status: HTTPResponseStatus, _ text: String, headers: [(String, String)] = []) -> Response {
            let bytes = Array((text + "\n").utf8)
            return Response(status: status, headers: headers + [("Content-Type", "text/plain; charset=utf-8"),
                                                                ("Content-Length", String(bytes.count))],
                            body: .text(text + "\n"))
        }
    }

    /// Serves from the event loop: the file goes out as a FileRegion (sendfile).
    static func respondOnLoop(_ exchange: HTTPExchange, _ response: Response) {
        switch response.body {
        case .none:
            exchange.respondOnLoop(status: response.status, headers: response.headers, body: nil, bodyLength: 0)
        case .text(let text):
            var buffer = ByteBufferAllocator().buffer(capacity: text.utf8.count)
            buffer.writeString(text)
            exchange.respondOnLoop(status: response.status, headers: response.headers, body: .byteBuffer(buffer),
                                   bodyLength: buffer.readableBytes)
        case .file(let path, let start, let length):
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { return respondOnLoop(exchange, .plain(.forbidden, "Forbidden")) }
            let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: descriptor)
            let region = FileRegion(fileHandle: handle, readerIndex: start, endIndex: start + length)
            exchange.respondOnLoop(status: response.status, headers: response.headers, body: .fileRegion(region),
                                   bodyLength: length) {
                try? handle.close()
            }
        }
    }

    /// Decides the response for `relative` below `root`: validators, conditional requests,
    /// one byte range, and refusals for anything that would leave `root`.
    static func prepare(_ head: RequestHead, root rootPath: String, relative: String) -> Response {
        guard head.method.isGET || head.method.isHEAD else {
            return .plain(.methodNotAllowed, "Method Not Allowed: static files answer GET and HEAD", headers: [("Allow", "GET, HEAD")])
        }
        let components = relative.split(separator: "/", omittingEmptySubsequences: true)
        if components.contains(where: { $0 == ".." || $0 == "." || $0.utf8.contains(0) }) {
            return .plain(.notFound, "Not Found")
        }
        guard let root = resolved(rootPath) else { return .plain(.notFound, "Not Found") }
        var path = rootPath + "/" + components.joined(separator: "/")
        guard var real = resolved(path), real == root || real.hasPrefix(root + "/") else {
            return .plain(.notFound, "Not Found")
        }
        var info = stat()
        guard stat(real, &info) == 0 else { return .plain(.notFound, "Not Found") }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            path += "/index.html"
            guard let index = resolved(path), index.hasPrefix(root + "/"), stat(index, &info) == 0,
                  (info.st_mode & S_IFMT) == S_IFREG else {
                return .plain(.forbidden, "Forbidden: directory listing is not allowed")
            }
            real = index
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else { return .plain(.notFound, "Not Found") }

        let size = Int(info.st_size)
        let modified = Int(info.st_mtim.tv_sec)
        let etag = "\"\(String(size, radix: 16))-\(String(modified, radix: 16))\""
        let lastModified = httpDate(modified)
        var headers: [(String, String)] = [("ETag", etag), ("Last-Modified", lastModified), ("Accept-Ranges", "bytes")]

        if let match = head.headers.first(name: "if-none-match") {
            let tags = match.split(separator: ",").map { String($0).trimmingCharacters(in: " \t").replacingPrefix("W/", with: "") }
            if tags.contains("*") || tags.contains(etag) {
                return Response(status: .notModified, headers: headers, body: .none)
            }
        } else if let since = head.headers.first(name: "if-modified-since").flatMap(parseHTTPDate), modified <= since {
            return Response(status: .notModified, headers: headers, body: .none)
        }

        headers.append(("Content-Type", contentType(for: real)))
        var start = 0, end = size - 1
        var status = HTTPResponseStatus.ok
        let ifRangeMatches = head.headers.first(name: "if-range").map { $0 == etag || $0 == lastModified } ?? true
        if let range = head.headers.first(name: "range"), ifRangeMatches {
            switch parseRange(range, size: size) {
            case .whole: break
            case .unsatisfiable:
                return .plain(.rangeNotSatisfiable, "Range Not Satisfiable", headers: [("Content-Range", "bytes */\(size)")])
            case .part(let from, let to):
                (start, end, status) = (from, to, .partialContent)
                headers.append(("Content-Range", "bytes \(from)-\(to)/\(size)"))
            }
        }
        let length = max(0, end - start + 1)
        headers.append(("Content-Length", String(length)))
        if head.method.isHEAD || length == 0 {
            return Response(status: status, headers: headers, body: .none)
        }
        return Response(status: status, headers: headers, body: .file(path: real, start: start, length: length))
    }

    enum Range: Equatable { case whole, unsatisfiable, part(Int, Int) }

    /// One byte range ("bytes=a-b", "bytes=a-", "bytes=-n"); several ranges are answered
    /// with the whole file, which the RFC allows.
    static func parseRange(_ header: String, size: Int) -> Range {
        guard header.hasPrefix("bytes="), !header.contains(",") else { return .whole }
        let spec = String(header.dropFirst("bytes=".count)).trimmingCharacters(in: " ")
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .whole }
        if parts[0].isEmpty {
            guard let suffix = Int(parts[1]), suffix > 0 else { return .unsatisfiable }
            return size == 0 ? .unsatisfiable : .part(max(0, size - suffix), size - 1)
        }
        guard let first = Int(parts[0]), first >= 0 else { return .whole }
        guard first < size else { return .unsatisfiable }
        if parts[1].isEmpty { return .part(first, size - 1) }
        guard let last = Int(parts[1]), last >= first else { return .whole }
        return .part(first, min(last, size - 1))
    }

    static func resolved(_ path: String) -> String? {
        guard let pointer = realpath(path, nil) else { return nil }
        defer { free(pointer) }
        return String(cString: pointer)
    }

    static let types: [String: String] = [
        "html": "text/html; charset=utf-8", "htm": "text/html; charset=utf-8", "css": "text/css; charset=utf-8",
        "js": "text/javascript; charset=utf-8", "mjs": "text/javascript; charset=utf-8", "json": "application/json",
        "txt": "text/plain; charset=utf-8", "xml": "application/xml", "svg": "image/svg+xml", "png": "image/png",
        "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp", "ico": "image/x-icon",
        "pdf": "application/pdf", "woff": "font/woff", "woff2": "font/woff2", "wasm": "application/wasm",
        "zip": "application/zip", "gz": "application/gzip", "mp4": "video/mp4", "webm": "video/webm",
        "mp3": "audio/mpeg", "csv": "text/csv; charset=utf-8", "md": "text/markdown; charset=utf-8",
    ]

    static func contentType(for path: String) -> String {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        guard let dot = name.lastIndex(of: ".") else { return "application/octet-stream" }
        return types[name[name.index(after: dot)...].lowercased()] ?? "application/octet-stream"
    }
}

/// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT").
func httpDate(_ seconds: Int) -> String {
    var time = time_t(seconds)
    var parts = tm()
    gmtime_r(&time, &parts)
    var buffer = [CChar](repeating: 0, count: 64)
    let length = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
    return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// IMF-fixdate only (what every current client sends); anything else is ignored.
func parseHTTPDate(_ text: String) -> Int? {
    let fields = text.split(separator: " ")
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    guard fields.count == 6, fields[5] == "GMT", let day = Int(fields[1]), let month = months.firstIndex(of: String(fields[2])),
          let year = Int(fields[3]) else { return nil }
    let clock = fields[4].split(separator: ":").compactMap { Int($0) }
    // Bounded before the Int32 conversions, which would trap on a huge number from a client.
    guard clock.count == 3, clock.allSatisfy({ (0...60).contains($0) }), (1...31).contains(day),
          (1900...9999).contains(year) else { return nil }
    var parts = tm()
    parts.tm_year = Int32(year - 1900)
    parts.tm_mon = Int32(month)
    parts.tm_mday = Int32(day)
    parts.tm_hour = Int32(clock[0])
    parts.tm_min = Int32(clock[1])
    parts.tm_sec = Int32(clock[2])
    return Int(timegm(&parts))
}

extension String {
    func replacingPrefix(_ prefix: String, with replacement: String) -> String {
        hasPrefix(prefix) ? replacement + dropFirst(prefix.count) : self
    }
}
