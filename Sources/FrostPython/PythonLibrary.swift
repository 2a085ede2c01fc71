@preconcurrency import CPython
#if canImport(Glibc)
import Glibc
#endif

/// The CPython shared library this process runs.
///
/// The loader links no libpython: it loads the bundle's (`lib/libpython3.X.so.1.0`) before
/// the interpreter starts, and calls the C API through it. One library per process; every
/// CPython from 3.10 to 3.13 is supported, free-threaded builds are not.
public enum PythonLibrary {
    /// The minor versions of Python 3 frost runs (those whose `PyConfig` layout it knows).
    /// The packager's twin is `BundleLayout.supportedPythonMinorVersions` (FrostPython
    /// stands below FrostBundle); FrostRuntimeTests keeps the two equal.
    public static let supportedMinorVersions = 10...13

    /// A loaded library's version, as `Py_GetVersion` reports it.
    public struct Version: Sendable, Equatable, CustomStringConvertible {
        public let major: Int
        public let minor: Int
        public let micro: Int
        /// The whole version line ("3.12.1 (main, Dec  4 2023, 10:31:58) [GCC 12.2.0]").
        public let build: String

        /// "3.12".
        public var short: String { "\(major).\(minor)" }
        public var description: String { "\(major).\(minor).\(micro)" }

        /// Parses the start of a version line ("3.12.1", "3.13.0rc2 (main, ...)").
        public init?(line: String) {
            let number = line.prefix { $0.isNumber || $0 == "." }.split(separator: ".").compactMap { Int($0) }
            guard number.count >= 2 else { return nil }
            (major, minor, micro, build) = (number[0], number[1], number.count > 2 ? number[2] : 0, line)
        }
    }

    /// Why a library cannot be used.
    /// Why no libpython could be loaded: which file, and what was wrong with it.
    public struct LoadError: Error, CustomStringConvertible, Sendable {
        public enum Kind: String, Sendable {
            /// dlopen or a symbol lookup failed.
            case cannotLoad
            /// The library is not a CPython this loader supports.
            case unsupported
            /// No library given and none found in the usual places.
            case notFound
        }

        public let kind: Kind
        /// The library's path (or the first place looked at).
        public let path: String
        public let message: String

        public init(_ kind: Kind, path: String, _ message: String) {
            self.kind = kind
            self.path = path
            self.message = message
        }

        public var description: String { message }
    }

    nonisolated(unsafe) private static var current: (path: String, version: Version)?

    /// The loaded library's path and version, once `load` succeeded.
    public static var loaded: (path: String, version: Version)? { current }

    /// Loads the library at `path` (idempotent for the same path) and checks that frost
    /// supports its version.
    @discardableResult
    public static func load(_ path: String) throws -> Version {
        if let current, current.path == path { return current.version }
        var message = [CChar](repeating: 0, count: 1024)
        guard frost_python_load(path, &message, message.count) == 0 else {
            throw LoadError(.cannotLoad, path: path, String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        let line = String(cString: Py_GetVersion())
        guard let version = Version(line: line) else { throw LoadError(.unsupported, path: path, "\(path) reports an unreadable version: \(line)") }
        if let problem = unsupported(version) { throw LoadError(.unsupported, path: path, "\(path) is Python \(version): \(problem)") }
        current = (path, version)
        return version
    }

    /// What is wrong with running `version`, or nil when frost supports it.
    public static func unsupported(_ version: Version) -> String? {
        if version.build.split(separator: " ").contains("free-threading") {
            return "free-threaded builds are not supported (use the default build of the same version)"
        }
        guard version.major == 3, supportedMinorVersions.contains(version.minor),
              frost_python_config_layout(Int32(version.minor)) != nil else {
            return "frost supports CPython 3.\(supportedMinorVersions.lowerBound) to 3.\(supportedMinorVersions.upperBound)"
        }
        return nil
    }

    /// For development and tests: `FROST_PYTHON_LIBRARY` when set, else the system's
    /// libpython (Debian's 3.11), found by the dynamic linker.
    @discardableResult
    public static func loadDevelopmentDefault() throws -> Version {
        if let current { return current.version }
        if let given = getenv("FROST_PYTHON_LIBRARY").map({ String(cString: $0) }), !given.isEmpty {
            return try load(given)
        }
        var tried: [String] = []
        for minor in supportedMinorVersions.reversed() {
            for directory in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"] {
                let path = "\(directory)/libpython3.\(minor).so.1.0"
                tried.append(path)
                if access(path, R_OK) == 0 { return try load(path) }
            }
        }
        throw LoadError(.notFound, path: tried.first ?? "", "no Python library found: set FROST_PYTHON_LIBRARY to a libpython3.X.so (looked for \(tried.first ?? "") and others)")
    }
}
