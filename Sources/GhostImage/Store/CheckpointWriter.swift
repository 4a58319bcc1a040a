import CZstd
import Glibc
import Synchronization

/// Writes one checkpoint: chunks first (any number of threads at once), then
/// commit() publishes the manifest with a single rename. Until that rename the
/// checkpoint does not exist for readers, so dying at any point leaves the
/// previous checkpoints as they were.
public final class CheckpointWriter: @unchecked Sendable {
    /// The checkpoint's number: one more than the newest existing one.
    public let number: Int
    let store: ImageStore
    let level: Int32
    /// Chunks referenced by committed checkpoints, and where: durable, so reusable as they are.
    let committed: [ChunkID: ChunkLocation]
    let serial: Int
    /// Start of every temp file name of this writer (".tmp-PID-SERIAL-").
    let tempTag: String
    let packs: PackWriter
    private let state = Mutex(State())

    private enum Entry: Equatable { case inFlight, stored(ChunkLocation) }

    private struct State {
        /// Every chunk this checkpoint references.
        var entries: [ChunkID: Entry] = [:]
        var stats = WriteStats()
        var tempFiles: Set<String> = []
        /// Sizes of existing packs (nil: missing), looked up once per writer.
        var packSizes: [UInt64: UInt64?] = [:]
        /// First failed put(): the checkpoint lacks that chunk, so it must not be committed.
        var failure: ImageError?
        var committing = false
        var finished = false
    }

    init(store: ImageStore, number: Int, level: Int32, committed: [ChunkID: ChunkLocation], serial: Int) {
        self.store = store
        self.number = number
        self.level = level
        self.committed = committed
        self.serial = serial
        self.tempTag = "\(ImageLayout.tempPrefix)\(getpid())-\(serial)-"
        self.packs = PackWriter(store: store)
    }

    deinit { abort() }

    public var stats: WriteStats { state.withLock { $0.stats } }

    /// Stores a chunk unless it is already there, and records it as used by
    /// this checkpoint. Safe to call from several threads at once. After a
    /// failure the writer can only be aborted.
    public func put(_ bytes: UnsafeRawBufferPointer) throws(ImageError) -> ChunkID {
        let count = bytes.count
        guard count <= ImageStore.maxChunkSize else {
            throw .chunkTooLarge(size: count, limit: ImageStore.maxChunkSize)
        }
        let digest = XXH128Digest.of(bytes.baseAddress, count: count)
        let id = ChunkID(digest: digest)
        let action = try state.withLock { (s: inout State) throws(ImageError) -> PutAction in
            if s.finished || s.committing {
                throw .misuse("put() on checkpoint \(number) after commit() or abort()")
            }
            s.stats.rawBytes += count
            if s.entries[id] != nil {
                s.stats.chunksReused += 1
                return .nothing
            }
            s.entries[id] = .inFlight  // claimed: a concurrent put of the same bytes writes nothing
            if let old = committed[id] { return .reuseIfPresent(old) }
            return .write
        }
        switch action {
        case .nothing:
            return id
        case .reuseIfPresent(let old) where looksPresent(id, old):
            state.withLock { s in
                s.entries[id] = .stored(old)
                s.stats.chunksReused += 1
            }
            return id
        case .reuseIfPresent, .write:
            break
        }
        do {
            let location = try writeChunk(digest, bytes)
            state.withLock { s in
                s.entries[id] = .stored(location)
                s.stats.chunksWritten += 1
                s.stats.storedBytes += Int(location.entryBytes)
            }
        } catch {
            state.withLock { s in
                s.entries[id] = nil
                if s.failure == nil { s.failure = error }
            }
            throw error
        }
        return id
    }

    private enum PutAction { case nothing, reuseIfPresent(ChunkLocation), write }

    /// A committed chunk is reused if its pack (or loose file) is still there and long enough.
    private func looksPresent(_ id: ChunkID, _ l: ChunkLocation) -> Bool {
        if l.isLoose { return store.chunkLooksPresent(id) }
        let cached = state.withLock { $0.packSizes[l.pack] }
        let size: UInt64?
        if let cached {
            size = cached
        } else {
            size = StoreIO.statAt(store.dirFD, ImageLayout.packPath(l.pack), follow: false).map { UInt64($0.st_size) }
            state.withLock { $0.packSizes[l.pack] = .some(size) }
        }
        return size.map { l.offset + l.entryBytes <= $0 } ?? false
    }

