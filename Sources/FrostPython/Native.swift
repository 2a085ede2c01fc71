@preconcurrency import CPython
#if canImport(Glibc)
import Glibc
#endif

/// A Swift function callable from Python: positional arguments and keyword arguments in,
/// a new object out. Throwing a `PythonError` raises it in Python.
public typealias NativeCall = (_ arguments: [PythonObject], _ keywords: [(String, PythonObject)]) throws -> PythonObject

/// Argument `index` of a native call, given positionally or by keyword `name`; raises
/// TypeError in Python when it is missing.
public func requiredArgument(_ args: [PythonObject], _ keywords: [(String, PythonObject)], _ index: Int,
                             _ name: String) throws -> PythonObject {
    if let value = optionalArgument(args, keywords, index, name) { return value }
    throw PythonError.raise(.typeError, "missing required argument '\(name)' (pos \(index + 1))")
}

/// Argument `index` of a native call, given positionally or by keyword `name`, if given.
public func optionalArgument(_ args: [PythonObject], _ keywords: [(String, PythonObject)], _ index: Int,
                             _ name: String) -> PythonObject? {
    if index < args.count { return args[index] }
    return keywords.first { $0.0 == name }?.1
}

/// An attribute of a native type: a getter and, for writable ones, a setter.
public struct NativeAttribute<Payload: AnyObject> {
    public let get: (Payload) throws -> PythonObject
    public let set: ((Payload, PythonObject) throws -> Void)?
    public init(get: @escaping (Payload) throws -> PythonObject,
                set: ((Payload, PythonObject) throws -> Void)? = nil) {
        self.get = get
        self.set = set
    }
}

/// A Python type whose instances each carry one Swift object (the payload).
///
/// Attributes and methods are looked up in Swift tables; instances cannot be created from
/// Python, only handed out by `wrap`. When the Python object dies, the payload is
/// released.
public final class NativeType<Payload: AnyObject>: @unchecked Sendable, NativeTypeDefinition {
    // @unchecked: tables are set up before use; the type object is created under the GIL.
    public let qualifiedName: String
    public let doc: String
    public private(set) var attributes: [String: NativeAttribute<Payload>] = [:]
    public private(set) var methods: [String: (Payload, PythonObject) -> NativeCall] = [:]
    public var describe: ((Payload) -> String)?
    private var typePointer: UnsafeMutablePointer<PyObject>?
    private var methodDefinitions: [String: UnsafeMutablePointer<PyMethodDef>] = [:]

    /// `qualifiedName` is "module.Name", as Python shows it.
    public init(_ qualifiedName: String, doc: String = "") {
        self.qualifiedName = qualifiedName
        self.doc = doc
    }

    public func attribute(_ name: String, get: @escaping (Payload) throws -> PythonObject,
                          set: ((Payload, PythonObject) throws -> Void)? = nil) {
        precondition(typePointer == nil, "define attributes before the type is created")
        attributes[name] = NativeAttribute(get: get, set: set)
    }

    /// Defines a method: `body` gets the payload and the Python object itself (`self`)
    /// and returns the call.
    public func method(_ name: String, _ body: @escaping (Payload, PythonObject) -> NativeCall) {
        precondition(typePointer == nil, "define methods before the type is created")
        methods[name] = body
        methodDefinitions[name] = NativeFunctionBox.methodDefinition(name: name)
    }

    /// The Python type object (created on first use; needs the GIL).
    public func typeObject() throws -> PythonObject {
        if let typePointer { return PythonObject(borrowing: typePointer) }
        let slots = UnsafeMutablePointer<PyType_Slot>.allocate(capacity: 6)
        slots[0] = PyType_Slot(slot: Py_tp_dealloc, pfunc: unsafeBitCast(nativeDealloc, to: UnsafeMutableRawPointer.self))
        slots[1] = PyType_Slot(slot: Py_tp_getattro, pfunc: unsafeBitCast(nativeGetAttribute, to: UnsafeMutableRawPointer.self))
        slots[2] = PyType_Slot(slot: Py_tp_setattro, pfunc: unsafeBitCast(nativeSetAttribute, to: UnsafeMutableRawPointer.self))
        slots[3] = PyType_Slot(slot: Py_tp_repr, pfunc: unsafeBitCast(nativeRepr, to: UnsafeMutableRawPointer.self))
        slots[4] = PyType_Slot(slot: Py_tp_doc, pfunc: UnsafeMutableRawPointer(strdup(doc)))
        slots[5] = PyType_Slot(slot: 0, pfunc: nil)
        // The spec and its strings must outlive the type: they are allocated once, kept.
        let spec = UnsafeMutablePointer<PyType_Spec>.allocate(capacity: 1)
        spec.initialize(to: PyType_Spec(name: UnsafePointer(strdup(qualifiedName)),
                                        basicsize: Int32(frost_native_basicsize()), itemsize: 0,
                                        flags: UInt32(frost_native_type_flags()), slots: slots))
        let type = try PythonObject.check(PyType_FromSpec(spec))
        typePointer = type.newReference()  // kept for the life of the process
        NativeTypeRegistry.definitions[UnsafeMutableRawPointer(type.pointer)] = self
        return type
    }

