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
             notImplementedError, overflowError

        var pointer: UnsafeMutablePointer<PyObject> {
            switch self {
            case .typeError: return PyExc_TypeError
            case .valueError: return PyExc_ValueError
            case .attributeError: return PyExc_AttributeError
            case .importError: return PyExc_ImportError
            case .moduleNotFoundError: return PyExc_ModuleNotFoundError
            case .runtimeError: return PyExc_RuntimeError
            case .keyError: return PyExc_KeyError
            case .indexError: return PyExc_IndexError
            case .fileNotFoundError: return PyExc_FileNotFoundError
            case .osError: return PyExc_OSError
            case .syntaxError: return PyExc_SyntaxError
            case .notImplementedError: return PyExc_NotImplementedError
            case .overflowError: return PyExc_OverflowError
            }
        }
    }

    /// Creates (without raising) an exception of a builtin type, for throwing from Swift.
    public static func raise(_ type: Builtin, _ message: String) -> PythonError {
        PyErr_SetString(type.pointer, message)
        return fetch()
    }

    /// Raises an exception of any class with positional arguments, and returns it as an error.
    public static func raise(_ type: PythonObject, args: [PythonObject]) -> PythonError {
        do {
            let instance = try type.call(args)
            PyErr_SetObject(frost_type_object(instance.pointer), instance.pointer)
        } catch {
            return error as? PythonError ?? PythonError(typeName: "RuntimeError", message: "\(error)",
                                                        traceback: "", exception: nil)
        }
        return fetch()
    }

    init(typeName: String, message: String, traceback: String, exception: PythonObject?) {
        self.typeName = typeName
        self.message = message
        self.traceback = traceback
        self.exception = exception
    }

    /// Takes the pending exception (the error indicator is cleared). Needs the GIL.
    public static func fetch() -> PythonError {
        var type: UnsafeMutablePointer<PyObject>?
        var value: UnsafeMutablePointer<PyObject>?
        var traceback: UnsafeMutablePointer<PyObject>?
        PyErr_Fetch(&type, &value, &traceback)
        guard type != nil else {
            return PythonError(typeName: "SystemError", message: "an error was reported without a Python exception",
                               traceback: "", exception: nil)
        }
        PyErr_NormalizeException(&type, &value, &traceback)
        if let value, let traceback { PyException_SetTraceback(value, traceback) }
        let typeObject = type.map { PythonObject(owning: $0) }
        let valueObject = value.map { PythonObject(owning: $0) }
        let tracebackObject = traceback.map { PythonObject(owning: $0) }

        let name = qualifiedName(typeObject)
        let message = (try? valueObject?.str()) ?? ""
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
            PyErr_SetString(PyExc_RuntimeError, description)
        }
    }

    private static func qualifiedName(_ type: PythonObject?) -> String {
        guard let type else { return "Exception" }
        let name = (try? type.attribute("__qualname__").asString()) ?? "Exception"
        let module = (try? type.attribute("__module__").asString()) ?? "builtins"
        return module == "builtins" ? name : "\(module).\(name)"
    }

    private static func format(_ type: PythonObject, _ value: PythonObject, _ tb: PythonObject?) -> String? {
        // The traceback module may be missing in a broken bundle: fall back to nothing.
        guard let module = try? Python.importModule("traceback"),
              let lines = try? module.callMethod("format_exception", [type, value, tb ?? .none]),
              let joined = try? PythonObject("").callMethod("join", [lines]).asString()
        else {
            PyErr_Clear()
            return nil
        }
        return joined
    }
}

/// A Swift error that is not a Python exception, raised into Python as RuntimeError.
extension Error {
    /// Sets the Python error indicator from any Swift error.
    func raiseInPython() {
        if let python = self as? PythonError {
            python.restore()
        } else {
            PyErr_SetString(PyExc_RuntimeError, "\(self)")
        }
    }
}
