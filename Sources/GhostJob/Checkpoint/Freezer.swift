import Glibc
import CGhostSys

/// Stops a process with PTRACE_SEIZE + PTRACE_INTERRUPT (no signal is sent,
/// so the job cannot notice) and lets it go again.
struct Freezer {
    let pid: pid_t
    /// Signals the freeze took off the queue (a signal-delivery-stop came
    /// before the interrupt): part of the image, and queued again before thaw.
    private(set) var dequeued: [[UInt8]] = []
    private(set) var frozen = false
    /// The signal that stopped the task (SIGSTOP, SIGTSTP, ...) when it was
    /// in a group stop (stopped by job control) as it was frozen; 0 if it was
    /// running. Detaching leaves such a task stopped; a resume stops it again.
    private(set) var groupStopSignal: Int32 = 0

    init(pid: pid_t) { self.pid = pid }

    mutating func freeze() throws(GhostError) {
        if try !tryFreeze() { throw .system("process \(pid) exited while being checkpointed", errno: ESRCH) }
    }

    /// Like `freeze`, but a task that is gone or already dead (a zombie, or
    /// exiting) is not an error: returns false, and the caller looks again.
    mutating func tryFreeze() throws(GhostError) -> Bool {
        if ghost_ptrace(PtraceRequest.seize, pid, 0, PtraceRequest.optExitKill) != 0 {
            let e = errno
            if e == ESRCH { return false }
            if e == EPERM {
                let st = try? ProcFS.stat(pid)
                if st == nil || st?.fields.first == "Z" || st?.fields.first == "X" { return false }
                try Self.checkNotTraced(pid)
                throw .system("cannot trace process \(pid) (\(st?.comm ?? "?")); is it setuid, or is ptrace "
                    + "restricted (kernel.yama.ptrace_scope)?", errno: e)
            }
            throw .system("PTRACE_SEIZE of process \(pid)", errno: e)
        }
        frozen = true
        if ghost_ptrace(PtraceRequest.interrupt, pid, 0, 0) != 0 { throw .errno("PTRACE_INTERRUPT of \(pid)") }
        let t = Tracee(tid: pid)
        let status: Int32
        do { status = try t.waitStop() } catch {
            frozen = false     // it exited after the seize: nothing left to let go
            return false
        }
        let sig = ghost_wstopsig(status)
        if ghost_wptrace_event(status) == PtraceRequest.eventStop {
            // PTRACE_INTERRUPT reports SIGTRAP; a task in a group stop, its stop signal.
            if sig != SIGTRAP { groupStopSignal = sig }
            try Self.restartInterruptedWait(t)
        } else if sig != SIGTRAP {
            // Stopped on the way to deliver `sig` (a SIGSTOP too, which would
            // otherwise be lost on detach): keep it.
            dequeued.append(try t.getSiginfo())
        }
        return true
    }

    /// System calls the kernel ends with EINTR, not a restart, when a stop
    /// (SIGSTOP, a debugger, this freeze) interrupts them, even where no
    /// signal handler runs (signal(7), "Interruption of system calls ... by
    /// stop signals"): epoll_wait, epoll_pwait, epoll_pwait2,
    /// rt_sigtimedwait, semop, semtimedop, io_getevents, io_pgetevents, and
    /// socket calls waiting with SO_RCVTIMEO/SO_SNDTIMEO (accept, accept4,
    /// recvfrom, recvmsg, recvmmsg, sendto, sendmsg, sendmmsg).
    static let eintrOnStop: Set<Int64> = [232, 281, 441, 128, 65, 220, 208, 333, 43, 288, 45, 47, 299, 44, 46, 307]

    /// A task this freeze stopped while it waited in one of `eintrOnStop`
    /// would see that call fail with EINTR when let go (or when restored),
    /// which a program need not expect: a checkpoint must go unnoticed. Its
    /// return value is set to -ERESTARTNOHAND instead, so the kernel
    /// reissues the call on the way out of the stop, as for read or wait
    /// (and still ends it with EINTR if a signal handler runs first). Such
    /// a call returns EINTR only before anything was transferred; a timeout
    /// starts again from its full length.
    static func restartInterruptedWait(_ t: Tracee) throws(GhostError) {
        var regs = try t.getRegs()
        let eintr: Int64 = -4
        guard Int64(bitPattern: regs.rax) == eintr, eintrOnStop.contains(Int64(bitPattern: regs.orig_rax)) else { return }
        regs.rax = UInt64(bitPattern: ThreadState.erestartnohand)
        try t.setRegs(regs)
    }

    /// A task held by another tracer (a debugger, strace) cannot be frozen:
    /// say which tracer, so the user can detach it.
    static func checkNotTraced(_ pid: pid_t) throws(GhostError) {
        guard let status = try? ProcFS.status(pid), let tracer = pid_t(status["TracerPid"] ?? "0"),
              tracer != 0, tracer != getpid() else { return }
        let tracerName = (try? ProcFS.stat(tracer))?.comm ?? "?"
        let name = status["Name"] ?? "?"
        func inJob(_ p: pid_t) -> String {
            let inner = JobNamespace.innerPid(p)
            return inner == p ? "" : ", pid \(inner) in the job"
        }
        throw .unsupported("process \(pid) (\(name)\(inJob(pid))) of the job is traced by process \(tracer) "
            + "(\(tracerName)\(inJob(tracer))); "
            + "a process can have only one tracer, so ghost cannot freeze it: detach or end the debugger/strace "
            + "and checkpoint again")
    }

    mutating func thaw() {
        guard frozen else { return }
        Tracee(tid: pid).detach()
        frozen = false
    }

    /// Lets go without capturing: a signal the freeze took is delivered as
    /// it would have been.
    mutating func thawDelivering() {
        guard frozen else { return }
        let sig = dequeued.first.map { Int32(bitPattern: $0.u32(at: 0)) } ?? 0
        Tracee(tid: pid).detach(signal: sig)
        dequeued = []
        frozen = false
    }
}
