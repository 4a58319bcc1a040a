import CZstd
import Glibc

/// Reading checkpoints and chunks; everything read is checked against its checksum.
extension ImageStore {
    /// Numbers of committed checkpoints, ascending. Only lists file names:
    /// a listed checkpoint may still turn out damaged when loaded.
    public func checkpointNumbers() -> [Int] {
        let (names, _) = StoreIO.listDirectory(dirFD, ImageLayout.checkpoints)
        return (names ?? []).compactMap(ImageLayout.checkpointNumber(fileName:)).sorted()
    }

    /// The manifest payload of checkpoint `n`, after checking the file's checksum.
    public func loadManifest(_ n: Int) throws(ImageError) -> [UInt8] {
        try readCheckpoint(n, wantPayload: true).payload
    }

    /// The newest checkpoint whose file verifies and whose chunk files all exist.
    /// `skipped` has one line per newer checkpoint passed over, saying why.
    public func newestIntactCheckpoint() throws(ImageError) -> (number: Int, payload: [UInt8], skipped: [String]) {
        let numbers = checkpointNumbers()
        guard !numbers.isEmpty else { throw .noCheckpoints(path: path) }
        var skipped: [String] = []
        for n in numbers.reversed() {
            let c: CheckpointFileCodec.Decoded
            do {
                c = try readCheckpoint(n, wantPayload: true)
            } catch {
                skipped.append("checkpoint \(n) skipped: \(error)")
                continue
            }
            if let problem = missingChunksProblem(c.chunks, c.locations) {
                skipped.append("checkpoint \(n) skipped: \(problem)")
                continue
            }
            return (n, c.payload, skipped)
        }
        throw .noIntactCheckpoint(path: path, problems: skipped)
    }

    /// Reads, decompresses and verifies one chunk.
    public func readChunk(_ id: ChunkID) throws(ImageError) -> [UInt8] {
        let l = try location(of: id)
        if l.isLoose { return try readLooseChunk(id) }
        var failure: ImageError?
        let bytes = [UInt8](unsafeUninitializedCapacity: Int(l.length)) { buf, count in
            do throws(ImageError) {
                count = try decodePacked(id, l, into: UnsafeMutableRawPointer(buf.baseAddress))
            } catch {
                failure = error
                count = 0
            }
        }
        if let failure { throw failure }
        return bytes
    }

    /// Reads, decompresses and verifies one chunk into `buffer`; returns its length.
    public func readChunk(_ id: ChunkID, into buffer: UnsafeMutableRawBufferPointer) throws(ImageError) -> Int {
        let l = try location(of: id)
        if l.isLoose {
            let chunk = try openChunk(id)
            defer { StoreIO.closeQuietly(chunk.fd) }
            guard chunk.header.length <= buffer.count else {
                throw .bufferTooSmall(id: id, needed: chunk.header.length, available: buffer.count)
            }
            return try decodeChunk(chunk, id: id, into: buffer.baseAddress)
        }
        guard Int(l.length) <= buffer.count else {
            throw .bufferTooSmall(id: id, needed: Int(l.length), available: buffer.count)
        }
        return try decodePacked(id, l, into: buffer.baseAddress)
    }

    /// Checks checkpoint `n` completely: its file, and that every chunk it uses
    /// decompresses to bytes with the right hash (in packs: at the recorded
    /// place, under an entry header naming the chunk). One line per problem; empty = fine.
    public func verify(_ n: Int) -> [String] {
        let c: CheckpointFileCodec.Decoded
        do {
            c = try readCheckpoint(n, wantPayload: true)
        } catch {
            return [error.description]
        }
        var problems: [String] = []
        var scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { scratch.deallocate() }
        for (id, l) in zip(c.chunks, c.locations) {
            do {
                if l.isLoose {
                    let chunk = try openChunk(id)
                    defer { StoreIO.closeQuietly(chunk.fd) }
                    if chunk.header.length > scratch.count {
                        scratch.deallocate()
                        scratch = .allocate(byteCount: chunk.header.length, alignment: 64)
                    }
                    _ = try decodeChunk(chunk, id: id, into: scratch.baseAddress)
                } else {
                    if Int(l.length) > scratch.count {
                        scratch.deallocate()
                        scratch = .allocate(byteCount: Int(l.length), alignment: 64)
                    }
                    _ = try decodePacked(id, l, into: scratch.baseAddress)
                }
            } catch {
                problems.append(error.description)
            }
        }
        return problems
    }

