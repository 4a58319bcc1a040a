import Glibc
import GhostImage
import CGhostSys

/// Open file descriptors. Regular files and devices are reopened by path
/// with their flags and offsets; descriptors that were the launcher's own
/// stdin/stdout/stderr are bound to the resuming tool's, so output goes to
/// the new step's terminal or log.
enum FileState {
    static let kcmpFile: Int = 0, sysKcmp = 312
    static let cloexecFlag: Int32 = 0o2000000

    /// `writer` stores data buffered in pipes.
    static func capture(pid: pid_t, writer: CheckpointWriter) throws(GhostError) -> [FDRecord] {
        let fds = try ProcFS.listDir("/proc/\(pid)/fd").compactMap { Int32($0) }.sorted()
        // The launcher's own descriptors (stdio, and anything it inherited).
        let own = ((try? ProcFS.listDir("/proc/self/fd")) ?? []).compactMap { Int32($0) }.sorted()
        var out: [FDRecord] = []
        for fd in fds {
            let link = "/proc/\(pid)/fd/\(fd)"
            let target = try ProcFS.readLink(link)
            let info = try ProcFS.fdinfo(pid, fd)
            let cloexec = info.flags & cloexecFlag != 0
            let flags = info.flags & ~cloexecFlag
            let sameAs = out.first { same(pid, $0.fd, pid, fd) }?.fd
            if let k = own.first(where: { same(getpid(), $0, pid, fd) }) {
                out.append(FDRecord(fd: fd, kind: .stdio, path: target, flags: flags, cloexec: cloexec,
                                    offset: info.pos, stdio: Int32(k), identity: nil, sameAs: sameAs))
                continue
            }
            var st = stat()
            if stat(link, &st) != 0 { throw .errno("stat of fd \(fd) (\(target)) of process \(pid)") }
            let type = st.st_mode & S_IFMT
            if target.hasSuffix(" (deleted)") {
                throw .unsupported("fd \(fd) of process \(pid) is the deleted file \(target.dropLast(10)); "
                    + "ghost cannot checkpoint open deleted files yet")
            }
            if type == S_IFREG || type == S_IFDIR {
                let id = FileIdentity(path: target, size: Int64(st.st_size),
                                      mtimeNanos: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
                out.append(FDRecord(fd: fd, kind: .file, path: target, flags: flags, cloexec: cloexec,
                                    offset: info.pos, stdio: nil, identity: id, sameAs: sameAs))
            } else if target.hasPrefix("pipe:") {
                let inode = UInt64(target.dropFirst(6).dropLast()) ?? 0
                out.append(FDRecord(fd: fd, kind: .pipe, path: target, flags: flags, cloexec: cloexec,
                                    offset: 0, stdio: nil, identity: nil, sameAs: sameAs,
                                    pipe: PipeRecord(id: inode, capacity: 0, data: nil, dataLength: 0)))
            } else if type == S_IFCHR && target.hasPrefix("/") {
                out.append(FDRecord(fd: fd, kind: .device, path: target, flags: flags, cloexec: cloexec,
                                    offset: info.pos, stdio: nil, identity: nil, sameAs: sameAs))
            } else {
                throw .unsupported("fd \(fd) of process \(pid) is \(describe(target, type)); "
                    + "ghost cannot checkpoint that kind of descriptor yet")
            }
        }
        try capturePipes(&out, pid: pid, writer: writer)
        return out
    }

    /// Pipes: both ends must be in the job (a pipe to the launcher was bound
    /// above as `stdio`). The bytes buffered in each are copied with tee(),
    /// which leaves them in place for the running job.
    static func capturePipes(_ records: inout [FDRecord], pid: pid_t, writer: CheckpointWriter) throws(GhostError) {
        var done = Set<UInt64>()
        for i in records.indices where records[i].kind == .pipe {
            let id = records[i].pipe!.id
            let ends = records.filter { $0.kind == .pipe && $0.pipe?.id == id }
            let readers = ends.filter { $0.flags & O_ACCMODE == O_RDONLY }
            if readers.isEmpty || readers.count == ends.count {
                throw .unsupported("fd \(records[i].fd) of process \(pid) is one end of a pipe (\(records[i].path)) whose other "
                    + "end is outside the job; ghost cannot checkpoint pipes to other programs yet")
            }
            if done.contains(id) { continue }
            done.insert(id)
            let local = ghost_grab_fd(pid, readers[0].fd)
            if local < 0 { throw .errno("duplicating fd \(readers[0].fd) of process \(pid) (pidfd_getfd)") }
            defer { close(local) }
            let capacity = Int(ghost_pipe_size(local))
            let data = try peekPipe(local, capacity: capacity)
            var chunk: ChunkID? = nil
            if !data.isEmpty {
                let r: Result<ChunkID, ImageError> = data.withUnsafeBytes { b in Result { () throws(ImageError) in try writer.put(b) } }
                switch r { case .success(let id): chunk = id; case .failure(let e): throw .image(e) }
            }
            records[i].pipe = PipeRecord(id: id, capacity: capacity, data: chunk, dataLength: data.count)
        }
    }

    /// The bytes buffered in pipe `fd`, not consumed.
    static func peekPipe(_ fd: Int32, capacity: Int) throws(GhostError) -> [UInt8] {
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

    static func describe(_ target: String, _ type: mode_t) -> String {
        if target.hasPrefix("pipe:") { return "a pipe (\(target))" }
        if target.hasPrefix("socket:") { return "a socket (\(target))" }
        if target.hasPrefix("anon_inode:") { return "an \(target.dropFirst(11)) descriptor" }
        if type == S_IFIFO { return "the FIFO \(target)" }
        return target
    }

    /// Whether two descriptors are the same open file description (kcmp).
    static func same(_ p1: pid_t, _ fd1: Int32, _ p2: pid_t, _ fd2: Int32) -> Bool {
        ghost_kcmp(p1, p2, fd1, fd2) == 0
    }

    /// Opens, in the resuming tool, each descriptor the job had, after checking
    /// its file. Files the job was writing are cut back to their size at the
    /// checkpoint. Returns (source fd here, fd number in the job, whether the
    /// source was opened here and must be closed after the husk has it).
    static func prepare(_ records: [FDRecord], store: ImageStore) throws(GhostError) -> [(src: Int32, dst: Int32, opened: Bool)] {
        var out: [(src: Int32, dst: Int32, opened: Bool)] = []
        var pipes: [UInt64: (read: Int32, write: Int32)] = [:]
        var ok = false
        defer { if !ok { for f in out where f.opened { close(f.src) } } }
        var truncated = Set<String>()
        for r in records {
            if let s = r.sameAs, let shared = out.first(where: { $0.dst == s }) {
                out.append((shared.src, r.fd, false)); continue
            }
            switch r.kind {
            case .pipe:
                guard let id = r.pipe?.id else { throw .badImage("pipe record without pipe for fd \(r.fd)") }
                if pipes[id] == nil {
                    let all = records.filter { $0.kind == .pipe && $0.pipe?.id == id }
                    let ends = try makePipe(all, store: store)
                    pipes[id] = ends
                    out.append((ends.read, -1, true)); out.append((ends.write, -1, true))
                }
                let ends = pipes[id]!
                out.append((r.flags & O_ACCMODE == O_RDONLY ? ends.read : ends.write, r.fd, false))
            case .stdio:
                let k = r.stdio ?? 0
                if fcntl(k, F_GETFD) >= 0 {
                    out.append((k, r.fd, false))
                } else {
                    // The launcher had it (inherited from its own parent); this one does not.
                    let fd = open("/dev/null", O_RDWR | O_CLOEXEC)
                    Log.warn("fd \(r.fd) of the job was the launcher's fd \(k) (\(r.path)), which ghost-resume does not have; "
                        + "it is /dev/null now")
                    out.append((fd, r.fd, true))
                }
            case .file, .device:
                if r.kind == .file, let id = r.identity {
                    try reconcile(r, id, truncated: &truncated)
                }
                let flags = r.flags & ~(O_CREAT | O_TRUNC | O_EXCL) | O_CLOEXEC
                let fd = open(r.path, flags)
                if fd < 0 {
                    throw .fileChanged("cannot reopen \(r.path) (fd \(r.fd) of the job): \(String(cString: strerror(errno)))")
                }
                if r.offset != 0 && lseek(fd, off_t(r.offset), SEEK_SET) < 0 && r.kind == .file {
                    throw .errno("seeking \(r.path) to \(r.offset)")
                }
                out.append((fd, r.fd, true))
            }
        }
        ok = true
        // Entries with dst -1 only carry ownership of pipe ends for closing.
        return out
    }

    /// A new pipe with the old one's capacity, flags and buffered bytes.
    static func makePipe(_ ends: [FDRecord], store: ImageStore) throws(GhostError) -> (read: Int32, write: Int32) {
        var p: [Int32] = [0, 0]
        if ghost_pipe2(&p, O_CLOEXEC) != 0 { throw .errno("pipe2") }
        let info = ends.compactMap(\.pipe).first { $0.data != nil } ?? ends[0].pipe!
        if info.capacity > 0 { _ = ghost_set_pipe_size(p[1], Int32(info.capacity)) }
        if let id = info.data {
            let bytes: [UInt8]
            do { bytes = try store.readChunk(id) } catch { close(p[0]); close(p[1]); throw .image(error) }
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { write(p[1], $0.baseAddress! + off, $0.count - off) }
                if n <= 0 { close(p[0]); close(p[1]); throw .errno("refilling a pipe with its \(bytes.count) buffered bytes") }
                off += n
            }
        }
        for e in ends where e.flags & O_NONBLOCK != 0 {
            let fd = e.flags & O_ACCMODE == O_RDONLY ? p[0] : p[1]
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        return (p[0], p[1])
    }

    static func reconcile(_ r: FDRecord, _ id: FileIdentity, truncated: inout Set<String>) throws(GhostError) {
        var st = stat()
        if stat(r.path, &st) != 0 {
            throw .fileChanged("\(r.path) (fd \(r.fd) of the job) is gone: \(String(cString: strerror(errno))); "
                + "restore the file or resume where it exists")
        }
        if st.st_mode & S_IFMT != S_IFREG || Int64(st.st_size) == id.size || truncated.contains(r.path) { return }
        let writing = r.flags & O_ACCMODE != O_RDONLY
        if writing && Int64(st.st_size) > id.size {
            if truncate(r.path, off_t(id.size)) != 0 { throw .errno("cutting \(r.path) back to its checkpoint size \(id.size)") }
            truncated.insert(r.path)
            return
        }
        throw .fileChanged("\(r.path) (fd \(r.fd) of the job) is \(st.st_size) bytes but was \(id.size) at the checkpoint; "
            + (writing ? "data the job wrote before the checkpoint is missing" : "the input changed")
            + ", so the resumed job would see a different file. Put the file back as it was, or start the job again")
    }

    /// After exec the job's descriptors exist without FD_CLOEXEC; set it where it was.
    static func restoreFlags(_ records: [FDRecord], ctx: ProcessContext) throws(GhostError) {
        let fSetfd: UInt64 = 2, fdCloexec: UInt64 = 1
        for r in records where r.cloexec {
            try ctx.syscall.check("fcntl(\(r.fd), F_SETFD)", SYS.fcntl, UInt64(r.fd), fSetfd, fdCloexec)
        }
    }
}
