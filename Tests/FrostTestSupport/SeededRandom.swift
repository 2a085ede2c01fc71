// FrostTestSupport: what several test targets share: the seeded random generator the fuzzers use.

/// SplitMix64: small, fast and deterministic, so a failing fuzz case replays from its seed.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension SeededRandom {
    /// The fuzzers' mutation: 1 to `maxEdits` edits of `bytes`, each a byte replaced by one
    /// from `alphabet`, one inserted, one removed, or (`duplicatingRuns`) a run of up to 40
    /// bytes repeated in place. `bytes` never ends empty: it is then `filler`.
    public mutating func mutate(_ bytes: inout [UInt8], maxEdits: Int, alphabet: [UInt8], duplicatingRuns: Bool = false,
                                filler: UInt8 = UInt8(ascii: " ")) {
        for _ in 0..<Int.random(in: 1...maxEdits, using: &self) {
            let at = Int.random(in: 0..<bytes.count, using: &self)
            switch Int.random(in: 0..<(duplicatingRuns ? 4 : 3), using: &self) {
            case 0: bytes[at] = alphabet.randomElement(using: &self)!
            case 1: bytes.insert(alphabet.randomElement(using: &self)!, at: at)
            case 2: bytes.remove(at: at)
            default: bytes.insert(contentsOf: bytes[at..<min(bytes.count, at + Int.random(in: 1...40, using: &self))], at: at)
            }
            if bytes.isEmpty { bytes = [filler] }
        }
    }
}
