import Foundation
import Glibc
import Synchronization
import XCTest
@testable import GhostImage

/// Checkpoints: commit protocol, crash leftovers, damage detection and fallback.
final class CheckpointTests: XCTestCase {
    func testCommitMakesTheCheckpointVisibleAndNothingBefore() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        let reader = try ImageStore(path: tmp.image, create: false)
        let w = try store.beginCheckpoint(zstdLevel: 1)
        XCTAssertEqual(w.number, 1)
        _ = try w.put(randomBytes(100_000, seed: 1))
        XCTAssertEqual(store.checkpointNumbers(), [])
        XCTAssertEqual(reader.checkpointNumbers(), [])
        XCTAssertEqual(expectImageError { () throws(ImageError) in try reader.newestIntactCheckpoint() },
                       .noCheckpoints(path: tmp.image))
        let payload = Array("{\"processes\":[]}".utf8)
        XCTAssertEqual(try w.commit(manifest: payload), 1)
        XCTAssertEqual(reader.checkpointNumbers(), [1])
        XCTAssertEqual(try reader.loadManifest(1), payload)
        let newest = try reader.newestIntactCheckpoint()
        XCTAssertEqual(newest.number, 1)
        XCTAssertEqual(newest.payload, payload)
        XCTAssertEqual(newest.skipped, [])
        XCTAssertEqual(tempFiles(under: tmp.image), [])

