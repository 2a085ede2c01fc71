import FrostPython

/// What `GetExtensionVersion(vi)` fills in (pywin32's HSE_VERSION_INFO).
public final class ExtensionVersionInfo {
    /// HSE_VERSION: major 8, minor 0, as IIS 7+ reports.
    public var extensionVersion = 8 << 16
    public var extensionDescription = ""
    public init() {}
}

/// What `GetFilterVersion(fv)` fills in (pywin32's HTTP_FILTER_VERSION).
public final class FilterVersionInfo {
    /// The server's filter API version (HTTP_FILTER_REVISION 8.0).
    public let serverFilterVersion = 8 << 16
    public var filterVersion = 8 << 16
    public var flags = 0
    public var filterDescription = ""
    public init() {}
}

/// The `_isapi` builtin module: the native objects the host hands to Python.
public enum IsapiNative {
    /// The largest description IIS keeps (HSE_MAX_EXT_DLL_NAME_LEN, SF_MAX_FILTER_DESC_LEN).
    static let maximumDescriptionLength = 256

    public static let extensionVersionType: NativeType<ExtensionVersionInfo> = {
        let type = NativeType<ExtensionVersionInfo>("_isapi.HSE_VERSION_INFO",
                                                    doc: "Extension version information, filled in by GetExtensionVersion.")
        type.attribute("ExtensionVersion", get: { try PythonObject($0.extensionVersion) },
                       set: { $0.extensionVersion = try $1.asInt() })
        type.attribute("ExtensionDesc", get: { try PythonObject($0.extensionDescription) },
                       set: { $0.extensionDescription = try description(from: $1, attribute: "ExtensionDesc") })
        type.describe = { "<HSE_VERSION_INFO ExtensionDesc=\($0.extensionDescription.debugDescription)>" }
        return type
    }()

    public static let filterVersionType: NativeType<FilterVersionInfo> = {
        let type = NativeType<FilterVersionInfo>("_isapi.HTTP_FILTER_VERSION",
                                                 doc: "Filter version information, filled in by GetFilterVersion.")
        type.attribute("ServerFilterVersion", get: { try PythonObject($0.serverFilterVersion) })
        type.attribute("FilterVersion", get: { try PythonObject($0.filterVersion) },
                       set: { $0.filterVersion = try $1.asInt() })
        type.attribute("Flags", get: { try PythonObject($0.flags) }, set: {
            let flags = try $1.asInt()
            guard flags >= 0, flags <= 0xFFFF_FFFF else {
                throw PythonError.raise(.valueError, "Flags must fit in 32 bits, got \(flags)")
            }
            $0.flags = flags
        })
        type.attribute("FilterDesc", get: { try PythonObject($0.filterDescription) },
                       set: { $0.filterDescription = try description(from: $1, attribute: "FilterDesc") })
        type.describe = { "<HTTP_FILTER_VERSION Flags=0x\(String($0.flags, radix: 16)) FilterDesc=\($0.filterDescription.debugDescription)>" }
        return type
    }()

    /// Descriptions accept str, bytes or None (a class without a docstring passes None
    /// from `SimpleExtension.GetExtensionVersion`); IIS keeps at most 256 characters.
    static func description(from value: PythonObject, attribute: String) throws -> String {
        let text: String
        if value.isNone {
            text = ""
        } else if value.isBytes {
            text = String(decoding: try value.asBytes(), as: UTF8.self)
        } else if value.isString {
            text = try value.asString()
        } else {
            throw PythonError.raise(.typeError, "\(attribute) must be a str, not \(value.typeName)")
        }
        return String(text.prefix(maximumDescriptionLength))
    }

    public static let builtinModule = NativeModule(
        name: "_isapi", doc: "Native objects of the frost ISAPI host."
    ) { module in
        try module.setAttribute("HSE_VERSION_INFO", extensionVersionType.typeObject())
        try module.setAttribute("HTTP_FILTER_VERSION", filterVersionType.typeObject())
        try module.setAttribute("server_software", PythonObject("frost"))
        // Set by the host when it runs with --debug: tracebacks may go to clients.
        try module.setAttribute("debug", .false)
    }
}

/// Names for the bits of a filter's `Flags` (IIS's SF_NOTIFY_* values), for messages,
/// `--check` and the host's notifications: the one table of them.
public enum FilterFlags {
    public static let names: [(Int, String)] = [
        (0x0000_0001, "SF_NOTIFY_SECURE_PORT"), (0x0000_0002, "SF_NOTIFY_NONSECURE_PORT"),
        (0x0000_8000, "SF_NOTIFY_READ_RAW_DATA"), (0x0000_4000, "SF_NOTIFY_PREPROC_HEADERS"),
        (0x0000_2000, "SF_NOTIFY_AUTHENTICATION"), (0x0000_1000, "SF_NOTIFY_URL_MAP"),
        (0x0000_0800, "SF_NOTIFY_ACCESS_DENIED"), (0x0000_0040, "SF_NOTIFY_SEND_RESPONSE"),
        (0x0000_0400, "SF_NOTIFY_SEND_RAW_DATA"), (0x0000_0200, "SF_NOTIFY_LOG"),
        (0x0000_0080, "SF_NOTIFY_END_OF_REQUEST"), (0x0000_0100, "SF_NOTIFY_END_OF_NET_SESSION"),
        (0x0008_0000, "SF_NOTIFY_ORDER_HIGH"), (0x0004_0000, "SF_NOTIFY_ORDER_MEDIUM"),
        (0x0002_0000, "SF_NOTIFY_ORDER_LOW"),
    ]

    /// "SF_NOTIFY_PREPROC_HEADERS|SF_NOTIFY_ORDER_LOW", with any unknown bits in hex.
    public static func describe(_ flags: Int) -> String {
        var rest = flags
        var parts: [String] = []
        for (bit, name) in names where flags & bit != 0 {
            parts.append(name)
            rest &= ~bit
        }
        if rest != 0 { parts.append("0x" + String(rest, radix: 16)) }
        return parts.isEmpty ? "0" : parts.joined(separator: "|")
    }
}
