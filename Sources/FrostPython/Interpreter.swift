// FrostPython: the only user of libpython: loading it, the interpreter's lifecycle, the GIL, owned references, errors, native types.

@preconcurrency import CPython
#if canImport(Glibc)
import Glibc
#endif

/// How to start the embedded interpreter.
public struct InterpreterConfiguration: Sendable {
    /// `sys.executable`: the loader's own path.
    public var executable: String
    /// `sys.path`, exactly: nothing is added from the environment, the user's site
    /// directory or the current directory. With `.systemPython` that Python's own
    /// standard library entries follow these.
    public var searchPath: [String]
    /// Where the standard library comes from.
    public var standardLibrary: StandardLibrarySource
    /// `sys.prefix` and `sys.exec_prefix` with `.inSearchPath`; by default the
    /// executable's directory.
    public var home: String?
    /// `sys.argv`.
    public var arguments: [String]
    /// Builtin modules defined from Swift, registered before start-up.
    public var builtinModules: [NativeModule]
    /// Bytecode optimisation level for source compiled at run time (`-O`, `-OO`).
    public var optimizationLevel: Int
    /// Python's own SIGINT handler; the host owns signals, so off by default.
    public var installSignalHandlers: Bool

    public init(executable: String, searchPath: [String], standardLibrary: StandardLibrarySource = .inSearchPath,
                home: String? = nil, arguments: [String] = [],
                builtinModules: [NativeModule] = [], optimizationLevel: Int = 0,
                installSignalHandlers: Bool = false) {
        self.executable = executable
        self.searchPath = searchPath
        self.standardLibrary = standardLibrary
        self.home = home
        self.arguments = arguments.isEmpty ? [executable] : arguments
        self.builtinModules = builtinModules
        self.optimizationLevel = optimizationLevel
        self.installSignalHandlers = installSignalHandlers
    }
}

/// Where the interpreter's standard library comes from.
public enum StandardLibrarySource: Sendable, Equatable {
    /// The search path holds it (a bundle's `lib/`): nothing else is looked at.
    case inSearchPath
    /// The loaded library's own installation, found by CPython's own path computation
    /// (isolated: no environment variable takes part). For development and tests.
    case systemPython
}

/// Why the interpreter (or one of its threads) could not start.
public struct InterpreterError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// `start` called in the wrong order or twice.
        case lifecycle
        /// The loaded library is not a supported version.
        case unsupported
        /// CPython refused the configuration (search paths, pre-initialisation, init).
        case configuration
        /// A Python thread could not be created.
        case thread
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// The one embedded CPython interpreter of this process.
///
/// `start` runs on the thread that will own the interpreter's lifecycle (and later
/// `finalize` must run there too); it returns with the GIL released. Python work then
/// runs under `mainThreadState.withGIL` on that thread, or on `PythonThread`s, each
/// with its own long-lived thread state.
public final class Interpreter: @unchecked Sendable {
    // @unchecked: immutable after start; the thread state is confined to its thread.

    public let configuration: InterpreterConfiguration
    /// The lifecycle thread's state.
    public let mainThreadState: PythonThreadState
    let interpreterState: OpaquePointer

    nonisolated(unsafe) private static var running: Interpreter?

    /// The running interpreter, if this process started one.
    public static var current: Interpreter? { running }

    /// The standard library entries of `sys.path` as the interpreter started.
    public let standardLibraryPath: [String]

    private init(configuration: InterpreterConfiguration, mainThreadState: PythonThreadState,
                 interpreterState: OpaquePointer, standardLibraryPath: [String]) {
        self.configuration = configuration
        self.standardLibraryPath = standardLibraryPath
        self.mainThreadState = mainThreadState
        self.interpreterState = interpreterState
    }

