@preconcurrency import CPython

/// A new reference held for the span of one scope on a path that runs per request (the
/// control block handed to `HttpExtensionProc`, the handler's return value, a native
/// method's result): released when it goes out of scope, as a `PythonObject` is, but
/// without the allocation and its release that a `PythonObject` costs (about 300
/// instructions each).
///
/// Non-copyable, so it has one owner and is released once. It must be dropped with the GIL
/// held (it is made and used under it); keep the object beyond that with `object`.
public struct OwnedObject: ~Copyable {
    public let pointer: UnsafeMutablePointer<PyObject>

    /// Takes ownership of a new reference.
    public init(owning pointer: UnsafeMutablePointer<PyObject>) {
        self.pointer = pointer
    }

    /// Takes a new reference, or throws the pending Python exception when it is NULL.
    public static func check(_ pointer: UnsafeMutablePointer<PyObject>?) throws -> OwnedObject {
        guard let pointer else { throw PythonError.fetch() }
        return OwnedObject(owning: pointer)
    }

    /// A Python int.
    public init(_ value: Int) throws {
        guard let pointer = PyLong_FromSsize_t(value) else { throw PythonError.fetch() }
        self.init(owning: pointer)
    }

    /// A Python bytes object of `text`'s UTF-8 (read in place).
    public init(bytesOf text: String) throws {
        var text = text
        let made = text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { PyBytes_FromStringAndSize($0.baseAddress, utf8.count) }
        }
        guard let made else { throw PythonError.fetch() }
        self.init(owning: made)
    }

    deinit { frost_decref(pointer) }

    /// The object, read in place (valid while this lives).
    public var borrowed: BorrowedObject { BorrowedObject(pointer) }

    /// A reference of its own, to keep beyond this scope.
    public var object: PythonObject { PythonObject(borrowing: pointer) }

    /// Hands the reference to C code that steals it (a native call's result).
    public consuming func release() -> UnsafeMutablePointer<PyObject> {
        let pointer = self.pointer
        discard self
        return pointer
    }
}

extension PythonObject {
    /// Calls method `name` with one argument (`HttpExtensionProc(ecb)`), as
    /// `callMethod(_:_:)` does, with the argument read in place and the result not
    /// wrapped: nothing allocated on the Swift side.
    public func callMethod(_ name: InternedName, borrowing argument: BorrowedObject) throws -> OwnedObject {
        let nameObject = try name.object()
        var vector: (UnsafeMutablePointer<PyObject>?, UnsafeMutablePointer<PyObject>?) = (pointer, argument.pointer)
        return try withUnsafeMutablePointer(to: &vector) { pair in
            try pair.withMemoryRebound(to: UnsafeMutablePointer<PyObject>?.self, capacity: 2) {
                try OwnedObject.check(PyObject_VectorcallMethod(nameObject.pointer, $0, 2, nil))
            }
        }
    }
}
