import NIOCore
import NIOHTTP1

/// Which peers may tell the host who the client is. Behind nginx every connection comes
/// from the proxy, so REMOTE_ADDR and HTTPS must follow its X-Forwarded-For and
/// X-Forwarded-Proto; from any other peer those headers are a client's claim and ignored.
public struct TrustedProxies: Sendable {
    /// IP addresses as the socket reports them ("127.0.0.1", "::1").
    package let addresses: Set<String>
    /// Every peer of a unix socket (only local processes can connect to one).
    let unixPeers: Bool

    /// `entries`: IP addresses, or "unix".
    public init(_ entries: [String]) {
        unixPeers = entries.contains("unix")
        addresses = Set(entries.filter { $0 != "unix" })
    }

    public var isEmpty: Bool { addresses.isEmpty && !unixPeers }

    /// A client as the proxy reports it.
    public struct Client: Sendable, Equatable {
        public let address: String
        public let secure: Bool
    }

    /// The forwarded client, when `peer` is trusted and said who it was.
    package func client(peer: SocketAddress?, headers: RequestFields) -> Client? {
        guard !isEmpty else { return nil }
        let trusted: Bool
        switch peer {
        case .some(.unixDomainSocket), .none: trusted = unixPeers
        case .some(let address): trusted = address.ipAddress.map(addresses.contains) ?? false
        }
        guard trusted else { return nil }
        // nginx's $proxy_add_x_forwarded_for appends the address it saw: the last entry is
        // the one the trusted proxy vouches for.
        let forwardedFor = headers["x-forwarded-for"].flatMap { $0.split(separator: ",").map(String.init) }
            .map { $0.trimmingCharacters(in: " \t") }.filter { !$0.isEmpty }
        let proto = headers.first(name: "x-forwarded-proto")?.lowercased().trimmingCharacters(in: " \t")
        guard let address = forwardedFor.last ?? (proto != nil ? peer?.ipAddress : nil) else { return nil }
        return Client(address: address, secure: proto == "https")
    }
}
