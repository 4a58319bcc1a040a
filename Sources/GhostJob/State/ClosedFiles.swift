import Glibc
import CGhostSys
import GhostImage

/// Small files the job created and closed, which it may open again: a
/// compiler driver's object files waiting for the link, `sort`'s runs
/// waiting for the merge, a script's scratch file. The failed run may have
/// deleted them after the checkpoint (it finished with them); the resumed
/// job, back before that point, would find them gone. So each checkpoint
/// stores them, and a resume recreates the ones that are missing.
///
/// Which files: regular files directly in a job process's working directory,
/// in TMPDIR or in /tmp, owned by this user, born (statx birth time) since
/// the job started, up to RegularFiles.smallFileLimit each; files the job
/// holds open are stored with their descriptors instead. Recreating only
/// what is missing never overwrites anyone's data; files of the same user
/// born meanwhile by something else are at worst recreated needlessly.
/// A file system without birth times (some NFS) is not looked at.
enum ClosedFiles {
    /// Bounds on what one checkpoint reads and stores (and on the scan).
    static let maxFiles = 512
    static let maxTotalBytes: Int64 = 64 << 20
    static let maxEntriesPerDirectory = 50_000

    struct Candidate: Equatable {
        var path: String
        var size: Int64
        var mtimeNanos: Int64
        var mode: UInt32

        /// A regular file small enough to store; nil for anything else.
        init?(path: String, _ info: ghost_file_info) {
            guard info.mode & UInt32(S_IFMT) == UInt32(S_IFREG), info.size <= RegularFiles.smallFileLimit else { return nil }
            self.path = path; size = info.size; mtimeNanos = info.mtime_ns; mode = info.mode & 0o7777
        }
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
                if out.count >= maxFiles || total + c.size > maxTotalBytes { return out }
                total += c.size
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
            guard unchanged(fd, c), let bytes = RegularFiles.readAll(fd, size: Int(c.size)), bytes.count == c.size, unchanged(fd, c)
            else { continue }
            out.append(ClosedFileRecord(path: c.path, mtimeNanos: c.mtimeNanos,
                                        contents: FileContentsRecord(chunk: try Pipes.put(bytes, writer),
                                                                     length: bytes.count, mode: c.mode)))
        }
        return out
    }

    private static func unchanged(_ fd: Int32, _ c: Candidate) -> Bool {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return false }
        return Int64(st.st_size) == c.size && st.mtimeNanos == c.mtimeNanos
    }

    /// At resume, before any process of the job exists: recreates each
    /// stored file that is missing, with its bytes, mode and mtime. Existing
    /// files are left as they are. A file that cannot be recreated is
    /// reported; the job may not need it.
    static func restore(_ records: [ClosedFileRecord], store: ImageStore) throws(GhostError) {
        var recreated: [String] = []
        for r in records {
            var st = stat()
            if lstat(r.path, &st) == 0 || errno != ENOENT { continue }
            let bytes = try r.contents.chunk.map { (id: ChunkID) throws(GhostError) in try Pipes.load(id, store) } ?? []
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
            // atime: UTIME_OMIT ((1 << 30) - 2, not imported)
            var times = [timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2),
                         timespec(tv_sec: Int(r.mtimeNanos / 1_000_000_000), tv_nsec: Int(r.mtimeNanos % 1_000_000_000))]
            futimens(fd, &times)
            recreated.append(r.path)
        }
        if !recreated.isEmpty {
            let shown = recreated.prefix(5).joined(separator: ", ") + (recreated.count > 5 ? ", …" : "")
            Log.info("recreated \(recreated.count) file(s) the job had created and closed before the checkpoint, "
                + "deleted since: \(shown)")
        }
    }
}
