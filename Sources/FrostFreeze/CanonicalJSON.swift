import Foundation

/// How the packager writes JSON: indented, keys sorted, slashes unescaped, ending in a
/// newline, so the same value always gives the same bytes (builds and images are
/// reproducible, and files diff well). `bundle.json` is the exception: FrostBundle's
/// writer, which the Foundation-free loader shares.
public func canonicalJSON(_ value: some Encodable) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return try encoder.encode(value) + Data("\n".utf8)
}
