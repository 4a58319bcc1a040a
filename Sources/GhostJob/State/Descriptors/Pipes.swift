import Glibc
import GhostImage
import CGhostSys

/// Pipes whose both ends the job holds. The bytes buffered in a pipe are
/// copied with tee() (not consumed) and stored once; on restore one new pipe
/// is made per old one, refilled, and its ends installed wherever they were.
enum Pipes {
    static func capture(into r: inout FDRecord) {
        r.kind = .pipe
        r.offset = 0
        let inode = UInt64(r.path.dropFirst(6).dropLast()) ?? 0   // "pipe:[123]"
        r.pipe = PipeRecord(id: inode, capacity: 0, data: nil, dataLength: 0)
    }

    /// Checks every pipe has both ends in the job and stores its buffered bytes.
    static func link(_ records: inout [[FDRecord]], outer: [pid_t], writer: CheckpointWriter) throws(GhostError) {
        var done = Set<UInt64>()
        for (pi, pid) in outer.enumerated() {
            for i in records[pi].indices where records[pi][i].kind == .pipe && records[pi][i].sameAs == nil {
                let id = records[pi][i].pipe!.id
                if done.contains(id) { continue }
                done.insert(id)
                var readers: [(pid_t, Int32)] = [], writers: [(pid_t, Int32)] = []
                for (pj, p2) in outer.enumerated() {
                    for e in records[pj] where e.kind == .pipe && e.pipe?.id == id {
                        if e.flags & O_ACCMODE == O_RDONLY { readers.append((p2, e.fd)) } else { writers.append((p2, e.fd)) }
                    }
                }
                if readers.isEmpty || writers.isEmpty {
                    // One side missing from the job: fine if it is closed
                    // everywhere (make's jobserver, a reader whose writer
                    // finished); the restored pipe then has no such end either.
                    let end = readers.first ?? writers[0]
                    guard try endClosedEverywhere(end, reading: !readers.isEmpty) else {
                        throw .unsupported("fd \(records[pi][i].fd) of process \(pid) is one end of a pipe (\(records[pi][i].path)) "
                            + "whose other end is outside the job; ghost cannot checkpoint pipes to other programs yet")
                    }
                    if readers.isEmpty {   // nobody can read what is buffered
                        let local = ghost_grab_fd(end.0, end.1)
                        let capacity = local < 0 ? 0 : Int(ghost_pipe_size(local))
                        if local >= 0 { close(local) }
                        records[pi][i].pipe = PipeRecord(id: id, capacity: capacity, data: nil, dataLength: 0)
                        continue
                    }
                }
                let local = ghost_grab_fd(readers[0].0, readers[0].1)
                if local < 0 { throw .errno("duplicating fd \(readers[0].1) of process \(readers[0].0) (pidfd_getfd)") }
                defer { close(local) }
                let capacity = Int(ghost_pipe_size(local))
                let data = try peek(local, capacity: capacity)
                records[pi][i].pipe = PipeRecord(id: id, capacity: capacity, data: try put(data, writer), dataLength: data.count)
            }
        }
    }

    /// Whether the other side of this pipe end is closed in every process:
    /// poll() reports POLLHUP on a read end with no writers left, POLLERR on
    /// a write end with no readers.
    static func endClosedEverywhere(_ end: (pid_t, Int32), reading: Bool) throws(GhostError) -> Bool {
        let local = ghost_grab_fd(end.0, end.1)
        if local < 0 { throw .errno("duplicating fd \(end.1) of process \(end.0) (pidfd_getfd)") }
        defer { close(local) }
        var p = pollfd(fd: local, events: Int16(reading ? POLLIN : POLLOUT), revents: 0)
        if poll(&p, 1, 0) < 0 { throw .errno("poll of a pipe end") }
        return Int32(p.revents) & (reading ? Int32(POLLHUP) : Int32(POLLERR)) != 0
    }

    /// The bytes buffered in pipe `fd` (open for reading), not consumed.
    static func peek(_ fd: Int32, capacity: Int) throws(GhostError) -> [UInt8] {
        var p: [Int32] = [0, 0]
        if ghost_pipe2(&p, O_CLOEXEC | O_NONBLOCK) != 0 { throw .errno("pipe2") }
        defer { close(p[0]); close(p[1]) }
        _ = ghost_set_pipe_size(p[1], Int32(max(capacity, 4096)))
        let n = ghost_tee(fd, p[1], max(capacity, 4096))
        if n < 0 && errno != EAGAIN { throw .errno("tee of a pipe's buffered data") }
        var out = [UInt8](repeating: 0, count: max(0, n))
        var got = 0
        while got < out.count {
            let r = out.withUnsafeMutableBytes { read(p[0], $0.baseAddress! + got, $0.count - got) }
            if r <= 0 { throw .errno("reading a pipe's buffered data") }
            got += r
        }
        return out
    }

    /// Stores buffered bytes as a chunk (nil when there are none).
    static func put(_ data: [UInt8], _ writer: CheckpointWriter) throws(GhostError) -> ChunkID? {
        if data.isEmpty { return nil }
        let r: Result<ChunkID, ImageError> = data.withUnsafeBytes { b in Result { () throws(ImageError) in try writer.put(b) } }
        switch r { case .success(let c): return c; case .failure(let e): throw .image(e) }
    }

    static func load(_ id: ChunkID, _ store: ImageStore) throws(GhostError) -> [UInt8] {
        do { return try store.readChunk(id) } catch { throw .image(error) }
    }

    /// Writes all of `bytes` into `fd` (a pipe with room for them, or a file).
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], what: String) throws(GhostError) {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            if n <= 0 { throw .errno("writing \(bytes.count) bytes to \(what)") }
            off += n
        }
    }

    static func open(_ r: FDRecord, allRecords: [(pid: Int32, fds: [FDRecord])],
                     table: FileState.Table, store: ImageStore) throws(GhostError) -> Int32 {
        guard let id = r.pipe?.id else { throw .badImage("pipe record without pipe for fd \(r.fd)") }
        if table.pipes[id] == nil {
            let all = allRecords.flatMap { $0.fds }.filter { $0.kind == .pipe && $0.pipe?.id == id }
            let ends = try make(all, store: store)
            table.pipes[id] = ends
            table.opened += [ends.read, ends.write]
        }
        let ends = table.pipes[id]!
        return r.flags & O_ACCMODE == O_RDONLY ? ends.read : ends.write
    }

    /// A new pipe with the old one's capacity, flags and buffered bytes.
    static func make(_ ends: [FDRecord], store: ImageStore) throws(GhostError) -> (read: Int32, write: Int32) {
        var p: [Int32] = [0, 0]
        if ghost_pipe2(&p, O_CLOEXEC) != 0 { throw .errno("pipe2") }
        let info = ends.compactMap(\.pipe).first { $0.data != nil } ?? ends[0].pipe!
        if info.capacity > 0 { _ = ghost_set_pipe_size(p[1], Int32(info.capacity)) }
        if let id = info.data {
            do { try writeAll(p[1], try load(id, store), what: "a pipe") } catch { close(p[0]); close(p[1]); throw error }
        }
        for e in ends where e.flags & O_NONBLOCK != 0 {
            let fd = e.flags & O_ACCMODE == O_RDONLY ? p[0] : p[1]
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        return (p[0], p[1])
    }
}
