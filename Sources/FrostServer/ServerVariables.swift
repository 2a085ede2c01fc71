import FrostHTTP
import NIOCore
import NIOHTTP1

/// The CGI/IIS server variables of a request, computed from the request itself.
struct ServerVariables {
    let exchange: HTTPExchange
    let site: SiteContext
    /// The request as this control block sees it (a child request of ExecURL has its own).
    let head: RequestHead

    init(exchange: HTTPExchange, site: SiteContext, head: RequestHead? = nil) {
        self.exchange = exchange
        self.site = site
        self.head = head ?? exchange.head
    }

    /// The path part of the request target, as sent.
    var rawPath: String { pathPart(of: head.uri) }

    var queryString: String { queryPart(of: head.uri) }

    /// PATH_INFO is the decoded path (IIS decodes it) below the virtual directory.
    var pathInfo: String { Self.pathInfo(site: site, uri: head.uri) }

    static func pathInfo(site: SiteContext, uri: String) -> String { site.pathInfo ?? percentDecoded(pathPart(of: uri)) }

    /// HTTPS: the site says so, or a trusted proxy forwarded an https request.
    var secure: Bool { Self.isSecure(site: site, exchange: exchange) }

    static func isSecure(site: SiteContext, exchange: HTTPExchange) -> Bool { site.secure || exchange.forwarded?.secure == true }

    var serverName: String { serverName(host: head.headers.first(name: "host")) }

    /// SERVER_NAME from the request's (first) Host header: its host part, or the local
    /// address the request came in on when there is none.
    func serverName(host: String?) -> String { Self.serverName(host: host, exchange: exchange) }

    static func serverName(host: String?, exchange: HTTPExchange) -> String {
        if let host {
            if host.hasPrefix("[") { return String(host.prefix { $0 != "]" }) + "]" }
            guard let colon = host.utf8.firstIndex(of: UInt8(ascii: ":")) else { return host }
            return String(host[..<colon])
        }
        let local = exchange.addresses.localIP
        return local.isEmpty ? "localhost" : local
    }

    func value(_ name: String) -> String? {
        let headers = head.headers
        let filter = exchange.filterRequest
        switch name {
        case "ALL_HTTP":
            return headers.map { "HTTP_" + cgiName($0.name) + ":" + $0.value + "\n" }.joined()
        case "ALL_RAW":
            return headers.map { $0.name + ": " + $0.value + "\r\n" }.joined()
        case "APPL_PHYSICAL_PATH": return site.physicalPath.hasSuffix("/") ? site.physicalPath : site.physicalPath + "/"
        case "APPL_MD_PATH": return "/LM/W3SVC/1/ROOT"
        case "AUTH_TYPE": return (filter?.user ?? "").isEmpty ? "" : "Basic"
        case "AUTH_USER", "LOGON_USER", "REMOTE_USER": return filter?.user ?? ""
        case "AUTH_PASSWORD": return filter?.password ?? ""
        case "CONTENT_LENGTH": return exchange.declaredLength.map(String.init) ?? (exchange.isChunked ? "" : "0")
        case "CONTENT_TYPE": return headers.first(name: "content-type") ?? ""
        case "GATEWAY_INTERFACE": return "CGI/1.1"
        case "HTTPS": return secure ? "on" : "off"
        case "HTTP_VERSION", "SERVER_PROTOCOL": return "HTTP/\(head.version.major).\(head.version.minor)"
        case "INSTANCE_ID": return "1"
        case "LOCAL_ADDR": return exchange.addresses.localIP
        case "PATH_INFO": return pathInfo
        case "PATH_TRANSLATED": return filter?.physicalPath ?? (site.physicalPath + pathInfo)
        case "QUERY_STRING": return queryString
        case "REMOTE_ADDR", "REMOTE_HOST": return exchange.clientAddress
        case "REMOTE_PORT": return exchange.addresses.remotePort
        case "REQUEST_METHOD": return head.method.rawValue
        case "REQUEST_URI", "HTTP_URL", "CACHE_URL", "UNENCODED_URL": return head.uri
        case "SCRIPT_NAME": return site.scriptName
        case "SERVER_NAME": return serverName
        case "SERVER_PORT": return exchange.addresses.localPort
        case "SERVER_PORT_SECURE": return secure ? "1" : "0"
        case "SERVER_SOFTWARE": return site.serverSoftware
        case "URL": return rawPath
        default:
            if name.hasPrefix("HTTP_") {
                let wanted = String(name.dropFirst(5))
                let values = headers.filter { cgiName($0.name) == wanted }.map(\.value)
                return values.isEmpty ? nil : values.joined(separator: ", ")
            }
            if name.hasPrefix("HEADER_") {
                let wanted = String(name.dropFirst(7)).lowercased()
                let values = headers.filter { $0.name.lowercased() == wanted }.map(\.value)
                return values.isEmpty ? nil : values.joined(separator: ", ")
            }
            return nil
        }
    }

    /// The variables a connection has before any request (raw data notifications).
    static func connectionValue(_ name: String, local: SocketAddress?, remote: SocketAddress?) -> String? {
        switch name {
        case "REMOTE_ADDR", "REMOTE_HOST": return remote?.ipAddress ?? ""
        case "REMOTE_PORT": return remote?.port.map(String.init) ?? ""
        case "LOCAL_ADDR", "SERVER_NAME": return local?.ipAddress ?? ""
        case "SERVER_PORT": return local?.port.map(String.init) ?? ""
        case "SERVER_PORT_SECURE": return "0"
        case "HTTPS": return "off"
        case "SERVER_SOFTWARE": return "frost/0.1"
        case "GATEWAY_INTERFACE": return "CGI/1.1"
        default: return nil
        }
    }

}

/// Where a request runs: its virtual directory's physical path and the split of its path.
struct SiteContext: Sendable {
    var physicalPath: String
    var scriptName: String = ""
    /// The part of the path after the virtual directory (nil: the whole decoded path).
    var pathInfo: String? = nil
    var secure = false
    var serverSoftware = "frost/0.1"
}

/// A header's name as a CGI variable has it, after "HTTP_": upper case, "-" as "_".
/// (Header names are tokens: ASCII.)
func cgiName(_ header: String) -> String {
    String(decoding: header.utf8.map(cgiByte), as: UTF8.self)
}

/// One byte of a header's name as its CGI variable has it.
func cgiByte(_ byte: UInt8) -> UInt8 {
    byte == UInt8(ascii: "-") ? UInt8(ascii: "_") : (97...122).contains(byte) ? byte - 32 : byte
}

