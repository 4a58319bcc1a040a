import Glibc
import Synchronization

/// Appends the chunks of one writer to pack files (`packs/NNNNNNNNNNNN.pack`).
///
/// Each appending thread takes a *lane*: its own pack and a staging buffer
/// (past the writer's first 16 MiB; before, they take turns on one). Threads
/// never write the same file at once (ext4 serialises the writers of one
/// file on its inode lock, which showed in profiles as CPU spent spinning).
/// A full staging buffer is written with O_DIRECT: the bytes go from ghost's
/// buffer to the disk without a copy into the page cache. On the VMs ghost is
/// measured on, that copy was most of a checkpoint's time (page cache pages
/// are memory the host supplies on first touch), and it evicts the job's own
/// cached files. Where the file system refuses O_DIRECT the same buffers are
/// written through the page cache, with writeback started as each is written.
///
/// A lane's pack is rotated at `rotateAt`. At `sync()` each lane writes its
/// staged tail (padded to the alignment) and cuts the file back to its exact
/// length, so a pack stays a gapless sequence of entries. Packs are created
/// under their final names: until a checkpoint file references them they are
/// garbage to readers and to prune.
final class PackWriter: @unchecked Sendable {
    /// Packs are rotated at this size, so prune can drop or compact them piecemeal.
    static let rotateAt: UInt64 = 256 << 20
    /// Bytes staged per lane before one write; a multiple of `alignment`.
    static let stageBytes = 4 << 20
    /// O_DIRECT offsets, lengths and buffers are multiples of this (a page:
    /// enough for every logical block size in use).
    static let alignment = 4096
    /// Appended bytes after which threads get lanes of their own.
    static let splitAfter = UInt64(16 << 20)

    private let store: ImageStore
    private let state: Mutex<State>
    private let appended = Atomic<UInt64>(0)
    /// The lane of the first `splitAfter` bytes.
    private let first = Mutex<Lane?>(nil)

    struct Pack {
        var number: UInt64
        var fd: Int32
        /// Bytes appended, including those still staged.
        var size: UInt64 = 0
        var direct: Bool
    }

    /// One thread's pack and staging buffer (used by one thread at a time).
    final class Lane: @unchecked Sendable {
        var pack: Pack?
        let buffer: UnsafeMutableRawPointer
        /// Bytes staged in `buffer`: the last `staged` bytes of the pack.
        var staged = 0
        init(buffer: UnsafeMutableRawPointer) { self.buffer = buffer }
    }

    private struct State {
        var free: [Lane] = []
        var lanes: [Lane] = []
        /// Every pack created, for sync, close and `numbers`.
        var packs: [Pack] = []
        /// Set when an append failed half way: that lane's pack lacks bytes
        /// its locations promise, so nothing written may be synced as good.
        var broken: ImageError?
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
        // The first `splitAfter` bytes all go to one lane (threads wait their
        // turn): a small checkpoint makes one pack, so one fsync, not one per thread.
        if appended.load(ordering: .relaxed) < Self.splitAfter {
            return try first.withLock { (lane: inout Lane?) throws(ImageError) -> ChunkLocation in
                if lane == nil { lane = newLane() }
                return try append(to: lane!, header: header, parts: parts, stored: stored, length: length)
            }
        }
        let lane = state.withLock { $0.free.popLast() } ?? newLane()
        let location = try append(to: lane, header: header, parts: parts, stored: stored, length: length)
        state.withLock { $0.free.append(lane) }
        return location
    }

    private func append(to lane: Lane, header: UnsafeRawPointer, parts: [(UnsafeRawPointer, Int)], stored: Int,
                        length: Int) throws(ImageError) -> ChunkLocation {
        let total = PackEntryHeader.size + UInt64(stored)
        do {
            if let p = lane.pack, p.size > 0, p.size + total > Self.rotateAt {
                try finish(lane)
            }
            if lane.pack == nil { try open(lane) }
            let offset = lane.pack!.size
            try stage(lane, header, Int(PackEntryHeader.size))
            for (p, n) in parts { try stage(lane, p, n) }
            appended.add(total, ordering: .relaxed)
            return ChunkLocation(pack: lane.pack!.number, offset: offset, stored: UInt64(stored), length: UInt64(length))
        } catch {
            // The lane's pack now lacks bytes: nothing written may be synced as good.
            state.withLock { s in if s.broken == nil { s.broken = error } }
            throw error
        }
    }

    private func newLane() -> Lane {
        let lane = Lane(buffer: store.stagingBuffers.take())
        state.withLock { $0.lanes.append(lane) }
        return lane
    }

    private func open(_ lane: Lane) throws(ImageError) {
        let number = store.takePackNumber()
        let (fd, direct) = try create(number)
        let pack = Pack(number: number, fd: fd, direct: direct)
        state.withLock { $0.packs.append(pack) }
        lane.pack = pack
    }

    /// Copies bytes into the lane's buffer, writing it out each time it fills.
    private func stage(_ lane: Lane, _ from: UnsafeRawPointer, _ count: Int) throws(ImageError) {
        var p = from, left = count
        while left > 0 {
            let n = min(left, Self.stageBytes - lane.staged)
            (lane.buffer + lane.staged).copyMemory(from: p, byteCount: n)
            lane.staged += n
            lane.pack!.size += UInt64(n)
            p += n
            left -= n
            if lane.staged == Self.stageBytes {
                try write(lane, Self.stageBytes)
                lane.staged = 0
            }
        }
    }

