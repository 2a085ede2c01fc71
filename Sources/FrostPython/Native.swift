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

/// The arguments of one call to a native method, read where CPython passed them
/// (vectorcall): no array and no wrapper object until an argument is asked for.
public struct NativeArguments {
    private let base: UnsafePointer<UnsafeMutablePointer<PyObject>?>?
    /// How many arguments were passed by position.
    public let positionalCount: Int
    private let keywordNames: UnsafeMutablePointer<PyObject>?
    private let selfPointer: UnsafeMutablePointer<PyObject>

    init(self selfPointer: UnsafeMutablePointer<PyObject>, _ base: UnsafePointer<UnsafeMutablePointer<PyObject>?>?,
         _ nargs: Int, _ keywordNames: UnsafeMutablePointer<PyObject>?) {
        self.selfPointer = selfPointer
        self.base = base
        self.positionalCount = Int(frost_vectorcall_nargs(nargs))
        self.keywordNames = keywordNames
    }

    /// The object the method was called on (`self` in Python).
    public var selfObject: PythonObject { PythonObject(borrowing: selfPointer) }

    /// The object the method was called on, read in place (valid during the call).
    public var borrowedSelf: BorrowedObject { BorrowedObject(selfPointer) }

    /// Argument `index`, given positionally or by keyword `name`, if given.
    public func optional(_ index: Int, _ name: String) -> PythonObject? { optionalBorrowed(index, name)?.object }

    /// Argument `index`, given positionally or by keyword `name`; raises TypeError in
    /// Python when it is missing.
    public func required(_ index: Int, _ name: String) throws -> PythonObject { try requiredBorrowed(index, name).object }

    /// The same, read in place: valid during the call, and no wrapper object to make and
    /// free (the hot methods' arguments).
    public func optionalBorrowed(_ index: Int, _ name: String) -> BorrowedObject? {
        if index < positionalCount { return BorrowedObject(base![index]!) }
        guard let keywordNames else { return nil }
        for position in 0..<PyTuple_Size(keywordNames) {
            // Keyword names are str; compared without making a Swift string.
            if PyUnicode_CompareWithASCIIString(PyTuple_GetItem(keywordNames, position), name) == 0 {
                return BorrowedObject(base![positionalCount + position]!)
            }
        }
        return nil
    }

    public func requiredBorrowed(_ index: Int, _ name: String) throws -> BorrowedObject {
        if let value = optionalBorrowed(index, name) { return value }
        throw PythonError.raise(.typeError, "missing required argument '\(name)' (pos \(index + 1))")
    }
}

/// A method of a native type: the payload of the object it is called on, and the call's
/// arguments, in; a new object out. Throwing a `PythonError` raises it in Python.
public typealias NativeMethod<Payload> = (_ payload: Payload, _ arguments: NativeArguments) throws -> PythonObject

/// A Python type whose instances each carry one Swift object (the payload).
///
/// Attributes become `tp_getset` entries and methods `tp_methods` entries, so Python
/// finds them as it finds a builtin type's: no per-access string conversion, dictionary
/// lookup or function object (and `obj.method(...)` calls skip the bound method).
/// Instances cannot be created from Python, only handed out by `wrap`. When the Python
/// object dies, the payload is released.
public final class NativeType<Payload: AnyObject>: @unchecked Sendable, NativeTypeDefinition {
    // @unchecked: tables are set up before use; the type object is created under the GIL.
    public let qualifiedName: String
    public let doc: String
    /// The attributes' getters and setters as the C trampolines call them.
    private var attributes: [(name: String, slot: AttributeSlot)] = []
    /// The methods' bodies as the C trampolines call them (see `erasedCall`).
    private var methods: [(name: String, body: NativeMethodBody)] = []
    public var describe: ((Payload) -> String)?
    /// What calling an instance does (`tp_call`), if instances are callable.
    public private(set) var call: NativeMethod<Payload>?
    private var typePointer: UnsafeMutablePointer<PyObject>?

    /// `qualifiedName` is "module.Name", as Python shows it.
    public init(_ qualifiedName: String, doc: String = "") {
        self.qualifiedName = qualifiedName
        self.doc = doc
    }

