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
        var liveSetComplete = true
        for n in checkpointNumbers() {
            do {
                live.formUnion(try readCheckpoint(n, wantPayload: false).chunks)
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
    }

    /// Checkpoint file verifies and all its chunk files exist (what resume needs to start).
    func isIntact(_ n: Int) -> Bool {
        guard let c = try? readCheckpoint(n, wantPayload: false) else { return false }
        return missingChunksProblem(c.chunks) == nil
    }

    private func removeTempFiles(in dir: String) throws(ImageError) {
        guard let names = StoreIO.listDirectory(dirFD, dir).0 else { return }
        for name in names where name.hasPrefix(ImageLayout.tempPrefix) {
            try unlinkIfPresent(dir == "." ? name : dir + "/" + name)
        }
    }

    private func unlinkIfPresent(_ rel: String) throws(ImageError) {
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
