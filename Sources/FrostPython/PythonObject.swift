@preconcurrency import CPython

/// An owned, strong reference to a Python object.
///
/// The reference is released when the Swift object goes away. Every operation must run
/// with the GIL held by the calling thread (inside `PythonThreadState.withGIL`,
/// `Python.withGIL`, or a native callback); the release alone is safe anywhere: without
/// the GIL it takes it for the moment of the release, and after finalisation it does
/// nothing.
public final class PythonObject: @unchecked Sendable, CustomStringConvertible {
    // @unchecked: the pointer is only dereferenced under the GIL (see above).
    public let pointer: UnsafeMutablePointer<PyObject>

    /// Takes ownership of a new reference (as returned by most C API functions).
    public init(owning pointer: UnsafeMutablePointer<PyObject>) {
        self.pointer = pointer
    }

    /// Adds a reference to a borrowed pointer and owns that.
    public init(borrowing pointer: UnsafeMutablePointer<PyObject>) {
        frost_incref(pointer)
        self.pointer = pointer
    }

    deinit {
        if frost_gil_held_by_this_thread() != 0 {
            frost_decref(pointer)
        } else if Py_IsInitialized() != 0 {
            let state = PyGILState_Ensure()
            frost_decref(pointer)
            PyGILState_Release(state)
        }
        // After finalisation the object is gone with the interpreter: nothing to release.
    }

    /// Wraps a new reference, or throws the pending Python exception when it is NULL.
    public static func check(_ pointer: UnsafeMutablePointer<PyObject>?) throws -> PythonObject {
        guard let pointer else { throw PythonError.fetch() }
        return PythonObject(owning: pointer)
    }

    /// Hands the reference to C code that steals it (the Swift object no longer owns one).
    public func newReference() -> UnsafeMutablePointer<PyObject> {
        frost_incref(pointer)
        return pointer
    }

    // MARK: Constants and conversions from Swift

    // Made once (on first use, with the GIL held) and kept: None, True and False are static
    // objects of libpython, and most native calls return one of them.
    public static let none = PythonObject(borrowing: frost_none())
    public static let `true` = PythonObject(borrowing: frost_true())
    public static let `false` = PythonObject(borrowing: frost_false())

    public convenience init(_ string: String) throws {
        let p = string.withCString { PyUnicode_FromStringAndSize($0, string.utf8.count) }
        guard let p else { throw PythonError.fetch() }
        self.init(owning: p)
    }

    public convenience init(_ value: Int) throws {
        guard let p = PyLong_FromSsize_t(value) else { throw PythonError.fetch() }
        self.init(owning: p)
    }

    public convenience init(bool value: Bool) {
        self.init(borrowing: value ? frost_true() : frost_false())
    }

