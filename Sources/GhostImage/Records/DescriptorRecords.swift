/// Records of the descriptor kinds beyond files and pipes (see FDRecord.Kind).
/// Each is stored once per open file description, on the first descriptor
/// that has it; descriptors sharing it point there with `sameAs`.

/// A unix domain socket. `id` is its inode at checkpoint time; a connected
/// socket whose peer is also in the job names it in `peer`, and the pair is
/// rebuilt as one socketpair.
public struct UnixSocketRecord: Codable, Sendable {
    public enum State: String, Codable, Sendable {
        /// Connected to `peer`, another socket of the job.
        case connected
        /// Connected, but the other end was closed by the job (reads give the
        /// queued bytes, then end of file).
        case peerClosed
        /// A datagram socket connect()ed to `peer`, a bound socket of the job
        /// that is not connected back (others may send to it too).
        case connectedToBound
        /// Listening on `name`.
        case listening
        /// Not connected (possibly bound to `name`).
        case unconnected
    }
    public var id: UInt64
    /// SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5.
    public var type: Int32
    public var state: State
    public var peer: UInt64?
    /// Bound address (sun_path bytes; first byte 0 for an abstract name).
    public var name: [UInt8]?
    public var backlog: Int32?
    /// Bytes waiting in this socket's receive queue; for datagram and
    /// seqpacket sockets `messages` holds the length of each message.
    public var data: ChunkID?
    public var dataLength: Int
    public var messages: [Int]?
    /// SO_SNDBUF / SO_RCVBUF as getsockopt reports them, SO_PASSCRED, and
    /// the kernel's shutdown bits (1 receive, 2 send).
    public var sndbuf: Int32?
    public var rcvbuf: Int32?
    public var passcred: Bool?
    public var shutdown: UInt32?

    public init(id: UInt64, type: Int32, state: State) {
        self.id = id; self.type = type; self.state = state; self.dataLength = 0
    }
}

/// eventfd: its counter and EFD_SEMAPHORE (O_NONBLOCK is in the FDRecord flags).
public struct EventFDRecord: Codable, Sendable {
    public var count: UInt64
    public var semaphore: Bool
    public init(count: UInt64, semaphore: Bool) { self.count = count; self.semaphore = semaphore }
}

/// timerfd: clock, time left until the next expiry (0 = disarmed), period,
/// and expirations not read yet.
public struct TimerFDRecord: Codable, Sendable {
    public var clockid: Int32
    public var remainingNanos: UInt64
    public var intervalNanos: UInt64
    public var ticks: UInt64
    public init(clockid: Int32, remainingNanos: UInt64, intervalNanos: UInt64, ticks: UInt64) {
        self.clockid = clockid; self.remainingNanos = remainingNanos; self.intervalNanos = intervalNanos; self.ticks = ticks
    }
}

/// signalfd: the set of signals it reads (bit n-1 for signal n).
public struct SignalFDRecord: Codable, Sendable {
    public var mask: UInt64
    public init(mask: UInt64) { self.mask = mask }
}

/// epoll: the interest entries this process adds on restore (each entry is
/// added once, by a process of the job that holds both the epoll and the
/// watched descriptor at number `fd`).
public struct EpollRecord: Codable, Sendable {
    public struct Entry: Codable, Sendable {
        public var fd: Int32
        /// epoll_event.events, with EPOLLET / EPOLLONESHOT / EPOLLEXCLUSIVE bits.
        public var events: UInt32
        public var data: UInt64
        public init(fd: Int32, events: UInt32, data: UInt64) { self.fd = fd; self.events = events; self.data = data }
    }
    public var entries: [Entry]
    public init(entries: [Entry]) { self.entries = entries }
}
