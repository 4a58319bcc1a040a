/// The timers of one process: interval timers (setitimer) and POSIX timers
/// (timer_create). Times are relative (remaining time at the checkpoint).
public struct TimerRecord: Codable, Sendable {
    /// Armed setitimer timers (ITIMER_REAL 0, ITIMER_VIRTUAL 1, ITIMER_PROF 2).
    public var itimers: [IntervalTimer]
    /// Every timer_create timer, armed or not, with its ID.
    public var posix: [PosixTimer]
    public init(itimers: [IntervalTimer], posix: [PosixTimer]) {
        self.itimers = itimers; self.posix = posix
    }
}

public struct IntervalTimer: Codable, Sendable {
    public var which: Int32
    public var intervalMicros: UInt64
    public var valueMicros: UInt64
    public init(which: Int32, intervalMicros: UInt64, valueMicros: UInt64) {
        self.which = which; self.intervalMicros = intervalMicros; self.valueMicros = valueMicros
    }
}

public struct PosixTimer: Codable, Sendable {
    /// The timer ID the program holds (timer_t).
    public var id: Int32
    /// Clock ID as given to timer_create (CPU clocks are negative).
    public var clock: Int32
    /// sigev_notify: SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_THREAD_ID 4.
    public var notify: Int32
    public var signal: Int32
    /// sigev_value (sival_ptr / sival_int) delivered with the signal.
    public var value: UInt64
    /// For SIGEV_THREAD_ID: the thread (as the job sees it).
    public var tid: Int32
    /// 0 = disarmed.
    public var valueNanos: UInt64
    public var intervalNanos: UInt64
    public init(id: Int32, clock: Int32, notify: Int32, signal: Int32, value: UInt64, tid: Int32,
                valueNanos: UInt64, intervalNanos: UInt64) {
        self.id = id; self.clock = clock; self.notify = notify; self.signal = signal; self.value = value
        self.tid = tid; self.valueNanos = valueNanos; self.intervalNanos = intervalNanos
    }
}
