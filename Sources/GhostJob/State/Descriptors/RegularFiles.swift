import Glibc
import GhostImage

/// Regular files, directories and character devices, reopened by path with
/// their flags and offsets; and descriptors that were the launcher's own
/// (stdio), bound to the resuming tool's so output goes to the new step's log.
enum RegularFiles {
    /// Fills `r` for a file, directory or device; false for anything else.
    static func capture(_ st: stat, pid: pid_t, into r: inout FDRecord) throws(GhostError) -> Bool {
        let type = st.st_mode & S_IFMT
        if type == S_IFREG || type == S_IFDIR {
            r.kind = .file
            r.identity = FileIdentity(path: r.path, size: Int64(st.st_size),
                                      mtimeNanos: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
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
        if LauncherDescriptors.inherited.contains(k) && fcntl(k, F_GETFD) >= 0 { return k }
        // The launcher had it (inherited from its own parent); this one does not.
        let fd = Glibc.open("/dev/null", O_RDWR | O_CLOEXEC)
        table.opened.append(fd)
        Log.warn("fd \(r.fd) of the job was the launcher's fd \(k) (\(r.path)), which ghost-resume does not have; "
            + "it is /dev/null now")
        return fd
    }

    static func open(_ r: FDRecord, table: FileState.Table) throws(GhostError) -> Int32 {
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
