import Glibc
import Synchronization

/// One image directory: the checkpoints of one job and the memory chunks they
/// share. Layout, file formats and the commit protocol: docs/IMAGE-FORMAT.md.
///
/// Every file is reached relative to a descriptor of the directory opened (and
/// checked) once, so the checks cannot be dodged by swapping the path later.
public final class ImageStore: @unchecked Sendable {
    /// Chunks larger than this are refused (and a header claiming more is damage).
    public static let maxChunkSize = 64 << 20

    public let path: String
    let dirFD: Int32
    let zstd = ZstdContextPool()
    let stagingBuffers = StagingBufferPool()
    /// Whether packs are written with O_DIRECT (see PackWriter); set before writing.
    var directIO = PackWriter.directIOByDefault
    private let state = Mutex(State())
    /// Where chunks are (from every checkpoint file read so far) and open packs.
    let index = Mutex(ChunkIndex())

    struct ChunkIndex {
        var locations: [ChunkID: ChunkLocation] = [:]
        /// All checkpoint files were read into `locations` once.
        var loadedAll = false
        var packFDs: [UInt64: Int32] = [:]
        /// The same packs opened with O_DIRECT, for large reads (-1: refused).
        var directPackFDs: [UInt64: Int32] = [:]
    }

    private struct State {
        var lockFD: Int32 = -1
        var closed = false
        var nextWriterSerial = 0
        var activeWriters: Set<Int> = []
        /// Next pack number to hand out (0: not looked up yet).
        var nextPack: UInt64 = 0
    }

    /// Opens an image directory. With `create`, makes it (and missing parents,
    /// mode 0700) and initialises it if it is new or empty. Refuses a directory
    /// that is not ours, that others can write to, or that is not an image.
    public init(path: String, create: Bool) throws(ImageError) {
        let path = ImageStore.normalize(path)
        if create { try ImageStore.makeDirectories(path) }
        let fd = StoreIO.openAt(AT_FDCWD, path, O_RDONLY | O_DIRECTORY)
        if fd < 0 {
            let e = errno
            if e == ENOENT || e == ENOTDIR { throw .notAnImageDirectory(path: path) }
            throw .io(op: "open image directory", path: path, errno: e)
        }
        do {
            try ImageStore.checkPrivate(fd: fd, path: path)
            try ImageStore.checkParent(of: path)
            try ImageStore.openOrInitialise(fd: fd, path: path, create: create)
        } catch {
            StoreIO.closeQuietly(fd)
            throw error
        }
        self.path = path
        self.dirFD = fd
    }

    deinit {
        let lockFD = state.withLock { $0.lockFD }
        if lockFD >= 0 { StoreIO.closeQuietly(lockFD) }
        for fd in index.withLock({ Array($0.packFDs.values) + $0.directPackFDs.values }) where fd >= 0 {
            StoreIO.closeQuietly(fd)
        }
        StoreIO.closeQuietly(dirFD)
    }

