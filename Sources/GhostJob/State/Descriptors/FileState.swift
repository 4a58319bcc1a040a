import Glibc
import GhostImage
import CGhostSys

/// Open file descriptors: the dispatcher over the kinds, each in its own
/// file beside this one with capture and restore side by side
/// (RegularFiles, Pipes, Fifos, UnixSockets, EventFD, TimerFD, SignalFD,
/// Epoll). One open file description is one object: it is captured once,
/// opened once in the resuming tool (in a `Table`) and installed into every
/// husk that had it, so sharing across dup and fork comes back.
enum FileState {
    static let cloexecFlag: Int32 = 0o2000000

    /// The descriptors of one stopped process. What needs the whole job
    /// (pipe and socket peers, buffered data, epoll owners) is done by `link`.
    static func capture(pid: pid_t, writer: CheckpointWriter) throws(GhostError) -> [FDRecord] {
        let fds = try ProcFS.listDir("/proc/\(pid)/fd").compactMap { Int32($0) }.sorted()
        // The launcher's own descriptors (stdio, and anything it inherited).
        let own = LauncherDescriptors.inherited.sorted()
        var out: [FDRecord] = []
        for fd in fds {
            let link = "/proc/\(pid)/fd/\(fd)"
            let target = try ProcFS.readLink(link)
            let info = try ProcFS.fdinfo(pid, fd)
            let cloexec = info.flags & cloexecFlag != 0
            let flags = info.flags & ~cloexecFlag
            let sameAs = out.first { same(pid, $0.fd, pid, fd) }?.fd
            var r = FDRecord(fd: fd, kind: .file, path: target, flags: flags, cloexec: cloexec,
                             offset: info.pos, stdio: nil, identity: nil, sameAs: sameAs)
            if let k = own.first(where: { same(getpid(), $0, pid, fd) }) {
                r.kind = .stdio
                r.stdio = Int32(k)
                out.append(r)
                continue
            }
            if target.hasPrefix("anon_inode:") {
                switch target.dropFirst(11) {
                case "[eventfd]": try EventFD.capture(pid: pid, into: &r)
                case "[timerfd]": try TimerFD.capture(pid: pid, into: &r)
                case "[signalfd]": try SignalFD.capture(pid: pid, into: &r)
                case "[eventpoll]": try Epoll.capture(pid: pid, into: &r)
                default: throw unsupported(pid, fd, target, 0)
                }
            } else if target.hasPrefix("socket:") {
                try UnixSockets.capture(pid: pid, into: &r)
            } else if target.hasPrefix("pipe:") {
                Pipes.capture(into: &r)
            } else {
                var st = stat()
                if stat(link, &st) != 0 { throw .errno("stat of fd \(fd) (\(target)) of process \(pid)") }
                let type = st.st_mode & S_IFMT
                // memfds, POSIX shm and deleted files: their contents go into
                // the image with the shared memory objects (SharedMemoryState).
                if SharedMemoryState.isSharedMemoryFD(target: target, link: link)
                    || (target.hasSuffix(" (deleted)") && type == S_IFREG) {
                    r.kind = .sharedMemory
                    out.append(r)
                    continue
                }
                if target.hasSuffix(" (deleted)") {
                    throw .unsupported("fd \(fd) of process \(pid) is the deleted \(describe(target, type)); "
                        + "ghost cannot checkpoint that")
                }
                if type == S_IFIFO && target.hasPrefix("/") {
                    Fifos.capture(st, into: &r)
                } else if !(try RegularFiles.capture(st, pid: pid, writer: writer, into: &r)) {
                    throw unsupported(pid, fd, target, type)
                }
                if !info.locks.isEmpty { r.locks = try FileLocks.parse(info.locks, pid: pid, fd: fd, path: target) }
            }
            out.append(r)
        }
        return out
    }

    static func unsupported(_ pid: pid_t, _ fd: Int32, _ target: String, _ type: mode_t) -> GhostError {
        .unsupported("fd \(fd) of process \(pid) is \(describe(target, type)); "
            + "ghost cannot checkpoint that kind of descriptor yet: close it before the checkpoint")
    }

