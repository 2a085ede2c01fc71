// Builds zip files byte by byte, including the broken and hostile ones the writer refuses.
struct RawZip {
    struct Item {
        var name: String
        var data: [UInt8]
        var unixMode: UInt32 = 0o100644
        var declaredSize: Int? = nil      // lie about the uncompressed size
        var crc: UInt32? = nil            // lie about the CRC
        var localName: String? = nil      // a different name in the local header
    }
    var items: [Item] = []
    var prefix: [UInt8] = []             // bytes before the zip (an executable)

    mutating func add(_ name: String, _ text: String, mode: UInt32 = 0o100644) {
        items.append(Item(name: name, data: Array(text.utf8), unixMode: mode))
    }

    func bytes() -> [UInt8] {
        var out: [UInt8] = []
        var central: [UInt8] = []
        for item in items {
            let offset = out.count
            let crc = item.crc ?? crc32(item.data)
            let name = Array(item.name.utf8)
            let localName = Array((item.localName ?? item.name).utf8)
            let usize = item.declaredSize ?? item.data.count
            out += le32(0x04034b50) + le16(20) + le16(0x800) + le16(0) + le16(0) + le16(0x21)
            out += le32(Int(crc)) + le32(item.data.count) + le32(usize) + le16(localName.count) + le16(0)
            out += localName + item.data
            central += le32(0x02014b50) + le16(0x0314) + le16(20) + le16(0x800) + le16(0) + le16(0) + le16(0x21)
            central += le32(Int(crc)) + le32(item.data.count) + le32(usize) + le16(name.count)
            central += le16(0) + le16(0) + le16(0) + le16(0) + le32(Int(item.unixMode) << 16) + le32(offset)
            central += name
        }
        let cdOffset = out.count
        out += central
        out += le32(0x06054b50) + le16(0) + le16(0) + le16(items.count) + le16(items.count)
        out += le32(central.count) + le32(cdOffset) + le16(0)
        return prefix + out
    }

    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8((v >> 8) & 0xff)] }
    func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xff) } }
}

func crc32(_ data: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in data {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
    }
    return ~crc
}
