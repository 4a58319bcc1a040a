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
    /// A lower descriptor of the same process sharing this open file
    /// description (dup): restored as a dup, so the offset stays shared.
    public var sameAs: Int32?

    public init(fd: Int32, kind: Kind, path: String, flags: Int32, cloexec: Bool, offset: Int64,
                stdio: Int32?, identity: FileIdentity?, sameAs: Int32? = nil) {
        self.fd = fd; self.kind = kind; self.path = path; self.flags = flags
        self.cloexec = cloexec; self.offset = offset; self.stdio = stdio; self.identity = identity; self.sameAs = sameAs
    }
}
