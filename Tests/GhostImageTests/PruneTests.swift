import Foundation
import Glibc
import XCTest
@testable import GhostImage

/// Retention and garbage collection.
final class PruneTests: XCTestCase {
    func testPruneKeepsNewestAndCollectsOnlyUnreferencedChunks() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        let shared = randomBytes(2000, seed: 100)
        var unique: [ChunkID] = []
        var sharedID: ChunkID?
        for i in 1...5 {
            let (n, ids) = try commitCheckpoint(store, payload: "c\(i)", chunks: [shared, randomBytes(9000, seed: UInt64(i))])
            XCTAssertEqual(n, i)
            sharedID = ids[0]
            unique.append(ids[1])
        }
        XCTAssertEqual(chunkFiles(store).count, 6)
        XCTAssertEqual(packFiles(store), Set((1...5).map { String(format: "%012d.pack", $0) }))
        try store.prune(keep: 2)
        XCTAssertEqual(store.checkpointNumbers(), [4, 5])
        // Packs 2 and 3 are dead: deleted. Pack 1 holds the shared chunk and the
        // dead chunk of checkpoint 1, mostly dead: compacted into pack 6, and
        // checkpoints 4 and 5 rewritten to find the shared chunk there.
        XCTAssertEqual(chunkFiles(store), Set([sharedID!.hex, unique[3].hex, unique[4].hex]))
        XCTAssertEqual(packFiles(store), Set([4, 5, 6].map { String(format: "%012d.pack", $0) }))
        XCTAssertEqual(try ImageStore(path: tmp.image, create: false).readChunk(sharedID!), shared)
        XCTAssertEqual(store.verify(4), [])
        XCTAssertEqual(store.verify(5), [])
        XCTAssertEqual(try store.loadManifest(4), Array("c4".utf8))
        // Idempotent, and keep < 1 still keeps one.
        try store.prune(keep: 2)
        XCTAssertEqual(store.checkpointNumbers(), [4, 5])
        try store.prune(keep: 0)
        XCTAssertEqual(store.checkpointNumbers(), [5])
        XCTAssertEqual(chunkFiles(store), Set([sharedID!.hex, unique[4].hex]))
        XCTAssertEqual(store.verify(5), [])
        // Numbering continues after the newest.
        XCTAssertEqual(try store.beginCheckpoint(zstdLevel: 1).number, 6)
    }

    func testPruneNeverCountsDamagedCheckpointsAsKept() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        var ids: [ChunkID] = []
        for i in 1...3 {
            ids += try commitCheckpoint(store, payload: "c\(i)", chunks: [randomBytes(500, seed: UInt64(i))]).1
        }
        writeFile(checkpointFile(store, 3), Array(readFile(checkpointFile(store, 3)).dropLast(3)))
        try store.prune(keep: 1)
        // 3 is damaged (left for inspection), so 2 is the one kept intact; 1 goes.
        XCTAssertEqual(store.checkpointNumbers(), [2, 3])
        XCTAssertEqual(try store.newestIntactCheckpoint().number, 2)
        XCTAssertEqual(store.verify(2), [])
        XCTAssertFalse(chunkFiles(store).contains(ids[0].hex))
        XCTAssertTrue(chunkFiles(store).contains(ids[1].hex))
    }

    func testPruneWhileAWriterIsActiveKeepsItsChunks() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        try commitCheckpoint(store, payload: "1", chunks: [randomBytes(500, seed: 1)])
        try commitCheckpoint(store, payload: "2", chunks: [randomBytes(500, seed: 2)])
        let w = try store.beginCheckpoint(zstdLevel: 1)
        let committedPacks = packFiles(store)
        let pending = try w.put(randomBytes(500, seed: 3))
        let writerPacks = packFiles(store).subtracting(committedPacks)
        XCTAssertEqual(writerPacks.count, 1)
        try store.prune(keep: 1)
        XCTAssertEqual(store.checkpointNumbers(), [2])
        // The chunk may still be staged in memory; the pack it is promised to must survive.
        XCTAssertTrue(writerPacks.isSubset(of: packFiles(store)), "the pack of a live writer must survive")
        XCTAssertEqual(try w.commit(manifest: []), 3)
        XCTAssertEqual(store.verify(3), [])
        try store.prune(keep: 1)
        XCTAssertEqual(store.checkpointNumbers(), [3])
        XCTAssertEqual(chunkFiles(store), [pending.hex])
    }

    func testPruneLeavesUnknownFilesAlone() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        try commitCheckpoint(store, payload: "1", chunks: [[1]])
        writeFile(tmp.image + "/chunks/notes.txt", [1])
        writeFile(tmp.image + "/checkpoints/README", [1])
        try store.prune(keep: 1)
        XCTAssertTrue(fileExists(tmp.image + "/chunks/notes.txt"))
        XCTAssertTrue(fileExists(tmp.image + "/checkpoints/README"))
        XCTAssertEqual(store.checkpointNumbers(), [1])
    }
}
