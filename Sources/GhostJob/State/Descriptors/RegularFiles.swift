import Glibc
import CGhostSys
import GhostImage

/// Regular files, directories and character devices, reopened by path with
/// their flags and offsets; and descriptors that were the launcher's own
/// (stdio), bound to the resuming tool's so output goes to the new step's log.
enum RegularFiles {
    /// Files up to this size have their contents stored (see FileContentsRecord):
    /// scratch and temporary files, not the job's big inputs and outputs.
    static let smallFileLimit: Int64 = 4 << 20

    /// Fills `r` for a file, directory or device; false for anything else.
    static func capture(_ st: stat, pid: pid_t, writer: CheckpointWriter, into r: inout FDRecord) throws(GhostError) -> Bool {
        let type = st.st_mode & S_IFMT
        if type == S_IFREG || type == S_IFDIR {
            r.kind = .file
            r.identity = FileIdentity(path: r.path, size: Int64(st.st_size),
                                      mtimeNanos: st.mtimeNanos)
            if type == S_IFREG && r.sameAs == nil && Int64(st.st_size) <= smallFileLimit {
                r.contents = try contents(pid: pid, fd: r.fd, writeOnly: r.flags & O_ACCMODE == O_WRONLY,
                                          size: Int(st.st_size), mode: UInt32(st.st_mode & 0o7777), writer: writer)
            }
            return true
        }
        if type == S_IFCHR && r.path.hasPrefix("/") {
            try Devices.check(st, path: r.path, fd: r.fd, pid: pid)
            r.kind = .device
            return true
        }
        return false
    }

    static func openStdio(_ r: FDRecord, table: FileState.Table) -> Int32 {
        let k = r.stdio ?? 0
        // Only a descriptor this tool inherited: not one it opened itself.
        if LauncherDescriptors.inherited.contains(k) && fcntl(k, F_GETFD) >= 0 {
            rewindStdio(r, k)
            return k
        }
        // The launcher had it (inherited from its own parent); this one does not.
        let fd = Glibc.open("/dev/null", O_RDWR | O_CLOEXEC)
        table.opened.append(fd)
        Log.warn("fd \(r.fd) of the job was the launcher's fd \(k) (\(r.path)), which ghost-resume does not have; "
            + "it is /dev/null now")
        return fd
    }

    /// When the resumer's descriptor `k` is the very file the job read as
    /// stdin at checkpoint time (`< input` given again), the job reads on
    /// from the checkpoint's offset, not again from the start. The offset is
    /// shared with the resumer's own, as it was with the launcher's. Output
    /// files are left as they are: the launcher's output is often appended
    /// to by others too (a Slurm step's output file gets the batch script's
    /// lines and ghost's log), and `> out` given again already truncated it.
    static func rewindStdio(_ r: FDRecord, _ k: Int32) {
        var now = stat(), then = stat()
        guard r.flags & O_ACCMODE == O_RDONLY, fstat(k, &now) == 0, now.st_mode & S_IFMT == S_IFREG,
              r.path.hasPrefix("/"), stat(r.path, &then) == 0, now.st_dev == then.st_dev, now.st_ino == then.st_ino
        else { return }
        lseek(k, off_t(r.offset), SEEK_SET)
    }

    /// The bytes of a small file, read through a duplicate of the job's descriptor.
    static func contents(pid: pid_t, fd: Int32, writeOnly: Bool, size: Int, mode: UInt32,
                         writer: CheckpointWriter) throws(GhostError) -> FileContentsRecord? {
        // A write-only descriptor cannot be read: open the same file again.
        let local = writeOnly ? Glibc.open("/proc/\(pid)/fd/\(fd)", O_RDONLY | O_CLOEXEC) : ghost_grab_fd(pid, fd)
        if local < 0 { return nil }     // unreadable: the file is handled by size alone
        defer { close(local) }
        guard let bytes = readAll(local, size: size) else { throw .errno("reading fd \(fd) of process \(pid)") }
        return FileContentsRecord(chunk: try Pipes.put(bytes, writer), length: bytes.count, mode: mode)
    }

    /// Up to `size` bytes of `fd` from offset 0 (fewer at end of file); nil
    /// on a read error (errno set).
    static func readAll(_ fd: Int32, size: Int, from offset: Int64 = 0) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: size)
        var got = 0
        while got < size {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, size - got, off_t(offset) + off_t(got)) }
            if n < 0 { return nil }
            if n == 0 { break }
            got += n
        }
        bytes.removeLast(size - got)
        return bytes
    }

    static func open(_ r: FDRecord, table: FileState.Table, store: ImageStore) throws(GhostError) -> Int32 {
        if r.kind == .file, let id = r.identity, !table.truncated.contains(r.path) {
            if let c = r.contents, try putBack(r, id, c, store: store) {
                table.truncated.insert(r.path)
            } else {
                try reconcile(r, id, truncated: &table.truncated)
            }
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

    /// The bytes a FileContentsRecord holds (none for an empty file).
    static func storedBytes(_ c: FileContentsRecord, _ store: ImageStore) throws(GhostError) -> [UInt8] {
        try c.chunk.map { (id: ChunkID) throws(GhostError) in try Pipes.load(id, store) } ?? []
    }

    /// A small file whose contents are in the image: recreated if it is gone
    /// (the job's temporary files, deleted after the checkpoint), rewritten
    /// if the job was writing it and it changed since. A file the job only
    /// reads and that changed is left to `reconcile` (the user's input).
    static func putBack(_ r: FDRecord, _ id: FileIdentity, _ c: FileContentsRecord,
                        store: ImageStore) throws(GhostError) -> Bool {
        var st = stat()
        let exists = stat(r.path, &st) == 0
        let mtime = st.mtimeNanos
        if exists && Int64(st.st_size) == id.size && mtime == id.mtimeNanos { return true }   // as it was
        let writing = r.flags & O_ACCMODE != O_RDONLY
        if exists && !writing { return false }
        if exists && st.st_mode & S_IFMT != S_IFREG { return false }
        let bytes = try storedBytes(c, store)
        let fd = Glibc.open(r.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_t(c.mode))
        if fd < 0 {
            throw .fileChanged("cannot recreate \(r.path) (fd \(r.fd) of the job): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        try Pipes.writeAll(fd, bytes, what: r.path)
        if !exists { Log.info("recreated \(r.path) (\(bytes.count) bytes), which the job had open, from the image") }
        return true
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
}

/// The descriptors ghost-run / ghost-resume inherited from whoever started
/// them (stdio, and under Slurm a few more), recorded before ghost opens any
/// of its own. A job descriptor that is one of these belongs to the launcher's
/// environment and is bound to the resuming tool's descriptor of the same
/// number; ghost's own descriptors (image store, locks, pipes used while
/// restoring) never are.
public enum LauncherDescriptors {
    nonisolated(unsafe) private static var recorded: Set<Int32>? = nil

    /// Call first thing in main().
    public static func record() {
        recorded = Set(((try? ProcFS.listDir("/proc/self/fd")) ?? []).compactMap { Int32($0) })
    }

    static var inherited: Set<Int32> {
        recorded ?? Set(((try? ProcFS.listDir("/proc/self/fd")) ?? []).compactMap { Int32($0) })
    }
}
