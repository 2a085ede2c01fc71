/// Limits that keep bad or slow clients from holding the host (defaults in parentheses).
public struct HostLimits: Sendable {
    /// Request target length (8 KiB): longer gets 414.
    public var maxURIBytes = 8 * 1024
    /// Header fields (100) and their total size (32 KiB): more gets 431.
    public var maxHeaderCount = 100
    public var maxHeaderBytes = 32 * 1024
    /// Request body (1 GiB): a larger Content-Length gets 413; a chunked body that runs
    /// over is cut off.
    public var maxBodyBytes = 1 << 30
    /// Seconds for a new connection to deliver a complete request head (10).
    public var headerTimeout = 10.0
    /// Seconds a keep-alive connection may wait for its next request (60).
    public var idleTimeout = 60.0
    /// Seconds between two pieces of a request body (30): then the request fails (408
    /// before the handler was called, a failed read in it after).
    public var bodyTimeout = 30.0
    /// The slowest a request body may arrive, in bytes per second (500; 0: any rate): a
    /// body may take `bodyTimeout` plus a second for every `bodyMinimumRate` bytes received
    /// (Apache's mod_reqtimeout `body=30,MinRate=500`), so a client that trickles faster
    /// than the time-out still ends. Only time the host spends waiting for the client counts.
    public var bodyMinimumRate = 500
    /// Body bytes read before the handler is called (48 KiB, IIS's uploadReadAheadSize; at
    /// most 16 MiB): a body this size or smaller arrives in full while only the event loop
    /// holds it, so a slow upload cannot occupy a Python thread. The handler finds them in
    /// `AvailableData`.
    public var readAhead = 48 * 1024
    public static let maxReadAhead = 16 << 20
    /// Seconds a response write may wait for a client that reads nothing before the
    /// connection is cut (60, nginx's send_timeout).
    public var sendTimeout = 60.0
    /// Seconds a request may take from head to finished response (300): then 504, or the
    /// connection is cut if the headers already went out.
    public var requestTimeout = 300.0
    /// A request body the handler left unread is read and dropped, keeping the connection,
    /// when at most this many bytes of it (by Content-Length) are still to come (1 MiB).
    /// A larger or chunked remainder gets `Connection: close` instead.
    public var maxDiscardBytes = 1 << 20
    /// Before a connection closes after a response, what the client still sends is read
    /// and dropped (its side shut down first), so the response is not lost to a reset: for
    /// at most `lingeringTime` seconds in all (30), and `lingeringTimeout` between sends (5),
    /// as nginx's lingering_time and lingering_timeout. The same bounds apply to discarding.
    public var lingeringTime = 30.0
    public var lingeringTimeout = 5.0

    public init() {}
}
