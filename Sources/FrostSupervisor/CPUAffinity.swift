import CProcess
import FrostSystem
#if canImport(Glibc)
import Glibc
#endif

/// Binding a worker's threads to one CPU, as nginx's `worker_cpu_affinity auto` does
/// for its workers (`--cpu-affinity`).
public enum CPUAffinity {
    /// Why a binding failed.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// The size of the masks, in bytes: 1,024 CPUs, as glibc's `cpu_set_t`.
    static let maskBytes = 128

    /// The CPUs the calling thread may run on, in ascending order; empty when they
    /// cannot be read.
    public static func allowedCPUs() -> [Int] {
        var mask = [UInt8](repeating: 0, count: maskBytes)
        guard frost_get_affinity(&mask, UInt(maskBytes)) == 0 else { return [] }
        return (0..<maskBytes * 8).filter { mask[$0 / 8] & (1 << UInt8($0 % 8)) != 0 }
    }

    /// Binds the calling thread, and every thread it starts from now on, to `cpu`.
    public static func bind(to cpu: Int) throws(Failure) {
        guard cpu >= 0, cpu < maskBytes * 8 else { throw Failure(description: "no CPU \(cpu) on this system") }
        var mask = [UInt8](repeating: 0, count: maskBytes)
        mask[cpu / 8] |= 1 << UInt8(cpu % 8)
        guard frost_set_affinity(mask, UInt(maskBytes)) == 0 else {
            throw Failure(description: "cannot bind to CPU \(cpu): \(errnoDescription())")
        }
    }
}
