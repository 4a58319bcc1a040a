/// One open file descriptor of a process.
public struct FDRecord: Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// A regular file or directory, reopened by path.
        case file
        /// The same open file as one of the launcher's own descriptors (its
        /// stdin/stdout/stderr, or one it inherited): bound to the resuming
        /// tool's descriptor of the same number `stdio`.
        case stdio
        /// A character device (/dev/null, /dev/zero, /dev/urandom, a tty...), reopened by path.
        case device
        /// One end of a pipe whose both ends the job holds; see `pipe`.
        case pipe
        /// A memfd or POSIX shared memory file: the SharedMemoryRecord `object`,
        /// reopened with the descriptor's flags and offset.
        case sharedMemory
        /// A named pipe (FIFO), reopened by `path`; `pipe` holds its buffered bytes.
        case fifo
        /// A unix domain socket; see `socket`.
        case unixSocket
        /// eventfd(2); see `eventfd`.
        case eventfd
        /// timerfd_create(2); see `timerfd`.
        case timerfd
        /// signalfd(2); see `signalfd`.
        case signalfd
        /// epoll_create(2); see `epoll`.
        case epoll
    }
    public var fd: Int32
    public var kind: Kind
    public var path: String
    /// open(2) flags as /proc/PID/fdinfo reports them (access mode, O_APPEND, O_NONBLOCK...).
    public var flags: Int32
    public var cloexec: Bool
    public var offset: Int64
    /// For `stdio`: the launcher's descriptor number (0, 1, 2 for stdio).
    public var stdio: Int32?
    /// Size and mtime of the file at checkpoint time (regular files only).
    public var identity: FileIdentity?
    /// An earlier descriptor sharing this open file description (a dup, or
    /// inherited across fork): restored as the same description, so the
    /// offset stays shared. In process `sameAsPid`, or this one when nil.
    public var sameAs: Int32?
    public var sameAsPid: Int32?
    /// For `pipe`: which pipe, and (on one of its records) the bytes that were
    /// buffered in it.
    public var pipe: PipeRecord?
    /// For `sharedMemory`: the SharedMemoryRecord id.
    public var object: Int?
    /// For a small regular file (`file`): its contents at the checkpoint, to
    /// recreate it if it is gone at resume (a compiler's temporary file) or,
    /// if the job was writing it, to put it back exactly as it was.
    public var contents: FileContentsRecord?
    /// Per-kind state of the other kinds (absent in older images).
    public var socket: UnixSocketRecord?
    public var eventfd: EventFDRecord?
    public var timerfd: TimerFDRecord?
    public var signalfd: SignalFDRecord?
    public var epoll: EpollRecord?
    /// Advisory locks held through this descriptor (absent when none).
    public var locks: [FileLockRecord]?

    public init(fd: Int32, kind: Kind, path: String, flags: Int32, cloexec: Bool, offset: Int64,
                stdio: Int32?, identity: FileIdentity?, sameAs: Int32? = nil, pipe: PipeRecord? = nil) {
        self.fd = fd; self.kind = kind; self.path = path; self.flags = flags
        self.cloexec = cloexec; self.offset = offset; self.stdio = stdio; self.identity = identity; self.sameAs = sameAs; self.pipe = pipe
    }
}

/// A pipe inside the job: identified by its inode at checkpoint time; its
/// buffered bytes are stored as a chunk so they are neither lost nor duplicated.
public struct PipeRecord: Codable, Sendable {
    public var id: UInt64
    public var capacity: Int
    public var data: ChunkID?
    public var dataLength: Int
    public init(id: UInt64, capacity: Int, data: ChunkID?, dataLength: Int) {
        self.id = id; self.capacity = capacity; self.data = data; self.dataLength = dataLength
    }
}

/// The bytes of a small file (chunk nil when empty) and its permission bits.
public struct FileContentsRecord: Codable, Sendable {
    public var chunk: ChunkID?
    public var length: Int
    public var mode: UInt32
    public init(chunk: ChunkID?, length: Int, mode: UInt32) { self.chunk = chunk; self.length = length; self.mode = mode }
}

/// An advisory lock held through a descriptor, as /proc/PID/fdinfo lists it:
/// flock(2), a POSIX record lock (fcntl F_SETLK, owned by the process) or an
/// open file description lock (F_OFD_SETLK). `end` is the last byte, nil
/// for "to end of file"; flock locks cover the whole file.
public struct FileLockRecord: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case flock, posix, ofd }
    public var kind: Kind
    public var write: Bool
    public var start: Int64
    public var end: Int64?
    public init(kind: Kind, write: Bool, start: Int64, end: Int64?) {
        self.kind = kind; self.write = write; self.start = start; self.end = end
    }
}

/// A regular file the job created (born after the job started, owned by its
/// user) in its working directories or TMPDIR, closed at checkpoint time: a
/// compiler's object file waiting for the link, a sorted run waiting for the
/// merge, a results file a script appends to. At resume a small one is
/// recreated from `contents` if it is gone (the failed run deleted it after
/// the checkpoint), and any one that has grown since while its bytes up to
/// the checkpoint's size are still those stored (the failed run appended to
/// it) is cut back to that size. Otherwise an existing file is not touched.
public struct ClosedFileRecord: Codable, Sendable {
    public var path: String
    public var mtimeNanos: Int64
    /// The whole file; or, when `size` is set, only its last bytes up to `size`.
    public var contents: FileContentsRecord
    /// Absent for a file stored whole (up to 4 MiB). Set for a bigger one:
    /// its size at the checkpoint; it is never recreated, only cut back.
    public var size: Int64?
    public init(path: String, mtimeNanos: Int64, contents: FileContentsRecord, size: Int64? = nil) {
        self.path = path; self.mtimeNanos = mtimeNanos; self.contents = contents; self.size = size
    }
}