    /// Starts CPython in isolated mode: exactly `searchPath`, no `site`, every PYTHON*
    /// environment variable ignored, UTF-8 mode, unbuffered stdio, `sys.frozen = True`.
    public static func start(_ configuration: InterpreterConfiguration) throws -> Interpreter {
        guard let library = PythonLibrary.loaded else {
            throw InterpreterError(.lifecycle, "no Python library is loaded (PythonLibrary.load comes first)")
        }
        guard running == nil, Py_IsInitialized() == 0 else {
            throw InterpreterError(.lifecycle, "the Python interpreter is already running in this process")
        }
        guard let layout = frost_python_config_layout(Int32(library.version.minor))?.pointee else {
            throw InterpreterError(.unsupported, "Python \(library.version) is not supported")
        }
        try preInitialize()
        NativeModuleRegistry.register(configuration.builtinModules)

        // PyConfig is laid out differently in every version: set through the loaded
        // version's offsets, in memory larger than any of them.
        let byteCount = max(4096, layout.size)
        let storage = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        defer { storage.deallocate() }
        let c = OpaquePointer(storage)
        PyConfig_InitIsolatedConfig(c)
        defer { PyConfig_Clear(c) }
        func set(_ offset: Int, _ value: Int) {
            if offset >= 0 { frost_config_int(c, offset).pointee = Int32(value) }
        }
        set(layout.site_import, 0)
        set(layout.user_site_directory, 0)
        set(layout.use_environment, 0)
        set(layout.buffered_stdio, 0)
        set(layout.write_bytecode, 0)
        set(layout.parse_argv, 0)
        set(layout.pathconfig_warnings, 0)
        set(layout.safe_path, 1)  // 3.11+; 3.10 has no such option (isolated mode covers it)
        set(layout.install_signal_handlers, configuration.installSignalHandlers ? 1 : 0)
        set(layout.optimization_level, configuration.optimizationLevel)
        try check(PyConfig_SetBytesString(c, frost_config_string(c, layout.program_name), configuration.executable), "program name")
        try check(PyConfig_SetBytesString(c, frost_config_string(c, layout.executable), configuration.executable), "executable")
        if configuration.standardLibrary == .inSearchPath {
            let home = configuration.home ?? directoryName(configuration.executable)
            try check(PyConfig_SetBytesString(c, frost_config_string(c, layout.home), home), "home")
        }
        try check(PyConfig_SetBytesString(c, frost_config_string(c, layout.stdio_encoding), "utf-8"), "stdio encoding")
        try withCStrings(configuration.arguments) { argv in
            try check(PyConfig_SetBytesArgv(c, Py_ssize_t(argv.count), argv), "argv")
        }
        // With the system Python, CPython computes its own standard library path; the
        // caller's entries are put in front once it runs.
        set(layout.module_search_paths_set, configuration.standardLibrary == .inSearchPath ? 1 : 0)
        for path in configuration.standardLibrary == .inSearchPath ? configuration.searchPath : [] {
            guard let wide = Py_DecodeLocale(path, nil) else {
                throw InterpreterError(.configuration, "cannot decode search path entry \(path)")
            }
            defer { PyMem_RawFree(wide) }
            try check(PyWideStringList_Append(frost_config_list(c, layout.module_search_paths), wide), "search path")
        }
        try check(Py_InitializeFromConfig(c), "start-up")

        // sys.frozen tells frozen-aware code (and the isapi package) where it runs.
        PySys_SetObject("frozen", frost_true())
        var standardLibraryPath = configuration.searchPath
        if configuration.standardLibrary == .systemPython {
            do {
                let path = PythonObject(borrowing: PySys_GetObject("path"))
                standardLibraryPath = try path.elements().map { try $0.asString() }
                let front = try PythonObject.list(configuration.searchPath.map { try PythonObject($0) })
                try path.setItem(slice: 0..<0, front)
            } catch {
                throw InterpreterError(.configuration, "cannot set sys.path: \(error)")
            }
        }
        let tstate = PyEval_SaveThread()!
        let interp = PyThreadState_GetInterpreter(tstate)!
        let interpreter = Interpreter(configuration: configuration,
                                      mainThreadState: PythonThreadState(adopting: tstate),
                                      interpreterState: interp, standardLibraryPath: standardLibraryPath)
        running = interpreter
        return interpreter
    }

    /// Creates a thread state for the calling thread (GIL not needed). Use it only on
    /// this thread; release it with `PythonThreadState.delete()` on this thread too.
    public func makeThreadStateForCurrentThread() -> PythonThreadState {
        PythonThreadState(adopting: PyThreadState_New(interpreterState)!, owned: true)
    }

    /// Finalises the interpreter; must run on the thread that called `start`.
    /// Returns false when flushing buffered data failed (as Py_FinalizeEx reports).
    @discardableResult
    public func finalize() -> Bool {
        mainThreadState.acquire()
        frost_set_own_thread_state(nil)  // the main thread state goes with the interpreter
        let status = Py_FinalizeEx()
        Interpreter.running = nil
        return status == 0
    }

    private static func preInitialize() throws {
        var preconfig = PyPreConfig()
        PyPreConfig_InitIsolatedConfig(&preconfig)
        preconfig.utf8_mode = 1
        try check(Py_PreInitialize(&preconfig), "pre-initialisation")
    }

    private static func check(_ status: PyStatus, _ what: String) throws {
        guard frost_is_initialized_status_error(status) != 0 else { return }
        let function = status.func.map { String(cString: $0) }
        let message = status.err_msg.map { String(cString: $0) } ?? "exit code \(status.exitcode)"
        throw InterpreterError(.configuration, "Python \(what) failed: \(function.map { "\($0): " } ?? "")\(message)")
    }
}

func directoryName(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) throws -> R) rethrows -> R {
    let pointers = strings.map { strdup($0) }
    defer { pointers.forEach { free($0) } }
    return try body(pointers)
}
