import CXXHash

/// An XXH3-128 hash. Stored and printed in xxhsum's canonical form: the high
/// 64 bits then the low 64 bits, both big-endian (so the hex matches `xxh128sum`).
struct XXH128Digest: Hashable, Sendable {
    var high: UInt64
    var low: UInt64

    static func of(_ bytes: UnsafeRawPointer?, count: Int) -> XXH128Digest {
        let h = XXH3_128bits(bytes, count)
        return XXH128Digest(high: h.high64, low: h.low64)
    }

    init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Reads 16 canonical bytes.
    init(canonical p: UnsafeRawPointer) {
        high = UInt64(bigEndian: p.loadUnaligned(as: UInt64.self))
        low = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    }

    /// Parses 32 hex digits (either case).
    init?(hex: String) {
        guard hex.utf8.count == 32 else { return nil }
        var high: UInt64 = 0, low: UInt64 = 0
        for (i, c) in hex.utf8.enumerated() {
            let v: UInt64
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt64(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = UInt64(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = UInt64(c - UInt8(ascii: "A") + 10)
            default: return nil
            }
            if i < 16 { high = high << 4 | v } else { low = low << 4 | v }
        }
        self.high = high
        self.low = low
    }

    /// Writes the 16 canonical bytes.
    func store(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: high.bigEndian, as: UInt64.self)
        p.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
    }

    /// 32 lowercase hex digits.
    var hex: String {
        String(unsafeUninitializedCapacity: 32) { buf in
            func digit(_ v: UInt64) -> UInt8 {
                v < 10 ? UInt8(ascii: "0") + UInt8(v) : UInt8(ascii: "a") + UInt8(v - 10)
            }
            for i in 0..<16 {
                buf[i] = digit((high >> UInt64(60 - 4 * i)) & 0xF)
                buf[16 + i] = digit((low >> UInt64(60 - 4 * i)) & 0xF)
            }
            return 32
        }
    }
}