    public func attribute(_ name: String, get: @escaping (Payload) throws -> PythonObject,
                          set: ((Payload, PythonObject) throws -> Void)? = nil) {
        let qualifiedName = qualifiedName
        attribute(name, slot: erasedSlot(name, get: { object in try get(try nativePayload(object, qualifiedName)).newReference() }, set: set))
    }

    /// The same for an attribute read once or more per request: its value is an
    /// `OwnedObject`, handed to Python as it is (see `method(_:owned:)`).
    public func attribute(_ name: String, owned get: @escaping (Payload) throws -> OwnedObject) {
        let qualifiedName = qualifiedName
        attribute(name, slot: erasedSlot(name, get: { object in try get(try nativePayload(object, qualifiedName)).release() }, set: nil))
    }

    private func attribute(_ name: String, slot: AttributeSlot) {
        precondition(typePointer == nil, "define attributes before the type is created")
        attributes.removeAll { $0.name == name }
        attributes.append((name, slot))
    }

    /// Defines a method: `body` gets the payload and the call's arguments (with the
    /// Python object itself, `self`).
    public func method(_ name: String, _ body: @escaping NativeMethod<Payload>) {
        method(name, body: NativeMethodBody(erasedCall(body)))
    }

    /// The same for a method called once or more per request: its result is an
    /// `OwnedObject`, handed to Python as it is (a `PythonObject` result costs an
    /// allocation and its release per call).
    public func method(_ name: String, owned body: @escaping (_ payload: Payload, _ arguments: NativeArguments) throws -> OwnedObject) {
        let qualifiedName = qualifiedName
        method(name, body: NativeMethodBody { object, arguments in
            try body(try nativePayload(object, qualifiedName), arguments).release()
        })
    }

    private func method(_ name: String, body: NativeMethodBody) {
        precondition(typePointer == nil, "define methods before the type is created")
        methods.removeAll { $0.name == name }
        methods.append((name, body))
    }

    /// Makes instances callable: `body` gets the payload and the call's arguments, as a
    /// method's does. A callable object costs less to hand out than a bound method.
    public func callable(_ body: @escaping NativeMethod<Payload>) {
        precondition(typePointer == nil, "define the call before the type is created")
        call = body
    }

    /// Makes instances their own iterators (`tp_iter`, `tp_iternext`): `next` gives the
    /// next item, or nil at the end.
    public func iterator(_ next: @escaping (Payload) throws -> PythonObject?) {
        precondition(typePointer == nil, "define the iteration before the type is created")
        self.next = next
    }
    private var next: ((Payload) throws -> PythonObject?)?

    /// The Python type object (created on first use; needs the GIL). The spec, its
    /// tables and their strings must outlive the type: they are allocated once, kept.
    public func typeObject() throws -> PythonObject {
        if let typePointer { return PythonObject(borrowing: typePointer) }
        let methodTable = UnsafeMutablePointer<PyMethodDef>.allocate(capacity: methods.count + 1)
        for (index, method) in methods.enumerated() {
            let slot = try NativeMethodSlots.claim(name: "\(qualifiedName).\(method.name)", method.body)
            methodTable[index] = PyMethodDef(ml_name: UnsafePointer(strdup(method.name)), ml_meth: frost_native_slot(slot),
                                             ml_flags: METH_FASTCALL | METH_KEYWORDS, ml_doc: nil)
        }
        methodTable[methods.count] = PyMethodDef(ml_name: nil, ml_meth: nil, ml_flags: 0, ml_doc: nil)
        let getSetTable = UnsafeMutablePointer<PyGetSetDef>.allocate(capacity: attributes.count + 1)
        for (index, attribute) in attributes.enumerated() {
            let closure = Unmanaged.passRetained(attribute.slot).toOpaque()  // kept
            getSetTable[index] = PyGetSetDef(name: UnsafePointer(strdup(attribute.name)), get: nativeGetter,
                                             set: attribute.slot.writable ? nativeSetter : nil,
                                             doc: nil, closure: closure)
        }
        getSetTable[attributes.count] = PyGetSetDef(name: nil, get: nil, set: nil, doc: nil, closure: nil)
        let slots = UnsafeMutablePointer<PyType_Slot>.allocate(capacity: 9)
        slots[0] = PyType_Slot(slot: Py_tp_dealloc, pfunc: unsafeBitCast(nativeDealloc, to: UnsafeMutableRawPointer.self))
        slots[1] = PyType_Slot(slot: Py_tp_methods, pfunc: UnsafeMutableRawPointer(methodTable))
        slots[2] = PyType_Slot(slot: Py_tp_getset, pfunc: UnsafeMutableRawPointer(getSetTable))
        slots[3] = PyType_Slot(slot: Py_tp_repr, pfunc: unsafeBitCast(nativeRepr, to: UnsafeMutableRawPointer.self))
        slots[4] = PyType_Slot(slot: Py_tp_doc, pfunc: UnsafeMutableRawPointer(strdup(doc)))
        var used = 5
        if let call {
            let slot = try NativeMethodSlots.claim(name: "\(qualifiedName).__call__", NativeMethodBody(erasedCall(call)))
            slots[used] = PyType_Slot(slot: Py_tp_call, pfunc: frost_native_call_slot(slot))
            used += 1
        }
        if let next {
            // The end is StopIteration, which CPython's loops take without a traceback.
            let slot = try NativeMethodSlots.claim(name: "\(qualifiedName).__next__", NativeMethodBody(erasedCall { payload, _ in
                guard let item = try next(payload) else { throw PythonError.raise(.stopIteration, "") }
                return item
            }))
            slots[used] = PyType_Slot(slot: Py_tp_iter, pfunc: frost_native_self_iter())
            slots[used + 1] = PyType_Slot(slot: Py_tp_iternext, pfunc: frost_native_next_slot(slot))
            used += 2
        }
        slots[used] = PyType_Slot(slot: 0, pfunc: nil)
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
        PythonObject(owning: try wrapOwned(payload).release())
    }

