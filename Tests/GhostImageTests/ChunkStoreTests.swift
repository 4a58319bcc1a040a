import Dispatch
import Foundation
import Glibc
import Synchronization
import XCTest
@testable import GhostImage

/// Chunks: round trips, ids, dedup, concurrency, the on-disk chunk format.
final class ChunkStoreTests: XCTestCase {
    func testChunkIDIsXXH3128OfContent() throws {
        // Reference value of `xxh128sum` for empty input.
        let empty = [UInt8]().withUnsafeBytes { ChunkID(hashing: $0) }
        XCTAssertEqual(empty.hex, "99aa06d3014798d86001c324468d497f")
        XCTAssertEqual(ChunkID(hex: "99AA06D3014798D86001C324468D497F"), empty)
        XCTAssertNil(ChunkID(hex: "99aa06d3014798d86001c324468d497"))
        XCTAssertNil(ChunkID(hex: "zzaa06d3014798d86001c324468d497f"))

        let json = try JSONEncoder().encode([empty])
        XCTAssertEqual(String(decoding: json, as: UTF8.self), "[\"99aa06d3014798d86001c324468d497f\"]")
        XCTAssertEqual(try JSONDecoder().decode([ChunkID].self, from: json), [empty])
        XCTAssertThrowsError(try JSONDecoder().decode([ChunkID].self, from: Data("[\"nothex\"]".utf8)))
    }

    func testRoundTripOfAllKindsOfChunks() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        var half = randomBytes(4 << 20, seed: 7)
        half += [UInt8](repeating: 0, count: 4 << 20)
        let cases: [(String, [UInt8])] = [
            ("random 256 KiB", randomBytes(256 << 10, seed: 1)),
            ("zeros 256 KiB", [UInt8](repeating: 0, count: 256 << 10)),
            ("empty", []),
            ("one byte", [42]),
            ("8 MiB half random half zero", half),
            ("8 MiB random", randomBytes(8 << 20, seed: 3)),
        ]
        let writer = try store.beginCheckpoint(zstdLevel: 1)
        var ids: [ChunkID] = []
        for (name, bytes) in cases {
            let id = try writer.put(bytes)
            XCTAssertEqual(id, bytes.withUnsafeBytes { ChunkID(hashing: $0) }, name)
            ids.append(id)
        }
        XCTAssertEqual(try writer.commit(manifest: Array("m".utf8)), 1)