    /// Takes the exclusive writer lock (flock on DIR/lock, which records
    /// "pid@hostname" for the error message of the next one who tries).
    /// Held until close() or deinit; taking it again is a no-op.
    /// beginCheckpoint() and prune() take it themselves.
    public func lockForWriting() throws(ImageError) {
        try state.withLock { (s: inout State) throws(ImageError) in
            if s.closed { throw .closed(path: path) }
            if s.lockFD >= 0 { return }
            let fd = StoreIO.openAt(dirFD, ImageLayout.lock, O_RDWR | O_CREAT | O_NOFOLLOW, 0o600)
            if fd < 0 { throw io("open lock file", ImageLayout.lock) }
            while flock(fd, LOCK_EX | LOCK_NB) != 0 {
                let e = errno
                if e == EINTR { continue }
                defer { StoreIO.closeQuietly(fd) }
                if e == EWOULDBLOCK { throw .locked(path: path, holder: ImageStore.lockHolder(fd)) }
                throw .io(op: "lock", path: full(ImageLayout.lock), errno: e)
            }
            let me = Array("\(getpid())@\(ImageStore.hostname())\n".utf8)
            // Only informative: a failure to record the holder does not matter.
            if ftruncate(fd, 0) == 0 { _ = me.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } }
            s.lockFD = fd
        }
    }

    /// Releases the writer lock. Reading still works; writing needs a new ImageStore.
    public func close() {
        state.withLock { s in
            if s.lockFD >= 0 { StoreIO.closeQuietly(s.lockFD) }
            s.lockFD = -1
            s.closed = true
        }
    }

    /// Starts writing checkpoint max(existing)+1. Takes the writer lock.
    /// `zstdLevel` is clamped to what the library supports (1 = fast, the default).
    public func beginCheckpoint(zstdLevel: Int32 = 1) throws(ImageError) -> CheckpointWriter {
        try lockForWriting()
        for dir in [ImageLayout.chunks, ImageLayout.checkpoints, ImageLayout.packs] {
            if mkdirat(dirFD, dir, 0o700) != 0 && errno != EEXIST { throw io("create directory", dir) }
        }
        let number = (checkpointNumbers().last ?? 0) + 1
        // Chunks of committed checkpoints were made durable before those commits,
        // so they can be reused without being written again. Anything else on
        // disk (left by a crashed writer) is rewritten rather than trusted.
        var committed: [ChunkID: ChunkLocation] = [:]
        for n in checkpointNumbers() {
            if let c = try? readCheckpoint(n, wantPayload: false) {
                for (id, l) in zip(c.chunks, c.locations) { committed[id] = l }
            }
        }
        let serial = state.withLock { s in
            s.nextWriterSerial += 1
            s.activeWriters.insert(s.nextWriterSerial)
            return s.nextWriterSerial
        }
        let level = min(max(zstdLevel, ZstdScratch.levels.lowerBound), ZstdScratch.levels.upperBound)
        return CheckpointWriter(store: self, number: number, level: level, committed: committed, serial: serial)
    }

    // MARK: - For the writer and the other store files

    /// Throws unless this store may write (not closed, lock held).
    func checkWritable() throws(ImageError) {
        try state.withLock { (s: inout State) throws(ImageError) in
            if s.closed || s.lockFD < 0 { throw .closed(path: path) }
        }
    }

    /// A pack number no pack on disk has and no other writer of this store
    /// was given (above every pack on disk, leftovers of crashed writers
    /// included). Other processes are excluded by the writer lock.
    func takePackNumber() -> UInt64 {
        let onDisk = (packNumbers().last ?? 0) + 1
        return state.withLock { s in
            s.nextPack = max(s.nextPack, onDisk)
            defer { s.nextPack += 1 }
            return s.nextPack
        }
    }

    func writerFinished(serial: Int) {
        _ = state.withLock { $0.activeWriters.remove(serial) }
    }

    var hasActiveWriters: Bool { state.withLock { !$0.activeWriters.isEmpty } }

    func full(_ rel: String) -> String { path + "/" + rel }

    /// An .io error for `rel` from the current errno.
    func io(_ op: String, _ rel: String, _ code: Int32 = errno) -> ImageError {
        .io(op: op, path: full(rel), errno: code)
    }

    // MARK: - Opening

    static func normalize(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p.isEmpty ? "." : p
    }

    /// mkdir -p, creating missing components private (0700).
    private static func makeDirectories(_ path: String) throws(ImageError) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + part
            if mkdir(prefix, 0o700) == 0 {
                chmod(prefix, 0o700)  // the umask must not make it unusable (0500) either
            } else if errno != EEXIST {
                throw .io(op: "create directory", path: prefix, errno: errno)
            }
        }
    }

    /// The directory must be ours and not writable by group or others.
    private static func checkPrivate(fd: Int32, path: String) throws(ImageError) {
        var st = stat()
        if fstat(fd, &st) != 0 { throw .io(op: "stat", path: path, errno: errno) }
        try checkPrivate(st, path: path)
    }

    static func checkPrivate(_ st: stat, path: String) throws(ImageError) {
        if st.st_uid != geteuid() { throw .foreignOwner(path: path, uid: st.st_uid) }
        if st.st_mode & 0o022 != 0 {
            let who = st.st_mode & 0o020 != 0 ? (st.st_mode & 0o002 != 0 ? "group and others" : "its group") : "others"
            throw .unsafePermissions(path: path, reason: "it is writable by \(who) (mode \(octal(st.st_mode))); "
                + "run chmod go-w \(path)")
        }
    }

    /// A parent anyone may write to, without the sticky bit, lets anyone swap the image.
    private static func checkParent(of path: String) throws(ImageError) {
        let parent: String
        if let slash = path.lastIndex(of: "/") {
            parent = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            parent = "."
        }
        var st = stat()
        guard stat(parent, &st) == 0 else { return }  // unreadable parent: nothing to judge
        if st.st_mode & 0o002 != 0 && st.st_mode & S_ISVTX == 0 {
            throw .unsafePermissions(path: path, reason: "its parent directory \(parent) is writable by everyone "
                + "without the sticky bit (mode \(octal(st.st_mode))), so anyone could replace the image; "
                + "put the image in a directory only you can write")
        }
    }

    static func octal(_ mode: mode_t) -> String {
        let digits = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    private static func openOrInitialise(fd: Int32, path: String, create: Bool) throws(ImageError) {
        switch StoreIO.readSmallFile(fd, ImageLayout.marker, limit: 512) {
        case .success(let bytes):
            guard let version = ImageLayout.parseMarker(bytes) else {
                throw .notAnImageDirectory(path: path)
            }
            guard version == ImageLayout.formatVersion else {
                throw .unsupportedVersion(path: path + "/" + ImageLayout.marker, found: version)
            }
            for sub in [ImageLayout.chunks, ImageLayout.checkpoints, ImageLayout.packs] {
                if let st = StoreIO.statAt(fd, sub, follow: false) { try checkPrivate(st, path: path + "/" + sub) }
            }
            return
        case .failure(let e) where e.op != "open" || e.code != ENOENT:
            throw .io(op: e.op, path: path + "/" + ImageLayout.marker, errno: e.code)
        case .failure:
            break
        }
        guard create else { throw .notAnImageDirectory(path: path) }
        // Only take over a directory that is empty or holds what an interrupted
        // initialisation leaves (the marker is written last).
        let (names, le) = StoreIO.listDirectory(fd, ".")
        guard let names else { throw .io(op: "list", path: path, errno: le) }
        let ours: Set<String> = [ImageLayout.chunks, ImageLayout.checkpoints, ImageLayout.packs, ImageLayout.lock]
        guard names.allSatisfy({ ours.contains($0) || $0.hasPrefix(ImageLayout.tempPrefix) }) else {
            throw .notAnImageDirectory(path: path)
        }
        for sub in [ImageLayout.chunks, ImageLayout.checkpoints, ImageLayout.packs] {
            if mkdirat(fd, sub, 0o700) == 0 {
                fchmodat(fd, sub, 0o700, 0)
            } else if errno != EEXIST {
                throw .io(op: "create directory", path: path + "/" + sub, errno: errno)
            }
        }
        let text = Array(ImageLayout.markerText(version: ImageLayout.formatVersion).utf8)
        try writeFileAtomically(dir: fd, dirPath: path, name: ImageLayout.marker, bytes: text)
    }

    /// temp file (`.tmp-PID-name`), fsync, rename, fsync directory: the file appears whole or not at all.
    static func writeFileAtomically(dir: Int32, dirPath: String, name: String, bytes: [UInt8]) throws(ImageError) {
        let tempName = "\(ImageLayout.tempPrefix)\(getpid())-\(name)"
        let fd = StoreIO.openAt(dir, tempName, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0o600)
        if fd < 0 { throw .io(op: "create", path: dirPath + "/" + tempName, errno: errno) }
        var e = bytes.withUnsafeBytes { StoreIO.writeAll(fd, $0.baseAddress, $0.count) }
        if e == 0 { e = StoreIO.fsyncRetry(fd) }
        let ce = StoreIO.closeChecked(fd)
        if e == 0 { e = ce }
        if e == 0 && renameat(dir, tempName, dir, name) != 0 { e = errno }
        if e != 0 {
            unlinkat(dir, tempName, 0)
            throw .io(op: "write", path: dirPath + "/" + name, errno: e)
        }
        _ = StoreIO.fsyncRetry(dir)
    }

    private static func lockHolder(_ fd: Int32) -> String {
        var buf = [UInt8](repeating: 0, count: 256)
        let (n, _) = buf.withUnsafeMutableBytes { StoreIO.preadAll(fd, $0.baseAddress!, $0.count, at: 0) }
        let text = String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        return text.isEmpty ? "unknown process" : text
    }

    static func hostname() -> String {
        var buf = [UInt8](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "unknown-host" }
        return String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
    }
}
