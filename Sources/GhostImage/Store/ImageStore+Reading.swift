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
            if let problem = missingChunksProblem(c.chunks) {
                skipped.append("checkpoint \(n) skipped: \(problem)")
                continue
            }
            return (n, c.payload, skipped)
        }
        throw .noIntactCheckpoint(path: path, problems: skipped)
    }

    /// Reads, decompresses and verifies one chunk.
    public func readChunk(_ id: ChunkID) throws(ImageError) -> [UInt8] {
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

    /// Reads, decompresses and verifies one chunk into `buffer`; returns its length.
    public func readChunk(_ id: ChunkID, into buffer: UnsafeMutableRawBufferPointer) throws(ImageError) -> Int {
        let chunk = try openChunk(id)
        defer { StoreIO.closeQuietly(chunk.fd) }
        guard chunk.header.length <= buffer.count else {
            throw .bufferTooSmall(id: id, needed: chunk.header.length, available: buffer.count)
        }
        return try decodeChunk(chunk, id: id, into: buffer.baseAddress)
    }

    /// Checks checkpoint `n` completely: its file, and that every chunk it uses
    /// decompresses to bytes with the right hash. One line per problem; empty = fine.
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
        for id in c.chunks {
            do {
                let chunk = try openChunk(id)
                defer { StoreIO.closeQuietly(chunk.fd) }
                if chunk.header.length > scratch.count {
                    scratch.deallocate()
                    scratch = .allocate(byteCount: chunk.header.length, alignment: 64)
                }
                _ = try decodeChunk(chunk, id: id, into: scratch.baseAddress)
            } catch {
                problems.append(error.description)
            }
        }
        return problems
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
        return try CheckpointFileCodec.decode(bytes, path: full(rel), expectedNumber: n, wantPayload: wantPayload)
    }

    /// A regular file of at least a header's size under the chunk's name.
    func chunkLooksPresent(_ id: ChunkID) -> Bool {
        guard let st = StoreIO.statAt(dirFD, ImageLayout.chunkPath(id), follow: false) else { return false }
        return st.st_mode & S_IFMT == S_IFREG && Int(st.st_size) >= ChunkFileHeader.size
    }

    /// nil if all chunk files are there, else a line saying which are not.
    func missingChunksProblem(_ ids: [ChunkID]) -> String? {
        let missing = ids.filter { !chunkLooksPresent($0) }
        guard let first = missing.first else { return nil }
        return "\(missing.count) of its \(ids.count) memory chunks are missing or truncated, "
            + "for example \(full(ImageLayout.chunkPath(first)))"
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
        let actual = XXH128Digest.of(dst, count: n)
        if actual != id.digest { throw damaged("its content does not match its name (content hash \(actual.hex))") }
        return n
    }
}
