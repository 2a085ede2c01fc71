import FrostHTTP
import FrostPython
import NIOHTTP1
#if canImport(Glibc)
import Glibc
#endif

/// The CGI part of a WSGI environ, built natively for `isapi.wsgi` (frost's own control
/// block method `WSGIEnviron`): the same keys and values the package's portable path
/// computes from server variables, without a Python string operation per variable.
/// Values are the request's bytes decoded as Latin-1 (PEP 3333).
extension ControlBlock {
    /// A copy of `base` (the constant `wsgi.*` entries) with the request's variables, and
    /// `streams` as wsgi.input, wsgi.errors and isapi.ecb when given. GIL held.
    func wsgiEnviron(base: BorrowedObject,
                     streams: (input: BorrowedObject, errors: BorrowedObject, controlBlock: BorrowedObject)?) throws -> PythonObject {
        let keys = try WSGIKeys.shared()
        // The head read in place and the variables computed here: making the server
        // variables copied the head and the site (about 700 instructions).
        return try withHead { head in try wsgiEnviron(head: head, keys: keys, base: base, streams: streams) }
    }

    private func wsgiEnviron(head: RequestHead, keys: WSGIKeys, base: BorrowedObject,
                             streams: (input: BorrowedObject, errors: BorrowedObject, controlBlock: BorrowedObject)?) throws -> PythonObject {
        let site = self.site
        let environ = try keys.environ(from: base)
        func set(_ key: PythonObject, _ value: String) throws { try environ.setItem(key, latin1: value) }

        // HTTP_* in arrival order; a repeated header is one variable, its values joined
        // (RFC 9110 §5.3; cookies with "; ", RFC 6265 §5.4), as gunicorn and mod_wsgi do.
        // The base (isapi.wsgi's wsgi.* constants) holds no HTTP_ keys: one already there
        // was set by this loop, a repeat. The Host and Content-Type headers are picked up
        // on the way (SERVER_NAME and CONTENT_TYPE).
        var host: String?
        var contentType: String?
        // The fields' bytes, read in place: no Swift string per name or value.
        try head.headers.forEachField { index, name, value in
            let variable = index < keys.headers.count ? keys.headers[index] : HeaderVariable()
            try variable.learn(name: name)
            switch variable.role {
            case .contentType:
                if contentType == nil { contentType = String(decoding: value, as: UTF8.self) }
                return
            case .skipped:
                return
            case .host:
                if host == nil { host = String(decoding: value, as: UTF8.self) }
            case .cookie, .other:
                break
            }
            let valueObject = try variable.value(UnsafeRawBufferPointer(rebasing: trimmingBlanks(bytes: value)))
            try environ.setOrJoinItem(variable.key, valueObject,
                                      separator: variable.role == .cookie ? keys.cookieSeparator : keys.listSeparator)
        }

        let secure = ServerVariables.isSecure(site: site, exchange: exchange)
        // Most of what follows repeats the request before: those the environ's template
        // holds already cost a comparison (`WSGIKeys.put`).
        try keys.put(.requestMethod, keys.method.value(head.method.rawValue), into: environ)
        let path = ServerVariables.pathInfo(site: site, uri: head.uri)
        if site.scriptName.isEmpty {  // a site at the root: no split to make
            try keys.put(.scriptName, keys.empty, into: environ)
            try keys.put(.pathInfo, keys.path.value(path), into: environ)
        } else {
            var pathInfo = Array(path.utf8)
            var scriptName = Array(site.scriptName.utf8)
            if pathInfo.starts(with: scriptName) && scriptName != pathInfo {
                pathInfo.removeFirst(scriptName.count)
            } else if scriptName == pathInfo {
                scriptName = []
            }
            while scriptName.last == UInt8(ascii: "/") { scriptName.removeLast() }
            try keys.put(.scriptName, keys.script.value(String(decoding: scriptName, as: UTF8.self)), into: environ)
            try keys.put(.pathInfo, keys.path.value(String(decoding: pathInfo, as: UTF8.self)), into: environ)
        }
        let query = queryPart(of: head.uri)
        try keys.put(.queryString, query.isEmpty ? keys.empty : try PythonObject.latin1(query), into: environ)
        if let contentType, !contentType.isEmpty {
            try keys.put(.contentType, try PythonObject.latin1(contentType), into: environ)
        } else {
            try keys.put(.contentType, keys.empty, into: environ)
        }
        let serverName = ServerVariables.serverName(host: host, exchange: exchange)
        try keys.put(.serverName, keys.server.value(serverName.isEmpty ? "localhost" : serverName), into: environ)
        let port = exchange.addresses.localPort
        try keys.put(.serverPort, keys.port.value(port.isEmpty ? (secure ? "443" : "80") : port), into: environ)
        let version = head.version
        try keys.put(.serverProtocol, keys.protocol.value(version == .http1_1 ? "HTTP/1.1" : version == .http1_0 ? "HTTP/1.0"
                                                          : "HTTP/\(version.major).\(version.minor)"), into: environ)
        let client = exchange.clientAddress
        let clientObject = try keys.client.value(client)
        try keys.put(.remoteAddr, clientObject, into: environ)
        try keys.put(.remoteHost, client.isEmpty ? nil : clientObject, into: environ)
        let remotePort = exchange.addresses.remotePort
        try keys.put(.remotePort, remotePort.isEmpty ? nil : try keys.remotePortValue(remotePort), into: environ)
        if let user = exchange.filterRequest?.user, !user.isEmpty {
            try set(keys.remoteUser, user)
            try set(keys.authType, "Basic")
        }
        try keys.put(.urlScheme, secure ? keys.https : keys.http, into: environ)
        let total = totalBytes
        if total == 0xFFFF_FFFF {
            // No length to give (PEP 3333 leaves CONTENT_LENGTH out); reading to the end is
            // safe, as gunicorn and mod_wsgi announce with this key.
            try environ.setItem(keys.inputTerminated, .true)
        } else if total != 0 {
            try set(keys.contentLength, String(total))
        }
        try keys.put(.errors, streams?.errors, into: environ)
        if let streams {
            // Not in the template: the input is used again only when nothing else holds it.
            try environ.setItem(keys.input, streams.input)
            try environ.setItem(keys.controlBlock, streams.controlBlock)
        }
        return environ
    }
}

