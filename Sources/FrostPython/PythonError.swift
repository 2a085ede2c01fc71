@preconcurrency import CPython

/// A Python exception as a Swift error: its type, message and formatted traceback.
///
/// Thrown by every FrostPython call that fails in Python; when a native callback throws
/// one back into Python, the original exception object is raised again unchanged.
public struct PythonError: Error, CustomStringConvertible, @unchecked Sendable {
    // @unchecked: `exception` is a PythonObject, released safely from any thread.

    /// The exception's type name, qualified when not a builtin (e.g. "isapi.ExtensionError").
    public let typeName: String
    /// `str(exception)`.
    public let message: String
    /// `traceback.format_exception(...)` joined; empty when there was no traceback.
    public let traceback: String
    /// The exception object itself (nil when raised from Swift before it existed).
    public let exception: PythonObject?

    public var description: String {
        message.isEmpty ? typeName : "\(typeName): \(message)"
    }

    /// The builtin exception types native code raises.
    public enum Builtin: Sendable {
        case typeError, valueError, attributeError, importError, moduleNotFoundError,
             runtimeError, keyError, indexError, fileNotFoundError, osError, syntaxError,
             notImplementedError, overflowError, assertionError, stopIteration

        var pointer: UnsafeMutablePointer<PyObject> {
            switch self {
            case .typeError: return frost_PyExc_TypeError()
            case .valueError: return frost_PyExc_ValueError()
            case .attributeError: return frost_PyExc_AttributeError()
            case .importError: return frost_PyExc_ImportError()
            case .moduleNotFoundError: return frost_PyExc_ModuleNotFoundError()
            case .runtimeError: return frost_PyExc_RuntimeError()
            case .keyError: return frost_PyExc_KeyError()
            case .indexError: return frost_PyExc_IndexError()
            case .fileNotFoundError: return frost_PyExc_FileNotFoundError()
            case .osError: return frost_PyExc_OSError()
            case .syntaxError: return frost_PyExc_SyntaxError()
            case .notImplementedError: return frost_PyExc_NotImplementedError()
            case .overflowError: return frost_PyExc_OverflowError()
            case .assertionError: return frost_PyExc_AssertionError()
            case .stopIteration: return frost_PyExc_StopIteration()
            }
        }
    }

    /// Creates (without raising) an exception of a builtin type, for throwing from Swift.
    /// No traceback is formatted: this runs on hot paths (a path hook refusing a path)
    /// and must not import anything.
    public static func raise(_ type: Builtin, _ message: String) -> PythonError {
        let name = String(cString: frost_type_object_name(type.pointer))
        guard let text = PyUnicode_FromString(message) else {
            PyErr_Clear()
            return PythonError(typeName: name, message: message, traceback: "", exception: nil)
        }
        defer { frost_decref(text) }
        guard let instance = frost_call1(type.pointer, text) else {
            PyErr_Clear()
            return PythonError(typeName: name, message: message, traceback: "", exception: nil)
        }
        return PythonError(typeName: name, message: message, traceback: "", exception: PythonObject(owning: instance))
    }

    /// Creates an exception of any class from positional arguments, for throwing from Swift.
    public static func raise(_ type: PythonObject, args: [PythonObject]) -> PythonError {
        do {
            let instance = try type.call(args)
            let message = rawString(PyObject_Str(instance.pointer)) ?? ""
            return PythonError(typeName: qualifiedName(type.pointer), message: message, traceback: "", exception: instance)
        } catch {
            return error as? PythonError ?? PythonError(typeName: "RuntimeError", message: "\(error)",
                                                        traceback: "", exception: nil)
        }
    }

    /// An exception object that already exists, for raising it again unchanged (with the
    /// traceback it carries), as Python's `raise value` does.
    public static func reraise(_ exception: PythonObject) -> PythonError {
        PythonError(typeName: qualifiedName(frost_type_object(exception.pointer)),
                    message: rawString(PyObject_Str(exception.pointer)) ?? "", traceback: "", exception: exception)
    }

    init(typeName: String, message: String, traceback: String, exception: PythonObject?) {
        self.typeName = typeName
        self.message = message
        self.traceback = traceback
        self.exception = exception
    }

