import Glibc

/// Retention and garbage collection.
extension ImageStore {
    /// Keeps the newest `keep` intact checkpoints (at least one) and everything
    /// newer than the oldest of them (damaged newer ones are left for inspection),
    /// deletes older checkpoint files, then deletes chunk files no remaining
    /// checkpoint references and temp files left by crashed writers.
    /// Takes the writer lock. Never deletes a chunk a remaining checkpoint needs:
    /// if any remaining checkpoint file cannot be read (I/O error, newer format),
    /// no chunk is deleted at all.
    public func prune(keep: Int) throws(ImageError) {
        try lockForWriting()
        let keep = max(1, keep)
        var intactKept = 0
        var doomed: [Int] = []
        for n in checkpointNumbers().reversed() {
            if intactKept >= keep {
                doomed.append(n)
            } else if isIntact(n) {
                intactKept += 1
            }
        }
        for n in doomed {
            try unlinkIfPresent(ImageLayout.checkpointPath(n))
        }
        if !doomed.isEmpty { syncDirectory(ImageLayout.checkpoints) }

        // A writer of this store may be using chunks that no committed checkpoint
        // references yet, and has temp files; collect them on a later prune.
        guard !hasActiveWriters else { return }
        try removeTempFiles(in: ".")
        try removeTempFiles(in: ImageLayout.checkpoints)

        var live: Set<ChunkID> = []
        var livePacked: [UInt64: Set<ChunkLocation>] = [:]
        var liveSetComplete = true
        for n in checkpointNumbers() {
            do {
                let c = try readCheckpoint(n, wantPayload: false)
                live.formUnion(c.chunks)
                for l in c.locations where !l.isLoose { livePacked[l.pack, default: []].insert(l) }
            } catch .damagedManifest {
                continue  // unusable anyway, and what it referenced cannot be known
            } catch .noSuchCheckpoint {
                continue
            } catch {
                liveSetComplete = false
            }
        }
        let (fanouts, _) = StoreIO.listDirectory(dirFD, ImageLayout.chunks)
        for fanout in fanouts ?? [] {
            let dir = ImageLayout.chunks + "/" + fanout
            guard let names = StoreIO.listDirectory(dirFD, dir).0 else { continue }
            for name in names {
                if name.hasPrefix(ImageLayout.tempPrefix) {
                    try unlinkIfPresent(dir + "/" + name)
                } else if liveSetComplete, let id = ChunkID(hex: name), id.hex == name, !live.contains(id) {
                    try unlinkIfPresent(dir + "/" + name)
                }
            }
        }
        guard liveSetComplete else { return }
        try collectPacks(live: livePacked)
    }

    /// Checkpoint file verifies and all its chunks exist (what resume needs to start).
    func isIntact(_ n: Int) -> Bool {
        guard let c = try? readCheckpoint(n, wantPayload: false) else { return false }
        return missingChunksProblem(c.chunks, c.locations) == nil
    }

    /// Deletes packs no checkpoint references, and compacts packs that are
    /// mostly dead (less than half of their bytes referenced): their live
    /// entries are copied to a new pack, made durable, then every checkpoint
    /// file using them is rewritten (temp, fsync, rename over) to point there,
    /// and only then are the old packs deleted. A crash in between leaves
    /// checkpoints pointing at old or new packs, both present.
    func collectPacks(live: [UInt64: Set<ChunkLocation>]) throws(ImageError) {
        let onDisk = packNumbers()
        var dead: Set<UInt64> = []
        var sparse: [UInt64] = []
        for n in onDisk {
            guard let entries = live[n] else {
                dead.insert(n)
                continue
            }
            let used = entries.reduce(UInt64(0)) { $0 + $1.entryBytes }
            let size = StoreIO.statAt(dirFD, ImageLayout.packPath(n), follow: false).map { UInt64($0.st_size) } ?? 0
            if used * 2 < size { sparse.append(n) }
        }
        if !sparse.isEmpty {
            try compact(sparse, live: live)
            dead.formUnion(sparse)
        }
        guard !dead.isEmpty else { return }
        forgetPacks(dead)
        for n in dead.sorted() { try unlinkIfPresent(ImageLayout.packPath(n)) }
        syncDirectory(ImageLayout.packs)
    }

