import Foundation
import XCTest
@testable import GhostImage

/// Memory blocks in the manifest: format 3 writes them as a binary table
/// (base64); the JSON arrays of formats 1 and 2 are still read.
final class BlockTableTests: XCTestCase {
    private func id(_ n: UInt64) -> ChunkID { withUnsafeBytes(of: n) { ChunkID(hashing: $0) } }

    private var blocks: [MemoryBlock] {
        [MemoryBlock(index: 0, pageMask: ~0, chunk: id(1)),
         MemoryBlock(index: 7, pageMask: 0b1011, chunk: id(2), baseMask: 0b1111),
         MemoryBlock(index: 1 << 40, pageMask: 1 << 63, chunk: id(3), baseMask: ~0,
                     overlays: [PageOverlay(pageMask: 1, chunk: id(4)), PageOverlay(pageMask: 1 << 63, chunk: id(5))]),
         MemoryBlock(index: 9, pageMask: 3, chunk: id(6), overlays: [PageOverlay(pageMask: 2, chunk: id(7))])]
    }

    private func vma(_ blocks: [MemoryBlock]) -> VMARecord {
        VMARecord(start: 0x7000_0000, end: 0x7100_0000, prot: 3, kind: .anonymous, growsDown: false,
                  fileOffset: 0, file: nil, blocks: blocks)
    }

    func testBlocksSurviveEncodingExactly() throws {
        let back = try JSONDecoder().decode(VMARecord.self, from: JSONEncoder().encode(vma(blocks)))
        XCTAssertEqual(back.blocks, blocks)
        let shared = SharedMemoryRecord(id: 1, kind: .memfd, size: 1 << 20, blocks: blocks)
        XCTAssertEqual(try JSONDecoder().decode(SharedMemoryRecord.self, from: JSONEncoder().encode(shared)).blocks, blocks)
        XCTAssertEqual(try JSONDecoder().decode(VMARecord.self, from: JSONEncoder().encode(vma([]))).blocks, [])
    }

    func testTableIsCompact() throws {
        // 34 bytes a plain block, base64: about 46 characters, against ~110 as a JSON object.
        let many = (0..<1000).map { MemoryBlock(index: $0, pageMask: ~0, chunk: id(UInt64($0))) }
        let enc = JSONEncoder()
        enc.outputFormatting = .withoutEscapingSlashes   // as Manifest.encoded()
        let json = try enc.encode(vma(many))
        XCTAssertLessThan(json.count, 1000 * 48)
        XCTAssertEqual(BlockTable.pack(many).count, 1000 * BlockTable.fixedBytes)
    }

    func testFormat2ArrayIsStillRead() throws {
        let text = """
        {"start":4096,"end":8192,"prot":3,"kind":"anonymous","growsDown":false,"fileOffset":0,
         "blocks":[{"index":0,"pageMask":5,"chunk":"\(id(1).hex)"},
                   {"index":2,"pageMask":1,"chunk":"\(id(2).hex)","baseMask":3,"overlays":[{"pageMask":1,"chunk":"\(id(3).hex)"}]}]}
        """
        let v = try JSONDecoder().decode(VMARecord.self, from: Data(text.utf8))
        XCTAssertEqual(v.blocks, [MemoryBlock(index: 0, pageMask: 5, chunk: id(1)),
                                  MemoryBlock(index: 2, pageMask: 1, chunk: id(2), baseMask: 3,
                                              overlays: [PageOverlay(pageMask: 1, chunk: id(3))])])
    }

    func testDamagedTableIsAnErrorNotACrash() throws {
        let table = BlockTable.pack(blocks)
        for cut in [1, BlockTable.fixedBytes - 1, table.count - 1] {
            XCTAssertThrowsError(try BlockTable.unpack(Array(table.prefix(cut))), "cut at \(cut)")
        }
        let bad = #"{"start":4096,"end":8192,"prot":3,"kind":"anonymous","growsDown":false,"fileOffset":0,"blocks":"%%%"}"#
        XCTAssertThrowsError(try JSONDecoder().decode(VMARecord.self, from: Data(bad.utf8))) { e in
            XCTAssertTrue("\(e)".contains("base64"), "\(e)")
        }
    }

    func testManifestVersionIsChecked() throws {
        let future = #"{"formatVersion":4}"#
        XCTAssertThrowsError(try Manifest.decode(Array(future.utf8))) { e in
            XCTAssertTrue("\(e)".contains("format 4"), "\(e)")
        }
        XCTAssertEqual(Manifest.currentVersion, 3)
    }
}
