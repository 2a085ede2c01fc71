import FrostPython
import NIOCore

/// IIS error numbers the control block reports in `ExtensionError.errno`.
enum WindowsError {
    static let invalidParameter = 87
    static let invalidIndex = 1413        // ERROR_INVALID_INDEX: unknown server variable
    static let connectionReset = 10054    // WSAECONNRESET
    static let invalidFunction = 1
}

/// The state behind one Python `EXTENSION_CONTROL_BLOCK`.
final class ControlBlock {
    let exchange: HTTPExchange
    let variables: ServerVariables
    let host: Host
    var httpStatusCode = 200
    var logData = ""
    /// The body bytes already received when the request was handed over (IIS's
    /// lpbData): ReadClient continues after them.
    let preloaded: [UInt8]

    init(exchange: HTTPExchange, host: Host) throws {
        self.exchange = exchange
        self.host = host
        self.variables = ServerVariables(exchange: exchange, site: exchange.site ?? host.site)
        let available = exchange.availableCount
        self.preloaded = available == 0 ? [] : try exchange.readBody(maximum: min(available, 48 * 1024))
    }

    var totalBytes: Int {
        if let length = exchange.declaredLength { return length }
        return exchange.isChunked ? 0xFFFF_FFFF : 0
    }
}

extension Host {
    /// The `EXTENSION_CONTROL_BLOCK` type.
    static let controlBlockType: NativeType<ControlBlock> = {
        let type = NativeType<ControlBlock>("_isapi.EXTENSION_CONTROL_BLOCK",
                                            doc: "The request and its response, as an ISAPI extension sees them.")
        func bytes(_ text: String) throws -> PythonObject { try PythonObject(bytes: Array(text.utf8)) }
        type.attribute("Version", get: { _ in try PythonObject(0x0008_0000) })
        type.attribute("ConnID", get: { try PythonObject($0.exchange.connectionID) })
        type.attribute("Method", get: { try bytes($0.exchange.head.method.rawValue) })
        type.attribute("QueryString", get: { try bytes($0.variables.queryString) })
        type.attribute("PathInfo", get: { try bytes($0.variables.pathInfo) })
        type.attribute("PathTranslated", get: { try bytes($0.variables.value("PATH_TRANSLATED") ?? "") })
        type.attribute("ContentType", get: { try bytes($0.variables.value("CONTENT_TYPE") ?? "") })
        type.attribute("TotalBytes", get: { try PythonObject($0.totalBytes) })
        type.attribute("AvailableBytes", get: { try PythonObject($0.preloaded.count) })
        type.attribute("AvailableData", get: { try PythonObject(bytes: $0.preloaded) })
        type.attribute("HttpStatusCode", get: { try PythonObject($0.httpStatusCode) },
                       set: { $0.httpStatusCode = try $1.asInt() })
        type.attribute("LogData", get: { try PythonObject($0.logData) }, set: { block, value in
            block.logData = value.isBytes ? String(decoding: try value.asBytes(), as: UTF8.self) : try value.str()
        })

        type.method("GetServerVariable") { block, _ in { args, keywords in
            let nameObject = try requiredArgument(args, keywords, 0, "name")
            let name = nameObject.isBytes ? String(decoding: try nameObject.asBytes(), as: UTF8.self) : try nameObject.asString()
            let unicode = name.hasPrefix("UNICODE_")
            let plain = unicode ? String(name.dropFirst("UNICODE_".count)) : name
            // Names are case-insensitive, as in IIS.
            guard let value = block.variables.value(plain.uppercased()) else {
                if let fallback = optionalArgument(args, keywords, 1, "default") { return fallback }
                throw block.host.extensionError(WindowsError.invalidIndex, nil, "GetServerVariable")
            }
            return unicode ? try PythonObject(value) : try bytes(value)
        } }
        type.method("ReadClient") { block, _ in { args, keywords in
            let size = try optionalArgument(args, keywords, 0, "size")?.asInt() ?? 65536
            guard size >= 0 else { throw PythonError.raise(.valueError, "ReadClient size must not be negative") }
            do {
                let data = try Python.withoutGIL { try block.exchange.readBody(maximum: size) }
                return try PythonObject(bytes: data)
            } catch let error as ExchangeError {
                throw block.host.extensionError(WindowsError.connectionReset, error.message, "ReadClient")
            }
        } }
        let write: (ControlBlock, PythonObject) -> NativeCall = { block, _ in { args, keywords in
            let data = try requiredArgument(args, keywords, 0, "data")
            let payload: [UInt8] = data.isString ? Array(try data.asString().utf8) : try bytesLike(data)
            try block.host.sendImplicitHeadersIfNeeded(block)
            do {
                try Python.withoutGIL { try block.exchange.writeBody(payload) }
            } catch let error as ExchangeError {
                throw block.host.extensionError(WindowsError.connectionReset, error.message, "WriteClient")
            }
            return try PythonObject(payload.count)
        } }
        type.method("WriteClient", write)
        type.method("write", write)
        type.method("flush") { _, _ in { _, _ in .none } }
        type.method("SetFlushFlag") { _, _ in { _, _ in .none } }
        type.method("SendResponseHeaders") { block, _ in { args, keywords in
            let statusObject = try requiredArgument(args, keywords, 0, "status")
            let headersObject = optionalArgument(args, keywords, 1, "headers")
            let (code, reason) = try parseStatus(statusObject)
            let headers = try headersObject.map(parseHeaders) ?? []
            block.httpStatusCode = code
            do {
                try Python.withoutGIL { try block.exchange.sendHead(status: code, reason: reason, headers: headers) }
            } catch let error as ExchangeError {
                throw block.host.extensionError(WindowsError.invalidParameter, error.message, "SendResponseHeaders")
            }
            return .none
        } }
        type.method("Redirect") { block, _ in { args, keywords in
            let url = try textArgument(try requiredArgument(args, keywords, 0, "url"))
            block.httpStatusCode = 302
            let body = Array("<html><body>Moved to <a href=\"\(htmlEscaped(url))\">\(htmlEscaped(url))</a></body></html>\n".utf8)
            do {
                try Python.withoutGIL {
                    try block.exchange.sendHead(status: 302, reason: "Found", headers: [
                        ("Location", url), ("Content-Type", "text/html; charset=utf-8"), ("Content-Length", String(body.count)),
                    ])
                    try block.exchange.writeBody(body)
                }
            } catch let error as ExchangeError {
                throw block.host.extensionError(WindowsError.invalidParameter, error.message, "Redirect")
            }
            return .none
        } }
        type.method("MapURLToPath") { block, _ in { args, keywords in
            let url = try textArgument(try requiredArgument(args, keywords, 0, "url"))
            return try bytes(block.host.mapURLToPath(url))
        } }
        type.method("IsKeepAlive") { block, _ in { _, _ in PythonObject(bool: block.exchange.isKeepAlive) } }
        let done: (ControlBlock, PythonObject) -> NativeCall = { block, _ in { _, _ in
            Python.withoutGIL { block.host.complete(block, failed: false) }
            return .none
        } }
        type.method("DoneWithSession", done)
        type.method("close", done)
        type.method("ReportUnhealthy") { block, _ in { args, keywords in
            let reason = try optionalArgument(args, keywords, 0, "reason").map(textArgument) ?? "(no reason given)"
            block.host.reportUnhealthy(reason)
            return .none
        } }
        type.describe = { "<EXTENSION_CONTROL_BLOCK \($0.exchange.head.method.rawValue) \($0.exchange.head.uri)>" }
        return type
    }()
}