    /// The same, not wrapped (an object made per request: see `OwnedObject`).
    public func wrapOwned(_ payload: Payload) throws -> OwnedObject {
        // The kept type pointer once the type exists: no wrapper object per instance.
        let type = try typePointer ?? typeObject().pointer
        let object = try OwnedObject.check(frost_native_alloc(type))
        frost_native_set_payload(object.pointer, Unmanaged.passRetained(payload as AnyObject).toOpaque())
        return object
    }

    /// The payload of `object` when it is an instance of this type.
    public func payload(of object: PythonObject) -> Payload? {
        guard let typePointer, frost_type_object(object.pointer) == typePointer,
              let raw = frost_native_payload(object.pointer) else { return nil }
        return Unmanaged<AnyObject>.fromOpaque(raw).takeUnretainedValue() as? Payload
    }

    // MARK: Dispatch

    // The C trampolines call these closures, made once per method and attribute when the
    // type is created: a call finds its closure by slot, without a lookup in this generic
    // class's tables (whose tuple and function types took runtime metadata calls, about
    // 300 instructions a native call).

    private func erasedCall(_ body: @escaping NativeMethod<Payload>) -> NativeMethodSlots.Call {
        let qualifiedName = qualifiedName
        return { object, arguments in try body(try nativePayload(object, qualifiedName), arguments).newReference() }
    }

    private func erasedSlot(_ name: String, get: @escaping AttributeSlot.Get,
                            set setter: ((Payload, PythonObject) throws -> Void)?) -> AttributeSlot {
        let qualifiedName = qualifiedName
        let set: AttributeSlot.Set
        if let setter {
            set = { object, value in
                guard let value else {
                    throw PythonError.raise(.attributeError, "cannot delete attribute '\(name)' of '\(qualifiedName)' objects")
                }
                try setter(try nativePayload(object, qualifiedName), value)
            }
        } else {
            set = { _, _ in
                throw PythonError.raise(.attributeError, "attribute '\(name)' of '\(qualifiedName)' objects is not writable")
            }
        }
        return AttributeSlot(get: get, set: set, writable: setter != nil)
    }

    func represent(_ payload: AnyObject) -> String {
        if let payload = payload as? Payload, let describe { return describe(payload) }
        return "<\(qualifiedName) object>"
    }
}

