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

    static func capture(pid: pid_t) throws(GhostError) -> [FDRecord] {
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
            } else if type == S_IFCHR && target.hasPrefix("/") {
                out.append(FDRecord(fd: fd, kind: .device, path: target, flags: flags, cloexec: cloexec,
                                    offset: info.pos, stdio: nil, identity: nil, sameAs: sameAs))
            } else {
                throw .unsupported("fd \(fd) of process \(pid) is \(describe(target, type)); "
                    + "ghost cannot checkpoint that kind of descriptor yet")
            }
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
    static func prepare(_ records: [FDRecord]) throws(GhostError) -> [(src: Int32, dst: Int32, opened: Bool)] {
        var out: [(src: Int32, dst: Int32, opened: Bool)] = []
        var ok = false
        defer { if !ok { for f in out where f.opened { close(f.src) } } }
        var truncated = Set<String>()
        for r in records {
            if let s = r.sameAs, let shared = out.first(where: { $0.dst == s }) {
                out.append((shared.src, r.fd, false)); continue
            }
            switch r.kind {
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
        return out
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