    /// Across the job's processes (outer PIDs in `outer`, inner in `inner`,
    /// records in the same order): links descriptors that share an open file
    /// description with an earlier one (fork inheritance), then lets each
    /// kind capture what needs all processes.
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
        try Pipes.link(&records, outer: outer, writer: writer)
        try Fifos.link(&records, outer: outer, writer: writer)
        try UnixSockets.link(&records, outer: outer, writer: writer)
        try Epoll.link(&records, outer: outer, inner: inner)
    }

    /// Where the description of records[pi][i] was first captured (it follows `sameAs`).
    static func root(_ records: [[FDRecord]], inner: [pid_t], _ pi: Int, _ i: Int) -> (Int, Int) {
        var (p, k) = (pi, i)
        while let s = records[p][k].sameAs {
            let q = records[p][k].sameAsPid.flatMap { sp in inner.firstIndex(of: sp) } ?? p
            guard let j = records[q].firstIndex(where: { $0.fd == s }) else { break }
            (p, k) = (q, j)
        }
        return (p, k)
    }

    /// The first records (sameAs == nil) of `kind`, as (process index, record index).
    static func firsts(_ records: [[FDRecord]], _ kind: FDRecord.Kind) -> [(Int, Int)] {
        records.indices.flatMap { pi in
            records[pi].indices.filter { records[pi][$0].kind == kind && records[pi][$0].sameAs == nil }.map { (pi, $0) }
        }
    }

    static func describe(_ target: String, _ type: mode_t) -> String {
        if target.hasPrefix("pipe:") { return "a pipe (\(target))" }
        if target.hasPrefix("socket:") { return "a socket (\(target))" }
        if target.hasPrefix("pidfd:") || target == "anon_inode:[pidfd]" { return "a pidfd (process descriptor)" }
        if target.hasPrefix("anon_inode:") {
            return "an \(target.dropFirst(11).trimmingCharacters(in: "[]")) descriptor"
        }
        if type == S_IFIFO { return "the FIFO \(target)" }
        if type == S_IFSOCK { return "the socket \(target)" }
        return target
    }

    /// Whether two descriptors are the same open file description (kcmp).
    static func same(_ p1: pid_t, _ fd1: Int32, _ p2: pid_t, _ fd2: Int32) -> Bool {
        ghost_kcmp(p1, p2, fd1, fd2) == 0
    }

    /// The key: value lines of /proc/PID/fdinfo/FD.
    static func fdinfo(_ pid: pid_t, _ fd: Int32) throws(GhostError) -> [(key: String, value: String)] {
        try ProcFS.readText("/proc/\(pid)/fdinfo/\(fd)").split(separator: "\n").compactMap { line in
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            return (parts[0].trimmingCharacters(in: " \t"), parts[1].trimmingCharacters(in: " \t"))
        }
    }

    /// The job's open file descriptions, opened once in the resuming tool and
    /// handed to every husk that had them.
    final class Table {
        var bySlot: [String: Int32] = [:]          // "pid:fd" -> our descriptor
        var pipes: [UInt64: (read: Int32, write: Int32)] = [:]
        var fifos: [UInt64: Int32] = [:]           // FIFO inode -> our O_RDWR open of it
        var sockets: [UInt64: Int32] = [:]         // socket inode at checkpoint -> new socket
        var opened: [Int32] = []
        var truncated = Set<String>()
        var objects: [Int: Int32] = [:]            // shared memory object id -> our descriptor
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
        let fd: Int32
        switch r.kind {
        case .pipe: return try Pipes.open(r, allRecords: allRecords, table: table, store: store)
        case .stdio: return RegularFiles.openStdio(r, table: table)
        case .file, .device: return try RegularFiles.open(r, table: table, store: store)
        case .fifo: fd = try Fifos.open(r, allRecords: allRecords, table: table, store: store)
        case .unixSocket: return try UnixSockets.open(r, allRecords: allRecords, table: table, store: store)
        case .eventfd: fd = try EventFD.open(r)
        case .timerfd: fd = try TimerFD.open(r)
        case .signalfd: fd = try SignalFD.open(r)
        case .epoll: fd = try Epoll.open(r)
        case .sharedMemory: return try SharedMemoryState.reopen(r, table: table)
        }
        table.opened.append(fd)
        return fd
    }

    /// After exec the job's descriptors exist without FD_CLOEXEC; set it where it was.
    static func restoreFlags(_ records: [FDRecord], ctx: ProcessContext) throws(GhostError) {
        let fSetfd: UInt64 = 2, fdCloexec: UInt64 = 1
        for r in records where r.cloexec {
            try ctx.syscall.check("fcntl(\(r.fd), F_SETFD)", SYS.fcntl, UInt64(r.fd), fSetfd, fdCloexec)
        }
    }

    /// Set-up that must run inside the rebuilt process once all its
    /// descriptors are installed (epoll interest lists name descriptor numbers).
    static func restoreInProcess(_ records: [FDRecord], ctx: ProcessContext) throws(GhostError) {
        try Epoll.restoreEntries(records, ctx: ctx)
        try FileLocks.restore(records, ctx: ctx)
    }
}
