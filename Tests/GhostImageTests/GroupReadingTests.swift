import Foundation
import Glibc
import XCTest
@testable import GhostImage

/// Reading many chunks in large reads (readGroups + readGroup), as a resume does.
final class GroupReadingTests: XCTestCase {
    /// Chunks as a memory image holds them: many compressible, many random,
    /// some repeated, of odd sizes.
    private func chunks() -> [[UInt8]] {
        (0..<120).map { i -> [UInt8] in
            switch i % 4 {
            case 0: return [UInt8](repeating: UInt8(i), count: 262_144)
            case 1: return randomBytes(262_144, seed: UInt64(i))
            case 2: return randomBytes(4096 * (1 + i % 7), seed: UInt64(i))
            default: return randomBytes(262_144, seed: 1)   // the same chunk again and again
            }
        }
    }

    /// A store holding `chunks()` in checkpoint 1.
    private func committed(_ tmp: TempDir, direct: Bool = true) throws -> (ImageStore, [ChunkID], [[UInt8]]) {
        let store = try ImageStore(path: tmp.image, create: true)
        store.directIO = direct
        let data = chunks()
        let w = try store.beginCheckpoint(zstdLevel: 1)
        let ids = try data.map { try w.put($0) }
        XCTAssertEqual(try w.commit(manifest: []), 1)
        return (store, ids, data)
    }

    private func readAll(_ store: ImageStore, _ ids: [ChunkID]) throws(ImageError) -> ([[UInt8]?], [[Int]]) {
        let groups = store.readGroups(ids)
        var out = [[UInt8]?](repeating: nil, count: ids.count)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 262_144, alignment: 64)
        defer { scratch.deallocate() }
        for g in groups {
            try store.readGroup(ids, g, scratch: scratch) { i, bytes in
                XCTAssertNil(out[i], "chunk \(i) delivered twice")
                out[i] = Array(bytes)
                return true
            }
        }
        return (out, groups)
    }

    func testEveryChunkComesBackOnceInFewReadsWithEitherIO() throws {
        for direct in [true, false] {
            let tmp = TempDir()
            let (_, ids, data) = try committed(tmp, direct: direct)
            let reader = try ImageStore(path: tmp.image, create: false)
            reader.directIO = direct
            let (out, groups) = try readAll(reader, ids)
            XCTAssertEqual(out.map { $0 ?? [] }, data)
            XCTAssertEqual(groups.flatMap { $0 }.sorted(), Array(ids.indices), "each index in exactly one group")
            XCTAssertLessThan(groups.count, 12, "about 16 MiB stored: a handful of 4 MiB reads, not one per chunk")
        }
    }

    func testChunksSpreadOverCheckpointsAndPacksAreAllRead() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        let data = chunks()
        // Half in checkpoint 1, the rest (plus reuses) in checkpoint 2: two packs, gaps between needed chunks.
        var ids: [ChunkID] = []
        let w1 = try store.beginCheckpoint(zstdLevel: 1)
        for c in data[..<60] { ids.append(try w1.put(c)) }
        _ = try w1.put(randomBytes(300_000, seed: 99))   // in the pack, not needed below
        XCTAssertEqual(try w1.commit(manifest: []), 1)
        let w2 = try store.beginCheckpoint(zstdLevel: 1)
        for c in data[60...] { ids.append(try w2.put(c)) }
        XCTAssertEqual(try w2.commit(manifest: []), 2)
        let (out, _) = try readAll(try ImageStore(path: tmp.image, create: false), ids)
        XCTAssertEqual(out.map { $0 ?? [] }, data)
    }

    func testDamageInsideAGroupIsReportedForThatChunk() throws {
        let tmp = TempDir()
        let (store, ids, _) = try committed(tmp)
        let victim = ids[5]
        let (path, offset) = try chunkEntry(store, victim)
        flipByte(path, at: offset + Int(PackEntryHeader.size) + 1000)
        let reader = try ImageStore(path: tmp.image, create: false)
        guard case .damagedChunk(let id, _, _)? = expectImageError({ () throws(ImageError) in
            _ = try self.readAll(reader, ids)
        }) else { return XCTFail("a flipped byte must be reported") }
        XCTAssertEqual(id, victim)
    }

    func testStoppingEarlyDeliversNothingMore() throws {
        let tmp = TempDir()
        let (store, ids, _) = try committed(tmp)
        let groups = store.readGroups(ids)
        let big = try XCTUnwrap(groups.first { $0.count > 2 })
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 262_144, alignment: 64)
        defer { scratch.deallocate() }
        var calls = 0
        try store.readGroup(ids, big, scratch: scratch) { _, _ in
            calls += 1
            return false
        }
        XCTAssertEqual(calls, 1)
    }
}
