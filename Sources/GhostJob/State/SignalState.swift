import Glibc
import GhostImage

/// Process-wide signal state: the disposition of every signal and the
/// process's shared pending queue.
enum SignalState {
    /// Signals with a handler or SIG_IGN (from /proc/PID/status SigCgt/SigIgn);
    /// the rest are SIG_DFL and need nothing.
    static func capture(ctx: ProcessContext, status: [String: String], dequeuedShared: [[UInt8]]) throws(GhostError) -> SignalRecord {
        let caught = UInt64(status["SigCgt"] ?? "0", radix: 16) ?? 0
        let ignored = UInt64(status["SigIgn"] ?? "0", radix: 16) ?? 0
        var actions: [SignalAction] = []
        for sig in 1...64 where (caught | ignored) >> UInt64(sig - 1) & 1 == 1 {
            try ctx.syscall.check("rt_sigaction(\(sig))", SYS.rt_sigaction, UInt64(sig), 0, ctx.scratch.address, 8)
            let a = try ctx.scratch.get(32)
            actions.append(SignalAction(signal: Int32(sig), handler: a.u64(at: 0), flags: a.u64(at: 8),
                                        restorer: a.u64(at: 16), mask: a.u64(at: 24)))
        }
        let shared = try ctx.tracee.peekPending(shared: true) + dequeuedShared
        return SignalRecord(actions: actions, sharedPending: shared)
    }

    static func restoreActions(_ rec: SignalRecord, ctx: ProcessContext) throws(GhostError) {
        for a in rec.actions where a.signal != SIGKILL && a.signal != SIGSTOP {
            try ctx.scratch.put(.le(a.handler, a.flags, a.restorer, a.mask))
            try ctx.syscall.check("rt_sigaction(\(a.signal))", SYS.rt_sigaction, UInt64(a.signal), ctx.scratch.address, 0, 8)
        }
    }

    static func restorePending(_ rec: SignalRecord, ctx: ProcessContext, tgid: pid_t) throws(GhostError) {
        for info in rec.sharedPending {
            let sig = UInt64(info.u32(at: 0))
            try ctx.scratch.put(info, at: 256)
            try ctx.syscall.check("queueing pending signal \(sig)", SYS.rt_sigqueueinfo, UInt64(tgid), sig, ctx.scratch.address + 256)
        }
    }
}