/// The payload of an instance of a native type (Python checked the type for tp_methods
/// and tp_getset entries; a released payload is nil). A free function, not a static one of
/// `NativeType`: that would look up the generic class's metadata on every call.
private func nativePayload<Payload: AnyObject>(_ object: UnsafeMutablePointer<PyObject>, _ qualifiedName: String) throws -> Payload {
    guard let raw = frost_native_payload(object) else {
        throw PythonError.raise(.runtimeError, "'\(qualifiedName)' object is no longer usable")
    }
    return Unmanaged<Payload>.fromOpaque(raw).takeUnretainedValue()
}

protocol NativeTypeDefinition: AnyObject {
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

/// Which method each of the C trampolines (`frost_native_slot`) stands for. Claimed when
/// a type is created, under the GIL; read under the GIL.
enum NativeMethodSlots {
    /// A method's body for the object it is called on: a new reference out.
    typealias Call = (UnsafeMutablePointer<PyObject>, NativeArguments) throws -> UnsafeMutablePointer<PyObject>
    nonisolated(unsafe) static var entries: [NativeMethodBody] = []

    static func claim(name: String, _ body: NativeMethodBody) throws -> Int32 {
        guard entries.count < Int(frost_native_slot_count()) else {
            throw PythonError.raise(.runtimeError, "no native method slot left for \(name) (\(entries.count) in use)")
        }
        entries.append(body)
        return Int32(entries.count - 1)
    }
}

/// A method's body, held by a class: a closure kept in an array or a tuple is stored at
/// the most general abstraction and called through a reabstraction thunk per layer (about
/// 120 instructions a call); kept in a class's property, it is called as it is.
final class NativeMethodBody {
    let call: NativeMethodSlots.Call
    init(_ call: @escaping NativeMethodSlots.Call) { self.call = call }
}

/// One attribute's getter and setter (the PyGetSetDef closure).
final class AttributeSlot {
    /// The value: a new reference.
    typealias Get = (UnsafeMutablePointer<PyObject>) throws -> UnsafeMutablePointer<PyObject>
    typealias Set = (UnsafeMutablePointer<PyObject>, PythonObject?) throws -> Void
    let get: Get
    let set: Set
    let writable: Bool
    init(get: @escaping Get, set: @escaping Set, writable: Bool) { (self.get, self.set, self.writable) = (get, set, writable) }
}

/// The arguments of a vectorcall, as a native call takes them.
private func callArguments(_ args: UnsafePointer<UnsafeMutablePointer<PyObject>?>?, _ nargs: Int,
                           _ kwnames: UnsafeMutablePointer<PyObject>?) -> ([PythonObject], [(String, PythonObject)])? {
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
    return (positional, keywords)
}

@_cdecl("frost_native_slot_dispatch")
func nativeSlotDispatch(_ slot: Int32, _ object: UnsafeMutablePointer<PyObject>?,
                        _ args: UnsafePointer<UnsafeMutablePointer<PyObject>?>?, _ nargs: Int,
                        _ kwnames: UnsafeMutablePointer<PyObject>?) -> UnsafeMutablePointer<PyObject>? {
    guard let object, Int(slot) < NativeMethodSlots.entries.count else {
        PyErr_SetString(frost_PyExc_SystemError(), "native method without its slot")
        return nil
    }
    let body = NativeMethodSlots.entries[Int(slot)]
    do {
        return try body.call(object, NativeArguments(self: object, args, nargs, kwnames))
    } catch {
        error.raiseInPython()
        return nil
    }
}

private let nativeGetter: FrostGetter = { object, closure in
    guard let object, let closure else { return nil }
    let slot = Unmanaged<AttributeSlot>.fromOpaque(closure).takeUnretainedValue()
    do {
        return try slot.get(object)
    } catch {
        error.raiseInPython()
        return nil
    }
}

private let nativeSetter: FrostSetter = { object, value, closure in
    guard let object, let closure else { return -1 }
    let slot = Unmanaged<AttributeSlot>.fromOpaque(closure).takeUnretainedValue()
    do {
        try slot.set(object, value.map { PythonObject(borrowing: $0) })
        return 0
    } catch {
        error.raiseInPython()
        return -1
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
        PyErr_SetString(frost_PyExc_SystemError(), "native function without its state")
        return nil
    }
    let box = Unmanaged<NativeFunctionBox>.fromOpaque(raw).takeUnretainedValue()
    guard let (positional, keywords) = callArguments(args, nargs, kwnames) else { return nil }
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
