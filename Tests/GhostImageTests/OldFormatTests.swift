import Foundation
import CZstd
import Glibc
import XCTest
@testable import GhostImage

/// Images written before packs (checkpoint file version 1, one file per
/// chunk under chunks/ab/<id>) are still read, verified, and their chunks
/// reused by new checkpoints, which go to packs.
final class OldFormatTests: XCTestCase {
    /// A version 1 checkpoint file, built by hand from the layout in IMAGE-FORMAT.md.
    private func checkpointFileV1(number: Int, payload: [UInt8], chunks: [ChunkID]) -> [UInt8] {
        var frame = [UInt8](repeating: 0, count: 64 + payload.count * 2)
        let stored = frame.withUnsafeMutableBytes { out in
            payload.withUnsafeBytes { ZSTD_compress(out.baseAddress, out.count, $0.baseAddress, $0.count, 3) }
        }
        frame = Array(frame.prefix(stored))
        func u64(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt64(v).littleEndian, Array.init) }
        var bytes = Array("GHOSTCKP".utf8) + withUnsafeBytes(of: UInt32(1).littleEndian, Array.init) + [0, 0, 0, 0]
        bytes += u64(number) + u64(payload.count) + u64(stored) + u64(chunks.count) + frame
        for id in chunks.sorted() { bytes += id.hex.hexBytes }
        var sum = [UInt8](repeating: 0, count: 16)
        bytes.withUnsafeBytes { b in sum.withUnsafeMutableBytes { XXH128Digest.of(b.baseAddress, count: b.count).store(to: $0.baseAddress!) } }
        return bytes + sum
    }

    /// A loose chunk file: 16-byte header ("GHCK", version 1, raw), then the bytes.
    private func looseChunk(_ bytes: [UInt8]) -> [UInt8] {
        Array("GHCK".utf8) + [1, 0, 0, 0] + withUnsafeBytes(of: UInt64(bytes.count).littleEndian, Array.init) + bytes
    }

    func testVersion1ImageWithLooseChunksIsReadAndReused() throws {
        let tmp = TempDir()
        let a = randomBytes(5000, seed: 1), b = randomBytes(7000, seed: 2)
        let ida = a.withUnsafeBytes { ChunkID(hashing: $0) }, idb = b.withUnsafeBytes { ChunkID(hashing: $0) }
        do { _ = try ImageStore(path: tmp.image, create: true) }
        for (id, bytes) in [(ida, a), (idb, b)] {
            let dir = tmp.image + "/chunks/" + id.hex.prefix(2)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            writeFile(dir + "/" + id.hex, looseChunk(bytes))
        }
        writeFile(checkpointFile(try ImageStore(path: tmp.image, create: false), 1),
                  checkpointFileV1(number: 1, payload: Array("old".utf8), chunks: [ida, idb]))

        let store = try ImageStore(path: tmp.image, create: false)
        XCTAssertEqual(try store.newestIntactCheckpoint().payload, Array("old".utf8))
        XCTAssertEqual(store.verify(1), [])
        XCTAssertEqual(try store.readChunk(ida), a)
        XCTAssertEqual(try store.readChunk(idb), b)
        // A new checkpoint reuses the loose chunk and writes the new one to a pack.
        let c = randomBytes(3000, seed: 3)
        let w = try store.beginCheckpoint(zstdLevel: 1)
        XCTAssertEqual(try w.put(a), ida)
        let idc = try w.put(c)
        XCTAssertEqual(w.stats.chunksReused, 1)
        XCTAssertEqual(w.stats.chunksWritten, 1)
        XCTAssertEqual(try w.commit(manifest: Array("new".utf8)), 2)
        XCTAssertEqual(packFiles(store).count, 1)
        store.close()
        let reader = try ImageStore(path: tmp.image, create: false)
        XCTAssertEqual(reader.verify(2), [])
        XCTAssertEqual(try reader.readChunk(ida), a)
        XCTAssertEqual(try reader.readChunk(idc), c)
        // Pruning checkpoint 1 deletes the loose chunk only it used.
        try reader.prune(keep: 1)
        XCTAssertEqual(reader.checkpointNumbers(), [2])
        XCTAssertFalse(fileExists(chunkFile(reader, idb)))
        XCTAssertTrue(fileExists(chunkFile(reader, ida)))
        XCTAssertEqual(reader.verify(2), [])
        // A damaged loose chunk is reported as such.
        flipByte(chunkFile(reader, ida), at: 16 + 100)
        XCTAssertEqual(reader.verify(2).count, 1)
    }
}