    /// Writes the first `count` bytes of the lane's buffer where the staged bytes begin.
    private func write(_ lane: Lane, _ count: Int) throws(ImageError) {
        let at = lane.pack!.size - UInt64(lane.staged)
        var e = StoreIO.pwriteAll(lane.pack!.fd, lane.buffer, count, at: at)
        if e == EINVAL && lane.pack!.direct {
            // An alignment this file system does not take: go through the page cache.
            let fd = lane.pack!.fd
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~Self.oDirect)
            lane.pack!.direct = false
            e = StoreIO.pwriteAll(fd, lane.buffer, count, at: at)
        }
        if e != 0 { throw store.io("write memory chunks to pack", ImageLayout.packPath(lane.pack!.number), e) }
        if !lane.pack!.direct { StoreIO.startWriteback(lane.pack!.fd, from: at, count: UInt64(count)) }
    }

    /// Writes the lane's staged tail and gives up its pack (kept open for sync).
    private func finish(_ lane: Lane) throws(ImageError) {
        guard let pack = lane.pack else { return }
        if lane.staged > 0 {
            var count = lane.staged
            if pack.direct {
                // O_DIRECT writes whole blocks: pad with zeros, then cut the file back.
                count = (count + Self.alignment - 1) / Self.alignment * Self.alignment
                (lane.buffer + lane.staged).initializeMemory(as: UInt8.self, repeating: 0, count: count - lane.staged)
            }
            try write(lane, count)
            // Padded (even if write() fell back to the page cache): cut back.
            if count != lane.staged && ftruncate(pack.fd, off_t(pack.size)) != 0 {
                throw store.io("set the length of pack", ImageLayout.packPath(pack.number))
            }
            lane.staged = 0
        }
        lane.pack = nil
    }

    private func create(_ number: UInt64) throws(ImageError) -> (Int32, direct: Bool) {
        let rel = ImageLayout.packPath(number)
        for _ in 0..<2 {
            // O_EXCL: a pack is never appended to after its writer is gone.
            let flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW
            var fd: Int32 = -1
            if store.directIO {
                fd = StoreIO.openAt(store.dirFD, rel, flags | Self.oDirect, 0o600)
                if fd >= 0 { return (fd, true) }
            }
            if !store.directIO || errno == EINVAL {   // turned off, or no O_DIRECT on this file system
                fd = StoreIO.openAt(store.dirFD, rel, flags, 0o600)
                if fd >= 0 { return (fd, false) }
            }
            guard errno == ENOENT else { break }
            if mkdirat(store.dirFD, ImageLayout.packs, 0o700) != 0 && errno != EEXIST { break }
        }
        throw store.io("create pack file", rel)
    }

    /// Writes every lane's staged bytes, then makes every pack durable, and
    /// their names (fsync of packs/). No append may run at the same time.
    func sync() throws(ImageError) {
        let (lanes, broken) = state.withLock { ($0.lanes, $0.broken) }
        if let broken { throw broken }
        for lane in lanes { try finish(lane) }
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
        let (packs, lanes) = state.withLock { s -> ([Pack], [Lane]) in
            defer { s = State() }
            return (s.packs, s.lanes)
        }
        first.withLock { $0 = nil }
        for lane in lanes { store.stagingBuffers.give(lane.buffer) }
        for p in packs {
            StoreIO.closeQuietly(p.fd)
            if delete { unlinkat(store.dirFD, ImageLayout.packPath(p.number), 0) }
        }
    }

    deinit { close(delete: false) }

    /// GHOST_NO_DIRECT_IO=1 writes packs through the page cache (for a file
    /// system whose O_DIRECT misbehaves, or to compare).
    static let directIOByDefault: Bool = getenv("GHOST_NO_DIRECT_IO").map { String(cString: $0) == "0" } ?? true

    /// glibc defines O_DIRECT only with _GNU_SOURCE, so Swift's Glibc lacks it.
    #if arch(arm64) || arch(arm)
    static let oDirect: Int32 = 0o200000
    #elseif arch(powerpc64le) || arch(powerpc64)
    static let oDirect: Int32 = 0o400000
    #else
    static let oDirect: Int32 = 0o40000
    #endif
}

/// Page-aligned staging buffers of `PackWriter.stageBytes`, kept across
/// checkpoints: memory touched once stays cheap to write (first touches of
/// fresh memory are slow on VMs), and ghost's footprint stays flat.
final class StagingBufferPool: Sendable {
    private struct Address: @unchecked Sendable { var pointer: UnsafeMutableRawPointer }
    private let buffers = Mutex<[Address]>([])

    func take() -> UnsafeMutableRawPointer {
        buffers.withLock { $0.popLast()?.pointer }
            ?? UnsafeMutableRawPointer.allocate(byteCount: PackWriter.stageBytes, alignment: PackWriter.alignment)
    }

    func give(_ buffer: UnsafeMutableRawPointer) {
        buffers.withLock { $0.append(Address(pointer: buffer)) }
    }
}