        // Numbers go on from the newest.
        let w2 = try store.beginCheckpoint(zstdLevel: 3)
        XCTAssertEqual(w2.number, 2)
        XCTAssertEqual(try w2.commit(manifest: []), 2)
        XCTAssertEqual(try reader.loadManifest(2), [])
        XCTAssertEqual(reader.checkpointNumbers(), [1, 2])
    }

    func testEveryIntermediateStateShowsOnlyTheOldCheckpoint() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        try commitCheckpoint(store, payload: "old", chunks: [randomBytes(5000, seed: 1)])
        let reader = try ImageStore(path: tmp.image, create: false)
        func assertOnlyOld(_ step: String) throws {
            XCTAssertEqual(reader.checkpointNumbers(), [1], step)
            let newest = try reader.newestIntactCheckpoint()
            XCTAssertEqual(newest.number, 1, step)
            XCTAssertEqual(newest.payload, Array("old".utf8), step)
            XCTAssertEqual(newest.skipped, [], step)
            XCTAssertEqual(reader.verify(1), [], step)
        }
        let w = try store.beginCheckpoint(zstdLevel: 1)
        try assertOnlyOld("after begin")
        _ = try w.put(randomBytes(5000, seed: 2))
        try assertOnlyOld("after put")
        // What a writer killed between writing and renaming its checkpoint file
        // leaves: the complete file under its temp name.
        let complete = try CheckpointFileCodec.encode(number: 2, payload: Array("new".utf8), chunks: [])
        writeFile(tmp.image + "/checkpoints/.tmp-1-1-000002.ckpt", complete)
        try assertOnlyOld("after temp checkpoint file")
        writeFile(tmp.image + "/checkpoints/.tmp-1-2-000002.ckpt", Array(complete[0..<30]))
        try assertOnlyOld("after partial temp checkpoint file")
        XCTAssertEqual(try w.commit(manifest: Array("new".utf8)), 2)
        XCTAssertEqual(reader.checkpointNumbers(), [1, 2])
        XCTAssertEqual(try reader.newestIntactCheckpoint().payload, Array("new".utf8))
    }

    func testAbandonedWriterLeavesPreviousCheckpointAndPruneCleansUp() throws {
        let tmp = TempDir()
        let kept = randomBytes(70_000, seed: 1)
        var keptID: ChunkID
        var orphanIDs: [ChunkID] = []
        do {
            let store = try ImageStore(path: tmp.image, create: true)
            keptID = try commitCheckpoint(store, payload: "one", chunks: [kept]).1[0]
            // A writer that dies mid-way: chunks stored in its pack (more than
            // one staging buffer, so they reach the file before commit), the
            // temp file of the checkpoint file left behind, no commit.
            let w = try store.beginCheckpoint(zstdLevel: 1)
            orphanIDs.append(try w.put(randomBytes(3 << 20, seed: 2)))
            orphanIDs.append(try w.put(randomBytes(3 << 20, seed: 3)))
            writeFile(tmp.image + "/checkpoints/.tmp-999999-1-000002.ckpt", Array("GHOSTCKP partial".utf8))
            // What a killed process leaves: its pack, which its writer's abort would have removed.
            let keptPack = (try chunkEntry(store, keptID).path as NSString).lastPathComponent
            let others = packFiles(store).subtracting([keptPack])
            XCTAssertEqual(others.count, 1)
            let orphanPack = tmp.image + "/packs/" + others.first!
            let leftover = readFile(orphanPack)

            let reader = try ImageStore(path: tmp.image, create: false)
            XCTAssertEqual(reader.checkpointNumbers(), [1])
            let newest = try reader.newestIntactCheckpoint()
            XCTAssertEqual(newest.number, 1)
            XCTAssertEqual(newest.payload, Array("one".utf8))
            XCTAssertEqual(try reader.readChunk(keptID), kept)
            w.abort()
            XCTAssertFalse(fileExists(orphanPack), "abort removes the writer's packs")
            writeFile(orphanPack, leftover)
        }
        let store = try ImageStore(path: tmp.image, create: false)
        XCTAssertEqual(tempFiles(under: tmp.image).count, 1)
        XCTAssertEqual(chunkFiles(store).count, 3)
        XCTAssertEqual(packFiles(store).count, 2)
        try store.prune(keep: 3)
        XCTAssertEqual(tempFiles(under: tmp.image), [])
        XCTAssertEqual(chunkFiles(store), [keptID.hex], "unreferenced chunks are collected")
        XCTAssertEqual(packFiles(store).count, 1, "the dead writer's pack is deleted")
        XCTAssertEqual(store.verify(1), [])
        let w = try store.beginCheckpoint(zstdLevel: 1)
        XCTAssertEqual(w.number, 2)
        XCTAssertEqual(try w.put(randomBytes(3 << 20, seed: 2)), orphanIDs[0])
        XCTAssertEqual(w.stats.chunksWritten, 1, "a collected chunk is written again")
        XCTAssertEqual(try w.commit(manifest: []), 2)
        XCTAssertEqual(store.verify(2), [])
    }

    func testAbortRemovesTempFilesAndForbidsFurtherUse() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        let w = try store.beginCheckpoint(zstdLevel: 1)
        _ = try w.put([1, 2, 3])
        w.abort()
        w.abort()
        XCTAssertEqual(store.checkpointNumbers(), [])
        XCTAssertEqual(tempFiles(under: tmp.image), [])
        guard case .misuse = expectImageError({ () throws(ImageError) in try w.put([4]) }) else {
            return XCTFail("put after abort must be refused")
        }
        guard case .misuse = expectImageError({ () throws(ImageError) in try w.commit(manifest: []) }) else {
            return XCTFail("commit after abort must be refused")
        }
        let w2 = try store.beginCheckpoint(zstdLevel: 1)
        XCTAssertEqual(try w2.commit(manifest: []), 1)
        guard case .misuse = expectImageError({ () throws(ImageError) in try w2.commit(manifest: []) }) else {
            return XCTFail("a second commit must be refused")
        }
    }

    func testFlippedByteInChunkIsReportedAsDamagedChunk() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        let raw = randomBytes(10_000, seed: 4)
        let compressible = [UInt8](repeating: 7, count: 50_000) + randomBytes(100, seed: 5)
        let (n, ids) = try commitCheckpoint(store, payload: "p", chunks: [raw, compressible])
        let h = Int(PackEntryHeader.size)
        // raw data, compressed data, the length in the header, the id in the header
        for (id, delta) in [(ids[0], h + 5000), (ids[1], h + 4), (ids[1], 8), (ids[0], 30)] {
            let (path, entry) = try chunkEntry(store, id)
            let original = readFile(path)
            flipByte(path, at: entry + delta)
            let e = expectImageError { () throws(ImageError) in try store.readChunk(id) }
            guard case .damagedChunk(let badID, let badPath, _) = e else {
                XCTFail("expected damagedChunk for a flip at \(delta), got \(String(describing: e))")
                continue
            }
            XCTAssertEqual(badID, id)
            XCTAssertEqual(badPath, "\(path) at offset \(entry)")
            XCTAssertTrue(e!.description.contains(id.hex))
            let problems = store.verify(n)
            XCTAssertEqual(problems.count, 1)
            XCTAssertTrue(problems.first?.contains(id.hex) ?? false)
            writeFile(path, original)
            XCTAssertEqual(store.verify(n), [])
        }
        // A truncated pack is damage too, and makes the checkpoint not intact.
        let (path, entry) = try chunkEntry(store, ids[1])
        writeFile(path, Array(readFile(path).prefix(entry + 100)))
        guard case .damagedChunk = expectImageError({ () throws(ImageError) in try store.readChunk(ids[1]) }) else {
            return XCTFail("truncated chunk must be damagedChunk")
        }
        writeFile(path, Array(readFile(path).prefix(entry + 10)))
        guard case .damagedChunk = expectImageError({ () throws(ImageError) in try store.readChunk(ids[1]) }) else {
            return XCTFail("chunk shorter than its header must be damagedChunk")
        }
        XCTAssertEqual(expectImageError { () throws(ImageError) in try store.newestIntactCheckpoint() }.map { e in
            if case .noIntactCheckpoint = e { return true } else { return false } }, true)
    }

    func testDamagedManifestFallsBackToOlderCheckpoint() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        let chunk = randomBytes(3000, seed: 8)
        try commitCheckpoint(store, payload: "first", chunks: [chunk])
        try commitCheckpoint(store, payload: "second", chunks: [chunk])
        let path2 = checkpointFile(store, 2)
        let good = readFile(path2)
        let damages: [(String, [UInt8])] = [
            ("truncated", Array(good.dropLast(5))),
            ("truncated to a few bytes", Array(good.prefix(10))),
            ("empty", []),
            ("flipped payload byte", { var b = good; b[50] ^= 1; return b }()),
            ("flipped chunk id byte", { var b = good; b[b.count - 20] ^= 1; return b }()),
            ("flipped checksum byte", { var b = good; b[b.count - 1] ^= 1; return b }()),
            ("flipped magic", { var b = good; b[0] ^= 1; return b }()),
        ]
        for (what, bytes) in damages {
            writeFile(path2, bytes)
            let e = expectImageError { () throws(ImageError) in try store.loadManifest(2) }
            guard case .damagedManifest(let path, _) = e else {
                XCTFail("\(what): expected damagedManifest, got \(String(describing: e))")
                continue
            }
            XCTAssertEqual(path, path2, what)
            let newest = try store.newestIntactCheckpoint()
            XCTAssertEqual(newest.number, 1, what)
            XCTAssertEqual(newest.payload, Array("first".utf8), what)
            XCTAssertEqual(newest.skipped.count, 1, what)
            XCTAssertTrue(newest.skipped[0].contains("checkpoint 2"), what)
            XCTAssertTrue(newest.skipped[0].contains(path2), what)
            XCTAssertFalse(store.verify(2).isEmpty, what)
        }
        // A checkpoint file renamed to another number is not trusted either.
        writeFile(path2, good)
        XCTAssertEqual(rename(checkpointFile(store, 1), checkpointFile(store, 7)), 0)
        guard case .damagedManifest(_, let reason) = expectImageError({ () throws(ImageError) in try store.loadManifest(7) }) else {
            return XCTFail("misnamed checkpoint must be damaged")
        }
        XCTAssertTrue(reason.contains("checkpoint 1"))
        // All damaged: a typed error listing why.
        writeFile(path2, [])
        guard case .noIntactCheckpoint(_, let problems) = expectImageError({ () throws(ImageError) in try store.newestIntactCheckpoint() }) else {
            return XCTFail("expected noIntactCheckpoint")
        }
        XCTAssertEqual(problems.count, 2)
    }

    func testDeletedChunkMakesNewestIntactSkipTheCheckpoint() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        let shared = randomBytes(2000, seed: 1), only2 = randomBytes(2000, seed: 2)
        try commitCheckpoint(store, payload: "first", chunks: [shared])
        let (_, ids) = try commitCheckpoint(store, payload: "second", chunks: [shared, only2])
        let (pack2, _) = try chunkEntry(store, ids[1])
        XCTAssertNotEqual(try chunkEntry(store, ids[0]).path, pack2, "the shared chunk is not written again")
        XCTAssertEqual(unlink(pack2), 0)
        let newest = try store.newestIntactCheckpoint()
        XCTAssertEqual(newest.number, 1)
        XCTAssertEqual(newest.payload, Array("first".utf8))
        XCTAssertEqual(newest.skipped.count, 1)
        XCTAssertTrue(newest.skipped[0].contains("checkpoint 2"))
        XCTAssertTrue(newest.skipped[0].contains(ids[1].hex))
        XCTAssertEqual(expectImageError { () throws(ImageError) in try store.readChunk(ids[1]) },
                       .missingChunk(id: ids[1], path: pack2))
        XCTAssertEqual(store.verify(2).count, 1)
        // The manifest itself is fine: loading it by number still works.
        XCTAssertEqual(try store.loadManifest(2), Array("second".utf8))
    }

    func testNoSuchCheckpointListsAvailableOnes() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        try commitCheckpoint(store, payload: "a", chunks: [])
        try commitCheckpoint(store, payload: "b", chunks: [])
        let e = expectImageError { () throws(ImageError) in try store.loadManifest(7) }
        XCTAssertEqual(e, .noSuchCheckpoint(path: tmp.image, number: 7, available: [1, 2]))
        XCTAssertTrue(e!.description.contains("1, 2"))
        XCTAssertEqual(store.verify(7).count, 1)
    }

    func testFailedWritesLeaveThePreviousCheckpointWhole() throws {
        // RLIMIT_FSIZE makes writes fail (EFBIG) the way a full disk does (ENOSPC),
        // at a chosen size, without needing a small file system.
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        try commitCheckpoint(store, payload: "safe", chunks: [randomBytes(1000, seed: 1)])
        var saved = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &saved)
        let oldHandler = signal(SIGXFSZ, SIG_IGN)
        func limitFileSize(_ bytes: rlim_t) {
            var lim = saved
            lim.rlim_cur = bytes
            XCTAssertEqual(setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &lim), 0)
        }
        defer {
            setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &saved)
            signal(SIGXFSZ, oldHandler)
        }

        // A put that cannot be written (bigger than a staging buffer, so it is written at once).
        let w = try store.beginCheckpoint(zstdLevel: 1)
        _ = try w.put(randomBytes(1000, seed: 2))
        limitFileSize(64 << 10)
        guard case .io(_, let path, let code) = expectImageError({ () throws(ImageError) in
            try w.put(randomBytes(5 << 20, seed: 3))
        }) else { return XCTFail("expected an io error") }
        XCTAssertEqual(code, EFBIG)
        XCTAssertTrue(path.hasPrefix(tmp.image + "/packs/"))
        // The checkpoint lacks a chunk: it must not be committed.
        XCTAssertNotNil(expectImageError { () throws(ImageError) in try w.commit(manifest: []) })
        XCTAssertEqual(store.checkpointNumbers(), [1])
        XCTAssertEqual(try store.newestIntactCheckpoint().payload, Array("safe".utf8))
        w.abort()

        // A checkpoint file that cannot be written: commit fails, can be retried.
        let w2 = try store.beginCheckpoint(zstdLevel: 1)
        _ = try w2.put(randomBytes(1000, seed: 4))
        let bigManifest = randomBytes(200_000, seed: 5)
        guard case .io(_, _, EFBIG) = expectImageError({ () throws(ImageError) in try w2.commit(manifest: bigManifest) }) else {
            return XCTFail("expected EFBIG from commit")
        }
        XCTAssertEqual(store.checkpointNumbers(), [1])
        XCTAssertEqual(try store.newestIntactCheckpoint().payload, Array("safe".utf8))
        XCTAssertEqual(store.verify(1), [])
        limitFileSize(saved.rlim_cur)
        XCTAssertEqual(try w2.commit(manifest: bigManifest), 2)
        XCTAssertEqual(try store.loadManifest(2), bigManifest)
        try store.prune(keep: 5)
        XCTAssertEqual(tempFiles(under: tmp.image), [])
        XCTAssertEqual(store.verify(2), [])

        // Staged chunks that cannot be written at commit: commit fails, can be retried.
        let w3 = try store.beginCheckpoint(zstdLevel: 1)
        let staged = randomBytes(200_000, seed: 6)
        let stagedID = try w3.put(staged)
        limitFileSize(64 << 10)
        guard case .io(_, let packPath, EFBIG) = expectImageError({ () throws(ImageError) in
            try w3.commit(manifest: Array("three".utf8))
        }) else { return XCTFail("expected EFBIG from commit") }
        XCTAssertTrue(packPath.hasPrefix(tmp.image + "/packs/"))
        XCTAssertEqual(store.checkpointNumbers(), [1, 2])
        limitFileSize(saved.rlim_cur)
        XCTAssertEqual(try w3.commit(manifest: Array("three".utf8)), 3)
        XCTAssertEqual(store.verify(3), [])
        XCTAssertEqual(try ImageStore(path: tmp.image, create: false).readChunk(stagedID), staged)
    }

    /// Pages of `path` in the page cache (mincore on a mapping of it).
    private func cachedPages(_ path: String) -> Int {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return -1 }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size), ps = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard size > 0, let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else { return -1 }
        defer { munmap(map, size) }
        var vec = [UInt8](repeating: 0, count: (size + ps - 1) / ps)
        guard mincore(map, size, &vec) == 0 else { return -1 }
        return vec.reduce(0) { $0 + Int($1 & 1) }
    }

    func testPacksBypassThePageCacheAndReadBackWithEitherWriter() throws {
        let tmp = TempDir()
        var checked = 0
        for direct in [true, false] {
            let dir = tmp.image + (direct ? "-direct" : "-buffered")
            let store = try ImageStore(path: dir, create: true)
            store.directIO = direct
            // Chunks of odd sizes, several staging buffers' worth, from two threads at once.
            let chunks = (0..<24).map { randomBytes(700_001 + $0 * 4099, seed: UInt64($0) + 1) }
            let w = try store.beginCheckpoint(zstdLevel: 1)
            let ids = Mutex([ChunkID?](repeating: nil, count: chunks.count))
            DispatchQueue.concurrentPerform(iterations: 2) { t in
                for i in stride(from: t, to: chunks.count, by: 2) {
                    let id = try? w.put(chunks[i])
                    ids.withLock { $0[i] = id }
                }
            }
            let slots = ids.withLock { $0 }
            XCTAssertEqual(try w.commit(manifest: []), 1)
            let packs = packFiles(store)
            XCTAssertTrue((1...2).contains(packs.count), "one pack per thread writing at the same time")
            let cached = packs.map { cachedPages(dir + "/packs/" + $0) }.reduce(0, +)
            let total = packs.map { Int(StoreIO.statAt(AT_FDCWD, dir + "/packs/" + $0)!.st_size) }.reduce(0, +)
            XCTAssertEqual(total, chunks.reduce(0) { $0 + $1.count + Int(PackEntryHeader.size) },
                           "packs are gapless: entries and nothing else")
            if direct {
                // Only the tails written last may have been read into the cache (partial blocks).
                XCTAssertLessThan(cached, 8, "O_DIRECT writes must not fill the page cache")
            } else {
                XCTAssertGreaterThan(cached, total / 4096 / 2, "buffered writes go through the page cache")
            }
            XCTAssertEqual(store.verify(1), [])
            let reader = try ImageStore(path: dir, create: false)
            for (i, c) in chunks.enumerated() {
                XCTAssertEqual(try reader.readChunk(XCTUnwrap(slots[i])), c)
                checked += 1
            }
        }
        XCTAssertEqual(checked, 48)
    }

    func testASmallCheckpointWritesOnePackEvenFromSeveralThreads() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        let chunks = (0..<64).map { randomBytes(65_536 + $0, seed: UInt64($0) + 100) }   // 4 MiB in all
        let w = try store.beginCheckpoint(zstdLevel: 1)
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for i in stride(from: t, to: chunks.count, by: 4) { XCTAssertNotNil(try? w.put(chunks[i])) }
        }
        XCTAssertEqual(try w.commit(manifest: []), 1)
        XCTAssertEqual(packFiles(store).count, 1, "one fsync for a small checkpoint, not one per thread")
        XCTAssertEqual(store.verify(1), [])
    }
}
