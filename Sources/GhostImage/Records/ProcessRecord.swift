/// One process of the job: its identity, attributes, memory, files, signals and threads.
public struct ProcessRecord: Codable, Sendable {
    public var pid: Int32
    public var ppid: Int32
    public var pgid: Int32
    public var sid: Int32
    public var comm: String
    public var exe: FileIdentity
    /// The executable was deleted or replaced while the job ran: this
    /// SharedMemoryRecord holds it, and the restored process runs that copy.
    public var exeObject: Int?
    public var cwd: String
    public var umask: UInt32
    public var personality: UInt64
    public var rlimits: [RlimitRecord]
    public var mm: MMRecord
    public var vdso: VDSORecord?
    public var vmas: [VMARecord]
    public var fds: [FDRecord]
    public var signals: SignalRecord
    public var threads: [ThreadRecord]
    /// PR_GET_PDEATHSIG of the process (0 = none).
    public var pdeathsig: Int32
    /// A zombie (exited, not yet reaped by its parent): its raw wait status.
    /// Such a record has no memory, files or threads.
    public var zombieStatus: Int32?
    /// Interval and POSIX timers; absent in images from before timers were saved.
    public var timers: TimerRecord?

    public init(pid: Int32, ppid: Int32, pgid: Int32, sid: Int32, comm: String, exe: FileIdentity,
                cwd: String, umask: UInt32, personality: UInt64, rlimits: [RlimitRecord], mm: MMRecord,
                vdso: VDSORecord?, vmas: [VMARecord], fds: [FDRecord], signals: SignalRecord,
                threads: [ThreadRecord], pdeathsig: Int32, zombieStatus: Int32? = nil) {
        self.pid = pid; self.ppid = ppid; self.pgid = pgid; self.sid = sid; self.comm = comm
        self.exe = exe; self.cwd = cwd; self.umask = umask; self.personality = personality
        self.rlimits = rlimits; self.mm = mm; self.vdso = vdso; self.vmas = vmas; self.fds = fds
        self.signals = signals; self.threads = threads; self.pdeathsig = pdeathsig
        self.zombieStatus = zombieStatus
    }
}

/// A file as it was seen at checkpoint time, to notice when it changed.
public struct FileIdentity: Codable, Sendable, Equatable {
    public var path: String
    public var size: Int64
    public var mtimeNanos: Int64
    public init(path: String, size: Int64, mtimeNanos: Int64) {
        self.path = path; self.size = size; self.mtimeNanos = mtimeNanos
    }
}

public struct RlimitRecord: Codable, Sendable {
    public var resource: Int32
    public var soft: UInt64
    public var hard: UInt64
    public init(resource: Int32, soft: UInt64, hard: UInt64) {
        self.resource = resource; self.soft = soft; self.hard = hard
    }
}

/// The mm_struct fields restored with prctl(PR_SET_MM, PR_SET_MM_MAP).
public struct MMRecord: Codable, Sendable {
    public var startCode: UInt64, endCode: UInt64
    public var startData: UInt64, endData: UInt64
    public var startBrk: UInt64, brk: UInt64
    public var startStack: UInt64
    public var argStart: UInt64, argEnd: UInt64
    public var envStart: UInt64, envEnd: UInt64
    /// Raw auxiliary vector (pairs of UInt64, ending with AT_NULL).
    public var auxv: [UInt64]
    public init(startCode: UInt64, endCode: UInt64, startData: UInt64, endData: UInt64,
                startBrk: UInt64, brk: UInt64, startStack: UInt64, argStart: UInt64, argEnd: UInt64,
                envStart: UInt64, envEnd: UInt64, auxv: [UInt64]) {
        self.startCode = startCode; self.endCode = endCode; self.startData = startData
        self.endData = endData; self.startBrk = startBrk; self.brk = brk; self.startStack = startStack
        self.argStart = argStart; self.argEnd = argEnd; self.envStart = envStart; self.envEnd = envEnd
        self.auxv = auxv
    }
}
