import Glibc
import CGhostSys
import GhostImage

/// A thread's name, CPU affinity, nice value and scheduling policy. All read
/// from outside; the name is set back by the thread itself (PR_SET_NAME), the
/// rest by ghost, which is the same user. A node with other CPUs gets the
/// affinity restricted to the CPUs that exist here (all of them if none do).
enum SchedulingState {
    static let sysSchedSetaffinity = 203, sysSchedGetaffinity = 204
    static let sysSchedSetscheduler = 144, sysSchedGetscheduler = 145
    static let schedOther: Int32 = 0, schedBatch: Int32 = 3, schedIdle: Int32 = 5
    static let maskWords = 16                     // 1024 CPUs

    /// `pid`/`tid`: outer IDs of the frozen thread.
    static func capture(pid: pid_t, tid: pid_t) throws(GhostError) -> SchedulingRecord {
        let name = ((try? ProcFS.readText("/proc/\(pid)/task/\(tid)/comm")) ?? "").trimmingCharacters(in: "\n")
        var mask = [UInt64](repeating: 0, count: maskWords)
        let n = mask.withUnsafeMutableBytes { ghost_syscall6(sysSchedGetaffinity, Int(tid), $0.count, Int(bitPattern: $0.baseAddress), 0, 0, 0) }
        if n < 0 { throw .errno("sched_getaffinity of thread \(tid)") }
        errno = 0
        let prio = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(tid))
        if prio == -1 && errno != 0 { throw .errno("getpriority of thread \(tid)") }
        let policy = Int32(truncatingIfNeeded: ghost_syscall6(sysSchedGetscheduler, Int(tid), 0, 0, 0, 0, 0))
        return SchedulingRecord(name: name, affinity: mask, nice: prio, policy: policy & 0xff)
    }

    /// `ctx`: the thread itself (stopped), `tid`: its outer ID.
    static func restore(_ r: SchedulingRecord, ctx: ProcessContext, tid: pid_t, warn: (String) -> Void) throws(GhostError) {
        if !r.name.isEmpty {
            let prSetName: UInt64 = 15
            let addr = try ctx.scratch.putString(String(r.name.utf8.prefix(15)) ?? r.name, at: 0)
            try ctx.syscall.check("prctl(PR_SET_NAME)", SYS.prctl, prSetName, addr)
        }
        // Affinity: only CPUs this node lets us use.
        var here = [UInt64](repeating: 0, count: maskWords)
        _ = here.withUnsafeMutableBytes { ghost_syscall6(sysSchedGetaffinity, 0, $0.count, Int(bitPattern: $0.baseAddress), 0, 0, 0) }
        var want = zip(r.affinity + [UInt64](repeating: 0, count: max(0, maskWords - r.affinity.count)), here).map { $0 & $1 }
        if want.allSatisfy({ $0 == 0 }) {
            warn("thread \(r.name) was bound to CPUs this node does not offer; it may run on any CPU here")
            want = here
        }
        if want != here {
            let rc = want.withUnsafeBytes { ghost_syscall6(sysSchedSetaffinity, Int(tid), $0.count, Int(bitPattern: $0.baseAddress), 0, 0, 0) }
            if rc != 0 { warn("cannot bind thread \(r.name) to its CPUs again: \(String(cString: strerror(errno)))") }
        }
        if r.policy == schedBatch || r.policy == schedIdle {
            var param: Int32 = 0
            if ghost_syscall6(sysSchedSetscheduler, Int(tid), Int(r.policy), Int(bitPattern: withUnsafeMutablePointer(to: &param) { UnsafeMutableRawPointer($0) }), 0, 0, 0) != 0 {
                warn("cannot give thread \(r.name) its scheduling policy \(r.policy) back: \(String(cString: strerror(errno)))")
            }
        }
        let now = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(tid))
        if r.nice != now && setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(tid), r.nice) != 0 {
            // Lowering nice needs privilege: the thread keeps ghost-resume's.
            warn("thread \(r.name) had nice \(r.nice); it runs at \(now) here (\(String(cString: strerror(errno))))")
        }
    }
}