    /// Numbers of the pack files on disk, ascending.
    func packNumbers() -> [UInt64] {
        let (names, _) = StoreIO.listDirectory(dirFD, ImageLayout.packs)
        return (names ?? []).compactMap(ImageLayout.packNumber(fileName:)).sorted()
    }

    // MARK: - Internals

    /// Reads and checks checkpoint file `n`.
    func readCheckpoint(_ n: Int, wantPayload: Bool) throws(ImageError) -> CheckpointFileCodec.Decoded {
        let rel = ImageLayout.checkpointPath(n)
        let fd = StoreIO.openAt(dirFD, rel, O_RDONLY | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { throw .noSuchCheckpoint(path: path, number: n, available: checkpointNumbers()) }
            throw io("open", rel)
        }
        defer { StoreIO.closeQuietly(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw io("stat", rel) }
        let size = Int(st.st_size)
        let limit = CheckpointFileCodec.maxPayload + 64 << 20
        guard size <= limit else {
            throw .damagedManifest(path: full(rel), reason: "\(size) bytes, larger than any checkpoint file")
        }
        var readError: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buf, count in
            guard let base = buf.baseAddress else { count = 0; return }
            (count, readError) = StoreIO.preadAll(fd, base, size, at: 0)
        }
        if readError != 0 { throw io("read", rel, readError) }
        let c = try CheckpointFileCodec.decode(bytes, path: full(rel), expectedNumber: n, wantPayload: wantPayload)
        remember(zip(c.chunks, c.locations))
        return c
    }

    /// Records where chunks are (from a checkpoint file read or just committed).
    func remember<S: Sequence>(_ entries: S) where S.Element == (ChunkID, ChunkLocation) {
        index.withLock { x in
            for (id, l) in entries { x.locations[id] = l }
        }
    }

    /// Where a chunk is, per the checkpoint files. A chunk no checkpoint file
    /// names is looked for as a loose file (it then reads as missing if absent).
    func location(of id: ChunkID) throws(ImageError) -> ChunkLocation {
        if let l = index.withLock({ $0.locations[id] }) { return l }
        if !index.withLock({ $0.loadedAll }) {
            for n in checkpointNumbers() { _ = try? readCheckpoint(n, wantPayload: false) }
            index.withLock { $0.loadedAll = true }
            if let l = index.withLock({ $0.locations[id] }) { return l }
        }
        return .loose
    }

    /// A read-only descriptor of pack `n`, opened once and kept.
    func packFD(_ n: UInt64, for id: ChunkID) throws(ImageError) -> Int32 {
        if let fd = index.withLock({ $0.packFDs[n] }) { return fd }
        let rel = ImageLayout.packPath(n)
        let fd = StoreIO.openAt(dirFD, rel, O_RDONLY | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { throw .missingChunk(id: id, path: full(rel)) }
            throw io("open", rel)
        }
        return index.withLock { x in
            if let other = x.packFDs[n] {
                StoreIO.closeQuietly(fd)
                return other
            }
            x.packFDs[n] = fd
            return fd
        }
    }

    /// Pack `n` opened with O_DIRECT, or nil where that is off or refused.
    func directPackFD(_ n: UInt64) -> Int32? {
        guard directIO else { return nil }
        if let fd = index.withLock({ $0.directPackFDs[n] }) { return fd >= 0 ? fd : nil }
        let fd = StoreIO.openAt(dirFD, ImageLayout.packPath(n), O_RDONLY | O_NOFOLLOW | PackWriter.oDirect)
        let kept = index.withLock { x in
            if let other = x.directPackFDs[n] {
                if fd >= 0 { StoreIO.closeQuietly(fd) }
                return other
            }
            x.directPackFDs[n] = fd
            return fd
        }
        return kept >= 0 ? kept : nil
    }

    /// Closes cached descriptors of packs about to be deleted or replaced.
    func forgetPacks(_ numbers: Set<UInt64>) {
        let fds = index.withLock { x -> [Int32] in
            let out = numbers.compactMap { x.packFDs.removeValue(forKey: $0) }
                + numbers.compactMap { x.directPackFDs.removeValue(forKey: $0) }.filter { $0 >= 0 }
            x.locations = x.locations.filter { !numbers.contains($0.value.pack) }
            x.loadedAll = false
            return out
        }
        for fd in fds { StoreIO.closeQuietly(fd) }
    }

