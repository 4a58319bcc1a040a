import CZstd

/// Builds and checks checkpoint files (`checkpoints/NNNNNN.ckpt`).
/// Integers little-endian, hashes in canonical (big-endian) form:
///
///     0   8  magic "GHOSTCKP"
///     8   4  format version (1)
///     12  4  flags, zero
///     16  8  checkpoint number (must match the file name)
///     24  8  manifest payload length, uncompressed (P)
///     32  8  manifest payload length, stored (C)
///     40  8  number of chunk ids (K)
///     48  C  manifest payload, one zstd frame
///     ..  16·K  chunk ids, 16 canonical bytes each, ascending, no duplicates
///     ..  16 XXH3-128 of every byte before it
///
/// The chunk list lets prune and verify work without understanding the payload.
enum CheckpointFileCodec {
    static let magic: [UInt8] = Array("GHOSTCKP".utf8)
    static let headerSize = 48
    static let checksumSize = 16
    /// Bound on a manifest, so a damaged length field cannot ask for terabytes.
    static let maxPayload = 1 << 30
    static let payloadLevel: Int32 = 3

    struct Decoded {
        var number: Int
        var payload: [UInt8]
        var chunks: [ChunkID]
    }

    /// `chunks` must be sorted and unique.
    static func encode(number: Int, payload: [UInt8], chunks: [ChunkID]) throws(ImageError) -> [UInt8] {
        guard payload.count <= maxPayload else {
            throw .misuse("manifest payload of \(payload.count) bytes exceeds the \(maxPayload)-byte limit")
        }
        let bound = ZSTD_compressBound(payload.count)
        let capacity = headerSize + bound + 16 * chunks.count + checksumSize
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
            base.storeBytes(of: UInt32(ImageLayout.formatVersion).littleEndian, toByteOffset: 8, as: UInt32.self)
            base.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
            base.storeBytes(of: UInt64(number).littleEndian, toByteOffset: 16, as: UInt64.self)
            base.storeBytes(of: UInt64(payload.count).littleEndian, toByteOffset: 24, as: UInt64.self)
            base.storeBytes(of: UInt64(stored).littleEndian, toByteOffset: 32, as: UInt64.self)
            base.storeBytes(of: UInt64(chunks.count).littleEndian, toByteOffset: 40, as: UInt64.self)
            var offset = headerSize + stored
            for id in chunks {
                id.digest.store(to: base + offset)
                offset += 16
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
        guard version == ImageLayout.formatVersion else { throw .unsupportedVersion(path: path, found: version) }
        let number = u64(16), rawLength = u64(24), storedLength = u64(32), count = u64(40)
        guard number == UInt64(expectedNumber) else {
            throw damaged("it says it is checkpoint \(number), but its name says \(expectedNumber)")
        }
        guard rawLength <= UInt64(maxPayload), storedLength <= UInt64(total), count <= UInt64(total / 16),
              UInt64(headerSize) + storedLength + 16 * count + UInt64(checksumSize) == UInt64(total) else {
            throw damaged("section lengths do not add up to the file size \(total)")
        }
        var chunks: [ChunkID] = []
        chunks.reserveCapacity(Int(count))
        var offset = headerSize + Int(storedLength)
        for _ in 0..<Int(count) {
            chunks.append(ChunkID(digest: XXH128Digest(canonical: base + offset)))
            offset += 16
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
        return Decoded(number: Int(number), payload: payload, chunks: chunks)
    }
}
