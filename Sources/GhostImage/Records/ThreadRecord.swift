/// One thread: registers, FPU/vector state, and per-thread kernel state.
public struct ThreadRecord: Codable, Sendable {
    public var tid: Int32
    /// struct user_regs_struct as 27 UInt64 (r15 ... gs), after any syscall-restart fix-up.
    public var regs: [UInt64]
    /// NT_X86_XSTATE buffer (XSAVE layout, standard format).
    public var xstate: [UInt8]
    public var sigmask: UInt64
    /// Raw 128-byte siginfo_t of each signal pending for this thread only.
    public var pending: [[UInt8]]
    public var sigaltstack: AltStack
    public var clearChildTid: UInt64
    public var robustList: UInt64
    public var robustListLen: UInt64
    public var rseq: RseqRecord?
    /// When the thread was stopped inside a blocking system call: what to do on resume.
    public var syscallRestart: String?
    /// Name, CPU affinity, nice value, policy (nil in images from before).
    public var scheduling: SchedulingRecord?

    public init(tid: Int32, regs: [UInt64], xstate: [UInt8], sigmask: UInt64, pending: [[UInt8]],
                sigaltstack: AltStack, clearChildTid: UInt64, robustList: UInt64, robustListLen: UInt64,
                rseq: RseqRecord?, syscallRestart: String?) {
        self.tid = tid; self.regs = regs; self.xstate = xstate; self.sigmask = sigmask
        self.pending = pending; self.sigaltstack = sigaltstack; self.clearChildTid = clearChildTid
        self.robustList = robustList; self.robustListLen = robustListLen; self.rseq = rseq
        self.syscallRestart = syscallRestart
    }
}

public struct AltStack: Codable, Sendable {
    public var sp: UInt64
    public var flags: Int32
    public var size: UInt64
    public init(sp: UInt64, flags: Int32, size: UInt64) { self.sp = sp; self.flags = flags; self.size = size }
}

public struct RseqRecord: Codable, Sendable {
    public var abi: UInt64
    public var length: UInt32
    public var flags: UInt32
    public var signature: UInt32
    public init(abi: UInt64, length: UInt32, flags: UInt32, signature: UInt32) {
        self.abi = abi; self.length = length; self.flags = flags; self.signature = signature
    }
}
