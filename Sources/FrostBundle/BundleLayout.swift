// FrostBundle: what packager and loader agree on: the dist layout, bundle.json, SHA-256, strict JSON, verification.

import FrostSystem
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The shape of a bundle directory, shared by the packager (which writes it) and the
/// loader (which finds everything relative to its own path):
///
///     dist/NAME/
///       _NAME          loader: serves the entry module NAME
///       NAME           console/installer: runs NAME as __main__
///       NAME.zip       the library archive (or appended to the executable itself)
///       lib/           python3XY.zip (stdlib), lib-dynload/, shared libraries
///       bundle.json    manifest
public struct BundleLayout: Sendable, Equatable {
    /// The directory that holds the executable.
    public let directory: String
    /// The executable's file name (`_hello` or `hello`).
    public let executableName: String
    /// The bundle name: the executable name without its leading underscore.
    public let name: String
    /// Whether the executable is the loader (`_NAME`) or the console/installer (`NAME`).
    public let role: Role

    public enum Role: String, Sendable {
        case loader
        case console
    }

    /// Derives the layout from the executable's absolute path.
    public init(executablePath: String) {
        let slash = executablePath.lastIndex(of: "/")
        directory = slash.map { $0 == executablePath.startIndex ? "/" : String(executablePath[..<$0]) } ?? "."
        executableName = slash.map { String(executablePath[executablePath.index(after: $0)...]) } ?? executablePath
        if executableName.hasPrefix("_") && executableName.count > 1 {
            name = String(executableName.dropFirst())
            role = .loader
        } else {
            name = executableName
            role = .console
        }
    }

    public var executablePath: String { FileSystem.join(directory, executableName) }
    /// `NAME.zip` beside the executable.
    public var archivePath: String { FileSystem.join(directory, name + ".zip") }
    public var libraryDirectory: String { FileSystem.join(directory, "lib") }
    public var manifestPath: String { FileSystem.join(directory, "bundle.json") }

    /// The CPython versions a bundle can carry: 3.10 to 3.13 (the loader knows their
    /// initialisation config; everything else it uses is common to all of them).
    public static let supportedPythonMinorVersions = 10...13

    /// The standard library archive inside `lib/` for Python `major.minor`.
    public func standardLibraryArchive(major: Int, minor: Int) -> String {
        FileSystem.join(libraryDirectory, "python\(major)\(minor).zip")
    }

    /// Extension modules of the standard library inside `lib/`.
    public var extensionModuleDirectory: String { FileSystem.join(libraryDirectory, "lib-dynload") }

    /// Extension modules of third-party packages, at their package paths, and the
    /// third-party packages that read their own files by path (bytecode and data together).
    public var siteExtensionDirectory: String { FileSystem.join(libraryDirectory, "site-packages") }

    /// The app's own code that reads its files by path (templates beside a Flask app, a
    /// Django project), bytecode and data together; on sys.path right after the archive.
    public var appDirectory: String { FileSystem.join(libraryDirectory, "app") }

    /// certifi's CA bundle, copied out of the archive so OpenSSL can read it.
    public var certificateFile: String { FileSystem.join(libraryDirectory, "cacert.pem") }

    /// Whether the bundle carries its own standard library.
    public func hasOwnStandardLibrary(major: Int, minor: Int) -> Bool {
        FileSystem.isRegularFile(standardLibraryArchive(major: major, minor: minor))
    }

    /// A Python module name is dotted identifiers; the bundle name must be one to be
    /// importable. Returns what is wrong, or nil.
    public static func problemWithModuleName(_ name: String) -> String? {
        if name.isEmpty { return "the module name is empty" }
        for part in name.split(separator: ".", omittingEmptySubsequences: false) {
            guard let first = part.unicodeScalars.first else {
                return "'\(name)' has an empty component"
            }
            let isStart: (Unicode.Scalar) -> Bool = { $0 == "_" || $0.properties.isXIDStart }
            let isContinue: (Unicode.Scalar) -> Bool = { $0 == "_" || $0.properties.isXIDContinue }
            if !isStart(first) || !part.unicodeScalars.dropFirst().allSatisfy(isContinue) {
                return "'\(name)' is not a valid Python module name"
            }
        }
        return nil
    }
}


