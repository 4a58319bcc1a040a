import Glibc
import GhostImage

/// Timers of a process: setitimer's three interval timers and timer_create's
/// POSIX timers. Both are per process and only the process can read them
/// (getitimer, timer_gettime), so they are read by injected calls; they are
/// rebuilt the same way, late, once the husk has its memory, threads and
/// signal handlers, with all signals still blocked, so nothing fires early.
enum TimerState {
    static let itimerWhich: [Int32] = [0, 1, 2]   // ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF
    static let sigevSignal: Int32 = 0, sigevNone: Int32 = 1, sigevThread: Int32 = 2, sigevThreadID: Int32 = 4
    /// prctl(PR_TIMER_CREATE_RESTORE_IDS, ON/OFF) (Linux 6.17): timer_create
    /// then takes the ID to use from *created_timer_id.
    static let prTimerCreateRestoreIDs: UInt64 = 77

    // MARK: capture

    /// `innerTid` maps a thread ID as ghost sees it to the job's.
    static func capture(ctx: ProcessContext, innerTid: (pid_t) -> pid_t) throws(GhostError) -> TimerRecord? {
        var itimers: [IntervalTimer] = []
        for which in itimerWhich {
            try ctx.syscall.check("getitimer(\(which))", SYS.getitimer, UInt64(which), ctx.scratch.address)
            let v = try ctx.scratch.get(32)   // struct itimerval: interval {sec, usec}, value {sec, usec}
            let interval = v.u64(at: 0) * 1_000_000 + v.u64(at: 8), value = v.u64(at: 16) * 1_000_000 + v.u64(at: 24)
            // A periodic timer that fired while the job was frozen reads 0 until
            // its signal is taken: it is still armed, due after one interval.
            if value != 0 || interval != 0 {
                itimers.append(IntervalTimer(which: which, intervalMicros: interval, valueMicros: value == 0 ? interval : value))
            }
        }
        var posix: [PosixTimer] = []
        let text: String
        do { text = try ProcFS.readText("/proc/\(ctx.pid)/timers") } catch {
            throw .unsupported("cannot read /proc/\(ctx.pid)/timers (\(error)); without it (a kernel built without "
                + "CONFIG_CHECKPOINT_RESTORE) ghost cannot see the job's POSIX timers")
        }
        for var t in try parseProcTimers(text, pid: ctx.pid) {
            try ctx.syscall.check("timer_gettime(\(t.id))", SYS.timer_gettime, UInt64(t.id), ctx.scratch.address)
            let v = try ctx.scratch.get(32)   // struct itimerspec: interval {sec, nsec}, value {sec, nsec}
            t.intervalNanos = v.u64(at: 0) * 1_000_000_000 + v.u64(at: 8)
            t.valueNanos = v.u64(at: 16) * 1_000_000_000 + v.u64(at: 24)
            t.tid = t.notify & sigevThreadID != 0 ? innerTid(t.tid) : 0
            posix.append(t)
        }
        if itimers.isEmpty && posix.isEmpty { return nil }
        return TimerRecord(itimers: itimers, posix: posix.sorted { $0.id < $1.id })
    }

