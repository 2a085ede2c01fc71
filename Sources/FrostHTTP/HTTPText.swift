// Text helpers of HTTP/1.1 the layers share: request-target parts, header syntax, blanks, percent-decoding.

/// The path part of a request target (before any "?"), as sent.
package func pathPart(of uri: String) -> String {
    guard let question = uri.utf8.firstIndex(of: UInt8(ascii: "?")) else { return uri }
    return String(uri[..<question])
}

/// The query of a request target (after the first "?"; "" without one), as sent.
package func queryPart(of uri: String) -> String {
    guard let question = uri.utf8.firstIndex(of: UInt8(ascii: "?")) else { return "" }
    return String(uri[uri.utf8.index(after: question)...])
}

/// `text` without the blanks (spaces and tabs) around it, as header values are read.
package func trimmingBlanks(_ text: String) -> String {
    let bytes = text.utf8
    guard let first = bytes.firstIndex(where: { $0 != 32 && $0 != 9 }) else { return "" }
    let last = bytes.lastIndex(where: { $0 != 32 && $0 != 9 })!
    if first == bytes.startIndex && last == bytes.index(before: bytes.endIndex) { return text }
    return String(text[first...last])
}

package func percentDecoded(_ text: String) -> String {
    if !text.utf8.contains(UInt8(ascii: "%")) { return text }
    return String(decoding: percentDecodedBytes(text), as: UTF8.self)
}

/// The bytes `%XX` escapes stand for; a `%` not followed by two hex digits stays as it is.
package func percentDecodedBytes(_ text: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var iterator = Array(text.utf8)[...]
    while let byte = iterator.popFirst() {
        if byte == UInt8(ascii: "%"), iterator.count >= 2,
           let value = UInt8(String(decoding: iterator.prefix(2), as: UTF8.self), radix: 16) {
            bytes.append(value)
            iterator = iterator.dropFirst(2)
        } else {
            bytes.append(byte)
        }
    }
    return bytes
}
/// A header name: visible ASCII without ':' (empty is not one).
package func isHeaderName(_ name: String) -> Bool {
    !name.isEmpty && name.utf8.allSatisfy { $0 > 32 && $0 < 127 && $0 != UInt8(ascii: ":") }
}

/// A header value: no CR, LF or NUL (which would split or end the header block).
package func isHeaderValue(_ value: String) -> Bool {
    !value.utf8.contains { $0 == 0 || $0 == 10 || $0 == 13 }
}

extension String {
    /// Without Foundation: trims the given characters from both ends.
    package func trimmingCharacters(in set: String) -> String {
        let characters = Set(set)
        var view = self[...]
        while let first = view.first, characters.contains(first) { view = view.dropFirst() }
        while let last = view.last, characters.contains(last) { view = view.dropLast() }
        return String(view)
    }
}
