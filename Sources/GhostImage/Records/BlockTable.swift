import FoundationEssentials

/// How a list of memory blocks is encoded in the manifest (format 3): one
/// base64 string of fixed binary records instead of a JSON object per block.
/// A 1 GiB job has some 4,000 blocks; as JSON objects they were most of the
/// manifest's bytes and of the time to encode it (a third of an unchanged
/// incremental checkpoint) and to decode it on resume. Decoding also takes
/// the JSON array of formats 1 and 2.
///
/// Each block, little-endian, no padding (docs/IMAGE-FORMAT.md):
///     u64 index, u64 pageMask, 16-byte chunk id (as its hex reads),
///     u8 flags (bit 0: baseMask follows), u8 overlay count,
///     [u64 baseMask], count × (u64 pageMask, 16-byte chunk id)
@propertyWrapper
public struct BlockTable: Codable, Sendable, Equatable {
    public var wrappedValue: [MemoryBlock]

    public init(wrappedValue: [MemoryBlock]) { self.wrappedValue = wrappedValue }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(Data(Self.pack(wrappedValue)).base64EncodedString())
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let text = try? c.decode(String.self) {
            guard let bytes = Data(base64Encoded: text) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "memory block table is not base64")
            }
            do { wrappedValue = try Self.unpack(Array(bytes)) }
            catch { throw DecodingError.dataCorruptedError(in: c, debugDescription: "memory block table: \(error)") }
        } else {
            wrappedValue = try c.decode([MemoryBlock].self)   // formats 1 and 2
        }
    }

    static let fixedBytes = 8 + 8 + 16 + 1 + 1
    static let overlayBytes = 8 + 16

    static func pack(_ blocks: [MemoryBlock]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(blocks.count * fixedBytes)
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func id(_ c: ChunkID) { withUnsafeBytes(of: (c.digest.high.bigEndian, c.digest.low.bigEndian)) { out.append(contentsOf: $0) } }
        for b in blocks {
            u64(UInt64(b.index)); u64(b.pageMask); id(b.chunk)
            let overlays = b.overlays ?? []
            out.append(b.baseMask == nil ? 0 : 1)
            out.append(UInt8(overlays.count))   // at most MemoryState.maxOverlays
            if let m = b.baseMask { u64(m) }
            for o in overlays { u64(o.pageMask); id(o.chunk) }
        }
        return out
    }

    struct Truncated: Error, CustomStringConvertible {
        let at: Int
        var description: String { "ends inside the block record at byte \(at)" }
    }

    static func unpack(_ bytes: [UInt8]) throws -> [MemoryBlock] {
        var blocks: [MemoryBlock] = []
        blocks.reserveCapacity(bytes.count / fixedBytes)
        try bytes.withUnsafeBytes { (p: UnsafeRawBufferPointer) throws in
            var off = 0
            func need(_ n: Int, _ start: Int) throws { if off + n > p.count { throw Truncated(at: start) } }
            func u64() -> UInt64 { defer { off += 8 }; return UInt64(littleEndian: p.loadUnaligned(fromByteOffset: off, as: UInt64.self)) }
            func id() -> ChunkID { defer { off += 16 }; return ChunkID(digest: XXH128Digest(canonical: p.baseAddress! + off)) }
            while off < p.count {
                let start = off
                try need(fixedBytes, start)
                let index = u64(), mask = u64(), chunk = id()
                let flags = p[off], count = Int(p[off + 1])
                off += 2
                try need((flags & 1 == 1 ? 8 : 0) + count * overlayBytes, start)
                let base: UInt64? = flags & 1 == 1 ? u64() : nil
                var overlays: [PageOverlay]? = count == 0 ? nil : []
                for _ in 0..<count { let m = u64(); overlays!.append(PageOverlay(pageMask: m, chunk: id())) }
                guard index <= UInt64(Int.max) else { throw Truncated(at: start) }
                blocks.append(MemoryBlock(index: Int(index), pageMask: mask, chunk: chunk, baseMask: base, overlays: overlays))
            }
        }
        return blocks
    }
}