func textArgument(_ value: PythonObject) throws -> String {
    if value.isBytes { return String(decoding: try value.asBytes(), as: UTF8.self) }
    return try value.asString()
}

func bytesLike(_ value: PythonObject) throws -> [UInt8] {
    if value.isBytes { return try value.asBytes() }
    // bytearray, memoryview: through bytes().
    return try Python.importModule("builtins").attribute("bytes").call([value]).asBytes()
}

/// "200 OK", b"404 Not Found" or 200.
func parseStatus(_ value: PythonObject) throws -> (Int, String) {
    if value.isInt {
        let code = try value.asInt()
        return (code, HTTPReason.phrase(code))
    }
    let text = try textArgument(value).trimmingCharacters(in: " \t\r\n")
    let parts = text.split(separator: " ", maxSplits: 1)
    guard let first = parts.first, let code = Int(first), (100...999).contains(code) else {
        throw PythonError.raise(.valueError, "status must look like '200 OK', not \(text.debugDescription)")
    }
    return (code, parts.count > 1 ? String(parts[1]) : HTTPReason.phrase(code))
}

/// "Name: value\r\n" lines, up to an empty line.
func parseHeaders(_ value: PythonObject) throws -> [(String, String)] {
    if value.isNone { return [] }
    let text = try textArgument(value)
    var headers: [(String, String)] = []
    // "\r\n" is a single Character in Swift: split on newline characters of any kind.
    for raw in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
        let line = String(raw)
        if line.isEmpty { if headers.isEmpty { continue } else { break } }
        guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
            throw PythonError.raise(.valueError, "bad response header line \(line.debugDescription): expected 'Name: value'")
        }
        let name = String(line[..<colon]).trimmingCharacters(in: " \t")
        guard name.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != UInt8(ascii: ":") }) else {
            throw PythonError.raise(.valueError, "bad response header name \(name.debugDescription)")
        }
        let headerValue = String(line[line.index(after: colon)...]).trimmingCharacters(in: " \t")
        guard !headerValue.utf8.contains(where: { $0 == 0 || $0 == 10 || $0 == 13 }) else {
            throw PythonError.raise(.valueError, "bad value for response header \(name.debugDescription)")
        }
        headers.append((name, headerValue))
    }
    return headers
}

func htmlEscaped(_ text: String) -> String {
    var out = ""
    for character in text {
        switch character {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(character)
        }
    }
    return out
}

extension String {
    /// Without Foundation: trims the given characters from both ends.
    func trimmingCharacters(in set: String) -> String {
        let characters = Set(set)
        var view = self[...]
        while let first = view.first, characters.contains(first) { view = view.dropFirst() }
        while let last = view.last, characters.contains(last) { view = view.dropLast() }
        return String(view)
    }
}

enum HTTPReason {
    static func phrase(_ code: Int) -> String {
        switch code {
        case 200: return "OK"
        case 201: return "Created"
        case 204: return "No Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 304: return "Not Modified"
        case 400: return "Bad Request"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 500: return "Internal Server Error"
        case 503: return "Service Unavailable"
        default: return "Status \(code)"
        }
    }
}
