import Glibc
import GhostImage
import CGhostSys

/// Named pipes (FIFOs). Every end the job had is reopened by path, so all
/// are again one pipe; ghost holds an O_RDWR open while it does (no open
/// blocks for want of a reader or writer) and refills the buffered bytes once.
enum Fifos {
    static func capture(_ st: stat, into r: inout FDRecord) {
        r.kind = .fifo
        r.offset = 0
        r.pipe = PipeRecord(id: UInt64(st.st_ino), capacity: 0, data: nil, dataLength: 0)
    }

    /// Stores each FIFO's buffered bytes (once per FIFO).
    static func link(_ records: inout [[FDRecord]], outer: [pid_t], writer: CheckpointWriter) throws(GhostError) {
        var done = Set<UInt64>()
        for (pi, i) in FileState.firsts(records, .fifo) {
            let r = records[pi][i]
            guard let id = r.pipe?.id, !done.contains(id) else { continue }
            done.insert(id)
            // Our own read end on the same FIFO: non-blocking, so it opens at once.
            let local = Glibc.open("/proc/\(outer[pi])/fd/\(r.fd)", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
            if local < 0 { throw .errno("opening the FIFO \(r.path) (fd \(r.fd) of process \(outer[pi])) to read its buffered data") }
            defer { close(local) }
            let capacity = Int(ghost_pipe_size(local))
            let data = try Pipes.peek(local, capacity: capacity)
            records[pi][i].pipe = PipeRecord(id: id, capacity: capacity, data: try Pipes.put(data, writer), dataLength: data.count)
        }
    }

    static func open(_ r: FDRecord, allRecords: [(pid: Int32, fds: [FDRecord])],
                     table: FileState.Table, store: ImageStore) throws(GhostError) -> Int32 {
        guard let id = r.pipe?.id else { throw .badImage("FIFO record without pipe for fd \(r.fd)") }
        if table.fifos[id] == nil {
            var st = stat()
            if stat(r.path, &st) != 0 || st.st_mode & S_IFMT != S_IFIFO {
                throw .fileChanged("the FIFO \(r.path) (fd \(r.fd) of the job) is gone or no longer a FIFO; "
                    + "create it again (mkfifo) and resume")
            }
            let hold = Glibc.open(r.path, O_RDWR | O_CLOEXEC)
            if hold < 0 { throw .errno("opening the FIFO \(r.path)") }
            table.fifos[id] = hold
            table.opened.append(hold)
            let info = allRecords.flatMap { $0.fds }.compactMap { $0.kind == .fifo && $0.pipe?.id == id ? $0.pipe : nil }
                .first { $0.data != nil } ?? r.pipe!
            if info.capacity > 0 { _ = ghost_set_pipe_size(hold, Int32(info.capacity)) }
            // A FIFO keeps its bytes only while open: they go in now and stay, as the job's ends open before ours closes.
            if let chunk = info.data { try Pipes.writeAll(hold, try Pipes.load(chunk, store), what: "the FIFO \(r.path)") }
        }
        let fd = Glibc.open(r.path, r.flags & ~(O_CREAT | O_TRUNC | O_EXCL) | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 { throw .errno("reopening the FIFO \(r.path) (fd \(r.fd) of the job)") }
        if r.flags & O_NONBLOCK == 0 { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) }
        return fd
    }
}