    /// Reads a pack entry (one pread; raw data goes straight into `dst`),
    /// checks its header against the location and the id, decompresses, and
    /// checks the content hash.
    func decodePacked(_ id: ChunkID, _ l: ChunkLocation, into dst: UnsafeMutableRawPointer?) throws(ImageError) -> Int {
        let fd = try packFD(l.pack, for: id)
        let rel = ImageLayout.packPath(l.pack)
        let n = Int(l.length)
        let where_ = "\(full(rel)) at offset \(l.offset)"
        let damaged = { (reason: String) -> ImageError in .damagedChunk(id: id, path: where_, reason: reason) }
        let hdr = Int(PackEntryHeader.size)
        var header = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let raw = l.stored == l.length
        try withUnsafeMutableBytes(of: &header) { (h) throws(ImageError) in
            if raw {
                var iov = [iovec(iov_base: h.baseAddress, iov_len: hdr)]
                if n > 0, let dst { iov.append(iovec(iov_base: dst, iov_len: n)) }
                let (got, e) = StoreIO.preadvAll(fd, &iov, at: l.offset)
                if e != 0 { throw io("read", rel, e) }
                if got != hdr + n { throw damaged("pack is truncated: entry ends past its end") }
                try checkEntryHeader(h.baseAddress!, l, id, raw: raw, damaged)
                return
            }
            try zstd.withDecompressor { (z) throws(ImageError) in
                z.reserve(hdr + Int(l.stored))
                let (got, e) = StoreIO.preadAll(fd, z.buffer, hdr + Int(l.stored), at: Int(l.offset))
                if e != 0 { throw io("read", rel, e) }
                if got != hdr + Int(l.stored) { throw damaged("pack is truncated: entry ends past its end") }
                try checkEntryHeader(z.buffer, l, id, raw: raw, damaged)
                try Self.decompress(z, z.buffer + hdr, l, into: dst, damaged)
            }
        }
        try checkContent(dst, n, id, damaged)
        return n
    }

    /// The uncompressed bytes must hash to the chunk's id.
    func checkContent(_ p: UnsafeRawPointer?, _ n: Int, _ id: ChunkID,
                      _ damaged: (String) -> ImageError) throws(ImageError) {
        let actual = XXH128Digest.of(p, count: n)
        if actual != id.digest { throw damaged("its content does not match its name (content hash \(actual.hex))") }
    }

    /// The entry header must be a good chunk header naming `id`, agreeing with the location.
    func checkEntryHeader(_ h: UnsafeRawPointer, _ l: ChunkLocation, _ id: ChunkID, raw: Bool,
                          _ damaged: (String) -> ImageError) throws(ImageError) {
        let parsed: ChunkFileHeader
        switch ChunkFileHeader.parse(h) {
        case .success(let p): parsed = p
        case .failure(let p): throw damaged("entry header: \(p.reason)")
        }
        if parsed.length != Int(l.length) || parsed.compressed == raw || PackEntryHeader.stored(h) != l.stored {
            throw damaged("entry header does not match the checkpoint's record of it")
        }
        if XXH128Digest(canonical: h + PackEntryHeader.idOffset) != id.digest {
            throw damaged("entry header names another chunk")
        }
    }

    static func decompress(_ z: ZstdScratch, _ data: UnsafeRawPointer, _ l: ChunkLocation,
                           into dst: UnsafeMutableRawPointer?, _ damaged: (String) -> ImageError) throws(ImageError) {
        let r = ZSTD_decompressDCtx(z.dctx, dst, Int(l.length), data, Int(l.stored))
        if ZstdScratch.isError(r) { throw damaged("data does not decompress (\(ZstdScratch.errorName(r)))") }
        if r != Int(l.length) { throw damaged("data decompresses to \(r) bytes, header says \(l.length)") }
    }

    /// A loose chunk file (images written before packs).
    func readLooseChunk(_ id: ChunkID) throws(ImageError) -> [UInt8] {
        let chunk = try openChunk(id)
        defer { StoreIO.closeQuietly(chunk.fd) }
        var failure: ImageError?
        let bytes = [UInt8](unsafeUninitializedCapacity: chunk.header.length) { buf, count in
            do throws(ImageError) {
                count = try decodeChunk(chunk, id: id, into: UnsafeMutableRawPointer(buf.baseAddress))
            } catch {
                failure = error
                count = 0
            }
        }
        if let failure { throw failure }
        return bytes
    }

    /// A regular file of at least a header's size under the chunk's name.
    func chunkLooksPresent(_ id: ChunkID) -> Bool {
        guard let st = StoreIO.statAt(dirFD, ImageLayout.chunkPath(id), follow: false) else { return false }
        return st.st_mode & S_IFMT == S_IFREG && Int(st.st_size) >= ChunkFileHeader.size
    }

