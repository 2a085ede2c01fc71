import NIOHTTP1

/// What the HTTP layer checks in a request head that `RequestParser` lets through, before
/// anything else sees it (RFC 9112), and the one normalisation it makes: an absolute-form
/// target (`GET http://host/path`) becomes the path, with its authority as the Host.
///
/// A refused head gets its status and a reason, and the connection closes after the
/// answer; the extension is never called with it.
enum RequestValidation {
    struct Refusal: Equatable {
        let status: HTTPResponseStatus
        let reason: String
        /// Extra response fields (`Allow` for 405).
        var headers: [(String, String)] = []

        static func == (a: Refusal, b: Refusal) -> Bool { a.status == b.status && a.reason == b.reason }
    }

    /// Checks and normalises `head`; nil when it may be served.
    static func check(_ head: inout RequestHead) -> Refusal? {
        check(&head, facts: HeadFacts(head.headers))
    }

    /// The same with what the parser saw of the fields (`facts`): no pass over them here.
    static func check(_ head: inout RequestHead, facts: HeadFacts) -> Refusal? {
        guard head.version.major == 1, head.version.minor <= 1 else {
            return Refusal(status: .httpVersionNotSupported, reason: "HTTP Version Not Supported: this server speaks HTTP/1.0 and HTTP/1.1")
        }
        if head.method.isCONNECT {
            return Refusal(status: .methodNotAllowed, reason: "Method Not Allowed: this server is not a proxy",
                           headers: [("Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH")])
        }
        let hosts = facts.hostFields
        if hosts > 1 { return Refusal(status: .badRequest, reason: "Bad Request: more than one Host field") }
        if head.version.minor == 1 && hosts == 0 {
            return Refusal(status: .badRequest, reason: "Bad Request: an HTTP/1.1 request needs a Host field")
        }
        if facts.transferEncoding, let refusal = checkTransferEncoding(head) { return refusal }
        if let refusal = normaliseTarget(&head) { return refusal }
        return checkPath(head.uri)
    }

    /// RFC 9112 §6.1 and §6.3: chunked must be the last coding (else the body's length is
    /// unknowable: 400); another coding the server does not decode is 501; HTTP/1.0 has no
    /// Transfer-Encoding (400).
    static func checkTransferEncoding(_ head: RequestHead) -> Refusal? {
        let values = head.headers["transfer-encoding"]
        guard !values.isEmpty else { return nil }
        if head.version.minor == 0 {
            return Refusal(status: .badRequest, reason: "Bad Request: Transfer-Encoding in an HTTP/1.0 request")
        }
        let codings = values.flatMap { $0.split(separator: ",") }.map { trimmingBlanks(String($0)).lowercased() }
        guard codings.last == "chunked" else {
            return Refusal(status: .badRequest, reason: "Bad Request: the last transfer coding must be chunked")
        }
        if codings.dropLast().contains("chunked") {
            return Refusal(status: .badRequest, reason: "Bad Request: chunked applied more than once")
        }
        if codings.count > 1 {
            return Refusal(status: .notImplemented, reason: "Not Implemented: only the chunked transfer coding is understood")
        }
        return nil
    }

    /// Origin form (`/path?query`), `*` for OPTIONS, or the absolute form, rewritten to
    /// the origin form with the target's authority as the Host (RFC 9112 §3.2.2).
    static func normaliseTarget(_ head: inout RequestHead) -> Refusal? {
        let uri = head.uri
        if uri.utf8.first == UInt8(ascii: "/") { return nil }
        if uri == "*" && head.method == .OPTIONS { return nil }
        let lower = uri.prefix(8).lowercased()
        let schemeLength = lower.hasPrefix("http://") ? 7 : lower.hasPrefix("https://") ? 8 : 0
        guard schemeLength > 0 else {
            return Refusal(status: .badRequest, reason: "Bad Request: the request target must be a path or an absolute http URL")
        }
        let rest = uri.dropFirst(schemeLength)
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = String(rest[..<authorityEnd])
        guard !authority.isEmpty, !authority.contains("@") else {
            return Refusal(status: .badRequest, reason: "Bad Request: the target URL has no host, or carries credentials")
        }
        let target = rest[authorityEnd...]
        head.uri = target.hasPrefix("/") ? String(target) : "/" + target
        head.headers.replaceOrAdd(name: "Host", value: authority)
        return nil
    }

    /// The path, percent-decoded, must be UTF-8 without NUL: what the extension, the
    /// static files and the file system all take it as.
    static func checkPath(_ uri: String) -> Refusal? {
        // A path without a percent sign is what the parser let through: nothing to decode.
        // (Scanned in place: the lazy prefix-and-contains over the UTF-8 view cost about
        // 300 instructions a request.)
        func encodes(_ bytes: some Collection<UInt8>) -> Bool {
            for byte in bytes {
                if byte == UInt8(ascii: "?") { return false }
                if byte == UInt8(ascii: "%") { return true }
            }
            return false
        }
        guard uri.utf8.withContiguousStorageIfAvailable(encodes) ?? encodes(uri.utf8) else { return nil }
        let path = pathPart(of: uri)
        let bytes = percentDecodedBytes(path)
        if bytes.contains(0) { return Refusal(status: .badRequest, reason: "Bad Request: an encoded NUL in the path") }
        if String(validating: bytes, as: UTF8.self) == nil {
            return Refusal(status: .badRequest, reason: "Bad Request: the path is not UTF-8 once decoded")
        }
        return nil
    }
}
