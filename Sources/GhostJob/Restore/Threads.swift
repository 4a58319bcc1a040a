import Glibc
import CGhostSys

/// Creating a restored process's other threads, and giving up the
/// capabilities the husk had for doing so.
enum Threads {
    /// clone3 injected into the process: a thread with TID `tid` (as the job
    /// sees it), traced from birth (CLONE_PTRACE) so it stops before running
    /// any code; its registers are set afterwards. Returns our TID for it.
    static func clone(_ tid: pid_t, ctx: ProcessContext, processOuter: pid_t) throws(GhostError) -> pid_t {
        let flags: UInt64 = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000 | 0x2000
        // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|PTRACE
        var args = Array<UInt8>.le(flags, 0, 0, 0, 0, 0, 0, 0)   // flags pidfd child_tid parent_tid exit_signal stack stack_size tls
        let tidAddr = ctx.scratch.address + 1024
        try ctx.scratch.put(Array<UInt8>.le32(UInt32(bitPattern: tid)), at: 1024)
        args += Array<UInt8>.le(tidAddr, 1, 0)                    // set_tid set_tid_size cgroup
        try ctx.scratch.put(args, at: 512)
        let sysClone3 = 435
        let r = try ctx.syscall.check("creating thread \(tid)", sysClone3, ctx.scratch.address + 512, UInt64(args.count))
        if pid_t(r) != tid { throw .restore("thread \(tid) was created as \(r)") }
        // Find our TID for it and wait for its first stop.
        for _ in 0..<1000 {
            for t in (try? ProcFS.tasks(processOuter)) ?? [] where JobNamespace.innerPid(t) == tid {
                _ = try Tracee(tid: t).waitStop()
                return t
            }
            usleep(1000)
        }
        throw .restore("thread \(tid) did not appear")
    }

    /// capset(all zero): no effective, permitted or inheritable capabilities,
    /// as for any program an ordinary user runs.
    static func dropCapabilities(ctx: ProcessContext) throws(GhostError) {
        let version3: UInt32 = 0x20080522
        var bytes = Array<UInt8>.le32(version3, 0)
        bytes += [UInt8](repeating: 0, count: 24)
        try ctx.scratch.put(bytes, at: 2048)
        let sysCapset = 126
        try ctx.syscall.check("dropping capabilities", sysCapset, ctx.scratch.address + 2048, ctx.scratch.address + 2056)
    }
}
