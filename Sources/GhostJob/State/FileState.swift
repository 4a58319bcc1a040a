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
                try Devices.check(st, path: target, fd: fd, pid: pid)
                out.append(FDRecord(fd: fd, kind: .device, path: target, flags: flags, cloexec: cloexec,
                                    offset: info.pos, stdio: nil, identity: nil, sameAs: sameAs))
            } else {
                throw .unsupported("fd \(fd) of process \(pid) is \(describe(target, type)); "
                    + "ghost cannot checkpoint that kind of descriptor yet")
            }
        }
        return out
    }

    /// Across the job's processes (outer PIDs in `outer`, records in the same
    /// order): links descriptors that share an open file description with an
    /// earlier one (fork inheritance), and captures pipes, whose ends must all
    /// be inside the job.
    static func link(_ records: inout [[FDRecord]], outer: [pid_t], inner: [pid_t],
                     writer: CheckpointWriter) throws(GhostError) {
        for (pi, pid) in outer.enumerated() {
            for i in records[pi].indices where records[pi][i].kind != .stdio && records[pi][i].sameAs == nil {
                let r = records[pi][i]
                search: for pj in 0..<pi {
                    for e in records[pj] where e.kind == r.kind && e.path == r.path && e.sameAs == nil {
                        if same(outer[pj], e.fd, pid, r.fd) {
                            records[pi][i].sameAs = e.fd
                            records[pi][i].sameAsPid = inner[pj]
                            break search
                        }
                    }
                }
            }
        }
        var done = Set<UInt64>()
        for (pi, pid) in outer.enumerated() {
            for i in records[pi].indices where records[pi][i].kind == .pipe && records[pi][i].sameAs == nil {
                let id = records[pi][i].pipe!.id
                if done.contains(id) { continue }
                done.insert(id)
                var readers: [(pid_t, Int32)] = [], writers = 0
                for (pj, p2) in outer.enumerated() {
                    for e in records[pj] where e.kind == .pipe && e.pipe?.id == id {
                        if e.flags & O_ACCMODE == O_RDONLY { readers.append((p2, e.fd)) } else { writers += 1 }
                    }
                }
                if readers.isEmpty || writers == 0 {
                    throw .unsupported("fd \(records[pi][i].fd) of process \(pid) is one end of a pipe (\(records[pi][i].path)) "
                        + "whose other end is outside the job; ghost cannot checkpoint pipes to other programs yet")
                }
                let local = ghost_grab_fd(readers[0].0, readers[0].1)
                if local < 0 { throw .errno("duplicating fd \(readers[0].1) of process \(readers[0].0) (pidfd_getfd)") }
                defer { close(local) }
                let capacity = Int(ghost_pipe_size(local))
                let data = try peekPipe(local, capacity: capacity)
                var chunk: ChunkID? = nil
                if !data.isEmpty {
                    let r: Result<ChunkID, ImageError> = data.withUnsafeBytes { b in Result { () throws(ImageError) in try writer.put(b) } }
                    switch r { case .success(let c): chunk = c; case .failure(let e): throw .image(e) }
                }
                records[pi][i].pipe = PipeRecord(id: id, capacity: capacity, data: chunk, dataLength: data.count)
            }
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

    /// The job's open file descriptions, opened once in the resuming tool and
    /// handed to every husk that had them.
    final class Table {
        var bySlot: [String: Int32] = [:]          // "pid:fd" -> our descriptor
        var pipes: [UInt64: (read: Int32, write: Int32)] = [:]
        var opened: [Int32] = []
        var truncated = Set<String>()
        func closeAll() { for fd in opened { close(fd) }; opened = [] }
    }

    /// Opens, in the resuming tool, each descriptor process `pid` had, after
    /// checking its file. Files the job was writing are cut back to their size
    /// at the checkpoint. Returns (our descriptor, number in the job) pairs;
    /// the descriptors stay owned by `table`.
    static func prepare(_ records: [FDRecord], pid: Int32, allRecords: [(pid: Int32, fds: [FDRecord])],
                        table: Table, store: ImageStore) throws(GhostError) -> [(src: Int32, dst: Int32)] {
        var out: [(src: Int32, dst: Int32)] = []
        for r in records {
            let src = try open(r, pid: pid, allRecords: allRecords, table: table, store: store)
            table.bySlot["\(pid):\(r.fd)"] = src
            out.append((src, r.fd))
        }
        return out
    }

    private static func open(_ r: FDRecord, pid: Int32, allRecords: [(pid: Int32, fds: [FDRecord])],
                             table: Table, store: ImageStore) throws(GhostError) -> Int32 {
        if let s = r.sameAs {
            let key = "\(r.sameAsPid ?? pid):\(s)"
            guard let src = table.bySlot[key] else { throw .badImage("fd \(r.fd) of process \(pid) shares fd \(key), which is missing") }
            return src
        }
        switch r.kind {
        case .pipe:
            guard let id = r.pipe?.id else { throw .badImage("pipe record without pipe for fd \(r.fd)") }
            if table.pipes[id] == nil {
                let all = allRecords.flatMap { $0.fds }.filter { $0.kind == .pipe && $0.pipe?.id == id }
                let ends = try makePipe(all, store: store)
                table.pipes[id] = ends
                table.opened += [ends.read, ends.write]
            }
            let ends = table.pipes[id]!
            return r.flags & O_ACCMODE == O_RDONLY ? ends.read : ends.write
        case .stdio:
            let k = r.stdio ?? 0
            if fcntl(k, F_GETFD) >= 0 { return k }
            // The launcher had it (inherited from its own parent); this one does not.
            let fd = Glibc.open("/dev/null", O_RDWR | O_CLOEXEC)
            table.opened.append(fd)
            Log.warn("fd \(r.fd) of the job was the launcher's fd \(k) (\(r.path)), which ghost-resume does not have; "
                + "it is /dev/null now")
            return fd
        case .file, .device:
            if r.kind == .file, let id = r.identity {
                try reconcile(r, id, truncated: &table.truncated)
            }
            let flags = r.flags & ~(O_CREAT | O_TRUNC | O_EXCL) | O_CLOEXEC
            let fd = Glibc.open(r.path, flags)
            if fd < 0 {
                throw .fileChanged("cannot reopen \(r.path) (fd \(r.fd) of the job): \(String(cString: strerror(errno)))")
            }
            table.opened.append(fd)
            if r.offset != 0 && lseek(fd, off_t(r.offset), SEEK_SET) < 0 && r.kind == .file {
                throw .errno("seeking \(r.path) to \(r.offset)")
            }
            return fd
        }
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
