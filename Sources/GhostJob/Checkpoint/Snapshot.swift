import Glibc
import CGhostSys

/// A copy-on-write copy of a frozen job, made by injecting a fork into it.
/// The copy is the launcher's child (CLONE_PARENT), so the job never sees it;
/// it is traced from birth (CLONE_PTRACE) and stops before running any code,
/// and it dies with the tracer (PTRACE_O_EXITKILL is inherited). Its private
/// memory is the job's memory at the instant of the fork, whatever the job
/// writes afterwards, so it can be read while the job already runs again.
final class Snapshot {
    let pid: pid_t
    let memory: ProcessMemory
    private var alive = true

    /// `parent` is the job process's parent (outer PID), whose child the copy becomes.
    init(of ctx: ProcessContext, parent: pid_t) throws(GhostError) {
        let clonePtrace: UInt64 = 0x2000, cloneParent: UInt64 = 0x8000
        let sysClone = 56
        let r = try ctx.syscall.check("fork of a snapshot", sysClone, clonePtrace | cloneParent | UInt64(SIGCHLD), 0, 0, 0, 0)
        // The PID the job's namespace gave it; find ours among the parent's children.
        let inner = pid_t(r)
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
            memory = try ProcessMemory(pid: pid, writable: false)
        } catch {
            kill(pid, SIGKILL)
            var st: Int32 = 0
            waitpid(pid, &st, __WALL)
            throw error
        }
    }

    func discard() {
        guard alive else { return }
        alive = false
        kill(pid, SIGKILL)
        var st: Int32 = 0
        while waitpid(pid, &st, __WALL) < 0 && errno == EINTR {}
    }
}