    public convenience init(bytes: [UInt8]) throws {
        let p = bytes.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: max(buffer.count, 1)) {
                PyBytes_FromStringAndSize($0, buffer.count)
            }
        }
        guard let p else { throw PythonError.fetch() }
        self.init(owning: p)
    }

    /// A `str` of the UTF-8 bytes of `text` decoded as Latin-1, one code point per byte:
    /// what WSGI (PEP 3333) wants for request data.
    public static func latin1(_ text: String) throws -> PythonObject {
        var text = text
        return try text.withUTF8 { PythonObject(owning: try decodeLatin1(UnsafeRawBufferPointer($0))) }
    }

    /// The same from bytes.
    public static func latin1(_ bytes: UnsafeRawBufferPointer) throws -> PythonObject {
        PythonObject(owning: try decodeLatin1(bytes))
    }

    /// A new `str` of `bytes` decoded as Latin-1 (a new reference).
    private static func decodeLatin1(_ bytes: UnsafeRawBufferPointer) throws -> UnsafeMutablePointer<PyObject> {
        guard let text = PyUnicode_DecodeLatin1(bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count, nil) else {
            throw PythonError.fetch()
        }
        return text
    }

    /// An interned `str`, for keys used again and again (cache it: creating one looks it up).
    public static func interned(_ text: String) throws -> PythonObject {
        try check(PyUnicode_InternFromString(text))
    }

    /// A new `bytes` object of `count` bytes that `fill` writes (it must write them all).
    public static func bytes(count: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws -> PythonObject {
        let object = try check(PyBytes_FromStringAndSize(nil, count))
        guard let start = PyBytes_AsString(object.pointer) else { throw PythonError.fetch() }
        try fill(UnsafeMutableRawBufferPointer(start: start, count: count))
        return object
    }

    public static func bytes(_ raw: UnsafeRawBufferPointer) throws -> PythonObject {
        try check(PyBytes_FromStringAndSize(raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count))
    }

    public static func tuple(_ items: [PythonObject]) throws -> PythonObject {
        let t = try check(PyTuple_New(items.count))
        for (i, item) in items.enumerated() {
            PyTuple_SetItem(t.pointer, i, item.newReference())  // steals
        }
        return t
    }

    public static func list(_ items: [PythonObject]) throws -> PythonObject {
        let l = try check(PyList_New(items.count))
        for (i, item) in items.enumerated() {
            PyList_SetItem(l.pointer, i, item.newReference())  // steals
        }
        return l
    }

    public static func dict(_ items: [(String, PythonObject)] = []) throws -> PythonObject {
        let d = try check(PyDict_New())
        for (key, value) in items { try d.setItem(key, value) }
        return d
    }

    // MARK: Conversions to Swift

    /// The same object, read in place: the read accessors below are `BorrowedObject`'s.
    public var borrowed: BorrowedObject { BorrowedObject(pointer) }

    public var isNone: Bool { pointer == frost_none() }
    public var typeName: String { borrowed.typeName }
    public var referenceCount: Int { frost_refcount(pointer) }
    public var isString: Bool { borrowed.isString }
    public var isBytes: Bool { borrowed.isBytes }
    public var isInt: Bool { borrowed.isInt }
    public var isCode: Bool { frost_is_code(pointer) != 0 }
    public var isTuple: Bool { borrowed.isTuple }
    public var isList: Bool { borrowed.isList }
    /// Exactly a list or bytes object, not an instance of a subclass.
    public var isExactList: Bool { frost_is_exact_list(pointer) != 0 }
    public var isExactBytes: Bool { frost_is_exact_bytes(pointer) != 0 }
    public var isByteArray: Bool { borrowed.isByteArray }

    /// The `str` value as Swift text; throws TypeError for other types.
    public func asString() throws -> String { try borrowed.asString() }

    public func asInt() throws -> Int { try borrowed.asInt() }

    public func asBytes() throws -> [UInt8] { try borrowed.asBytes() }

    /// The length of a `bytes` or `bytearray` object, without reading it; nil for any other.
    public var byteCount: Int? { borrowed.byteCount }

    /// The contents of a bytes object, read in place (no copy; valid inside `body` only).
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R { try borrowed.withBytes(body) }

    /// The UTF-8 bytes of a `str` (CPython's own cached copy) or the bytes of a `bytes`
    /// object, valid during `body`, without a copy.
    public func withUTF8Bytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R { try borrowed.withUTF8Bytes(body) }

    public func isTrue() throws -> Bool { try borrowed.isTrue() }

    /// `str(self)`.
    public func str() throws -> String { try borrowed.str() }

    /// `repr(self)`.
    public func repr() throws -> String { try borrowed.repr() }

    /// `repr(self)`; safe from any thread (it takes the GIL when needed), since
    /// `description` gets called by logging and test tools anywhere.
    public var description: String {
        guard Py_IsInitialized() != 0 else { return "<Python object after finalisation>" }
        return Python.withGIL { (try? repr()) ?? "<\(typeName) object>" }
    }

    // MARK: Attributes, items, calls

    public func attribute(_ name: String) throws -> PythonObject {
        try PythonObject.check(PyObject_GetAttrString(pointer, name))
    }

    /// The attribute, or nil when it does not exist (other errors still throw).
    public func attributeIfPresent(_ name: String) throws -> PythonObject? {
        if PyObject_HasAttrString(pointer, name) == 0 { return nil }
        return try attribute(name)
    }

    public func setAttribute(_ name: String, _ value: PythonObject) throws {
        if PyObject_SetAttrString(pointer, name, value.pointer) != 0 { throw PythonError.fetch() }
    }

    public func item(_ key: String) throws -> PythonObject? {
        let k = try PythonObject(key)
        guard let v = PyDict_GetItemWithError(pointer, k.pointer) else {
            if PyErr_Occurred() != nil { throw PythonError.fetch() }
            return nil
        }
        return PythonObject(borrowing: v)
    }

    public func setItem(_ key: String, _ value: PythonObject) throws {
        let k = try PythonObject(key)
        if PyObject_SetItem(pointer, k.pointer, value.pointer) != 0 { throw PythonError.fetch() }
    }

    /// `self[key] = value` for a dict.
    public func setItem(_ key: PythonObject, _ value: PythonObject) throws { try setItem(key, value.borrowed) }

    public func setItem(_ key: PythonObject, _ value: BorrowedObject) throws {
        if PyDict_SetItem(pointer, key.pointer, value.pointer) != 0 { throw PythonError.fetch() }
    }

    /// `del self[key]` for a dict (a KeyError when it is not there).
    public func removeItem(_ key: PythonObject) throws {
        if PyDict_DelItem(pointer, key.pointer) != 0 { throw PythonError.fetch() }
    }

    /// `self[key] = str(value)` for a dict, the value's UTF-8 bytes decoded as Latin-1,
    /// one code point per byte (WSGI's request strings), without a wrapper object.
    public func setItem(_ key: PythonObject, latin1 value: String) throws {
        var value = value
        try value.withUTF8 { try setItem(key, latin1: UnsafeRawBufferPointer($0)) }
    }

    /// The same from bytes.
    public func setItem(_ key: PythonObject, latin1 bytes: UnsafeRawBufferPointer) throws {
        let text = try PythonObject.decodeLatin1(bytes)
        defer { frost_decref(text) }
        if PyDict_SetItem(pointer, key.pointer, text) != 0 { throw PythonError.fetch() }
    }

    /// `self[key] = value` for a dict, except that a key the dict has already gets
    /// `old + separator + value` (a repeated request header's variable). One lookup when
    /// the key is new.
    public func setOrJoinItem(_ key: PythonObject, _ value: PythonObject, separator: PythonObject) throws {
        let entries = PyDict_Size(pointer)
        guard let existing = PyDict_SetDefault(pointer, key.pointer, value.pointer) else { throw PythonError.fetch() }
        if PyDict_Size(pointer) > entries { return }  // it was new: value is in
        guard let head = PyUnicode_Concat(existing, separator.pointer) else { throw PythonError.fetch() }
        defer { frost_decref(head) }
        guard let whole = PyUnicode_Concat(head, value.pointer) else { throw PythonError.fetch() }
        defer { frost_decref(whole) }
        if PyDict_SetItem(pointer, key.pointer, whole) != 0 { throw PythonError.fetch() }
    }

    /// A shallow copy of a dict.
    public func dictCopy() throws -> PythonObject {
        guard frost_is_dict(pointer) != 0 else { throw PythonError.raise(.typeError, "expected dict, got \(typeName)") }
        return try PythonObject.check(PyDict_Copy(pointer))
    }

    /// A shallow copy of a dict with room for `extra` more entries: a dict that outgrows
    /// its table rebuilds it, and a copy is made no bigger than its original (a WSGI
    /// environ grew twice from the five constant entries it starts from).
    public func dictCopy(room extra: Int) throws -> PythonObject {
        guard frost_is_dict(pointer) != 0 else { throw PythonError.raise(.typeError, "expected dict, got \(typeName)") }
        let copy = try PythonObject.check(frost_PyDict_NewPresized(PyDict_Size(pointer) + extra))
        var position = 0
        var key: UnsafeMutablePointer<PyObject>?
        var value: UnsafeMutablePointer<PyObject>?
        while PyDict_Next(pointer, &position, &key, &value) != 0 {
            guard let key, let value else { continue }
            if PyDict_SetItem(copy.pointer, key, value) != 0 { throw PythonError.fetch() }
        }
        return copy
    }

    /// `self[range] = value` for lists.
    public func setItem(slice range: Range<Int>, _ value: PythonObject) throws {
        if PyList_SetSlice(pointer, range.lowerBound, range.upperBound, value.pointer) != 0 {
            throw PythonError.fetch()
        }
    }

    /// Calls the object with positional and keyword arguments.
    @discardableResult
    public func call(_ args: [PythonObject] = [], keywords: [(String, PythonObject)] = []) throws -> PythonObject {
        let argsTuple = try PythonObject.tuple(args)
        let kwargs = keywords.isEmpty ? nil : try PythonObject.dict(keywords)
        return try PythonObject.check(PyObject_Call(pointer, argsTuple.pointer, kwargs?.pointer))
    }

    /// `getattr(self, name)` for a name used on every request (no str made per call).
    public func attribute(_ name: InternedName) throws -> PythonObject {
        try PythonObject.check(PyObject_GetAttr(pointer, try name.object().pointer))
    }

    /// Calls the object with positional arguments the way the interpreter calls functions
    /// (vectorcall): no argument tuple is made.
    @discardableResult
    public func vectorcall(_ args: PythonObject...) throws -> PythonObject { try borrowed.vectorcall(args) }

    /// `isinstance(self, type)`.
    public func isInstance(of type: PythonObject) throws -> Bool {
        let result = PyObject_IsInstance(pointer, type.pointer)
        if result < 0 { throw PythonError.fetch() }
        return result == 1
    }

    /// Calls the method `name` with positional and keyword arguments.
    @discardableResult
    public func callMethod(_ name: String, _ args: [PythonObject] = [],
                           keywords: [(String, PythonObject)] = []) throws -> PythonObject {
        try attribute(name).call(args, keywords: keywords)
    }

    /// Calls method `name` with `args` the way the interpreter calls methods (vectorcall):
    /// no name string, bound method or argument tuple is made per call.
    public func callMethod(_ name: InternedName, _ args: [PythonObject] = []) throws -> PythonObject {
        let nameObject = try name.object()
        return try withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<PyObject>?.self, capacity: args.count + 1) { vector in
            vector[0] = pointer
            for (index, argument) in args.enumerated() { vector[index + 1] = argument.pointer }
            return try PythonObject.check(PyObject_VectorcallMethod(nameObject.pointer, vector.baseAddress, args.count + 1, nil))
        }
    }

    /// For a list or tuple of `(str, str)` pairs (response headers as WSGI gives them):
    /// calls `body` with each pair's UTF-8 bytes, valid during the call, without a wrapper
    /// object or a Swift string per item. Returns false, having called nothing, when the
    /// object is not of that shape (the caller then takes the general path).
    public func withStringPairs(_ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) throws -> Void) throws -> Bool {
        try borrowed.withStringPairs(body)
    }

    /// Calls `body` with each item of any iterable, one at a time as its iterator makes
    /// them (as `for item in self:` does; a generator runs between the calls).
    public func forEachItem(_ body: (PythonObject) throws -> Void) throws {
        let iterator = try PythonObject.check(PyObject_GetIter(pointer))
        while let next = PyIter_Next(iterator.pointer) {
            try body(PythonObject(owning: next))
        }
        if PyErr_Occurred() != nil { throw PythonError.fetch() }
    }

    /// The length of a list (or of an instance of a subclass); nil for anything else.
    public var listCount: Int? { isList ? PyList_Size(pointer) : nil }

    /// Item `index` of a list, which must be within its length.
    public func listItem(_ index: Int) -> PythonObject { PythonObject(borrowing: PyList_GetItem(pointer, index)!) }

    /// The items of any iterable.
    public func elements() throws -> [PythonObject] {
        let iterator = try PythonObject.check(PyObject_GetIter(pointer))
        var result: [PythonObject] = []
        while let next = PyIter_Next(iterator.pointer) {
            result.append(PythonObject(owning: next))
        }
        if PyErr_Occurred() != nil { throw PythonError.fetch() }
        return result
    }

    public static func === (a: PythonObject, b: PythonObject) -> Bool { a.pointer == b.pointer }
}

