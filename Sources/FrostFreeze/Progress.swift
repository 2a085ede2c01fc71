import Foundation

/// How the build talks: stages and counts on a terminal (redrawn in place), plain lines
/// otherwise, nothing with --quiet or --json (warnings and the summary are separate).
public final class BuildProgress: @unchecked Sendable {
    public enum Style { case terminal, lines, silent }
    let style: Style
    private var lastWasTransient = false

    public init(style: Style) { self.style = style }

    public static func automatic(quiet: Bool) -> BuildProgress {
        if quiet { return BuildProgress(style: .silent) }
        return BuildProgress(style: isatty(STDERR_FILENO) != 0 ? .terminal : .lines)
    }

    /// A stage starts: "[2/6] analysing imports".
    public func stage(_ index: Int, _ total: Int, _ text: String) {
        emit("[\(index)/\(total)] \(text)", transient: false)
    }

    /// Progress within a stage, shown only on a terminal.
    public func detail(_ text: String) {
        guard style == .terminal else { return }
        emit("      \(text)", transient: true)
    }

    private func emit(_ text: String, transient: Bool) {
        switch style {
        case .silent: return
        case .lines: FileHandle.standardError.write(Data((text + "\n").utf8))
        case .terminal:
            let prefix = lastWasTransient ? "\r\u{1B}[K" : ""
            FileHandle.standardError.write(Data((prefix + text + (transient ? "" : "\n")).utf8))
            lastWasTransient = transient
        }
    }
}