    /// /proc/PID/timers: blocks of "ID: n", "signal: signo/sigev_value(hex)",
    /// "notify: signal|none|thread/pid|tid.N", "ClockID: c".
    static func parseProcTimers(_ text: String, pid: pid_t) throws(GhostError) -> [PosixTimer] {
        var out: [PosixTimer] = []
        var cur: PosixTimer?
        func bad(_ line: Substring) -> GhostError {
            .unsupported("cannot read /proc/\(pid)/timers (line '\(line)'); ghost does not know this kernel's format")
        }
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { throw bad(line) }
            let key = line[..<colon], val = line[line.index(after: colon)...].trimmingCharacters(in: " ")
            switch key {
            case "ID":
                if let c = cur { out.append(c) }
                guard let id = Int32(val) else { throw bad(line) }
                cur = PosixTimer(id: id, clock: 0, notify: 0, signal: 0, value: 0, tid: 0, valueNanos: 0, intervalNanos: 0)
            case "signal":
                let parts = val.split(separator: "/")
                guard parts.count == 2, let sig = Int32(parts[0]), let v = UInt64(parts[1], radix: 16) else { throw bad(line) }
                cur?.signal = sig; cur?.value = v
            case "notify":
                let parts = val.split(separator: "/")
                guard parts.count == 2 else { throw bad(line) }
                let how: Int32
                switch parts[0] {
                case "signal": how = sigevSignal
                case "none": how = sigevNone
                case "thread": how = sigevThread
                default: throw bad(line)
                }
                let target = parts[1].split(separator: ".")
                guard target.count == 2, let id = Int32(target[1]) else { throw bad(line) }
                cur?.notify = how | (target[0] == "tid" ? sigevThreadID : 0)
                cur?.tid = id
            case "ClockID":
                guard let c = Int32(val) else { throw bad(line) }
                cur?.clock = c
            default:
                throw bad(line)
            }
        }
        if let c = cur { out.append(c) }
        return out
    }

    // MARK: restore

    /// Recreates the timers in the stopped husk, each POSIX timer with its old
    /// ID (the program holds it), then arms them. Threads must exist already
    /// (SIGEV_THREAD_ID targets one) and signals must be blocked.
    /// Without namespaces the process has a new PID: `pidThen` (the old
    /// main thread, the only one) becomes `pidNow` for SIGEV_THREAD_ID.
    static func restore(_ rec: TimerRecord, ctx: ProcessContext, pidThen: pid_t, pidNow: pid_t) throws(GhostError) {
        let posix = rec.posix.map { t in
            var t = t
            if t.notify & sigevThreadID != 0 && t.tid == pidThen { t.tid = pidNow }
            return t
        }
        try createPosixTimers(posix, ctx: ctx)
        for t in posix where t.valueNanos != 0 {
            try ctx.scratch.put(.le(t.intervalNanos / 1_000_000_000, t.intervalNanos % 1_000_000_000,
                                    t.valueNanos / 1_000_000_000, t.valueNanos % 1_000_000_000))
            try ctx.syscall.check("timer_settime(\(t.id))", SYS.timer_settime, UInt64(t.id), 0, ctx.scratch.address, 0)
        }
        for t in rec.itimers {
            try ctx.scratch.put(.le(t.intervalMicros / 1_000_000, t.intervalMicros % 1_000_000,
                                    t.valueMicros / 1_000_000, t.valueMicros % 1_000_000))
            try ctx.syscall.check("setitimer(\(t.which))", SYS.setitimer, UInt64(t.which), ctx.scratch.address, 0)
        }
    }

    /// With PR_TIMER_CREATE_RESTORE_IDS the kernel takes each ID as given.
    /// Older kernels hand out IDs in ascending order in a fresh process: gaps
    /// are filled with placeholder timers, deleted afterwards.
    private static func createPosixTimers(_ timers: [PosixTimer], ctx: ProcessContext) throws(GhostError) {
        guard !timers.isEmpty else { return }
        let on = try ctx.syscall.call(SYS.prctl, prTimerCreateRestoreIDs, 1)
        let exact = on == 0
        var placeholders: [UInt64] = []
        for t in timers.sorted(by: { $0.id < $1.id }) {
            // struct sigevent: sigev_value (8), sigev_signo (4), sigev_notify (4), then _tid; 64 bytes.
            var ev = Array<UInt8>.le(t.value) + Array<UInt8>.le32(UInt32(bitPattern: t.signal), UInt32(bitPattern: t.notify),
                                                                  UInt32(bitPattern: t.tid))
            ev += [UInt8](repeating: 0, count: 64 - ev.count)
            try ctx.scratch.put(ev, at: 0)
            while true {
                try ctx.scratch.put(Array<UInt8>.le32(UInt32(bitPattern: t.id)), at: 64)
                let what = "recreating timer \(t.id) (clock \(t.clock), signal \(t.signal))"
                try ctx.syscall.check(what, SYS.timer_create, UInt64(bitPattern: Int64(t.clock)), ctx.scratch.address,
                                      ctx.scratch.address + 64)
                let got = Int32(bitPattern: try ctx.scratch.get(4, at: 64).u32(at: 0))
                if got == t.id { break }
                if exact || got > t.id {
                    throw .restore("timer \(t.id) of process \(ctx.pid) was recreated as \(got); this kernel cannot "
                        + "give timers their IDs back (PR_TIMER_CREATE_RESTORE_IDS needs Linux 6.17)")
                }
                placeholders.append(UInt64(got))
            }
        }
        if exact { try ctx.syscall.check("prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)", SYS.prctl, prTimerCreateRestoreIDs, 0) }
        for id in placeholders { try ctx.syscall.check("timer_delete(\(id))", SYS.timer_delete, id) }
    }
}

extension SYS {
    static let getitimer = 36, setitimer = 38
    static let timer_create = 222, timer_settime = 223, timer_gettime = 224, timer_delete = 226
}
