import Glibc
import Synchronization

/// Appends the chunks of one checkpoint writer to pack files
/// (`packs/NNNNNNNNNNNN.pack`), a new pack every `rotateAt` bytes. Any number
/// of threads append at once: each reserves its range under the lock and
/// writes it with pwrite outside it. Writeback of finished stretches is
/// started as they fill, so the fsync at commit has little left to do.
/// Packs are created under their final names: until a checkpoint file
/// references them they are garbage to readers and to prune.
final class PackWriter: @unchecked Sendable {
    /// Packs are rotated at this size, so prune can drop or compact them piecemeal.
    static let rotateAt: UInt64 = 256 << 20
    /// Writeback is started for every completed stretch of this many bytes.
    static let kickEvery: UInt64 = 16 << 20

    private let store: ImageStore
    private let state: Mutex<State>

    struct Pack {
        var number: UInt64
        var fd: Int32
        var size: UInt64
    }

    private struct State {
        var packs: [Pack] = []
    }

    init(store: ImageStore) {
        self.store = store
        self.state = Mutex(State())
    }

    /// Pack numbers this writer created.
    var numbers: [UInt64] { state.withLock { $0.packs.map(\.number) } }

    /// Writes one entry (header + data parts) and returns where it went.
    func append(header: UnsafeRawPointer, parts: [(UnsafeRawPointer, Int)], stored: Int,
                length: Int) throws(ImageError) -> ChunkLocation {
        let total = PackEntryHeader.size + UInt64(stored)
        let (pack, offset) = try reserve(total)
        var iov = [iovec(iov_base: UnsafeMutableRawPointer(mutating: header), iov_len: Int(PackEntryHeader.size))]
        for (p, n) in parts where n > 0 { iov.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: p), iov_len: n)) }
        let e = StoreIO.pwritevAll(pack.fd, &iov, at: offset)
        if e != 0 { throw store.io("write memory chunk to pack", ImageLayout.packPath(pack.number), e) }
        let end = offset + total
        if end / Self.kickEvery != offset / Self.kickEvery {
            let stretch = end / Self.kickEvery * Self.kickEvery
            StoreIO.startWriteback(pack.fd, from: stretch >= Self.kickEvery ? stretch - Self.kickEvery : 0,
                                   count: Self.kickEvery)
        }
        return ChunkLocation(pack: pack.number, offset: offset, stored: UInt64(stored), length: UInt64(length))
    }

    private func reserve(_ bytes: UInt64) throws(ImageError) -> (Pack, UInt64) {
        try state.withLock { (s: inout State) throws(ImageError) -> (Pack, UInt64) in
            if s.packs.isEmpty || (s.packs[s.packs.count - 1].size > 0
                                   && s.packs[s.packs.count - 1].size + bytes > Self.rotateAt) {
                let number = store.takePackNumber()
                let fd = try create(number)
                s.packs.append(Pack(number: number, fd: fd, size: 0))
            }
            let i = s.packs.count - 1
            let offset = s.packs[i].size
            s.packs[i].size += bytes
            return (s.packs[i], offset)
        }
    }

    private func create(_ number: UInt64) throws(ImageError) -> Int32 {
        let rel = ImageLayout.packPath(number)
        for _ in 0..<2 {
            // O_EXCL: a pack is never appended to after its writer is gone.
            let fd = StoreIO.openAt(store.dirFD, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
            if fd >= 0 { return fd }
            guard errno == ENOENT else { break }
            if mkdirat(store.dirFD, ImageLayout.packs, 0o700) != 0 && errno != EEXIST { break }
        }
        throw store.io("create pack file", rel)
    }

    /// Makes every pack durable, and their names (fsync of packs/).
    func sync() throws(ImageError) {
        let packs = state.withLock { $0.packs }
        for p in packs {
            let e = StoreIO.fsyncRetry(p.fd)
            if e != 0 { throw store.io("fsync pack file", ImageLayout.packPath(p.number), e) }
        }
        if !packs.isEmpty {
            let e = store.syncDirectory(ImageLayout.packs)
            if e != 0 { throw store.io("fsync directory", ImageLayout.packs, e) }
        }
    }

    /// Closes the packs; with `delete`, removes them too (nothing references them).
    func close(delete: Bool) {
        let packs = state.withLock { s -> [Pack] in
            defer { s.packs = [] }
            return s.packs
        }
        for p in packs {
            StoreIO.closeQuietly(p.fd)
            if delete { unlinkat(store.dirFD, ImageLayout.packPath(p.number), 0) }
        }
    }
}
