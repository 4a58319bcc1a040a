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

    init(pid: pid_t) { self.pid = pid }

    mutating func freeze() throws(GhostError) {
        if ghost_ptrace(PtraceRequest.seize, pid, 0, PtraceRequest.optExitKill) != 0 {
            let e = errno
            if e == EPERM {
                throw .system("cannot trace process \(pid) (is it setuid, or already traced by a debugger?)", errno: e)
            }
            throw .system("PTRACE_SEIZE of process \(pid)", errno: e)
        }
        frozen = true
        if ghost_ptrace(PtraceRequest.interrupt, pid, 0, 0) != 0 { throw .errno("PTRACE_INTERRUPT of \(pid)") }
        let t = Tracee(tid: pid)
        let status = try t.waitStop()
        let sig = ghost_wstopsig(status)
        if ghost_wptrace_event(status) != PtraceRequest.eventStop && sig != SIGTRAP && sig != SIGSTOP {
            // Stopped on the way to deliver `sig`: keep it.
            dequeued.append(try t.getSiginfo())
        }
    }

    mutating func thaw() {
        guard frozen else { return }
        Tracee(tid: pid).detach()
        frozen = false
    }
}
