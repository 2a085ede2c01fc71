@preconcurrency import CPython

/// A Python object someone else holds a reference to for as long as this is used: an
/// argument of a native call (`NativeArguments.requiredBorrowed`), read in place.
///
/// Making one costs nothing: no allocation and no reference count, where a `PythonObject`
/// costs an allocation and its release (about 280 instructions, for each argument of
/// every `WriteClient` or `start_response`). It must not outlive the call; keep the
/// object with `object`. The GIL must be held, as for `PythonObject`, whose read
/// accessors are these.
public struct BorrowedObject {
    public let pointer: UnsafeMutablePointer<PyObject>

    public init(_ pointer: UnsafeMutablePointer<PyObject>) {
        self.pointer = pointer
    }

    /// A reference of its own, to keep beyond the call.
    public var object: PythonObject { PythonObject(borrowing: pointer) }

    public var isNone: Bool { pointer == frost_none() }
    public var typeName: String { String(cString: frost_type_name(pointer)) }
    public var isString: Bool { frost_is_str(pointer) != 0 }
    public var isBytes: Bool { frost_is_bytes(pointer) != 0 }
    public var isInt: Bool { frost_is_int(pointer) != 0 }
    public var isTuple: Bool { frost_is_tuple(pointer) != 0 }
    public var isList: Bool { frost_is_list(pointer) != 0 }
    public var isByteArray: Bool {
        if frost_type_object(pointer) == frost_python.bytearray_type { return true }
        let subclass = PyObject_IsInstance(pointer, frost_python.bytearray_type)
        if subclass < 0 { PyErr_Clear() }
        return subclass == 1
    }

    /// The `str` value as Swift text; throws TypeError for other types.
    public func asString() throws -> String {
        guard isString else { throw PythonError.raise(.typeError, "expected str, got \(typeName)") }
        return String(decoding: try BorrowedObject.utf8(of: pointer), as: UTF8.self)
    }

    public func asInt() throws -> Int {
        let v = PyLong_AsSsize_t(pointer)
        if v == -1, PyErr_Occurred() != nil { throw PythonError.fetch() }
        return v
    }

    /// A copy of a bytes object's contents; throws TypeError for other types.
    public func asBytes() throws -> [UInt8] { try withBytes { Array($0) } }

    /// The length of a `bytes` or `bytearray` object, without reading it; nil for any other.
    public var byteCount: Int? {
        if isBytes { return PyBytes_Size(pointer) }
        return isByteArray ? PyByteArray_Size(pointer) : nil
    }

    /// The contents of a bytes object, read in place (no copy; valid inside `body` only).
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard isBytes else { throw PythonError.raise(.typeError, "expected bytes, got \(typeName)") }
        return try body(UnsafeRawBufferPointer(start: PyBytes_AsString(pointer), count: PyBytes_Size(pointer)))
    }

    /// The UTF-8 bytes of a `str` (CPython's own cached copy) or the bytes of a `bytes`
    /// object, valid during `body`, without a copy.
    public func withUTF8Bytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        if isBytes { return try withBytes(body) }
        guard isString else { throw PythonError.raise(.typeError, "expected str or bytes, got \(typeName)") }
        return try body(try BorrowedObject.utf8(of: pointer))
    }

    public func isTrue() throws -> Bool {
        let r = PyObject_IsTrue(pointer)
        if r < 0 { throw PythonError.fetch() }
        return r == 1
    }

    /// `self(*args)` by vectorcall.
    public func vectorcall(_ args: [PythonObject]) throws -> PythonObject {
        try withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<PyObject>?.self, capacity: args.count) { vector in
            for (index, argument) in args.enumerated() { vector[index] = argument.pointer }
            return try PythonObject.check(PyObject_VectorcallDict(pointer, vector.baseAddress, args.count, nil))
        }
    }

    /// `self(first, second)`, without an array for the arguments (a WSGI application's call).
    public func vectorcall(_ first: PythonObject, _ second: PythonObject) throws -> PythonObject {
        var vector: (UnsafeMutablePointer<PyObject>?, UnsafeMutablePointer<PyObject>?) = (first.pointer, second.pointer)
        return try withUnsafeMutablePointer(to: &vector) { tuple in
            try tuple.withMemoryRebound(to: UnsafeMutablePointer<PyObject>?.self, capacity: 2) {
                try PythonObject.check(PyObject_VectorcallDict(pointer, $0, 2, nil))
            }
        }
    }

    /// `str(self)`.
    public func str() throws -> String { try PythonObject.check(PyObject_Str(pointer)).asString() }

    /// `repr(self)`.
    public func repr() throws -> String { try PythonObject.check(PyObject_Repr(pointer)).asString() }

    /// For a list or tuple of `(str, str)` tuples (WSGI's response headers): calls `body`
    /// with each pair's UTF-8 bytes, read in place, and returns true; returns false, having
    /// called nothing, when the object has any other shape.
    public func withStringPairs(_ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) throws -> Void) throws -> Bool {
        let isList = self.isList
        guard isList || isTuple else { return false }
        let count = isList ? PyList_Size(pointer) : PyTuple_Size(pointer)
        func pair(_ index: Int) -> (UnsafeMutablePointer<PyObject>, UnsafeMutablePointer<PyObject>)? {
            guard let item = isList ? PyList_GetItem(pointer, index) : PyTuple_GetItem(pointer, index),
                  frost_is_tuple(item) != 0, PyTuple_Size(item) == 2,
                  let first = PyTuple_GetItem(item, 0), let second = PyTuple_GetItem(item, 1),
                  frost_is_str(first) != 0, frost_is_str(second) != 0 else { return nil }
            return (first, second)
        }
        // Every pair is checked before the first is handed over, and looked up once: the
        // pointers are kept on the stack meanwhile (nothing runs Python in between).
        typealias Pair = (UnsafeMutablePointer<PyObject>, UnsafeMutablePointer<PyObject>)
        return try withUnsafeTemporaryAllocation(of: Pair.self, capacity: count) { pairs in
            for index in 0..<count {
                guard let found = pair(index) else { return false }
                pairs.initializeElement(at: index, to: found)
            }
            for (first, second) in pairs {
                try body(try BorrowedObject.utf8(of: first).bindMemory(to: UInt8.self),
                         try BorrowedObject.utf8(of: second).bindMemory(to: UInt8.self))
            }
            return true
        }
    }

    /// CPython's cached UTF-8 of a `str`.
    static func utf8(of text: UnsafeMutablePointer<PyObject>) throws -> UnsafeRawBufferPointer {
        var size: Py_ssize_t = 0
        guard let utf8 = PyUnicode_AsUTF8AndSize(text, &size) else { throw PythonError.fetch() }
        return UnsafeRawBufferPointer(start: utf8, count: size)
    }
}