/// The environ's keys and constant values as Python objects, made once (GIL held).
private final class WSGIKeys {
    nonisolated(unsafe) private static var instance: WSGIKeys?

    static func shared() throws -> WSGIKeys {
        if let instance { return instance }
        let made = try WSGIKeys()
        instance = made
        return made
    }

    let requestMethod, scriptName, pathInfo, queryString, contentType, contentLength: PythonObject
    let serverName, serverPort, serverProtocol, remoteAddr, remoteHost, remotePort, remoteUser, authType: PythonObject
    let urlScheme, inputTerminated, http, https, input, errors, controlBlock, empty: PythonObject
    /// What joins the values of a repeated header: "; " for cookies, "," for the others.
    let cookieSeparator, listSeparator: PythonObject
    /// The last request's header variables, by position (the first 32 headers).
    let headers = (0..<32).map { _ in HeaderVariable() }

    /// The variables every request sets (or leaves out: nil), most of them to what the
    /// request before had. Not wsgi.input: the template would hold it, and an input is
    /// used again only when nothing else does.
    enum Repeated: Int, CaseIterable {
        case requestMethod, scriptName, pathInfo, queryString, contentType, serverName, serverPort, serverProtocol,
             remoteAddr, remoteHost, remotePort, urlScheme, errors
    }
    private lazy var repeatedKeys: [PythonObject] = Repeated.allCases.map { variable in
        switch variable {
        case .requestMethod: requestMethod
        case .scriptName: scriptName
        case .pathInfo: pathInfo
        case .queryString: queryString
        case .contentType: contentType
        case .serverName: serverName
        case .serverPort: serverPort
        case .serverProtocol: serverProtocol
        case .remoteAddr: remoteAddr
        case .remoteHost: remoteHost
        case .remotePort: remotePort
        case .urlScheme: urlScheme
        case .errors: errors
        }
    }
    /// What the template holds for each (nil: nothing), and how often a request has given
    /// it another value since the template last learnt it.
    private var templateValues = [PythonObject?](repeating: nil, count: Repeated.allCases.count)
    private var misses = [Int](repeating: 0, count: Repeated.allCases.count)
    /// Another value this many times, and the template takes the latest: a variable that
    /// changes (the path, a connection's port among others') costs its setting, as it did
    /// without a template, and a sixteenth of a setting more.
    static let missesBeforeLearning = 16

