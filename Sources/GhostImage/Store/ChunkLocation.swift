/// Where a chunk's bytes are: an entry in a pack file, or (images written
/// before packs) a loose file `chunks/ab/<id>`. Recorded per chunk in every
/// checkpoint file, so a checkpoint file is also the index of its chunks.
struct ChunkLocation: Hashable, Sendable {
    /// Pack number (`packs/NNNNNNNNNNNN.pack`); 0 = loose chunk file.
    var pack: UInt64
    /// Offset of the entry (its 40-byte header) in the pack.
    var offset: UInt64
    /// Data bytes after the entry header (compressed, or raw when equal to `length`).
    var stored: UInt64
    /// Uncompressed length.
    var length: UInt64

    static let loose = ChunkLocation(pack: 0, offset: 0, stored: 0, length: 0)
    var isLoose: Bool { pack == 0 }
    /// Bytes the entry takes in its pack, header included.
    var entryBytes: UInt64 { PackEntryHeader.size + stored }
}

/// The 40 bytes in front of every chunk in a pack: the chunk file header
/// (magic "GHCK", version, flags, length), the stored data length, and the
/// chunk id, so a pack can be checked, and walked entry by entry, without
/// any checkpoint file.
enum PackEntryHeader {
    static let size: UInt64 = 40
    static let idOffset = 24

    static func store(_ header: ChunkFileHeader, stored: Int, id: XXH128Digest, to p: UnsafeMutableRawPointer) {
        header.store(to: p)
        p.storeBytes(of: UInt64(stored).littleEndian, toByteOffset: 16, as: UInt64.self)
        id.store(to: p + idOffset)
    }

    static func stored(_ p: UnsafeRawPointer) -> UInt64 {
        UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
    }
}