        let reader = try ImageStore(path: tmp.image, create: false)
        var scratch = [UInt8](repeating: 0xEE, count: 8 << 20)
        for ((name, bytes), id) in zip(cases, ids) {
            XCTAssertEqual(try reader.readChunk(id), bytes, name)
            let n = try reader.readChunk(id, into: &scratch)
            XCTAssertEqual(n, bytes.count, name)
            XCTAssertEqual(Array(scratch[0..<n]), bytes, name)
        }
        // Zeros are stored compressed, random data raw (never larger than the input + header).
        func entry(_ id: ChunkID) throws -> (flags: UInt8, stored: UInt64) {
            let (path, offset) = try chunkEntry(reader, id)
            return (readFile(path)[offset + 5], try reader.location(of: id).stored)
        }
        XCTAssertEqual(try entry(ids[1]).flags, 1, "zeros must be stored compressed")
        XCTAssertLessThan(try entry(ids[1]).stored, 1024)
        XCTAssertEqual(try entry(ids[0]).flags, 0, "random data must be stored raw")
        XCTAssertEqual(try entry(ids[0]).stored, 256 << 10)
        XCTAssertEqual(try entry(ids[4]).flags, 1, "half zero: the sample is not random-looking, so it is compressed")
        XCTAssertLessThan(try entry(ids[4]).stored, 5 << 20)
        XCTAssertEqual(try entry(ids[5]).stored, 8 << 20)
        XCTAssertEqual(reader.verify(1), [])
    }

    func testCompressedChunkIsAPlainZstdFrameAfterTheHeader() throws {
        guard fileExists("/usr/bin/zstd") else { throw XCTSkip("zstd command not installed") }
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        let bytes = Array(String(repeating: "ghost checkpoint ", count: 5000).utf8)
        let (_, ids) = try commitCheckpoint(store, payload: "x", chunks: [bytes])
        let (path, entry) = try chunkEntry(store, ids[0])
        let file = Array(readFile(path)[entry...])
        XCTAssertEqual(Array(file[0..<4]), Array("GHCK".utf8))
        XCTAssertEqual(file[4], 1)
        XCTAssertEqual(file[5], 1)
        XCTAssertEqual(file[8..<16].withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) },
                       UInt64(bytes.count))
        let stored = file[16..<24].withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        XCTAssertEqual(file.count, 40 + stored, "the only entry fills the pack")
        XCTAssertEqual(Array(file[24..<40]), ids[0].hex.hexBytes)
        writeFile(tmp.path + "/frame.zst", Array(file[40...]))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/zstd")
        p.arguments = ["-q", "-d", "-f", tmp.path + "/frame.zst", "-o", tmp.path + "/frame"]
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        XCTAssertEqual(readFile(tmp.path + "/frame"), bytes)
    }

    func testDedupWithinAndAcrossCheckpoints() throws {
        let tmp = TempDir()
        let a = randomBytes(256 << 10, seed: 10), b = randomBytes(256 << 10, seed: 11)
        let c = randomBytes(256 << 10, seed: 12)
        do {
            let store = try ImageStore(path: tmp.image, create: true)
            let w = try store.beginCheckpoint(zstdLevel: 1)
            _ = try w.put(a)
            _ = try w.put(b)
            _ = try w.put(a)  // same bytes again in the same checkpoint
            XCTAssertEqual(w.stats, WriteStats(chunksWritten: 2, chunksReused: 1, rawBytes: 3 * (256 << 10),
                                               storedBytes: 2 * (40 + (256 << 10))))
            XCTAssertEqual(try w.commit(manifest: []), 1)
        }
        // A later checkpoint, from a new store as after a restart: a is not written again.
        let store = try ImageStore(path: tmp.image, create: false)
        let w = try store.beginCheckpoint(zstdLevel: 1)
        XCTAssertEqual(w.number, 2)
        let idA = try w.put(a)
        let idC = try w.put(c)
        XCTAssertEqual(w.stats.chunksWritten, 1)
        XCTAssertEqual(w.stats.chunksReused, 1)
        XCTAssertEqual(w.stats.storedBytes, 40 + (256 << 10))
        XCTAssertEqual(try w.commit(manifest: []), 2)
        XCTAssertEqual(chunkFiles(store).count, 3)
        XCTAssertEqual(try store.readChunk(idA), a)
        XCTAssertEqual(try store.readChunk(idC), c)
        XCTAssertEqual(store.verify(2), [])
    }

    func testUnreferencedChunkFileIsRewrittenNotTrusted() throws {
        // A chunk file no committed checkpoint references may be a crashed
        // writer's unsynced leftover: the next put of that content rewrites it.
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        try commitCheckpoint(store, payload: "1", chunks: [[1, 2, 3]])
        let bytes = randomBytes(4096, seed: 99)
        let id = bytes.withUnsafeBytes { ChunkID(hashing: $0) }
        try FileManager.default.createDirectory(atPath: store.path + "/chunks/" + id.hex.prefix(2),
                                                withIntermediateDirectories: true)
        writeFile(chunkFile(store, id), [UInt8](repeating: 0, count: 100))  // garbage under the right name
        let w = try store.beginCheckpoint(zstdLevel: 1)
        XCTAssertEqual(try w.put(bytes), id)
        XCTAssertEqual(w.stats.chunksWritten, 1)
        _ = try w.commit(manifest: [])
        XCTAssertEqual(try store.readChunk(id), bytes)
    }

    func testConcurrentPutsFromManyThreads() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        let writer = try store.beginCheckpoint(zstdLevel: 1)
        let threads = 8, perThread = 48, distinct = 64
        // Every thread puts a mix of contents; the same content comes from several threads.
        let contents = (0..<distinct).map { i -> [UInt8] in
            i % 4 == 0 ? [UInt8](repeating: UInt8(i), count: 64 << 10) : randomBytes(64 << 10, seed: UInt64(i))
        }
        let results = Mutex<[(Int, ChunkID)]>([])
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for k in 0..<perThread {
                let which = (t * 7 + k * 5) % distinct
                do {
                    let id = try writer.put(contents[which])
                    results.withLock { $0.append((which, id)) }
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, [])
        let got = results.withLock { $0 }
        XCTAssertEqual(got.count, threads * perThread)
        let used = Set(got.map(\.0))
        for (which, id) in got {
            XCTAssertEqual(id, contents[which].withUnsafeBytes { ChunkID(hashing: $0) })
        }
        let stats = writer.stats
        XCTAssertEqual(stats.chunksWritten, used.count)
        XCTAssertEqual(stats.chunksWritten + stats.chunksReused, threads * perThread)
        XCTAssertEqual(stats.rawBytes, threads * perThread * (64 << 10))
        XCTAssertEqual(try writer.commit(manifest: Array("threads".utf8)), 1)
        XCTAssertEqual(chunkFiles(store).count, used.count)
        for which in used {
            XCTAssertEqual(try store.readChunk(contents[which].withUnsafeBytes { ChunkID(hashing: $0) }),
                           contents[which])
        }
        XCTAssertEqual(store.verify(1), [])
        XCTAssertEqual(tempFiles(under: store.path), [])
    }

    func testBufferTooSmallAndChunkTooLarge() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        let (_, ids) = try commitCheckpoint(store, payload: "", chunks: [randomBytes(1000, seed: 5)])
        var small = [UInt8](repeating: 0, count: 999)
        let e = expectImageError { () throws(ImageError) in
            try store.readChunk(ids[0], into: &small)
        }
        XCTAssertEqual(e, .bufferTooSmall(id: ids[0], needed: 1000, available: 999))

        let w = try store.beginCheckpoint(zstdLevel: 1)
        let huge = UnsafeMutableRawBufferPointer.allocate(byteCount: ImageStore.maxChunkSize + 1, alignment: 8)
        defer { huge.deallocate() }
        let e2 = expectImageError { () throws(ImageError) in try w.put(UnsafeRawBufferPointer(huge)) }
        XCTAssertEqual(e2, .chunkTooLarge(size: ImageStore.maxChunkSize + 1, limit: ImageStore.maxChunkSize))
        w.abort()
    }

    /// Not a benchmark (debug build), but catches gross slowness and reports throughput.
    func testThroughputSmoke() throws {
        let tmp = TempDir()
        let store = try ImageStore(path: tmp.image, create: true)
        let writer = try store.beginCheckpoint(zstdLevel: 1)
        let chunk = 256 << 10, total = 128 << 20
        let random = randomBytes(total / 2, seed: 1234)
        let start = DispatchTime.now()
        DispatchQueue.concurrentPerform(iterations: 2) { t in
            random.withUnsafeBytes { r in
                let zero = [UInt8](repeating: 0, count: chunk)
                var off = t * chunk
                while off < total / 2 {
                    _ = try? writer.put(UnsafeRawBufferPointer(rebasing: r[off..<off + chunk]))
                    _ = try? writer.put(zero)
                    off += 2 * chunk
                }
            }
        }
        _ = try writer.commit(manifest: [])
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        let s = writer.stats
        print("throughput: \(total >> 20) MiB in \(seconds) s = \(Double(total >> 20) / seconds) MiB/s; "
              + "written \(s.chunksWritten), reused \(s.chunksReused), stored \(s.storedBytes >> 20) MiB")
        XCTAssertEqual(s.rawBytes, total)
        XCTAssertEqual(s.chunksWritten, total / 2 / chunk + 1)
    }
}