    /// Whether a committed checkpoint references this chunk and it is still
    /// there, i.e. whether reuse() would succeed (without recording it).
    public func isStored(_ id: ChunkID) -> Bool { storedLocation(id) != nil }

    private func storedLocation(_ id: ChunkID) -> ChunkLocation? {
        guard let old = committed[id], looksPresent(id, old) else { return nil }
        return old
    }

    /// Records a chunk of a committed checkpoint as used by this one too,
    /// without its bytes (incremental checkpoints reuse unchanged blocks by
    /// ID). False when no committed checkpoint references it: then put() it.
    public func reuse(_ id: ChunkID) -> Bool {
        guard let old = storedLocation(id) else { return false }
        state.withLock { s in
            if s.entries[id] == nil { s.entries[id] = .stored(old) }
        }
        return true
    }

    /// Makes every chunk durable, then publishes the checkpoint file by rename.
    /// Returns the checkpoint number. On failure nothing is published and the
    /// writer may commit again (say, after space was freed) or abort.
    public func commit(manifest: [UInt8]) throws(ImageError) -> Int {
        let entries = try state.withLock { (s: inout State) throws(ImageError) -> [(ChunkID, ChunkLocation)] in
            if s.finished { throw .misuse("commit() of checkpoint \(number) after commit() or abort()") }
            if s.committing { throw .misuse("commit() of checkpoint \(number) called twice at once") }
            if let failure = s.failure { throw failure }
            var out: [(ChunkID, ChunkLocation)] = []
            out.reserveCapacity(s.entries.count)
            for (id, e) in s.entries {
                guard case .stored(let l) = e else {
                    throw .misuse("commit() of checkpoint \(number) while put() calls are still running")
                }
                out.append((id, l))
            }
            s.committing = true
            return out.sorted { $0.0 < $1.0 }
        }
        do {
            try publish(manifest: manifest, entries: entries)
        } catch {
            state.withLock { $0.committing = false }
            throw error
        }
        state.withLock { s in
            s.committing = false
            s.finished = true
        }
        packs.close(delete: false)
        store.remember(entries)
        store.writerFinished(serial: serial)
        return number
    }

    /// Gives up: removes this writer's temp files and packs (nothing committed
    /// references them). Idempotent.
    public func abort() {
        let temps = state.withLock { s -> [String]? in
            if s.finished { return nil }
            s.finished = true
            defer { s.tempFiles = [] }
            return Array(s.tempFiles)
        }
        guard let temps else { return }
        for temp in temps { unlinkat(store.dirFD, temp, 0) }
        packs.close(delete: true)
        store.writerFinished(serial: serial)
    }

    // MARK: - Internals

    /// Chunks of at least this size are first tried on a sample: random-looking
    /// data is stored raw without spending a full zstd pass on it.
    static let sampleFrom = 64 << 10
    static let sampleSlices = 4, sliceBytes = 4096

    /// Compresses into a pooled buffer behind a pack entry header and appends
    /// the entry to a pack. Stored raw when zstd cannot make it smaller.
    private func writeChunk(_ digest: XXH128Digest, _ bytes: UnsafeRawBufferPointer) throws(ImageError) -> ChunkLocation {
        try store.zstd.withCompressor { (z) throws(ImageError) -> ChunkLocation in
            let count = bytes.count
            let hdr = Int(PackEntryHeader.size)
            let bound = ZSTD_compressBound(count)
            let sampleBytes = Self.sampleSlices * Self.sliceBytes
            z.reserve(hdr + bound + sampleBytes)
            var size = 0
            if !(count >= Self.sampleFrom && sampleIsIncompressible(bytes, z, at: hdr, sample: hdr + bound)) {
                size = ZSTD_compressCCtx(z.cctx, z.buffer + hdr, bound, bytes.baseAddress, count, level)
            }
            // Incompressible data (or a zstd failure) is stored raw: never larger than the input.
            let compressed = size > 0 && !ZstdScratch.isError(size) && size < count
            let data: (UnsafeRawPointer, Int) = compressed ? (UnsafeRawPointer(z.buffer + hdr), size)
                : (bytes.baseAddress ?? UnsafeRawPointer(z.buffer), count)
            PackEntryHeader.store(ChunkFileHeader(compressed: compressed, length: count), stored: data.1, id: digest,
                                  to: z.buffer)
            return try packs.append(header: z.buffer, parts: [data], stored: data.1, length: count)
        }
    }

