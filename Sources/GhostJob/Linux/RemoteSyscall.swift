import Glibc
import CGhostSys

/// Runs system calls inside a stopped tracee: point it at a `syscall`
/// instruction, load the arguments, single-step once, read rax, put the
/// registers back. Single-stepping (not PTRACE_SYSCALL) leaves the thread in a
/// stop from which the system call it was blocked in restarts normally.
struct RemoteSyscall {
    let tracee: Tracee
    /// Address of a `syscall` instruction (0f 05) in the tracee, usually in the vDSO.
    var gadget: UInt64

    @discardableResult
    func call(_ nr: Int, _ a0: UInt64 = 0, _ a1: UInt64 = 0, _ a2: UInt64 = 0,
              _ a3: UInt64 = 0, _ a4: UInt64 = 0, _ a5: UInt64 = 0) throws(GhostError) -> Int64 {
        let saved = try tracee.getRegs()
        var r = saved
        r.rip = gadget
        r.rax = UInt64(nr)
        r.orig_rax = UInt64.max  // -1: the kernel must not "restart" anything on resume
        r.rdi = a0; r.rsi = a1; r.rdx = a2; r.r10 = a3; r.r8 = a4; r.r9 = a5
        try tracee.setRegs(r)
        var steps = 0
        while true {
            try tracee.singlestep()
            let status = try tracee.waitStop()
            let after = try tracee.getRegs()
            if after.rip == gadget &+ 2 {
                try tracee.setRegs(saved)
                return Int64(bitPattern: after.rax)
            }
            // A stop that came before the instruction ran (e.g. SIGSTOP): step again.
            steps += 1
            if steps > 16 || ghost_wstopsig(status) == SIGKILL {
                try? tracee.setRegs(saved)
                throw .system("injected system call \(nr)(\(hex(a0)), \(hex(a1))) in \(tracee.tid) did not complete "
                    + "(stop \(hex(UInt64(UInt32(bitPattern: status)))) at \(hex(after.rip)), expected \(hex(gadget &+ 2)))", errno: EIO)
            }
        }
    }

    /// Like `call`, but turns a -errno result into an error naming `what`.
    @discardableResult
    func check(_ what: String, _ nr: Int, _ a0: UInt64 = 0, _ a1: UInt64 = 0, _ a2: UInt64 = 0,
               _ a3: UInt64 = 0, _ a4: UInt64 = 0, _ a5: UInt64 = 0) throws(GhostError) -> UInt64 {
        let r = try call(nr, a0, a1, a2, a3, a4, a5)
        if r < 0 && r > -4096 { throw .system("\(what) in process \(tracee.tid)", errno: Int32(-r)) }
        return UInt64(bitPattern: r)
    }

    /// Finds a `syscall` instruction in [start, end) of the tracee's memory.
    static func findGadget(memory: ProcessMemory, start: UInt64, end: UInt64) throws(GhostError) -> UInt64 {
        let bytes = try memory.readBytes(at: start, count: Int(end - start))
        for i in 0..<(bytes.count - 1) where bytes[i] == 0x0f && bytes[i + 1] == 0x05 {
            return start + UInt64(i)
        }
        throw .incompatible("no syscall instruction found in the vDSO at 0x\(String(start, radix: 16)); cannot drive process \(memory.pid)")
    }
}

/// x86_64 system call numbers used by ghost.
enum SYS {
    static let read = 0, write = 1, open = 2, close = 3, lseek = 8, mmap = 9, mprotect = 10
    static let munmap = 11, brk = 12, rt_sigaction = 13, rt_sigprocmask = 14, mremap = 25, madvise = 28
    static let getpid = 39, fcntl = 72, flock = 73, umask = 95, prctl = 157, sigaltstack = 131
    static let set_tid_address = 218, rt_sigqueueinfo = 129, rt_tgsigqueueinfo = 297
    static let set_robust_list = 273, get_robust_list = 274, openat = 257, prlimit64 = 302
    static let rseq = 334, nanosleep = 35, clock_nanosleep = 230, mincore = 27, wait4 = 61
}
