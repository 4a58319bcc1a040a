import Glibc
import CGhostSys
import XCTest
import GhostImage
@testable import GhostJob

/// A block with overlays is written back in layers (base chunk, then each
/// overlay in order): the newest layer wins, pages dropped since (not in the
/// block's pageMask) are not written, and a block naming a page no layer
/// holds is a damaged image. Written into this test process's own memory.
final class LayeredRestoreTests: GhostTestCase {
    private let ps = MemoryState.pageSize

    private func pages(_ letters: String) -> [UInt8] {
        letters.utf8.flatMap { [UInt8](repeating: $0, count: ps) }
    }

    /// Commits one checkpoint holding a chunk per string (a page per letter).
    private func checkpoint(_ store: ImageStore, _ chunks: [String]) throws -> [ChunkID] {
        let w = try store.beginCheckpoint()
        let ids = try chunks.map { c in try pages(c).withUnsafeBytes { try w.put($0) } }
        _ = try w.commit(manifest: [])
        return ids
    }

    /// Block 0 of `area` reads A B C 0 0 B (newest layer wins, dropped page
    /// untouched) and block 1 starts with D D.
    private func expectLayered(_ area: UnsafeMutableRawPointer, file: StaticString = #filePath, line: UInt = #line) {
        func page(_ i: Int) -> Character {
            let b = area.load(fromByteOffset: i * ps + ps / 2, as: UInt8.self)
            return b == 0 ? "0" : Character(UnicodeScalar(b))
        }
        XCTAssertEqual(String((0..<6).map(page)), "ABC00B", file: file, line: line)
        XCTAssertEqual(String([page(MemoryState.blockPages), page(MemoryState.blockPages + 1)]), "DD", file: file, line: line)
    }

    func testNewestLayerWinsAndDroppedPagesStayUntouched() throws {
        let dir = try makeTempDir("layered")
        let store = try ImageStore(path: dir + "/img", create: true)
        defer { store.close() }
        // Base holds pages 0-3 (A), overlay 1 pages 1 and 2 (B), overlay 2 page 2 (C);
        // page 3 was dropped since (not in pageMask); page 5 only in overlay 1.
        let ids = try checkpoint(store, ["AAAA", "BBB", "C"])
        let (base, o1, o2) = (ids[0], ids[1], ids[2])
        let block = MemoryBlock(index: 0, pageMask: 0b100111, chunk: base, baseMask: 0b1111,
                                overlays: [PageOverlay(pageMask: 0b100110, chunk: o1), PageOverlay(pageMask: 0b100, chunk: o2)])
        // A plain block next to it, in the same layer pass as the base.
        let plainID = try checkpoint(store, ["DD"])[0]

        let len = 2 * MemoryState.blockPages * ps
        let area = mmap(nil, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        defer { munmap(area, len) }
        let start = UInt64(UInt(bitPattern: area))
        let memory = try ProcessMemory(pid: getpid(), writable: true)
        try MemoryState.fillAll([
            .init(vmaStart: start, vmaEnd: start + UInt64(len), block: block, writable: true),
            .init(vmaStart: start, vmaEnd: start + UInt64(len),
                  block: MemoryBlock(index: 1, pageMask: 0b11, chunk: plainID), writable: true),
        ], store: store, memory: memory, blockPages: MemoryState.blockPages)

        expectLayered(area)
    }

    /// The first layer goes in through UFFDIO_COPY (PageInstaller); a page
    /// that is present already is written the ordinary way; overlays after.
    func testFirstLayerInstalledWithUserfaultfd() throws {
        let dir = try makeTempDir("layered-uffd")
        let store = try ImageStore(path: dir + "/img", create: true)
        defer { store.close() }
        let ids = try checkpoint(store, ["AAAA", "BBB", "C", "DD"])
        let block = MemoryBlock(index: 0, pageMask: 0b100111, chunk: ids[0], baseMask: 0b1111,
                                overlays: [PageOverlay(pageMask: 0b100110, chunk: ids[1]), PageOverlay(pageMask: 0b100, chunk: ids[2])])
        let len = 2 * MemoryState.blockPages * ps
        let area = mmap(nil, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        defer { munmap(area, len) }
        let start = UInt64(UInt(bitPattern: area)), end = start + UInt64(len)
        area.storeBytes(of: UInt8(ascii: "Z"), toByteOffset: MemoryState.blockPages * ps, as: UInt8.self)   // present before

        // A userfaultfd of this process, as the injected one is of a restored process.
        let fd = Int32(ghost_syscall6(Int(GHOST_SYS_USERFAULTFD), Int(O_CLOEXEC | O_NONBLOCK | 1), 0, 0, 0, 0, 0))
        XCTAssertGreaterThanOrEqual(fd, 0, "userfaultfd: \(String(cString: strerror(errno)))")
        let installer = try XCTUnwrap(PageInstaller(uffd: fd, areas: [(start, end)]))
        defer { installer.finish() }   // before any page of the area is touched here: a missing page would wait forever
        let memory = try ProcessMemory(pid: getpid(), writable: true)
        try MemoryState.fillAll([
            .init(vmaStart: start, vmaEnd: end, block: block, writable: true),
            .init(vmaStart: start, vmaEnd: end, block: MemoryBlock(index: 1, pageMask: 0b11, chunk: ids[3]), writable: true),
        ], store: store, memory: memory, blockPages: MemoryState.blockPages, installer: installer)
        installer.finish()

        // Base pages 0-2 and page 1 of block 1 installed; page 0 of block 1 was present.
        XCTAssertEqual(installer.installed.load(ordering: .relaxed), 4)
        XCTAssertEqual(installer.presentWrites.load(ordering: .relaxed), 1)
        expectLayered(area)
    }

    func testPageNoLayerHoldsIsADamagedImage() throws {
        let dir = try makeTempDir("layered-bad")
        let store = try ImageStore(path: dir + "/img", create: true)
        defer { store.close() }
        let base = try checkpoint(store, ["A"])[0]
        let block = MemoryBlock(index: 0, pageMask: 0b11, chunk: base, baseMask: 0b01)
        let memory = try ProcessMemory(pid: getpid(), writable: true)
        XCTAssertThrowsError(try MemoryState.fillAll([.init(vmaStart: 0x10000, vmaEnd: 0x10000 + UInt64(64 * ps), block: block, writable: true)],
                                                     store: store, memory: memory, blockPages: MemoryState.blockPages)) { e in
            XCTAssertTrue("\(e)".contains("none of its chunks"), "\(e)")
        }
    }
}
