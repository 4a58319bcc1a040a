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
    /// Chunks referenced by committed checkpoints: durable, so reusable as they are.
    let committed: Set<ChunkID>
    let serial: Int
    /// Start of every temp file name of this writer (".tmp-PID-SERIAL-").
    let tempTag: String
    private let state = Mutex(State())

    private enum Entry { case inFlight, stored }

    private struct State {
        /// Every chunk this checkpoint references.
        var entries: [ChunkID: Entry] = [:]
        var stats = WriteStats()
        /// Chunk files this writer wrote, to fsync one by one if syncfs fails.
        var written: [ChunkID] = []
        var tempFiles: Set<String> = []
        /// First failed put(): the checkpoint lacks that chunk, so it must not be committed.
        var failure: ImageError?
        var committing = false
        var finished = false
    }

    init(store: ImageStore, number: Int, level: Int32, committed: Set<ChunkID>, serial: Int) {
        self.store = store
        self.number = number
        self.level = level
        self.committed = committed
        self.serial = serial
        self.tempTag = "\(ImageLayout.tempPrefix)\(getpid())-\(serial)-"
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
        let id = ChunkID(digest: .of(bytes.baseAddress, count: count))
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
            return committed.contains(id) ? .reuseIfPresent : .write
        }
        switch action {
        case .nothing:
            return id
        case .reuseIfPresent where store.chunkLooksPresent(id):
            state.withLock { s in
                s.entries[id] = .stored
                s.stats.chunksReused += 1
            }
            return id
        case .reuseIfPresent, .write:
            break
        }
        do {
            let stored = try writeChunk(id, bytes)
            state.withLock { s in
                s.entries[id] = .stored
                s.stats.chunksWritten += 1
                s.stats.storedBytes += stored
                s.written.append(id)
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

    private enum PutAction { case nothing, reuseIfPresent, write }

    /// Records a chunk of a committed checkpoint as used by this one too,
    /// without its bytes (incremental checkpoints reuse unchanged blocks by
    /// ID). False when no committed checkpoint references it: then put() it.
    public func reuse(_ id: ChunkID) -> Bool {
        guard committed.contains(id) else { return false }
        state.withLock { s in
            if s.entries[id] == nil { s.entries[id] = .stored }
        }
        return true
    }

    /// Makes every chunk durable, then publishes the checkpoint file by rename.
    /// Returns the checkpoint number. On failure nothing is published and the
    /// writer may commit again (say, after space was freed) or abort.
    public func commit(manifest: [UInt8]) throws(ImageError) -> Int {
        let (ids, written) = try state.withLock { (s: inout State) throws(ImageError) -> ([ChunkID], [ChunkID]) in
            if s.finished { throw .misuse("commit() of checkpoint \(number) after commit() or abort()") }
            if s.committing { throw .misuse("commit() of checkpoint \(number) called twice at once") }
            if let failure = s.failure { throw failure }
            if s.entries.values.contains(where: { $0 == .inFlight }) {
                throw .misuse("commit() of checkpoint \(number) while put() calls are still running")
            }
            s.committing = true
            return (s.entries.keys.sorted(), s.written)
        }
        do {
            try publish(manifest: manifest, chunks: ids, written: written)
        } catch {
            state.withLock { $0.committing = false }
            throw error
        }
        state.withLock { s in
            s.committing = false
            s.finished = true
        }
        store.writerFinished(serial: serial)
        return number
    }

    /// Gives up: removes this writer's temp files. Chunks already stored stay
    /// until prune() finds nothing referencing them. Idempotent.
    public func abort() {
        let temps = state.withLock { s -> [String]? in
            if s.finished { return nil }
            s.finished = true
            defer { s.tempFiles = [] }
            return Array(s.tempFiles)
        }
        guard let temps else { return }
        for temp in temps { unlinkat(store.dirFD, temp, 0) }
        store.writerFinished(serial: serial)
    }

    // MARK: - Internals

    /// Compresses into a pooled buffer (header in front, so one write() suffices),
    /// writes a temp file and renames it into place. Returns the bytes written.
    private func writeChunk(_ id: ChunkID, _ bytes: UnsafeRawBufferPointer) throws(ImageError) -> Int {
        let final = ImageLayout.chunkPath(id)
        let fanout = ImageLayout.chunks + "/" + ImageLayout.fanout(id)
        let temp = fanout + "/" + tempTag + id.hex
        return try store.zstd.withCompressor { (z) throws(ImageError) -> Int in
            let count = bytes.count
            let bound = ZSTD_compressBound(count)
            z.reserve(ChunkFileHeader.size + bound)
            let size = ZSTD_compressCCtx(z.cctx, z.buffer + ChunkFileHeader.size, bound,
                                         bytes.baseAddress, count, level)
            // Incompressible data (or a zstd failure) is stored raw: never larger than the input.
            let compressed = !ZstdScratch.isError(size) && size < count
            ChunkFileHeader(compressed: compressed, length: count).store(to: z.buffer)

            let fd = try createTemp(temp, inDirectory: fanout)
            var e: Int32
            if compressed {
                e = StoreIO.writeAll(fd, z.buffer, ChunkFileHeader.size + size)
            } else {
                e = StoreIO.writeAll(fd, z.buffer, ChunkFileHeader.size)
                if e == 0 { e = StoreIO.writeAll(fd, bytes.baseAddress, count) }
            }
            let closeError = StoreIO.closeChecked(fd)
            if e == 0 { e = closeError }
            // Replacing an existing file is fine: same name, same content (an
            // unreferenced leftover of a crashed writer, possibly never synced).
            if e == 0 && renameat(store.dirFD, temp, store.dirFD, final) != 0 { e = errno }
            if e != 0 {
                removeTemp(temp)
                throw store.io("write memory chunk", final, e)
            }
            forgetTemp(temp)
            return ChunkFileHeader.size + (compressed ? size : count)
        }
    }

    private func publish(manifest: [UInt8], chunks: [ChunkID], written: [ChunkID]) throws(ImageError) {
        try store.checkWritable()
        let bytes = try CheckpointFileCodec.encode(number: number, payload: manifest, chunks: chunks)

        // 1. Chunk data and names durable. One syncfs() flushes them all; where
        //    it fails (some network file systems), fsync each new file.
        if StoreIO.syncFileSystem(store.dirFD) != 0 { try syncEach(written) }

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

    private func syncEach(_ written: [ChunkID]) throws(ImageError) {
        var dirs: Set<String> = [ImageLayout.chunks]
        for id in written {
            let rel = ImageLayout.chunkPath(id)
            let fd = StoreIO.openAt(store.dirFD, rel, O_RDONLY)
            if fd < 0 { throw store.io("open", rel) }
            let e = StoreIO.fsyncRetry(fd)
            close(fd)
            if e != 0 { throw store.io("fsync", rel, e) }
            dirs.insert(ImageLayout.chunks + "/" + ImageLayout.fanout(id))
        }
        for dir in dirs.sorted(by: >) {  // fan-out directories before chunks/
            let e = store.syncDirectory(dir)
            if e != 0 { throw store.io("fsync directory", dir, e) }
        }
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
