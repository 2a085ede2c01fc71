import FrostHTTP
import FrostPython

/// What the ISAPI host keeps with one request, in its exchange's `attachment`: made only
/// when there is something to keep (a filter, a route), so a plain request allocates none.
final class IsapiRequestState {
    /// What the filter changed for this request (nil without a filter).
    let filterRequest: FilterRequest?
    /// Where the request was routed (set on the event loop before Python sees it).
    var site: SiteContext?

    init(filterRequest: FilterRequest?, site: SiteContext? = nil) {
        self.filterRequest = filterRequest
        self.site = site
    }
}

extension HTTPExchange {
    private var isapiState: IsapiRequestState? { attachment as? IsapiRequestState }

    /// What the filter changed for this request (nil without a filter).
    var filterRequest: FilterRequest? { isapiState?.filterRequest }

    /// Where the request was routed (set on the event loop before Python sees it).
    var site: SiteContext? {
        get { isapiState?.site }
        set {
            if let state = isapiState {
                state.site = newValue
            } else if newValue != nil {
                attachment = IsapiRequestState(filterRequest: nil, site: newValue)
            }
        }
    }

    /// The filter's view of this connection (nil without a filter).
    var filterConnection: FilterConnection? { (connectionAttachment as? RawDataHandler)?.connection }

    /// `sendHead` called with the GIL held: the head is only buffered, so the GIL is kept,
    /// unless a filter sees the head first (its notifications take the GIL themselves).
    func sendHeadHoldingGIL(status: Int, reason: String, fields: ResponseFields) throws {
        if headHook == nil {
            try sendHead(status: status, reason: reason, fields: fields)
        } else {
            try Python.withoutGIL { try sendHead(status: status, reason: reason, fields: fields) }
        }
    }
}
