/// Process-wide signal state: handlers, alternate stack of the main thread is
/// per thread (see ThreadRecord), and the shared pending queue.
public struct SignalRecord: Codable, Sendable {
    /// One entry per signal whose disposition is not SIG_DFL.
    public var actions: [SignalAction]
    /// Raw 128-byte siginfo_t of each signal pending for the whole process.
    public var sharedPending: [[UInt8]]
    /// The process was stopped by job control (kill -STOP, ^Z) at checkpoint
    /// time: the signal that stopped it. A resume stops it again. Absent
    /// when it was running (and in images from before this was recorded).
    public var groupStop: Int32?
    public init(actions: [SignalAction], sharedPending: [[UInt8]], groupStop: Int32? = nil) {
        self.actions = actions; self.sharedPending = sharedPending; self.groupStop = groupStop
    }
}

/// The kernel's struct sigaction for one signal.
public struct SignalAction: Codable, Sendable {
    public var signal: Int32
    public var handler: UInt64
    public var flags: UInt64
    public var restorer: UInt64
    public var mask: UInt64
    public init(signal: Int32, handler: UInt64, flags: UInt64, restorer: UInt64, mask: UInt64) {
        self.signal = signal; self.handler = handler; self.flags = flags
        self.restorer = restorer; self.mask = mask
    }
}
