import Foundation
import Glibc
import XCTest
@testable import GhostImage

/// A private temp directory, removed with everything in it when released.
final class TempDir {
    let path: String

    init() {
        var template = Array("/tmp/ghost-image-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Where tests put the image itself (created by ImageStore).
    var image: String { path + "/image" }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Deterministic pseudo-random bytes (incompressible for zstd).
func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return [UInt8](unsafeUninitializedCapacity: count) { buf, n in
        var i = 0
        while i < count {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            withUnsafeBytes(of: state) { word in
                for b in word where i < count { buf[i] = b; i += 1 }
            }
        }
        n = count
    }
}

extension CheckpointWriter {
    func put(_ bytes: [UInt8]) throws(ImageError) -> ChunkID {
        try bytes.withUnsafeBytes { raw in Result { () throws(ImageError) in try put(raw) } }.get()
    }
}

extension ImageStore {
    func readChunk(_ id: ChunkID, into bytes: inout [UInt8]) throws(ImageError) -> Int {
        try bytes.withUnsafeMutableBytes { raw in Result { () throws(ImageError) in try readChunk(id, into: raw) } }.get()
    }
}

/// Runs `body` and returns the ImageError it throws; fails the test if it throws nothing.
func expectImageError<T>(_ body: () throws(ImageError) -> T, file: StaticString = #filePath,
                         line: UInt = #line) -> ImageError? {
    do {
        _ = try body()
        XCTFail("expected an ImageError", file: file, line: line)
        return nil
    } catch {
        XCTAssertFalse(error.description.contains("\n"), "error description must be one line", file: file, line: line)
        return error
    }
}

func fileMode(_ path: String) -> mode_t {
    var st = stat()
    precondition(stat(path, &st) == 0, "stat \(path)")
    return st.st_mode & 0o7777
}

func fileExists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

func chunkFile(_ store: ImageStore, _ id: ChunkID) -> String {
    store.path + "/chunks/" + String(id.hex.prefix(2)) + "/" + id.hex
}

func checkpointFile(_ store: ImageStore, _ n: Int) -> String {
    store.path + "/checkpoints/" + ImageLayout.checkpointName(n)
}

func readFile(_ path: String) -> [UInt8] {
    [UInt8](FileManager.default.contents(atPath: path) ?? Data())
}

/// Replaces a file's content in place (same inode: open descriptors see it, as with real damage).
func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(fd >= 0, "open \(path)")
    let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    precondition(n == bytes.count && close(fd) == 0, "write \(path)")
}

/// XORs one byte of a file in place.
func flipByte(_ path: String, at offset: Int) {
    var bytes = readFile(path)
    bytes[offset] ^= 0x5A
    writeFile(path, bytes)
}

/// All files under `root` whose name starts with ".tmp-".
func tempFiles(under root: String) -> [String] {
    guard let e = FileManager.default.enumerator(atPath: root) else { return [] }
    return e.compactMap { $0 as? String }.filter { ($0 as NSString).lastPathComponent.hasPrefix(".tmp-") }
}

/// Ids of every chunk on disk: loose files in chunks/ (not temp files) and
/// every entry of every pack, found by walking the packs' entry headers.
func chunkFiles(_ store: ImageStore) -> Set<String> {
    var out: Set<String> = []
    if let e = FileManager.default.enumerator(atPath: store.path + "/chunks") {
        out = Set(e.compactMap { $0 as? String }.map { ($0 as NSString).lastPathComponent }.filter { $0.count == 32 })
    }
    for pack in packFiles(store) {
        let bytes = readFile(store.path + "/packs/" + pack)
        var offset = 0
        while offset + Int(PackEntryHeader.size) <= bytes.count {
            let (stored, id) = bytes.withUnsafeBytes { raw in
                (Int(PackEntryHeader.stored(raw.baseAddress! + offset)),
                 XXH128Digest(canonical: raw.baseAddress! + offset + PackEntryHeader.idOffset).hex)
            }
            out.insert(id)
            offset += Int(PackEntryHeader.size) + stored
        }
    }
    return out
}

/// Names of the pack files.
func packFiles(_ store: ImageStore) -> Set<String> {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: store.path + "/packs")) ?? []
    return Set(names.filter { $0.hasSuffix(".pack") })
}

/// The pack file holding a chunk and the offset of its entry.
func chunkEntry(_ store: ImageStore, _ id: ChunkID) throws -> (path: String, offset: Int) {
    let l = try store.location(of: id)
    precondition(!l.isLoose, "chunk \(id) is not in a pack")
    return (store.path + "/" + ImageLayout.packPath(l.pack), Int(l.offset))
}

/// Commits one checkpoint holding `chunks`, with `payload` as manifest.
@discardableResult
func commitCheckpoint(_ store: ImageStore, payload: String, chunks: [[UInt8]]) throws -> (Int, [ChunkID]) {
    let writer = try store.beginCheckpoint(zstdLevel: 1)
    let ids = try chunks.map { try writer.put($0) }
    let n = try writer.commit(manifest: Array(payload.utf8))
    return (n, ids)
}

extension String {
    /// "0aff" -> [0x0a, 0xff]
    var hexBytes: [UInt8] {
        var out: [UInt8] = []
        var i = startIndex
        while i < endIndex {
            let j = index(i, offsetBy: 2)
            out.append(UInt8(self[i..<j], radix: 16)!)
            i = j
        }
        return out
    }
}
