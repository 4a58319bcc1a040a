import Glibc
import CGhostSys
import GhostImage

/// Files the job created and closed, which it may open again or append to
/// again: a compiler driver's object files waiting for the link, `sort`'s
/// runs waiting for the merge, a script's scratch file, a results file a
/// loop appends to (`echo ... >> results`). The failed run may have deleted
/// them after the checkpoint (it finished with them), or appended to them;
/// the resumed job, back before that point, would find them gone, or
/// append the same lines a second time. So each checkpoint stores them
/// (small ones whole, bigger ones by their size and last bytes), and a
/// resume recreates the small ones that are missing and cuts back the ones
/// that have only grown since.
///
/// Which files: regular files directly in a job process's working directory,
/// in TMPDIR or in /tmp, owned by this user, born (statx birth time) since
/// the job started; files the job holds open are stored with their
/// descriptors instead. Recreating only what is missing never overwrites
/// anyone's data, and a file is cut back only when its bytes up to the
/// checkpoint's size are those stored: what was added after them is what
/// the resumed job will write again. A file of the same user born meanwhile
/// by something else and appended to by it would lose those additions: the
/// files cut back are named on stderr. A file system without birth times
/// (some NFS) is not looked at.
enum ClosedFiles {
    /// Bounds on what one checkpoint reads and stores (and on the scan).
    static let maxFiles = 512
    static let maxTotalBytes: Int64 = 64 << 20
    static let maxEntriesPerDirectory = 50_000

    /// How much of a file bigger than RegularFiles.smallFileLimit is stored:
    /// its last bytes, which must be unchanged for it to be cut back.
    static let tailBytes: Int64 = 64 << 10

    struct Candidate: Equatable {
        var path: String
        var size: Int64
        var mtimeNanos: Int64
        var mode: UInt32

        /// A regular file; nil for anything else.
        init?(path: String, _ info: ghost_file_info) {
            guard info.mode & UInt32(S_IFMT) == UInt32(S_IFREG) else { return nil }
            self.path = path; size = info.size; mtimeNanos = info.mtime_ns; mode = info.mode & 0o7777
        }

        /// Stored whole (and recreated if deleted), or only its tail.
        var whole: Bool { size <= RegularFiles.smallFileLimit }
        /// The bytes stored: [storedFrom, size).
        var storedFrom: Int64 { whole ? 0 : size - ClosedFiles.tailBytes }
    }

    /// The directories to look in: each process's working directory, TMPDIR, /tmp.
    static func directories(pids: [pid_t]) -> [String] {
        var dirs: [String] = []
        for pid in pids {
            if let cwd = try? ProcFS.readLink("/proc/\(pid)/cwd"), cwd.hasPrefix("/"), !dirs.contains(cwd) { dirs.append(cwd) }
        }
        for d in [getenv("TMPDIR").map { String(cString: $0) } ?? "", "/tmp"] where d.hasPrefix("/") {
            let n = d.count > 1 && d.hasSuffix("/") ? String(d.dropLast()) : d
            if !dirs.contains(n) { dirs.append(n) }
        }
        return dirs
    }

    /// Before the freeze, while the job runs: the candidates in `dirs` born
    /// at or after `since` (seconds since the epoch), outside `exclude`.
    static func scan(dirs: [String], since: Double, exclude: String) -> [Candidate] {
        let sinceNanos = Int64(since * 1e9)
        let uid = geteuid()
        var out: [Candidate] = []
        var total: Int64 = 0
        for dir in dirs where dir != exclude && !dir.hasPrefix(exclude + "/") {
            guard let d = opendir(dir) else { continue }
            defer { closedir(d) }
            let dfd = dirfd(d)
            var seen = 0
            while let e = readdir(d), seen < maxEntriesPerDirectory {
                seen += 1
                let type = e.pointee.d_type
                guard type == UInt8(DT_REG) || type == UInt8(DT_UNKNOWN) else { continue }
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
                var info = ghost_file_info()
                guard ghost_file_info(dfd, name, &info) == 0, info.uid == uid, info.btime_ns >= sinceNanos,
                      let c = Candidate(path: dir == "/" ? "/" + name : dir + "/" + name, info)
                else { continue }
                let cost = c.size - c.storedFrom
                if out.count >= maxFiles || total + cost > maxTotalBytes { return out }
                total += cost
                out.append(c)
            }
        }
        return out
    }

    /// In the freeze: each candidate as it is now (the checkpoint's moment);
    /// gone ones and ones the job holds open (`open`: stored with their
    /// descriptors) are dropped.
    static func restat(_ candidates: [Candidate], open: Set<String>) -> [Candidate] {
        candidates.compactMap { c in
            if open.contains(c.path) { return nil }
            var info = ghost_file_info()
            return ghost_file_info(AT_FDCWD, c.path, &info) == 0 ? Candidate(path: c.path, info) : nil
        }
    }

