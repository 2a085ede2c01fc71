import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// Where a process's start-up time goes, phase by phase (`_NAME --timings`): marks taken
/// on the one thread that starts the process, before any other thread runs Python.
public enum StartupTimings {
    nonisolated(unsafe) private static var started = monotonicSeconds()
    nonisolated(unsafe) private static var marks: [(String, Double)] = []
    nonisolated(unsafe) public static var enabled = false

    /// Restarts the clock (at the top of main).
    public static func begin() {
        started = monotonicSeconds()
        marks = []
    }

    /// The phase that ends now.
    public static func mark(_ phase: String) {
        guard enabled else { return }
        marks.append((phase, monotonicSeconds()))
    }

    /// "locate 0.1 ms, verify 12.0 ms, ...; total 80.3 ms".
    public static var summary: String {
        var previous = started
        var parts: [String] = []
        for (phase, time) in marks {
            parts.append("\(phase) \(milliseconds(time - previous)) ms")
            previous = time
        }
        return parts.joined(separator: ", ") + "; total \(milliseconds(previous - started)) ms"
    }

    static func milliseconds(_ seconds: Double) -> String {
        let tenths = Int((seconds * 10_000).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }
}
