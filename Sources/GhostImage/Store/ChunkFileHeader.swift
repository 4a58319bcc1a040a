/// The 16 bytes in front of every chunk file's data.
///
///     0  4  magic "GHCK"
///     4  1  version (1)
///     5  1  flags: bit 0 set = data is one zstd frame, clear = raw bytes
///     6  2  reserved, zero
///     8  8  uncompressed length, little-endian
struct ChunkFileHeader: Equatable {
    static let size = 16
    static let magic: (UInt8, UInt8, UInt8, UInt8) = (0x47, 0x48, 0x43, 0x4B)  // "GHCK"
    static let version: UInt8 = 1
    static let flagCompressed: UInt8 = 1

    var compressed: Bool
    var length: Int

    func store(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: Self.magic.0, toByteOffset: 0, as: UInt8.self)
        p.storeBytes(of: Self.magic.1, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: Self.magic.2, toByteOffset: 2, as: UInt8.self)
        p.storeBytes(of: Self.magic.3, toByteOffset: 3, as: UInt8.self)
        p.storeBytes(of: Self.version, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: compressed ? Self.flagCompressed : 0, toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: UInt64(length).littleEndian, toByteOffset: 8, as: UInt64.self)
    }

    /// Parses a header, or says what is wrong with it.
    static func parse(_ p: UnsafeRawPointer) -> Result<ChunkFileHeader, HeaderProblem> {
        let b = UnsafeRawBufferPointer(start: p, count: size)
        guard b[0] == magic.0, b[1] == magic.1, b[2] == magic.2, b[3] == magic.3 else {
            return .failure(HeaderProblem(reason: "not a ghost chunk file (bad magic)"))
        }
        guard b[4] == version else {
            return .failure(HeaderProblem(reason: "unknown chunk format version \(b[4])"))
        }
        guard b[5] & ~flagCompressed == 0, b[6] == 0, b[7] == 0 else {
            return .failure(HeaderProblem(reason: "unknown flags in header"))
        }
        let length = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        guard length <= UInt64(ImageStore.maxChunkSize) else {
            return .failure(HeaderProblem(reason: "header claims \(length) bytes, more than any chunk can hold"))
        }
        return .success(ChunkFileHeader(compressed: b[5] & flagCompressed != 0, length: Int(length)))
    }

    struct HeaderProblem: Error {
        var reason: String
    }
}
