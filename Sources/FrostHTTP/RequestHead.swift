import NIOHTTP1

/// A request's head: the request line and the fields, as `RequestParser` read them.
///
/// In place of NIO's `HTTPRequestHead`, whose storage is a class and whose fields are a
/// pair of Swift strings each: a browser's request (15 fields, most longer than a string
/// holds inline) cost about 1,600 instructions a field to parse into it, mostly making and
/// freeing strings nobody read. Here the fields stay bytes until asked for.
package struct RequestHead: Sendable, Equatable {
    package var method: HTTPMethod
    package var uri: String
    package var version: HTTPVersion
    package var headers: RequestFields

    package init(version: HTTPVersion, method: HTTPMethod, uri: String, headers: RequestFields = RequestFields()) {
        self.version = version
        self.method = method
        self.uri = uri
        self.headers = headers
    }
}

/// A request's header fields in arrival order, kept as the bytes they came in: one buffer
/// of names and values and one array of where each is, made once per request. Strings are
/// made only for what is asked for (`first(name:)`, iteration); `forEachField` reads the
/// bytes in place. Names compare without regard to ASCII case, as RFC 9110 has them.
///
/// Changes (a filter's PREPROC_HEADERS, the Host of an absolute-form target) append the
/// new bytes and drop the old spans: a head is changed a few times at most.
package struct RequestFields: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    /// Where one field's name and value are in `bytes`.
    struct Span: Sendable, Equatable {
        var nameStart: Int32
        var nameCount: Int32
        var valueStart: Int32
        var valueCount: Int32
    }

    private var bytes: [UInt8] = []
    private var spans: [Span] = []

    package init() {}

    /// Fields from name and value pairs (heads made by the host: ExecURL's child requests,
    /// tests).
    package init(_ pairs: [(String, String)]) {
        for (name, value) in pairs { add(name: name, value: value) }
    }

    package init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    /// The parser's: the fields' lines as they came, copied at once (copying each name and
    /// value on its own cost about 250 instructions a field); `appendSpan` marks each field
    /// in them.
    init(lines: UnsafeRawBufferPointer) {
        bytes = Array(lines)
        spans.reserveCapacity(16)
    }

    /// Marks a field of the lines given to `init(lines:)`: `name` and `value` point into
    /// them (`lines` is where they start).
    mutating func appendSpan(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, lines: UnsafeRawPointer) {
        spans.append(Span(nameStart: Int32(lines.distance(to: name.baseAddress!)), nameCount: Int32(name.count),
                          valueStart: Int32(value.isEmpty ? 0 : lines.distance(to: value.baseAddress!)), valueCount: Int32(value.count)))
    }

    /// Appends a field from bytes the caller checked.
    mutating func append(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let nameStart = bytes.count
        bytes.append(contentsOf: name)
        let valueStart = bytes.count
        bytes.append(contentsOf: value)
        spans.append(Span(nameStart: Int32(nameStart), nameCount: Int32(name.count),
                          valueStart: Int32(valueStart), valueCount: Int32(value.count)))
    }

    package var count: Int { spans.count }
    package var isEmpty: Bool { spans.isEmpty }

    /// Calls `body` with each field's name and value bytes, in order, valid during the call.
    package func forEachField(_ body: (_ index: Int, _ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Void) rethrows {
        try bytes.withUnsafeBytes { all in
            for (index, span) in spans.enumerated() {
                try body(index, UnsafeRawBufferPointer(rebasing: all[Int(span.nameStart)..<Int(span.nameStart + span.nameCount)]),
                         UnsafeRawBufferPointer(rebasing: all[Int(span.valueStart)..<Int(span.valueStart + span.valueCount)]))
            }
        }
    }

    /// The value of the first field named `name`.
    package func first(name: String) -> String? {
        var found: Int?
        forEachIndex(named: name) { index in
            found = index
            return false
        }
        return found.map(value(at:))
    }

    /// The values of every field named `name`, in order.
    package subscript(name: String) -> [String] {
        indices(of: name).map { value(at: $0) }
    }

    /// Whether a field is named `name`.
    package func contains(name: String) -> Bool { !indices(of: name).isEmpty }

    /// The values of the fields named `name`, split at commas and trimmed, as NIO's
    /// `HTTPHeaders[canonicalForm:]` gives them (a filter's GetHeader).
    package subscript(canonicalForm name: String) -> [Substring] {
        HTTPHeaders(Array(self))[canonicalForm: name]
    }

    package mutating func add(name: String, value: String) {
        var (name, value) = (name, value)
        name.withUTF8 { name in
            value.withUTF8 { value in append(name: UnsafeRawBufferPointer(name), value: UnsafeRawBufferPointer(value)) }
        }
    }

    /// Removes every field named `name`.
    package mutating func remove(name: String) {
        let doomed = Set(indices(of: name))
        guard !doomed.isEmpty else { return }
        spans = spans.enumerated().filter { !doomed.contains($0.offset) }.map(\.element)
    }

    /// Removes the fields named `name` and adds one at the end, as NIO's `HTTPHeaders`
    /// does (a filter's SetHeader kept that order when the head was NIO's).
    package mutating func replaceOrAdd(name: String, value: String) {
        remove(name: name)
        add(name: name, value: value)
    }

    private func indices(of name: String) -> [Int] {
        var found: [Int] = []
        forEachIndex(named: name) { index in
            found.append(index)
            return true
        }
        return found
    }

    /// Calls `body` with the index of each field named `name`, in order, while it returns true.
    private func forEachIndex(named name: String, _ body: (Int) -> Bool) {
        var name = name
        name.withUTF8 { wanted in
            bytes.withUnsafeBytes { all in
                for (index, span) in spans.enumerated() where Int(span.nameCount) == wanted.count {
                    let start = Int(span.nameStart)
                    if equalsIgnoringASCIICase(bytes: UnsafeRawBufferPointer(rebasing: all[start..<start + wanted.count]),
                                               UnsafeRawBufferPointer(wanted)),
                       !body(index) {
                        return
                    }
                }
            }
        }
    }

    private func name(at index: Int) -> String {
        let span = spans[index]
        return String(decoding: bytes[Int(span.nameStart)..<Int(span.nameStart + span.nameCount)], as: UTF8.self)
    }

    private func value(at index: Int) -> String {
        let span = spans[index]
        return String(decoding: bytes[Int(span.valueStart)..<Int(span.valueStart + span.valueCount)], as: UTF8.self)
    }

    package struct Iterator: IteratorProtocol {
        fileprivate let fields: RequestFields
        fileprivate var index = 0

        package mutating func next() -> (name: String, value: String)? {
            guard index < fields.count else { return nil }
            defer { index += 1 }
            return (fields.name(at: index), fields.value(at: index))
        }
    }

    /// The fields as strings, in order.
    package func makeIterator() -> Iterator { Iterator(fields: self) }

    /// Equal when the same fields are there in the same order (the bytes behind may differ).
    package static func == (a: RequestFields, b: RequestFields) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }
}