    /// A new Python object carrying `payload`.
    public func wrap(_ payload: Payload) throws -> PythonObject {
        let type = try typeObject()
        let object = try PythonObject.check(frost_native_alloc(UnsafeMutableRawPointer(type.pointer).assumingMemoryBound(to: PyTypeObject.self)))
        frost_native_set_payload(object.pointer, Unmanaged.passRetained(payload as AnyObject).toOpaque())
        return object
    }

    /// The payload of `object` when it is an instance of this type.
    public func payload(of object: PythonObject) -> Payload? {
        guard let typePointer, frost_type_object(object.pointer) == typePointer,
              let raw = frost_native_payload(object.pointer) else { return nil }
        return Unmanaged<AnyObject>.fromOpaque(raw).takeUnretainedValue() as? Payload
    }

    // MARK: NativeTypeDefinition

    func getAttribute(_ payload: AnyObject, object: UnsafeMutablePointer<PyObject>, name: String) throws -> PythonObject? {
        guard let payload = payload as? Payload else { return nil }
        if let attribute = attributes[name] { return try attribute.get(payload) }
        if let method = methods[name], let definition = methodDefinitions[name] {
            return try NativeFunctionBox.function(definition: definition,
                                                  call: method(payload, PythonObject(borrowing: object)))
        }
        return nil
    }

    func setAttribute(_ payload: AnyObject, name: String, value: PythonObject?) throws -> Bool {
        guard let payload = payload as? Payload else { return false }
        guard let attribute = attributes[name] else {
            if methods[name] != nil {
                throw PythonError.raise(.attributeError, "'\(qualifiedName)' object attribute '\(name)' is read-only")
            }
            return false
        }
        guard let setter = attribute.set else {
            throw PythonError.raise(.attributeError, "attribute '\(name)' of '\(qualifiedName)' objects is not writable")
        }
        guard let value else {
            throw PythonError.raise(.attributeError, "cannot delete attribute '\(name)' of '\(qualifiedName)' objects")
        }
        try setter(payload, value)
        return true
    }

    func represent(_ payload: AnyObject) -> String {
        if let payload = payload as? Payload, let describe { return describe(payload) }
        return "<\(qualifiedName) object>"
    }
}

protocol NativeTypeDefinition: AnyObject {
    func getAttribute(_ payload: AnyObject, object: UnsafeMutablePointer<PyObject>, name: String) throws -> PythonObject?
    func setAttribute(_ payload: AnyObject, name: String, value: PythonObject?) throws -> Bool
    func represent(_ payload: AnyObject) -> String
}

/// Native type definitions by their type object; read and written under the GIL only.
enum NativeTypeRegistry {
    nonisolated(unsafe) static var definitions: [UnsafeMutableRawPointer: NativeTypeDefinition] = [:]

    static func lookup(_ object: UnsafeMutablePointer<PyObject>) -> (NativeTypeDefinition, AnyObject)? {
        guard let definition = definitions[UnsafeMutableRawPointer(frost_type_object(object))],
              let raw = frost_native_payload(object) else { return nil }
        return (definition, Unmanaged<AnyObject>.fromOpaque(raw).takeUnretainedValue())
    }
}

private let nativeDealloc: @convention(c) (UnsafeMutablePointer<PyObject>?) -> Void = { object in
    guard let object else { return }
    if let raw = frost_native_payload(object) {
        frost_native_set_payload(object, nil)
        Unmanaged<AnyObject>.fromOpaque(raw).release()
    }
    frost_native_free(object)
}

private let nativeGetAttribute: @convention(c) (UnsafeMutablePointer<PyObject>?, UnsafeMutablePointer<PyObject>?)
    -> UnsafeMutablePointer<PyObject>? = { object, name in
    guard let object, let name else { return nil }
    if let (definition, payload) = NativeTypeRegistry.lookup(object),
       let key = try? PythonObject(borrowing: name).asString() {
        do {
            if let value = try definition.getAttribute(payload, object: object, name: key) { return value.newReference() }
        } catch {
            error.raiseInPython()
            return nil
        }
    }
    return PyObject_GenericGetAttr(object, name)
}

private let nativeSetAttribute: @convention(c) (UnsafeMutablePointer<PyObject>?, UnsafeMutablePointer<PyObject>?,
                                                UnsafeMutablePointer<PyObject>?) -> Int32 = { object, name, value in
    guard let object, let name else { return -1 }
    if let (definition, payload) = NativeTypeRegistry.lookup(object) {
        do {
            let key = try PythonObject(borrowing: name).asString()
            if try definition.setAttribute(payload, name: key, value: value.map { PythonObject(borrowing: $0) }) {
                return 0
            }
        } catch {
            error.raiseInPython()
            return -1
        }
    }
    return PyObject_GenericSetAttr(object, name, value)
}