    /// Takes the pending exception (the error indicator is cleared) and formats its
    /// traceback. Needs the GIL. Uses raw C calls only, so a failure while describing
    /// the exception can never come back here.
    public static func fetch() -> PythonError {
        var type: UnsafeMutablePointer<PyObject>?
        var value: UnsafeMutablePointer<PyObject>?
        var traceback: UnsafeMutablePointer<PyObject>?
        PyErr_Fetch(&type, &value, &traceback)
        guard let type else {
            return PythonError(typeName: "SystemError", message: "an error was reported without a Python exception",
                               traceback: "", exception: nil)
        }
        var normalizedType: UnsafeMutablePointer<PyObject>? = type
        PyErr_NormalizeException(&normalizedType, &value, &traceback)
        if let value, let traceback { PyException_SetTraceback(value, traceback) }
        let typeObject = normalizedType.map { PythonObject(owning: $0) }
        let valueObject = value.map { PythonObject(owning: $0) }
        let tracebackObject = traceback.map { PythonObject(owning: $0) }

        let name = typeObject.map { qualifiedName($0.pointer) } ?? "Exception"
        let message = valueObject.flatMap { rawString(PyObject_Str($0.pointer)) } ?? ""
        var formatted = ""
        if let typeObject, let valueObject {
            formatted = format(typeObject, valueObject, tracebackObject) ?? ""
        }
        PyErr_Clear()
        return PythonError(typeName: name, message: message, traceback: formatted, exception: valueObject)
    }

    /// Puts this exception back as the pending one (for returning NULL to Python).
    public func restore() {
        if let exception {
            PyErr_SetObject(frost_type_object(exception.pointer), exception.pointer)
        } else {
            PyErr_SetString(frost_PyExc_RuntimeError(), description)
        }
    }

    /// "module.QualName", or just the name for builtins; raw C calls only.
    private static func qualifiedName(_ type: UnsafeMutablePointer<PyObject>) -> String {
        let name = rawString(PyObject_GetAttrString(type, "__qualname__")) ?? "Exception"
        let module = rawString(PyObject_GetAttrString(type, "__module__")) ?? "builtins"
        return module == "builtins" ? name : "\(module).\(name)"
    }

    /// Takes a new reference to a str and returns its text (nil, error cleared, otherwise).
    private static func rawString(_ object: UnsafeMutablePointer<PyObject>?) -> String? {
        guard let object else { PyErr_Clear(); return nil }
        defer { frost_decref(object) }
        var size: Py_ssize_t = 0
        guard frost_is_str(object) != 0, let utf8 = PyUnicode_AsUTF8AndSize(object, &size) else {
            PyErr_Clear()
            return nil
        }
        return utf8.withMemoryRebound(to: UInt8.self, capacity: size) {
            String(decoding: UnsafeBufferPointer(start: $0, count: size), as: UTF8.self)
        }
    }

    /// `traceback.format_exception` with raw C calls: a failure here must not come back
    /// into `fetch` (importing `traceback` can itself be what fails).
    private static func format(_ type: PythonObject, _ value: PythonObject, _ tb: PythonObject?) -> String? {
        guard let module = PyImport_ImportModule("traceback") else { PyErr_Clear(); return nil }
        defer { frost_decref(module) }
        guard let function = PyObject_GetAttrString(module, "format_exception") else { PyErr_Clear(); return nil }
        defer { frost_decref(function) }
        guard let args = PyTuple_Pack3(type.pointer, value.pointer, (tb ?? .none).pointer) else { PyErr_Clear(); return nil }
        defer { frost_decref(args) }
        guard let lines = PyObject_Call(function, args, nil) else { PyErr_Clear(); return nil }
        defer { frost_decref(lines) }
        guard let empty = PyUnicode_FromString(""), let joined = PyUnicode_Join(empty, lines) else { PyErr_Clear(); return nil }
        defer { frost_decref(empty); frost_decref(joined) }
        var size: Py_ssize_t = 0
        guard let utf8 = PyUnicode_AsUTF8AndSize(joined, &size) else { PyErr_Clear(); return nil }
        return utf8.withMemoryRebound(to: UInt8.self, capacity: size) {
            String(decoding: UnsafeBufferPointer(start: $0, count: size), as: UTF8.self)
        }
    }
}

/// A Swift error that is not a Python exception, raised into Python as RuntimeError.
extension Error {
    /// Sets the Python error indicator from any Swift error.
    func raiseInPython() {
        if let python = self as? PythonError {
            python.restore()
        } else {
            PyErr_SetString(frost_PyExc_RuntimeError(), "\(self)")
        }
    }
}
