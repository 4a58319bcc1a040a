import Glibc

/// Thin POSIX wrappers: retry on EINTR, loop on short reads and writes, and
/// turn failures into `ImageError.io` naming the full path.
enum StoreIO {
    static func openAt(_ dir: Int32, _ rel: String, _ flags: Int32, _ mode: mode_t = 0o600) -> Int32 {
        while true {
            let fd = openat(dir, rel, flags | O_CLOEXEC, mode)
            if fd >= 0 || errno != EINTR { return fd }
        }
    }

    /// 0 on success, else the errno.
    static func writeAll(_ fd: Int32, _ p: UnsafeRawPointer?, _ count: Int) -> Int32 {
        guard var p, count > 0 else { return 0 }
        var left = count
        while left > 0 {
            let n = write(fd, p, left)
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            if n == 0 { return EIO }  // should not happen for regular files; do not spin
            p += n
            left -= n
        }
        return 0
    }

    /// The first `limit` bytes of the small file `rel` (no symlink followed),
    /// or the step that failed ("open": ENOENT means there is none; "read") and its errno.
    static func readSmallFile(_ dir: Int32, _ rel: String, limit: Int) -> Result<[UInt8], StoreIOFailure> {
        let fd = openAt(dir, rel, O_RDONLY | O_NOFOLLOW)
        if fd < 0 { return .failure(StoreIOFailure(op: "open", code: errno)) }
        defer { closeQuietly(fd) }
        var buf = [UInt8](repeating: 0, count: limit)
        let (n, e) = buf.withUnsafeMutableBytes { preadAll(fd, $0.baseAddress!, $0.count, at: 0) }
        return e == 0 ? .success(Array(buf[0..<n])) : .failure(StoreIOFailure(op: "read", code: e))
    }

    /// Reads up to `count` bytes at `offset`; returns how many (fewer only at end of file) or the errno.
    /// `direct` (an O_DIRECT descriptor): a short read ends the file, so no
    /// read is retried at the unaligned offset it leaves.
    static func preadAll(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ count: Int, at offset: Int,
                         direct: Bool = false) -> (Int, Int32) {
        var done = 0
        while done < count {
            let n = pread(fd, p + done, count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                return (done, errno)
            }
            if n == 0 { break }
            done += n
            if direct && (offset + done) % PackWriter.alignment != 0 { break }
        }
        return (done, 0)
    }

    static func fsyncRetry(_ fd: Int32) -> Int32 {
        while fsync(fd) != 0 {
            if errno != EINTR { return errno }
        }
        return 0
    }

    /// close() can report a deferred write error (NFS). On Linux the fd is gone
    /// even when close() fails, so it is never retried; EINTR is not an error.
    static func closeChecked(_ fd: Int32) -> Int32 {
        if close(fd) != 0 && errno != EINTR { return errno }
        return 0
    }

    /// For descriptors only read from, or already failed: nothing to report.
    static func closeQuietly(_ fd: Int32) {
        _ = close(fd)
    }

    /// Names in a directory (without "." and ".."), or nil and the errno.
    static func listDirectory(_ dir: Int32, _ rel: String) -> ([String]?, Int32) {
        let fd = openAt(dir, rel, O_RDONLY | O_DIRECTORY)
        if fd < 0 { return (nil, errno) }
        guard let d = fdopendir(fd) else {
            let e = errno
            close(fd)
            return (nil, e)
        }
        defer { closedir(d) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(d) else {
                if errno != 0 { return (nil, errno) }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return (names, 0)
    }

    static func statAt(_ dir: Int32, _ rel: String, follow: Bool = true) -> stat? {
        var st = stat()
        return fstatat(dir, rel, &st, follow ? 0 : AT_SYMLINK_NOFOLLOW) == 0 ? st : nil
    }

    // syncfs and renameat2 are GNU extensions the Swift Glibc module does not
    // export; look them up once at run time (they are in every glibc since 2.28).
    private typealias SyncFS = @convention(c) (Int32) -> Int32
    private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
    private static let syncfsFunction: SyncFS? =
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), "syncfs").map { unsafeBitCast($0, to: SyncFS.self) }
    private static let renameat2Function: RenameAt2? =
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), "renameat2").map { unsafeBitCast($0, to: RenameAt2.self) }

    /// Flushes every dirty file of the file system holding `fd`. 0 or errno.
    static func syncFileSystem(_ fd: Int32) -> Int32 {
        guard let f = syncfsFunction else { return ENOSYS }
        return f(fd) == 0 ? 0 : errno
    }

    /// rename() that fails with EEXIST instead of replacing an existing file.
    /// Where the file system lacks RENAME_NOREPLACE, checks first and renames
    /// (the writer lock already excludes other writers). 0 or errno.
    static func renameNoReplace(_ dir: Int32, _ from: String, _ to: String) -> Int32 {
        if let f = renameat2Function {
            if f(dir, from, dir, to, 1 /* RENAME_NOREPLACE */) == 0 { return 0 }
            let e = errno
            if e != EINVAL && e != ENOSYS && e != ENOTSUP { return e }
        }
        if statAt(dir, to, follow: false) != nil { return EEXIST }
        return renameat(dir, from, dir, to) == 0 ? 0 : errno
    }
}

extension StoreIO {
    /// Writes `count` bytes at `offset` (loops on short writes). 0 or errno.
    static func pwriteAll(_ fd: Int32, _ p: UnsafeRawPointer, _ count: Int, at offset: UInt64) -> Int32 {
        var done = 0
        while done < count {
            let n = pwrite(fd, p + done, count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            if n == 0 { return EIO }
            done += n
        }
        return 0
    }

    private typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
    private static let syncFileRangeFunction: SyncFileRange? =
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sync_file_range").map { unsafeBitCast($0, to: SyncFileRange.self) }

    /// Starts writeback of a file range without waiting for it (a hint;
    /// durability still comes from fsync).
    static func startWriteback(_ fd: Int32, from offset: UInt64, count: UInt64) {
        _ = syncFileRangeFunction?(fd, Int64(offset), Int64(count), 2 /* SYNC_FILE_RANGE_WRITE */)
    }
}

extension StoreIO {
    /// Reads into all of `iov` from `offset`; returns bytes read (fewer only at end of file) or the errno.
    static func preadvAll(_ fd: Int32, _ iov: inout [iovec], at offset: UInt64) -> (Int, Int32) {
        var off = off_t(offset)
        var first = 0, done = 0
        while first < iov.count {
            let n = iov.withUnsafeMutableBufferPointer { b in
                preadv(fd, b.baseAddress! + first, Int32(b.count - first), off)
            }
            if n < 0 {
                if errno == EINTR { continue }
                return (done, errno)
            }
            if n == 0 { break }
            off += off_t(n)
            done += n
            var left = n
            while first < iov.count && left >= iov[first].iov_len {
                left -= iov[first].iov_len
                first += 1
            }
            if left > 0 {
                iov[first].iov_base = iov[first].iov_base! + left
                iov[first].iov_len -= left
            }
        }
        return (done, 0)
    }
}

/// A failed StoreIO step and its errno, as an Error for Result.
struct StoreIOFailure: Error { let op: String; let code: Int32 }