    /// The template: `base`'s entries, the repeated variables' values it has learnt, and
    /// room for a request's other variables and a dozen headers. A dict that outgrows its
    /// table rebuilds it (twice for an environ copied from the five wsgi.* constants), and
    /// a copy keeps its original's table size, so each environ is a copy of this one.
    /// `base` is read once: its entries are constants (isapi.wsgi's), later changes to it
    /// are not seen.
    private var template: (base: PythonObject, presized: PythonObject)?

    /// A new environ: a copy of the template (made first from `base`).
    func environ(from base: BorrowedObject) throws -> PythonObject {
        if let template, template.base.pointer == base.pointer { return try template.presized.dictCopy() }
        let kept = base.object
        let presized = try kept.dictCopy(room: 32)
        for (index, value) in templateValues.enumerated() {
            if let value { try presized.setItem(repeatedKeys[index], value) }
        }
        template = (kept, presized)
        return try presized.dictCopy()
    }

    /// Gives `variable` this request's `value` (nil: not there) in `environ`, a copy of the
    /// template: nothing to do when the template holds that very object already. A value
    /// given instead of the template's sixteen times becomes the template's.
    func put(_ variable: Repeated, _ value: PythonObject?, into environ: PythonObject) throws {
        try put(variable, value?.borrowed, into: environ)
    }

    func put(_ variable: Repeated, _ value: BorrowedObject?, into environ: PythonObject) throws {
        let index = variable.rawValue
        let held = templateValues[index]
        if held?.pointer == value?.pointer { return }
        if let value {
            try environ.setItem(repeatedKeys[index], value)
        } else {
            try environ.removeItem(repeatedKeys[index])
        }
        misses[index] += 1
        guard misses[index] >= Self.missesBeforeLearning else { return }
        misses[index] = 0
        templateValues[index] = value?.object
        if let value, let template {
            try template.presized.setItem(repeatedKeys[index], value)
        } else {
            template = nil  // made again without it: a removal would leave a hole in its table
        }
    }

    /// The last value of each of these variables: most requests repeat the last one's.
    let method = ValueMemo(), path = ValueMemo(), script = ValueMemo(), server = ValueMemo(), port = ValueMemo(),
        `protocol` = ValueMemo(), client = ValueMemo()
    /// REMOTE_PORT's last values, one per slot by the port's hash: the requests of a
    /// connection repeat its port, but those of other connections come in between.
    private let remotePorts = (0..<64).map { _ in ValueMemo() }

    func remotePortValue(_ port: String) throws -> PythonObject {
        var hash = 0
        for byte in port.utf8 { hash = hash &* 31 &+ Int(byte) }
        return try remotePorts[hash & 63].value(port)
    }

    private init() throws {
        requestMethod = try .interned("REQUEST_METHOD")
        scriptName = try .interned("SCRIPT_NAME")
        pathInfo = try .interned("PATH_INFO")
        queryString = try .interned("QUERY_STRING")
        contentType = try .interned("CONTENT_TYPE")
        contentLength = try .interned("CONTENT_LENGTH")
        serverName = try .interned("SERVER_NAME")
        serverPort = try .interned("SERVER_PORT")
        serverProtocol = try .interned("SERVER_PROTOCOL")
        remoteAddr = try .interned("REMOTE_ADDR")
        remoteHost = try .interned("REMOTE_HOST")
        remotePort = try .interned("REMOTE_PORT")
        remoteUser = try .interned("REMOTE_USER")
        authType = try .interned("AUTH_TYPE")
        urlScheme = try .interned("wsgi.url_scheme")
        inputTerminated = try .interned("wsgi.input_terminated")
        http = try .interned("http")
        https = try .interned("https")
        input = try .interned("wsgi.input")
        errors = try .interned("wsgi.errors")
        controlBlock = try .interned("isapi.ecb")
        empty = try .interned("")
        cookieSeparator = try .interned("; ")
        listSeparator = try .interned(",")
    }
}

