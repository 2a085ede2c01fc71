import FrostHTTP
import FrostPython
import NIOHTTP1

/// The CGI part of a WSGI environ, built natively for `isapi.wsgi` (frost's own control
/// block method `WSGIEnviron`): the same keys and values the package's portable path
/// computes from server variables, without a Python string operation per variable.
/// Values are the request's bytes decoded as Latin-1 (PEP 3333).
extension ControlBlock {
    /// A copy of `base` (the constant `wsgi.*` entries) with the request's variables, and
    /// `streams` as wsgi.input, wsgi.errors and isapi.ecb when given. GIL held.
    func wsgiEnviron(base: PythonObject,
                     streams: (input: PythonObject, errors: PythonObject, controlBlock: PythonObject)?) throws -> PythonObject {
        let keys = try WSGIKeys.shared()
        let environ = try base.dictCopy()
        func set(_ key: PythonObject, _ value: String) throws { try environ.setItem(key, latin1: value) }

        let secure = variables.secure
        try environ.setItem(keys.requestMethod, keys.method.value(head.method.rawValue))
        let site = variables.site.scriptName
        if site.isEmpty {  // a site at the root: no split to make
            try environ.setItem(keys.scriptName, keys.empty)
            try environ.setItem(keys.pathInfo, keys.path.value(variables.pathInfo))
        } else {
            var pathInfo = Array(variables.pathInfo.utf8)
            var scriptName = Array(site.utf8)
            if pathInfo.starts(with: scriptName) && scriptName != pathInfo {
                pathInfo.removeFirst(scriptName.count)
            } else if scriptName == pathInfo {
                scriptName = []
            }
            while scriptName.last == UInt8(ascii: "/") { scriptName.removeLast() }
            try set(keys.scriptName, String(decoding: scriptName, as: UTF8.self))
            try set(keys.pathInfo, String(decoding: pathInfo, as: UTF8.self))
        }
        let query = variables.queryString
        try environ.setItem(keys.queryString, query.isEmpty ? keys.empty : try PythonObject.latin1(query))
        if let contentType = head.headers.first(name: "content-type"), !contentType.isEmpty {
            try set(keys.contentType, contentType)
        } else {
            try environ.setItem(keys.contentType, keys.empty)
        }
        let serverName = variables.serverName
        try environ.setItem(keys.serverName, keys.server.value(serverName.isEmpty ? "localhost" : serverName))
        let port = exchange.addresses.localPort
        try environ.setItem(keys.serverPort, keys.port.value(port.isEmpty ? (secure ? "443" : "80") : port))
        let version = head.version
        try environ.setItem(keys.serverProtocol, keys.protocol.value(version == .http1_1 ? "HTTP/1.1" : version == .http1_0 ? "HTTP/1.0"
                                                                     : "HTTP/\(version.major).\(version.minor)"))
        let client = exchange.clientAddress
        let clientObject = try keys.client.value(client)
        try environ.setItem(keys.remoteAddr, clientObject)
        if !client.isEmpty { try environ.setItem(keys.remoteHost, clientObject) }
        let remotePort = exchange.addresses.remotePort
        if !remotePort.isEmpty { try set(keys.remotePort, remotePort) }
        if let user = exchange.filterRequest?.user, !user.isEmpty {
            try set(keys.remoteUser, user)
            try set(keys.authType, "Basic")
        }
        try environ.setItem(keys.urlScheme, secure ? keys.https : keys.http)
        let total = totalBytes
        if total == 0xFFFF_FFFF {
            // No length to give (PEP 3333 leaves CONTENT_LENGTH out); reading to the end is
            // safe, as gunicorn and mod_wsgi announce with this key.
            try environ.setItem(keys.inputTerminated, .true)
        } else if total != 0 {
            try set(keys.contentLength, String(total))
        }
        // HTTP_* in arrival order; a repeated header is one variable, its values joined
        // (RFC 9110 §5.3; cookies with "; ", RFC 6265 §5.4), as gunicorn and mod_wsgi do.
        // The base (isapi.wsgi's wsgi.* constants) and the variables above hold no HTTP_
        // keys: one already there was set by this loop, a repeat.
        // Keys are made in one buffer, values read in place: no allocation per header.
        var key: [UInt8] = Array("HTTP_".utf8)
        key.reserveCapacity(64)
        for (name, value) in head.headers {
            key.removeSubrange(5...)
            key.append(contentsOf: name.utf8.lazy.map(cgiByte))
            if key == contentTypeKey || key == contentLengthKey { continue }
            var value = value
            try value.withUTF8 { bytes in
                let trimmed = UnsafeRawBufferPointer(rebasing: trimmingBlanks(bytes: UnsafeRawBufferPointer(bytes)))
                try key.withUnsafeBytes { key in
                    try environ.setOrJoinItem(latin1: key, latin1: trimmed, separator: key.elementsEqual(cookieKey) ? "; " : ",")
                }
            }
        }
        if let streams {
            try environ.setItem(keys.input, streams.input)
            try environ.setItem(keys.errors, streams.errors)
            try environ.setItem(keys.controlBlock, streams.controlBlock)
        }
        return environ
    }
}

private let contentTypeKey = Array("HTTP_CONTENT_TYPE".utf8)
private let contentLengthKey = Array("HTTP_CONTENT_LENGTH".utf8)
private let cookieKey = Array("HTTP_COOKIE".utf8)

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
    /// The last value of each of these variables: most requests repeat the last one's.
    let method = ValueMemo(), path = ValueMemo(), server = ValueMemo(), port = ValueMemo(), `protocol` = ValueMemo(),
        client = ValueMemo()

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
