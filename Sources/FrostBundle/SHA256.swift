import CSHA256

/// SHA-256 (FIPS 180-4), for the manifest. Written here because the loader links no
/// Foundation and no crypto library; checked against sha256sum in the tests. This type
/// buffers and pads; the block compression is C (CSHA256), with the CPU's SHA extensions
/// when it has them.
public struct SHA256 {
    private var state: [UInt32] = [
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19,
    ]
    private var pending: [UInt8] = []
    private var length: UInt64 = 0
    private var portable = false

    public init() {}

    /// `portable`: the portable compression even where the CPU has SHA extensions (for tests).
    public init(portable: Bool) {
        self.portable = portable
    }

    public mutating func update<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        length &+= UInt64(bytes.count)
        var input = bytes[...]
        if !pending.isEmpty {
            let take = min(64 - pending.count, input.count)
            pending.append(contentsOf: input.prefix(take))
            input = input.dropFirst(take)
            if pending.count == 64 {
                pending.withUnsafeBufferPointer { compress($0.baseAddress!, blocks: 1) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        while input.count >= 64 {
            let block = Array(input.prefix(64))
            block.withUnsafeBufferPointer { compress($0.baseAddress!, blocks: 1) }
            input = input.dropFirst(64)
        }
        pending.append(contentsOf: input)
    }

    /// Fast path for contiguous memory (no per-block copies).
    public mutating func update(buffer: UnsafeRawBufferPointer) {
        guard !buffer.isEmpty else { return }
        let bytes = buffer.bindMemory(to: UInt8.self)
        if !pending.isEmpty || bytes.count < 64 {
            update(bytes)
            return
        }
        length &+= UInt64(bytes.count)
        let blocks = bytes.count / 64
        compress(bytes.baseAddress!, blocks: blocks)
        pending.append(contentsOf: bytes[(blocks * 64)...])
    }

    public mutating func finalize() -> [UInt8] {
        let bitLength = length &* 8
        var tail = pending
        tail.append(0x80)
        while tail.count % 64 != 56 { tail.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) { tail.append(UInt8((bitLength >> UInt64(shift)) & 0xFF)) }
        tail.withUnsafeBufferPointer { compress($0.baseAddress!, blocks: tail.count / 64) }
        pending.removeAll()
        var digest: [UInt8] = []
        for word in state { for shift in [24, 16, 8, 0] { digest.append(UInt8((word >> UInt32(shift)) & 0xFF)) } }
        return digest
    }

    /// The hex digest of `bytes`.
    public static func hex<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var hasher = SHA256()
        hasher.update(bytes)
        return hexString(hasher.finalize())
    }

    public static func hexString(_ digest: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(digest.count * 2)
        for byte in digest { out.append(digits[Int(byte >> 4)]); out.append(digits[Int(byte & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func compress(_ data: UnsafePointer<UInt8>, blocks: Int) {
        let portable = self.portable
        state.withUnsafeMutableBufferPointer { state in
            if portable {
                frost_sha256_blocks_portable(state.baseAddress!, data, blocks)
            } else {
                frost_sha256_blocks(state.baseAddress!, data, blocks)
            }
        }
    }
}