/// A variable's last value as a Python `str` (Latin-1), made again only when the value
/// changes: requests on a server mostly repeat the method, server name and port, protocol
/// and client of the one before. Touched with the GIL held.
final class ValueMemo {
    private var text = ""
    private var object: PythonObject?

    func value(_ text: String) throws -> PythonObject {
        if let object, text == self.text { return object }
        let made = try PythonObject.latin1(text)
        (self.text, object) = (text, made)
        return made
    }
}

/// One request header as an environ variable (`HTTP_` and its name in capitals, `-` as
/// `_`), kept from one request to the next: clients send the same header names, mostly
/// with the same values, in the same order request after request, and a repeat costs a
/// byte comparison instead of a new `str` (and, for a key, its hash). One per header
/// position; touched with the GIL held.
final class HeaderVariable {
    /// What the environ does with a header beyond its HTTP_ variable.
    enum Role {
        /// Content-Type: CONTENT_TYPE, and no HTTP_ variable.
        case contentType
        /// A name that maps to HTTP_CONTENT_TYPE or HTTP_CONTENT_LENGTH: no variable
        /// (PEP 3333 has CONTENT_TYPE and CONTENT_LENGTH instead).
        case skipped
        /// Host: also the source of SERVER_NAME.
        case host
        /// Cookie: repeats are joined with "; ".
        case cookie
        case other
    }

    private var name: [UInt8] = []
    private(set) var role = Role.other
    /// HTTP_NAME, for the header last learnt.
    private(set) var key = PythonObject.none
    private var value: [UInt8] = []
    private var valueObject: PythonObject?

    /// Takes the header `name` (as sent) for this position: the key is made again only
    /// when the name changed.
    func learn(name: UnsafeRawBufferPointer) throws {
        if name.count == self.name.count && self.name.withUnsafeBytes({ Self.equal($0, name) }) { return }
        var cgi = Array("HTTP_".utf8)
        cgi.append(contentsOf: name.lazy.map(cgiByte))
        key = try cgi.withUnsafeBytes { try PythonObject.latin1($0) }
        self.name = Array(name)
        role = cgi == Self.contentTypeKey ? (Self.isContentType(name) ? .contentType : .skipped)
            : cgi == Self.contentLengthKey ? .skipped
            : cgi == Self.hostKey && Self.isHost(name) ? .host
            : cgi == Self.cookieKey ? .cookie : .other
        valueObject = nil
    }

    /// The header's value (trimmed) as a Latin-1 `str`: the last one's object when the
    /// bytes are the same.
    func value(_ bytes: UnsafeRawBufferPointer) throws -> PythonObject {
        if let valueObject, bytes.count == value.count && value.withUnsafeBytes({ Self.equal($0, bytes) }) {
            return valueObject
        }
        let made = try PythonObject.latin1(bytes)
        (value, valueObject) = (Array(bytes), made)
        return made
    }

    private static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
    }

    /// The exact names (any case) the server variables take CONTENT_TYPE and SERVER_NAME
    /// from; `Content_Type` and `HOST` map to the same variables.
    private static func isContentType(_ name: UnsafeRawBufferPointer) -> Bool {
        equalsIgnoringASCIICase(bytes: name, "content-type")
    }
    private static func isHost(_ name: UnsafeRawBufferPointer) -> Bool { equalsIgnoringASCIICase(bytes: name, "host") }

    private static let contentTypeKey = Array("HTTP_CONTENT_TYPE".utf8)
    private static let contentLengthKey = Array("HTTP_CONTENT_LENGTH".utf8)
    private static let hostKey = Array("HTTP_HOST".utf8)
    private static let cookieKey = Array("HTTP_COOKIE".utf8)
}