    private func compact(_ packs: [UInt64], live: [UInt64: Set<ChunkLocation>]) throws(ImageError) {
        let writer = PackWriter(store: self)
        var moved: [ChunkLocation: ChunkLocation] = [:]
        var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        do {
            for n in packs {
                let rel = ImageLayout.packPath(n)
                let fd = StoreIO.openAt(dirFD, rel, O_RDONLY | O_NOFOLLOW)
                if fd < 0 { throw io("open", rel) }
                defer { StoreIO.closeQuietly(fd) }
                for l in (live[n] ?? []).sorted(by: { $0.offset < $1.offset }) {
                    let size = Int(l.entryBytes)
                    if size > buffer.count {
                        buffer.deallocate()
                        buffer = .allocate(byteCount: size, alignment: 64)
                    }
                    let (got, e) = StoreIO.preadAll(fd, buffer.baseAddress!, size, at: Int(l.offset))
                    if e != 0 { throw io("read", rel, e) }
                    if got != size { throw io("read", rel, EIO) }
                    let hdr = Int(PackEntryHeader.size)
                    moved[l] = try writer.append(header: buffer.baseAddress!,
                                                 parts: [(UnsafeRawPointer(buffer.baseAddress! + hdr), size - hdr)],
                                                 stored: Int(l.stored), length: Int(l.length))
                }
            }
            try writer.sync()
        } catch let e as ImageError {
            writer.close(delete: true)
            throw e
        } catch {
            writer.close(delete: true)
            throw .misuse("compaction: \(error)")
        }
        writer.close(delete: false)
        // From here on the new pack may be referenced: never delete it on failure.
        var rewrote = false
        for n in checkpointNumbers() {
            guard let c = try? readCheckpoint(n, wantPayload: true),
                  c.locations.contains(where: { moved[$0] != nil }) else { continue }
            let entries = zip(c.chunks, c.locations).map { ($0, moved[$1] ?? $1) }
            let bytes = try CheckpointFileCodec.encode(number: n, payload: c.payload, entries: entries)
            let final = ImageLayout.checkpointPath(n)
            let temp = ImageLayout.checkpoints + "/" + ImageLayout.tempPrefix + "\(getpid())-compact-"
                + ImageLayout.checkpointName(n)
            let fd = StoreIO.openAt(dirFD, temp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0o600)
            if fd < 0 { throw io("create", temp) }
            var e = bytes.withUnsafeBytes { StoreIO.writeAll(fd, $0.baseAddress, $0.count) }
            if e == 0 { e = StoreIO.fsyncRetry(fd) }
            let ce = StoreIO.closeChecked(fd)
            if e == 0 { e = ce }
            if e == 0 && renameat(dirFD, temp, dirFD, final) != 0 { e = errno }
            if e != 0 {
                unlinkat(dirFD, temp, 0)
                throw io("rewrite checkpoint file", final, e)
            }
            remember(entries)
            rewrote = true
        }
        if rewrote { syncDirectory(ImageLayout.checkpoints) }
    }

    private func removeTempFiles(in dir: String) throws(ImageError) {
        guard let names = StoreIO.listDirectory(dirFD, dir).0 else { return }
        for name in names where name.hasPrefix(ImageLayout.tempPrefix) {
            try unlinkIfPresent(dir == "." ? name : dir + "/" + name)
        }
    }

    func unlinkIfPresent(_ rel: String) throws(ImageError) {
        if unlinkat(dirFD, rel, 0) != 0 && errno != ENOENT { throw io("delete", rel) }
    }

    /// fsync of a directory makes renames and deletions in it durable.
    /// Best effort: some file systems refuse fsync on directories.
    @discardableResult
    func syncDirectory(_ rel: String) -> Int32 {
        let fd = StoreIO.openAt(dirFD, rel, O_RDONLY | O_DIRECTORY)
        if fd < 0 { return errno }
        defer { StoreIO.closeQuietly(fd) }
        let e = StoreIO.fsyncRetry(fd)
        return e == EINVAL ? 0 : e
    }
}
