import Glibc
import CGhostSys

/// A copy-on-write copy of a frozen job process, made by injecting a fork
/// into it. It is traced from birth (CLONE_PTRACE) and stops before running
/// any code, and it dies with the tracer (PTRACE_O_EXITKILL is inherited).
/// Its private memory is the process's memory at the instant of the fork,
/// whatever the job writes afterwards, so it can be read while the job runs.
///
/// The job must not see it. A process whose parent is ghost (or ghost-init)
/// gets a sibling (CLONE_PARENT): ghost's child. Any other process gets a
/// child with no exit signal: wait() and waitpid(-1) only report children
/// that signal SIGCHLD, so the job cannot reap it or be told about it. When
/// it is discarded, its zombie is reaped by a wait4 injected into the process
/// (stopped for that one call), so nothing is left behind.
final class Snapshot {
    enum Placement {
        /// CLONE_PARENT: the child of `parent` (outer PID), which is ghost or ghost-init.
        case sibling(parent: pid_t)
        /// The process's own child, invisible to its wait().
        case hiddenChild
    }
    let pid: pid_t
    let memory: ProcessMemory
    private let placement: Placement
    private let process: pid_t          // the process copied (outer PID)
    private let innerPid: pid_t         // the copy's PID as the process sees it
    private var alive = true

    init(of ctx: ProcessContext, placement: Placement) throws(GhostError) {
        let clonePtrace: UInt64 = 0x2000, cloneParent: UInt64 = 0x8000
        let sysClone = 56
        let flags: UInt64
        let parent: pid_t
        switch placement {
        case .sibling(let p): flags = clonePtrace | cloneParent | UInt64(SIGCHLD); parent = p
        case .hiddenChild: flags = clonePtrace; parent = ctx.pid
        }
        self.placement = placement
        process = ctx.pid
        let r = try ctx.syscall.check("fork of a snapshot", sysClone, flags, 0, 0, 0, 0)
        // The PID the job's namespace gave it; find ours among the parent's children.
        let inner = pid_t(r)
        innerPid = inner
        var found = inner
        for _ in 0..<100 {
            if let c = ((try? ProcFS.children(parent)) ?? []).first(where: { JobNamespace.innerPid($0) == inner }) {
                found = c
                break
            }
            usleep(1000)
        }
        pid = found
        do {
            _ = try Tracee(tid: pid).waitStop()
            memory = try ProcessMemory(pid: pid, writable: false, withoutPinning: true)
        } catch {
            alive = false
            Glibc.kill(pid, SIGKILL)
            var st: Int32 = 0
            waitpid(pid, &st, __WALL)
            if case .hiddenChild = placement { Self.reap(inner, in: ctx) }
            throw error
        }
    }

    private var killed = false

    /// Kills the copy without waiting: the kernel frees its address space
    /// (tens of ms for GiBs) while ghost goes on; discard() reaps it.
    func kill() {
        guard alive, !killed else { return }
        killed = true
        Glibc.kill(pid, SIGKILL)
    }

    func discard() {
        guard alive else { return }
        kill()
        alive = false
        var st: Int32 = 0
        while waitpid(pid, &st, __WALL) < 0 && errno == EINTR {}
        guard case .hiddenChild = placement else { return }
        // Reported to us as its tracer; now a zombie of the process, which
        // would never reap it: do it for the process.
        var f = Freezer(pid: process)
        do {
            try f.freeze()
            defer { f.thaw() }
            let memory = try ProcessMemory(pid: process, writable: true)
            guard let vdso = try ProcFS.mappings(process, flags: false).first(where: { $0.path == "[vdso]" }) else { return }
            let ctx = ProcessContext(pid: process, memory: memory,
                                     gadget: try RemoteSyscall.findGadget(memory: memory, start: vdso.start, end: vdso.end))
            Self.reap(innerPid, in: ctx)
        } catch {
            if Glibc.kill(process, 0) == 0 {
                Log.warn("could not reap the snapshot of process \(process) (\(error)); it stays as a zombie child of it")
            }
        }
    }

    /// wait4(pid, NULL, __WALL) inside the stopped process, with every signal
    /// blocked so nothing is delivered in between.
    private static func reap(_ inner: pid_t, in ctx: ProcessContext) {
        let t = ctx.tracee
        guard let mask = try? t.getSigmask() else { return }
        _ = try? t.setSigmask(~0)
        _ = try? ctx.syscall.check("reaping the snapshot", SYS.wait4, UInt64(inner), 0, UInt64(__WALL), 0)
        _ = try? t.setSigmask(mask)
    }
}