    /// nil if all chunks are there (loose files exist, packs are long enough),
    /// else a line saying which are not.
    func missingChunksProblem(_ ids: [ChunkID], _ locations: [ChunkLocation]) -> String? {
        var packSizes: [UInt64: UInt64] = [:]
        var missing: [String] = []
        for (id, l) in zip(ids, locations) {
            if l.isLoose {
                if !chunkLooksPresent(id) { missing.append(full(ImageLayout.chunkPath(id))) }  // the path names the id
                continue
            }
            if packSizes[l.pack] == nil {
                packSizes[l.pack] = StoreIO.statAt(dirFD, ImageLayout.packPath(l.pack), follow: false)
                    .map { UInt64($0.st_size) } ?? 0
            }
            if l.offset + l.entryBytes > packSizes[l.pack]! {
                missing.append("chunk \(id) in \(full(ImageLayout.packPath(l.pack))) at offset \(l.offset)")
            }
        }
        guard let first = missing.first else { return nil }
        return "\(missing.count) of its \(ids.count) memory chunks are missing or truncated, "
            + "for example \(first)"
    }

    struct OpenedChunk {
        var fd: Int32
        var rel: String
        var header: ChunkFileHeader
        /// Bytes after the header.
        var stored: Int
    }

    /// Opens a chunk file and parses its header. The caller closes `fd`.
    func openChunk(_ id: ChunkID) throws(ImageError) -> OpenedChunk {
        let rel = ImageLayout.chunkPath(id)
        let fd = StoreIO.openAt(dirFD, rel, O_RDONLY | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { throw .missingChunk(id: id, path: full(rel)) }
            throw io("open", rel)
        }
        var st = stat()
        var headerBytes = (UInt64(0), UInt64(0))
        let (got, e) = withUnsafeMutableBytes(of: &headerBytes) {
            StoreIO.preadAll(fd, $0.baseAddress!, ChunkFileHeader.size, at: 0)
        }
        let problem: ImageError?
        if fstat(fd, &st) != 0 {
            problem = io("stat", rel)
        } else if e != 0 {
            problem = io("read", rel, e)
        } else if got < ChunkFileHeader.size {
            problem = .damagedChunk(id: id, path: full(rel), reason: "truncated to \(got) bytes, shorter than its header")
        } else {
            switch withUnsafeBytes(of: &headerBytes, { ChunkFileHeader.parse($0.baseAddress!) }) {
            case .success(let header):
                return OpenedChunk(fd: fd, rel: rel, header: header, stored: Int(st.st_size) - ChunkFileHeader.size)
            case .failure(let p):
                problem = .damagedChunk(id: id, path: full(rel), reason: p.reason)
            }
        }
        StoreIO.closeQuietly(fd)
        throw problem!
    }

    /// Decompresses (or copies) the data into `dst` (room for header.length bytes)
    /// and checks that it hashes to the chunk's name.
    func decodeChunk(_ c: OpenedChunk, id: ChunkID, into dst: UnsafeMutableRawPointer?) throws(ImageError) -> Int {
        let n = c.header.length
        let damaged = { (reason: String) -> ImageError in .damagedChunk(id: id, path: self.full(c.rel), reason: reason) }
        if c.header.compressed {
            try zstd.withDecompressor { (z) throws(ImageError) in
                z.reserve(c.stored)
                let (got, e) = StoreIO.preadAll(c.fd, z.buffer, c.stored, at: ChunkFileHeader.size)
                if e != 0 { throw io("read", c.rel, e) }
                if got != c.stored { throw damaged("file shrank while being read") }
                let r = ZSTD_decompressDCtx(z.dctx, dst, n, z.buffer, c.stored)
                if ZstdScratch.isError(r) { throw damaged("data does not decompress (\(ZstdScratch.errorName(r)))") }
                if r != n { throw damaged("data decompresses to \(r) bytes, header says \(n)") }
            }
        } else {
            if c.stored != n { throw damaged("holds \(c.stored) bytes of raw data, header says \(n)") }
            if n > 0, let dst {
                let (got, e) = StoreIO.preadAll(c.fd, dst, n, at: ChunkFileHeader.size)
                if e != 0 { throw io("read", c.rel, e) }
                if got != n { throw damaged("file shrank while being read") }
            }
        }
        try checkContent(dst, n, id, damaged)
        return n
    }
}