/// Module-level helpers that need the GIL.
public enum Python {
    /// `import name` (a dotted name returns the leaf module).
    public static func importModule(_ name: String) throws -> PythonObject {
        try PythonObject.check(PyImport_ImportModule(name))
    }

    /// The `sys` module.
    public static func sys() throws -> PythonObject { try importModule("sys") }

    /// Runs `source` as a module body in `globals` (a dict) and returns it.
    @discardableResult
    public static func run(_ source: String, filename: String = "<frost>",
                           globals: PythonObject? = nil) throws -> PythonObject {
        let namespace = try globals ?? PythonObject.dict([("__builtins__", try importModule("builtins"))])
        let code = try compile(source, filename: filename)
        _ = try PythonObject.check(PyEval_EvalCode(code.pointer, namespace.pointer, namespace.pointer))
        return namespace
    }

    /// Evaluates one expression in `globals`.
    public static func evaluate(_ expression: String, globals: PythonObject? = nil) throws -> PythonObject {
        let namespace = try globals ?? PythonObject.dict([("__builtins__", try importModule("builtins"))])
        let code = try PythonObject.check(frost_Py_CompileStringExFlags(expression, "<frost>", Py_eval_input, nil, -1))
        return try PythonObject.check(PyEval_EvalCode(code.pointer, namespace.pointer, namespace.pointer))
    }

