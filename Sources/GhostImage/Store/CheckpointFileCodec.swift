import CZstd

/// Builds and checks checkpoint files (`checkpoints/NNNNNN.ckpt`).
/// Integers little-endian, hashes in canonical (big-endian) form:
///
///     0   8  magic "GHOSTCKP"
///     8   4  checkpoint file version (2; version 1 files are still read)
///     12  4  flags, zero
///     16  8  checkpoint number (must match the file name)
///     24  8  manifest payload length, uncompressed (P)
///     32  8  manifest payload length, stored (C)
///     40  8  number of chunks (K)
///     48  C  manifest payload, one zstd frame
///     ..  48·K  chunk entries, ascending by id, no duplicates: id (16 canonical
///               bytes), pack, offset, stored, length (8 each; pack 0 = loose
///               chunk file). Version 1: 16·K, ids only, every chunk loose.
///     ..  16 XXH3-128 of every byte before it
///
/// The chunk list lets prune and verify work without understanding the payload;
/// its locations make the checkpoint file the index of the packs it uses.
enum CheckpointFileCodec {
    static let magic: [UInt8] = Array("GHOSTCKP".utf8)
    static let headerSize = 48
    static let checksumSize = 16
    /// Bound on a manifest, so a damaged length field cannot ask for terabytes.
    static let maxPayload = 1 << 30
    static let payloadLevel: Int32 = 3
    static let version = 2
    static let entrySize = 48

    struct Decoded {
        var number: Int
        var payload: [UInt8]
        var chunks: [ChunkID]
        /// Same order as `chunks`.
        var locations: [ChunkLocation]
    }

    /// Every chunk as a loose file (tests; images without packs).
    static func encode(number: Int, payload: [UInt8], chunks: [ChunkID]) throws(ImageError) -> [UInt8] {
        try encode(number: number, payload: payload, entries: chunks.map { ($0, ChunkLocation.loose) })
    }