    /// After the thaw: reads and stores each file that is still as it was in
    /// the freeze (size and mtime); one the job changed since is left out,
    /// as its bytes would be from after the checkpoint.
    static func store(_ candidates: [Candidate], writer: CheckpointWriter) throws(GhostError) -> [ClosedFileRecord] {
        var out: [ClosedFileRecord] = []
        for c in candidates {
            let fd = Glibc.open(c.path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
            if fd < 0 { continue }
            defer { close(fd) }
            let count = Int(c.size - c.storedFrom)
            guard unchanged(fd, c), let bytes = RegularFiles.readAll(fd, size: count, from: c.storedFrom),
                  bytes.count == count, unchanged(fd, c)
            else { continue }
            out.append(ClosedFileRecord(path: c.path, mtimeNanos: c.mtimeNanos,
                                        contents: FileContentsRecord(chunk: try Pipes.put(bytes, writer),
                                                                     length: bytes.count, mode: c.mode),
                                        size: c.whole ? nil : c.size))
        }
        return out
    }

    private static func unchanged(_ fd: Int32, _ c: Candidate) -> Bool {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return false }
        return Int64(st.st_size) == c.size && st.mtimeNanos == c.mtimeNanos
    }

    /// At resume, before any process of the job exists: recreates each
    /// small stored file that is missing, with its bytes, mode and mtime, and
    /// cuts back each one that has grown since while still holding the
    /// stored bytes up to its checkpoint size. Other files are left as they
    /// are. A file that cannot be recreated or cut back is reported; the job
    /// may not need it.
    static func restore(_ records: [ClosedFileRecord], store: ImageStore) throws(GhostError) {
        var recreated: [String] = [], rewound: [String] = []
        for r in records {
            var st = stat()
            if lstat(r.path, &st) == 0 {
                if try cutBack(r, st, store: store) { rewound.append(r.path) }
                continue
            }
            if errno != ENOENT || r.size != nil { continue }
            let bytes = try RegularFiles.storedBytes(r.contents, store)
            let fd = Glibc.open(r.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(r.contents.mode))
            if fd < 0 {
                Log.warn("cannot recreate \(r.path), which the job created and closed before the checkpoint and which "
                    + "is gone now: \(String(cString: strerror(errno)))")
                continue
            }
            defer { close(fd) }
            do throws(GhostError) { try Pipes.writeAll(fd, bytes, what: r.path) } catch {
                Log.warn("cannot recreate \(r.path): \(error)")
                unlink(r.path)
                continue
            }
            setMtime(fd, r.mtimeNanos)
            recreated.append(r.path)
        }
        func shown(_ paths: [String]) -> String { paths.prefix(5).joined(separator: ", ") + (paths.count > 5 ? ", …" : "") }
        if !recreated.isEmpty {
            Log.info("recreated \(recreated.count) file(s) the job had created and closed before the checkpoint, "
                + "deleted since: \(shown(recreated))")
        }
        if !rewound.isEmpty {
            Log.info("cut back \(rewound.count) file(s) the job had created and closed before the checkpoint, "
                + "appended to since, to their size at the checkpoint: \(shown(rewound))")
        }
    }

    /// Cuts `r`'s file back to its checkpoint size if it is a regular file
    /// that has grown since and still holds the stored bytes below that size.
    private static func cutBack(_ r: ClosedFileRecord, _ st: stat, store: ImageStore) throws(GhostError) -> Bool {
        let size = r.size ?? Int64(r.contents.length)
        guard st.st_mode & S_IFMT == S_IFREG, Int64(st.st_size) > size else { return false }
        let fd = Glibc.open(r.path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 { return false }
        defer { close(fd) }
        let stored = try RegularFiles.storedBytes(r.contents, store)
        let from = size - Int64(stored.count)
        guard RegularFiles.readAll(fd, size: stored.count, from: from) == stored else { return false }
        // A write lease is granted only while nobody else has the file open:
        // one another job is writing to now is not ours to cut. (Where
        // leases are not available, e.g. some network file systems, that
        // cannot be told, and the file is cut back.)
        let fSetLease: Int32 = 1024   // F_SETLEASE (not imported)
        let leased = fcntl(fd, fSetLease, Int32(F_WRLCK)) == 0
        if !leased && (errno == EAGAIN || errno == EBUSY) {
            Log.warn("\(r.path) has grown since the checkpoint but another process has it open: left as it is")
            return false
        }
        defer { if leased { _ = fcntl(fd, fSetLease, Int32(F_UNLCK)) } }
        if ftruncate(fd, off_t(size)) != 0 {
            Log.warn("cannot cut \(r.path) back to its size at the checkpoint (\(size) bytes): \(String(cString: strerror(errno)))")
            return false
        }
        setMtime(fd, r.mtimeNanos)
        return true
    }

    private static func setMtime(_ fd: Int32, _ nanos: Int64) {
        // atime: UTIME_OMIT ((1 << 30) - 2, not imported)
        var times = [timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2),
                     timespec(tv_sec: Int(nanos / 1_000_000_000), tv_nsec: Int(nanos % 1_000_000_000))]
        futimens(fd, &times)
    }
}
