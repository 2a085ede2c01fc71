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
    let bytes = trimmingBlanks(bytes: text.utf8)
    if bytes.startIndex == text.utf8.startIndex && bytes.endIndex == text.utf8.endIndex { return text }
    return String(text[bytes.startIndex..<bytes.endIndex])
}

/// The same for bytes (a header read in place from a buffer). The byte forms are
/// @inlinable: the control block calls them per response, and unspecialised generic code
/// across the module boundary tripled a request's instructions (callgrind).
@inlinable package func trimmingBlanks<Bytes: BidirectionalCollection>(bytes: Bytes) -> Bytes.SubSequence where Bytes.Element == UInt8 {
    var start = bytes.startIndex, end = bytes.endIndex
    while start < end, bytes[start] == 32 || bytes[start] == 9 { bytes.formIndex(after: &start) }
    while start < end {
        let last = bytes.index(before: end)
        guard bytes[last] == 32 || bytes[last] == 9 else { break }
        end = last
    }
    return bytes[start..<end]
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
package func isHeaderName(_ name: String) -> Bool { isHeaderName(bytes: name.utf8) }

@inlinable package func isHeaderName<Bytes: Collection>(bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
    !bytes.isEmpty && bytes.allSatisfy { $0 > 32 && $0 < 127 && $0 != UInt8(ascii: ":") }
}

/// A header value: no CR, LF or NUL (which would split or end the header block).
package func isHeaderValue(_ value: String) -> Bool {
    // A native string's bytes in place (the UTF-8 view's iterator cost about 100
    // instructions for a reason phrase of two letters).
    value.utf8.withContiguousStorageIfAvailable { isHeaderValue(bytes: $0) } ?? isHeaderValue(bytes: value.utf8)
}

@inlinable package func isHeaderValue<Bytes: Collection>(bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
    !bytes.contains { $0 == 0 || $0 == 10 || $0 == 13 }
}

/// Whether `bytes` are `lowercase` (ASCII lower case) but for the case of their ASCII letters.
package func equalsIgnoringASCIICase(bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
    equalsIgnoringASCIICase(bytes: bytes, UnsafeRawBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount))
}

/// Whether two byte strings are equal but for the case of their ASCII letters.
package func equalsIgnoringASCIICase(bytes: UnsafeRawBufferPointer, _ other: UnsafeRawBufferPointer) -> Bool {
    guard bytes.count == other.count else { return false }
    for index in 0..<bytes.count where bytes[index] != other[index] {
        // Equal but for case only if both are the same letter: setting bit 5 lowers it.
        let lower = bytes[index] | 0x20
        guard lower == other[index] | 0x20, lower >= UInt8(ascii: "a"), lower <= UInt8(ascii: "z") else { return false }
    }
    return true
}

extension String {
    /// Whether this is `lowercase` (ASCII lower case) but for the case of its ASCII letters.
    package func equalsIgnoringASCIICase(_ lowercase: StaticString) -> Bool {
        guard utf8.count == lowercase.utf8CodeUnitCount else { return false }
        var text = self  // native strings are contiguous: read in place
        return text.withUTF8 { FrostHTTP.equalsIgnoringASCIICase(bytes: UnsafeRawBufferPointer($0), lowercase) }
    }

    /// Without Foundation: trims the given characters from both ends.
    package func trimmingCharacters(in set: String) -> String {
        let characters = Set(set)
        var view = self[...]
        while let first = view.first, characters.contains(first) { view = view.dropFirst() }
        while let last = view.last, characters.contains(last) { view = view.dropLast() }
        return String(view)
    }
}