    /// `entries` must be sorted by id and unique.
    static func encode(number: Int, payload: [UInt8], entries: [(ChunkID, ChunkLocation)]) throws(ImageError) -> [UInt8] {
        guard payload.count <= maxPayload else {
            throw .misuse("manifest payload of \(payload.count) bytes exceeds the \(maxPayload)-byte limit")
        }
        let bound = ZSTD_compressBound(payload.count)
        let capacity = headerSize + bound + entrySize * entries.count + checksumSize
        var failure: String?
        let bytes = [UInt8](unsafeUninitializedCapacity: capacity) { buf, count in
            let base = UnsafeMutableRawPointer(buf.baseAddress!)
            let stored = payload.withUnsafeBytes { src in
                ZSTD_compress(base + headerSize, bound, src.baseAddress, src.count, payloadLevel)
            }
            if ZstdScratch.isError(stored) {
                failure = ZstdScratch.errorName(stored)
                count = 0
                return
            }
            for (i, b) in magic.enumerated() { base.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
            base.storeBytes(of: UInt32(version).littleEndian, toByteOffset: 8, as: UInt32.self)
            base.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
            base.storeBytes(of: UInt64(number).littleEndian, toByteOffset: 16, as: UInt64.self)
            base.storeBytes(of: UInt64(payload.count).littleEndian, toByteOffset: 24, as: UInt64.self)
            base.storeBytes(of: UInt64(stored).littleEndian, toByteOffset: 32, as: UInt64.self)
            base.storeBytes(of: UInt64(entries.count).littleEndian, toByteOffset: 40, as: UInt64.self)
            var offset = headerSize + stored
            for (id, l) in entries {
                id.digest.store(to: base + offset)
                for (k, v) in [l.pack, l.offset, l.stored, l.length].enumerated() {
                    base.storeBytes(of: v.littleEndian, toByteOffset: offset + 16 + 8 * k, as: UInt64.self)
                }
                offset += entrySize
            }
            XXH128Digest.of(base, count: offset).store(to: base + offset)
            count = offset + checksumSize
        }
        if let failure { throw .misuse("zstd could not compress the manifest: \(failure)") }
        return bytes
    }

    /// Checks everything and returns the contents. `wantPayload: false` skips
    /// decompressing the payload (the checksum still covers it).
    static func decode(_ bytes: [UInt8], path: String, expectedNumber: Int,
                       wantPayload: Bool) throws(ImageError) -> Decoded {
        func damaged(_ reason: String) -> ImageError { .damagedManifest(path: path, reason: reason) }
        let total = bytes.count
        guard total >= headerSize + checksumSize else {
            throw damaged("truncated: \(total) bytes, a checkpoint file has at least \(headerSize + checksumSize)")
        }
        guard Array(bytes[0..<8]) == magic else { throw damaged("not a ghost checkpoint file (bad magic)") }
        // withUnsafeBytes only rethrows untyped errors; carry the typed one out in a Result.
        return try bytes.withUnsafeBytes { raw in
            Result { () throws(ImageError) -> Decoded in try decode(raw, path: path, expectedNumber: expectedNumber,
                                                                   wantPayload: wantPayload) }
        }.get()
    }

    private static func decode(_ raw: UnsafeRawBufferPointer, path: String, expectedNumber: Int,
                               wantPayload: Bool) throws(ImageError) -> Decoded {
        func damaged(_ reason: String) -> ImageError { .damagedManifest(path: path, reason: reason) }
        let total = raw.count
        let base = raw.baseAddress!
        let body = total - checksumSize
        guard XXH128Digest.of(base, count: body) == XXH128Digest(canonical: base + body) else {
            throw damaged("checksum mismatch (truncated or altered)")
        }
        func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: base.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
        let version = Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        guard version == 1 || version == Self.version else { throw .unsupportedVersion(path: path, found: version) }
        let perChunk = version == 1 ? 16 : entrySize
        let number = u64(16), rawLength = u64(24), storedLength = u64(32), count = u64(40)
        guard number == UInt64(expectedNumber) else {
            throw damaged("it says it is checkpoint \(number), but its name says \(expectedNumber)")
        }
        guard rawLength <= UInt64(maxPayload), storedLength <= UInt64(total), count <= UInt64(total / perChunk),
              UInt64(headerSize) + storedLength + UInt64(perChunk) * count + UInt64(checksumSize) == UInt64(total) else {
            throw damaged("section lengths do not add up to the file size \(total)")
        }
        var chunks: [ChunkID] = []
        var locations: [ChunkLocation] = []
        chunks.reserveCapacity(Int(count))
        locations.reserveCapacity(Int(count))
        var offset = headerSize + Int(storedLength)
        for _ in 0..<Int(count) {
            chunks.append(ChunkID(digest: XXH128Digest(canonical: base + offset)))
            if perChunk == 16 {
                locations.append(.loose)
            } else {
                let l = ChunkLocation(pack: u64(offset + 16), offset: u64(offset + 24), stored: u64(offset + 32),
                                      length: u64(offset + 40))
                guard l.isLoose || (l.length <= UInt64(ImageStore.maxChunkSize) && l.stored <= l.length
                                    && l.stored < (1 << 40) && l.offset < (1 << 50)) else {
                    throw damaged("chunk \(chunks.last!) has an impossible location in pack \(l.pack)")
                }
                locations.append(l)
            }
            offset += perChunk
        }
        var payload: [UInt8] = []
        if wantPayload {
            var failure: String?
            payload = [UInt8](unsafeUninitializedCapacity: Int(rawLength)) { buf, n in
                let r = ZSTD_decompress(buf.baseAddress, Int(rawLength), base + headerSize, Int(storedLength))
                if ZstdScratch.isError(r) {
                    failure = "manifest payload does not decompress: \(ZstdScratch.errorName(r))"
                    n = 0
                } else if r != Int(rawLength) {
                    failure = "manifest payload decompressed to \(r) bytes, expected \(rawLength)"
                    n = 0
                } else {
                    n = r
                }
            }
            if let failure { throw damaged(failure) }
        }
        return Decoded(number: Int(number), payload: payload, chunks: chunks, locations: locations)
    }
}
