import Glibc
import CGhostSys
import GhostImage

/// Per-thread state: registers, FPU/SSE/AVX (xstate), signal mask and private
/// pending signals, alternate signal stack, clear_child_tid, robust futex
/// list and rseq registration.
enum ThreadState {
    static let erestartsys: Int64 = -512, erestartnointr: Int64 = -513
    static let erestartnohand: Int64 = -514, erestartRestartblock: Int64 = -516

    /// `dequeued` holds signals the freeze took off the queue (signal-delivery-stops).
    /// `mask` is the thread's signal mask from before the freeze blocked everything.
    static func capture(ctx: ProcessContext, tid: pid_t, mask: UInt64, dequeued: [[UInt8]]) throws(GhostError) -> ThreadRecord {
        let t = Tracee(tid: tid)
        let regs = try t.getRegs()
        let xstate = try t.getXState()
        let pending = try t.peekPending(shared: false) + dequeued

        // sigaltstack and clear_child_tid can only be asked by the thread itself.
        let prGetTidAddress: UInt64 = 40
        try ctx.syscall.check("sigaltstack", SYS.sigaltstack, 0, ctx.scratch.address)
        let ss = try ctx.scratch.get(24)
        try ctx.syscall.check("prctl(PR_GET_TID_ADDRESS)", SYS.prctl, prGetTidAddress, ctx.scratch.address + 64)
        let tidAddress = try ctx.scratch.get(8, at: 64).u64(at: 0)

        var head: UInt64 = 0, len: UInt64 = 0
        let r = withUnsafeMutablePointer(to: &head) { hp in
            withUnsafeMutablePointer(to: &len) { lp in
                ghost_syscall6(SYS.get_robust_list, Int(tid), Int(bitPattern: hp), Int(bitPattern: lp), 0, 0, 0)
            }
        }
        if r != 0 {
            throw .errno("get_robust_list of \(tid)")
        }
        var abi: UInt64 = 0, rlen: UInt32 = 0, rflags: UInt32 = 0, rsig: UInt32 = 0
        var rseq: RseqRecord? = nil
        if ghost_get_rseq(tid, &abi, &rlen, &rflags, &rsig) == 0 && abi != 0 {
            rseq = RseqRecord(abi: abi, length: rlen, flags: rflags, signature: rsig)
        }
        return ThreadRecord(tid: tid, regs: regs.asArray, xstate: xstate, sigmask: mask, pending: pending,
                            sigaltstack: AltStack(sp: ss.u64(at: 0), flags: Int32(bitPattern: ss.u32(at: 8)), size: ss.u64(at: 16)),
                            clearChildTid: tidAddress, robustList: head, robustListLen: len, rseq: rseq,
                            syscallRestart: describeSyscall(regs))
    }

    static func describeSyscall(_ r: ghost_regs_t) -> String? {
        let rax = Int64(bitPattern: r.rax), orig = Int64(bitPattern: r.orig_rax)
        guard orig >= 0, [erestartsys, erestartnointr, erestartnohand, erestartRestartblock].contains(rax) else { return nil }
        return "syscall \(orig) interrupted (\(rax))"
    }

    /// Kernel state the thread must set itself, by injected calls; before registers.
    static func restoreKernelState(_ t: ThreadRecord, ctx: ProcessContext) throws(GhostError) {
        if t.sigaltstack.flags & Int32(SS_DISABLE) == 0 && t.sigaltstack.size > 0 {
            try ctx.scratch.put(.le(t.sigaltstack.sp, UInt64(UInt32(bitPattern: t.sigaltstack.flags & ~Int32(SS_ONSTACK))), t.sigaltstack.size))
            try ctx.syscall.check("sigaltstack", SYS.sigaltstack, ctx.scratch.address, 0)
        }
        try ctx.syscall.call(SYS.set_tid_address, t.clearChildTid)
        if t.robustList != 0 {
            try ctx.syscall.check("set_robust_list", SYS.set_robust_list, t.robustList, t.robustListLen)
        }
        if let r = t.rseq {
            try ctx.syscall.check("rseq registration", SYS.rseq, r.abi, UInt64(r.length), 0, UInt64(r.signature))
        }
    }

    /// Queues the thread's private pending signals (the thread is its own
    /// sender, which the kernel allows for any si_code).
    /// `tgid` and `tid` are the PIDs as the process itself sees them.
    static func restorePending(_ t: ThreadRecord, ctx: ProcessContext, tgid: pid_t, tid: pid_t) throws(GhostError) {
        for info in t.pending {
            let sig = UInt64(info.u32(at: 0))
            try ctx.scratch.put(info, at: 256)
            try ctx.syscall.check("queueing pending signal \(sig)", SYS.rt_tgsigqueueinfo,
                                  UInt64(tgid), UInt64(tid), sig, ctx.scratch.address + 256)
        }
    }

    /// Final registers. A thread stopped inside a blocking system call is made
    /// to restart it; calls that needed the old process's restart block
    /// (nanosleep, clock_nanosleep, poll...) are restarted from their own
    /// arguments, with the remaining time where the kernel wrote it.
    static func restoreRegisters(_ t: ThreadRecord, tracee: Tracee, xfeatures: UInt64) throws(GhostError) {
        var regs = try ghost_regs_t(array: t.regs)
        let rax = Int64(bitPattern: regs.rax), orig = Int64(bitPattern: regs.orig_rax)
        if orig >= 0 && rax == erestartRestartblock {
            let timerAbstime: UInt64 = 1
            switch Int(orig) {
            case SYS.nanosleep where regs.rsi != 0: regs.rdi = regs.rsi
            case SYS.clock_nanosleep where regs.rsi & timerAbstime == 0 && regs.r10 != 0: regs.rdx = regs.r10
            default: break
            }
            regs.rax = UInt64(bitPattern: erestartnohand)  // the kernel rewinds rip and reissues orig_rax
        }
        try tracee.setRegs(regs)
        try tracee.setXState(try fitXState(t.xstate, tracee: tracee))
        try tracee.setSigmask(t.sigmask)
    }

    /// The image's xstate laid into a buffer of this CPU's size (features were checked before).
    static func fitXState(_ saved: [UInt8], tracee: Tracee) throws(GhostError) -> [UInt8] {
        var buf = try tracee.getXState()
        if buf.count == saved.count { return saved }
        for i in 0..<buf.count { buf[i] = i < saved.count ? saved[i] : 0 }
        return buf
    }

    /// XCR0 features recorded in an xstate buffer (the fx_sw_bytes the kernel fills in).
    static func xfeatures(of xstate: [UInt8]) -> UInt64 { xstate.count >= 480 ? xstate.u64(at: 472) : 3 }
}