private let nativeRepr: @convention(c) (UnsafeMutablePointer<PyObject>?) -> UnsafeMutablePointer<PyObject>? = { object in
    guard let object else { return nil }
    let text = NativeTypeRegistry.lookup(object).map { $0.0.represent($0.1) } ?? "<native object>"
    return try? PythonObject(text).newReference()
}

/// The state behind a builtin function made from a Swift closure: a native object that
/// becomes the function's `__self__`.
final class NativeFunctionBox {
    let call: NativeCall
    init(_ call: @escaping NativeCall) { self.call = call }

    static let boxType = NativeType<NativeFunctionBox>("_frost.native_function_state")

    /// A PyMethodDef (kept for the life of the process) whose C function dispatches to
    /// the box passed as `self`.
    static func methodDefinition(name: String, doc: String = "") -> UnsafeMutablePointer<PyMethodDef> {
        let definition = UnsafeMutablePointer<PyMethodDef>.allocate(capacity: 1)
        definition.initialize(to: PyMethodDef(
            ml_name: UnsafePointer(strdup(name)),
            ml_meth: frost_as_pycfunction(nativeCallTrampoline),
            ml_flags: METH_FASTCALL | METH_KEYWORDS,
            ml_doc: UnsafePointer(strdup(doc))))
        return definition
    }

    static func function(definition: UnsafeMutablePointer<PyMethodDef>, call: @escaping NativeCall,
                         module: PythonObject? = nil) throws -> PythonObject {
        let box = try boxType.wrap(NativeFunctionBox(call))
        return try PythonObject.check(PyCFunction_NewEx(definition, box.pointer, module?.pointer))
    }
}

private let nativeCallTrampoline: FrostFastCall = { selfObject, args, nargs, kwnames in
    guard let selfObject, let raw = frost_native_payload(selfObject) else {
        PyErr_SetString(PyExc_SystemError, "native function without its state")
        return nil
    }
    let box = Unmanaged<AnyObject>.fromOpaque(raw).takeUnretainedValue() as! NativeFunctionBox
    let count = Int(frost_vectorcall_nargs(nargs))
    var positional: [PythonObject] = []
    positional.reserveCapacity(count)
    for i in 0..<count { positional.append(PythonObject(borrowing: args![i]!)) }
    var keywords: [(String, PythonObject)] = []
    if let kwnames {
        for j in 0..<PyTuple_Size(kwnames) {
            guard let key = try? PythonObject(borrowing: PyTuple_GetItem(kwnames, j)!).asString() else { return nil }
            keywords.append((key, PythonObject(borrowing: args![count + j]!)))
        }
    }
    do {
        return try box.call(positional, keywords).newReference()
    } catch {
        error.raiseInPython()
        return nil
    }
}

extension Python {
    /// A builtin function object that calls `body`.
    public static func function(_ name: String, doc: String = "", module: PythonObject? = nil,
                                _ body: @escaping NativeCall) throws -> PythonObject {
        try NativeFunctionBox.function(definition: NativeFunctionBox.methodDefinition(name: name, doc: doc),
                                       call: body, module: module)
    }
}

/// A builtin module defined from Swift, registered with `PyImport_AppendInittab` before
/// the interpreter starts, so `import NAME` finds it without any file.
public struct NativeModule: Sendable {
    public let name: String
    public let doc: String
    /// Fills the new module (functions, types, constants); runs under the GIL at import.
    public let populate: @Sendable (PythonObject) throws -> Void

    public init(name: String, doc: String = "", populate: @escaping @Sendable (PythonObject) throws -> Void) {
        self.name = name
        self.doc = doc
        self.populate = populate
    }
}

/// Inittab entries are plain C functions without context, so a fixed set of them index
/// into the registered modules.
enum NativeModuleRegistry {
    nonisolated(unsafe) static var modules: [NativeModule] = []

    static func register(_ list: [NativeModule]) {
        precondition(list.count <= initFunctions.count, "at most \(initFunctions.count) native builtin modules")
        modules = list
        for (index, module) in list.enumerated() {
            // The name is kept by CPython for the life of the process.
            PyImport_AppendInittab(strdup(module.name), initFunctions[index])
        }
    }

    static func create(_ index: Int) -> UnsafeMutablePointer<PyObject>? {
        let module = modules[index]
        let definition = frost_module_def_new(strdup(module.name), strdup(module.doc), nil)
        guard let created = frost_module_create(definition) else { return nil }
        let object = PythonObject(owning: created)
        do {
            try module.populate(object)
        } catch {
            error.raiseInPython()
            return nil
        }
        return object.newReference()
    }

    typealias InitFunction = @convention(c) () -> UnsafeMutablePointer<PyObject>?
    static let initFunctions: [InitFunction] = [
        { NativeModuleRegistry.create(0) }, { NativeModuleRegistry.create(1) },
        { NativeModuleRegistry.create(2) }, { NativeModuleRegistry.create(3) },
        { NativeModuleRegistry.create(4) }, { NativeModuleRegistry.create(5) },
        { NativeModuleRegistry.create(6) }, { NativeModuleRegistry.create(7) },
    ]
}
