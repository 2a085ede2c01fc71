/// Why a build failed (other than a bad spec, which is a `SpecError`): the kind of
/// failure, what it is about (a file, a spec key, a requirements file) and a message that
/// says what to fix.
public struct BuildError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// The spec's `python` cannot be run, is not a supported CPython, or lacks a shared libpython.
        case interpreter
        /// The build venv: locking, creating it, installing requirements.
        case buildEnvironment
        /// The import analysis failed (a syntax error, a crash) or reported nonsense.
        case analysis
        /// A shared library an included module needs is not on this machine.
        case sharedLibraries
        /// The frost-stub to copy in is missing or cannot be stripped.
        case loader
        /// A spec value the build cannot use.
        case spec
        /// Reading or writing a file.
        case io
    }

    public let kind: Kind
    /// The file, spec key (`python = …`) or requirements file concerned.
    public let subject: String
    public let message: String

    public init(_ kind: Kind, subject: String, _ message: String) {
        self.kind = kind
        self.subject = subject
        self.message = message
    }

    public var description: String { message }
}