    /// Compresses a few slices spread over the chunk; true when they do not
    /// shrink by even 1/32 (random or already compressed data).
    private func sampleIsIncompressible(_ bytes: UnsafeRawBufferPointer, _ z: ZstdScratch, at out: Int,
                                        sample: Int) -> Bool {
        let step = bytes.count / Self.sampleSlices
        for k in 0..<Self.sampleSlices {
            (z.buffer + sample + k * Self.sliceBytes).copyMemory(from: bytes.baseAddress! + k * step,
                                                                 byteCount: Self.sliceBytes)
        }
        let n = Self.sampleSlices * Self.sliceBytes
        let r = ZSTD_compressCCtx(z.cctx, z.buffer + out, ZSTD_compressBound(n), z.buffer + sample, n, level)
        return ZstdScratch.isError(r) || r >= n - n / 32
    }

    private func publish(manifest: [UInt8], entries: [(ChunkID, ChunkLocation)]) throws(ImageError) {
        try store.checkWritable()
        let bytes = try CheckpointFileCodec.encode(number: number, payload: manifest, entries: entries)

        // 1. Pack data and names durable (each pack fsynced, then packs/).
        try packs.sync()

        // 2. The checkpoint file, complete and durable under a temp name.
        let final = ImageLayout.checkpointPath(number)
        let temp = ImageLayout.checkpoints + "/" + tempTag + ImageLayout.checkpointName(number)
        let fd = try createTemp(temp, inDirectory: ImageLayout.checkpoints)
        var e = bytes.withUnsafeBytes { StoreIO.writeAll(fd, $0.baseAddress, $0.count) }
        if e == 0 { e = StoreIO.fsyncRetry(fd) }
        let closeError = StoreIO.closeChecked(fd)
        if e == 0 { e = closeError }
        if e != 0 {
            removeTemp(temp)
            throw store.io("write checkpoint file", final, e)
        }

        // 3. Publish: the rename is atomic; before it readers see only older checkpoints.
        e = StoreIO.renameNoReplace(store.dirFD, temp, final)
        if e != 0 {
            removeTemp(temp)
            throw store.io("publish checkpoint file (rename)", final, e)
        }
        forgetTemp(temp)

        // 4. Make the new name durable. The checkpoint is already visible and its
        //    data synced, so a failure here is not reported as a failed commit.
        store.syncDirectory(ImageLayout.checkpoints)
    }

    /// Creates a temp file (0600), making the directory first if it is missing.
    private func createTemp(_ rel: String, inDirectory dir: String) throws(ImageError) -> Int32 {
        state.withLock { _ = $0.tempFiles.insert(rel) }
        for _ in 0..<3 {
            let fd = StoreIO.openAt(store.dirFD, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
            if fd >= 0 { return fd }
            switch errno {
            case ENOENT:
                if mkdirat(store.dirFD, dir, 0o700) == 0 {
                    fchmodat(store.dirFD, dir, 0o700, 0)
                } else if errno != EEXIST {
                    let e = errno
                    forgetTemp(rel)
                    throw store.io("create directory", dir, e)
                }
            case EEXIST:
                unlinkat(store.dirFD, rel, 0)  // left by a crashed process that had our pid; we hold the lock
            default:
                let e = errno
                forgetTemp(rel)
                throw store.io("create", rel, e)
            }
        }
        forgetTemp(rel)
        throw store.io("create", rel, EEXIST)
    }

    /// Best effort; a temp file that cannot be removed now is collected by prune().
    private func removeTemp(_ rel: String) {
        if unlinkat(store.dirFD, rel, 0) == 0 || errno == ENOENT { forgetTemp(rel) }
    }

    private func forgetTemp(_ rel: String) {
        state.withLock { _ = $0.tempFiles.remove(rel) }
    }
}