    /// Compiles module source; `source` may carry a PEP 263 coding line.
    public static func compile(_ source: String, filename: String) throws -> PythonObject {
        try compile(bytes: Array(source.utf8), filename: filename)
    }

    public static func compile(bytes: [UInt8], filename: String) throws -> PythonObject {
        let name = try PythonObject(filename)
        var terminated = bytes
        terminated.append(0)
        if bytes.contains(0) {
            throw PythonError.raise(.syntaxError, "source code of \(filename) contains a NUL byte")
        }
        return try terminated.withUnsafeBufferPointer { buffer in
            try buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                try PythonObject.check(frost_Py_CompileStringObject($0, name.pointer, Py_file_input, nil, -1))
            }
        }
    }

    /// Unmarshals a code object (the body of a .pyc after its 16-byte header).
    public static func unmarshalCode(_ bytes: ArraySlice<UInt8>, filename: String) throws -> PythonObject {
        let object = try bytes.withUnsafeBufferPointer { buffer in
            try buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                try PythonObject.check(frost_PyMarshal_ReadObjectFromString($0, buffer.count))
            }
        }
        guard object.isCode else {
            throw PythonError.raise(.importError, "\(filename) does not hold a code object (found \(object.typeName))")
        }
        return object
    }

    /// The 4-byte magic number that starts every .pyc this interpreter accepts.
    public static var bytecodeMagic: [UInt8] {
        let magic = PyImport_GetMagicNumber()
        return (0..<4).map { UInt8((magic >> (8 * $0)) & 0xFF) }
    }

    /// Executes a code object in a module's namespace, as the builtin `exec` does: a
    /// namespace without `__builtins__` gets the current builtins first (some modules
    /// read `globals()["__builtins__"]`).
    public static func exec(code: PythonObject, in namespace: PythonObject) throws {
        if PyDict_GetItemString(namespace.pointer, "__builtins__") == nil {
            if PyDict_SetItemString(namespace.pointer, "__builtins__", PyEval_GetBuiltins()) != 0 {
                throw PythonError.fetch()
            }
        }
        _ = try PythonObject.check(PyEval_EvalCode(code.pointer, namespace.pointer, namespace.pointer))
    }

    /// Runs `body` holding the GIL from any thread, via PyGILState (about 11 µs a call):
    /// for occasional calls only. Python work belongs on a `PythonThread`.
    public static func withGIL<R>(_ body: () throws -> R) rethrows -> R {
        if frost_gil_held_by_this_thread() != 0 { return try body() }
        let state = PyGILState_Ensure()
        defer { PyGILState_Release(state) }
        return try body()
    }

    /// Runs blocking work with the GIL released, from any thread that holds it (the
    /// equivalent of Py_BEGIN_ALLOW_THREADS ... Py_END_ALLOW_THREADS).
    public static func withoutGIL<R>(_ body: () throws -> R) rethrows -> R {
        precondition(frost_gil_held_by_this_thread() != 0, "withoutGIL needs the GIL held")
        let saved = PyEval_SaveThread()
        defer { PyEval_RestoreThread(saved) }
        return try body()
    }

    /// Whether the calling thread holds the GIL.
    public static var gilIsHeld: Bool { frost_gil_held_by_this_thread() != 0 }

    /// The version of the loaded Python (`PythonLibrary.load` came first).
    public static var version: PythonLibrary.Version {
        guard let loaded = PythonLibrary.loaded else { preconditionFailure("no Python library is loaded") }
        return loaded.version
    }
}

/// A method or attribute name used again and again (on every request): made into an
/// interned `str` once, on first use, with the GIL held.
public final class InternedName: @unchecked Sendable {
    // @unchecked: `cached` is written once, under the GIL, and read under it.
    public let text: String
    private var cached: PythonObject?

    public init(_ text: String) { self.text = text }

    /// The interned `str` (GIL held).
    public func object() throws -> PythonObject {
        if let cached { return cached }
        let made = try PythonObject.interned(text)
        cached = made
        return made
    }
}
