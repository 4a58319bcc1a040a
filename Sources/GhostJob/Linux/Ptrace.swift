import Glibc
import CGhostSys

/// ptrace requests and options used by ghost (values from <linux/ptrace.h>).
enum PtraceRequest {
    static let cont: Int32 = 7
    static let singlestep: Int32 = 9
    static let detach: Int32 = 17
    static let setoptions: Int32 = 0x4200
    static let getsiginfo: Int32 = 0x4202
    static let seize: Int32 = 0x4206
    static let interrupt: Int32 = 0x4207
    static let eventStop: Int32 = 128
    static let optExitKill: UInt = 0x100000
}

let __WALL: Int32 = 0x40000000

/// A stopped thread of a traced process. All calls must come from the thread
/// that attached (ptrace ties the tracee to one tracer thread).
struct Tracee {
    let tid: pid_t

    /// Waits for the next stop of this thread; returns the raw wait status.
    func waitStop() throws(GhostError) -> Int32 {
        var status: Int32 = 0
        while true {
            let r = waitpid(tid, &status, __WALL)
            if r == tid { break }
            if r < 0 && errno == EINTR { continue }
            throw .errno("waitpid(\(tid))")
        }
        if ghost_wifexited(status) != 0 || ghost_wifsignaled(status) != 0 {
            ReapedChildren.record(tid, status: status)
            throw .system("process \(tid) exited while being checkpointed", errno: ESRCH)
        }
        return status
    }

    func getRegs() throws(GhostError) -> ghost_regs_t {
        var regs = ghost_regs_t()
        if ghost_getregs(tid, &regs) != 0 { throw .errno("PTRACE_GETREGS on \(tid)") }
        return regs
    }

    func setRegs(_ regs: ghost_regs_t) throws(GhostError) {
        var r = regs
        if ghost_setregs(tid, &r) != 0 { throw .errno("PTRACE_SETREGS on \(tid)") }
    }

    func getXState() throws(GhostError) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        let n = buf.withUnsafeMutableBytes { ghost_get_xstate(tid, $0.baseAddress, $0.count) }
        if n < 0 { throw .errno("PTRACE_GETREGSET NT_X86_XSTATE on \(tid)") }
        return Array(buf[0..<Int(n)])
    }

    func setXState(_ xs: [UInt8]) throws(GhostError) {
        let r = xs.withUnsafeBytes { ghost_set_xstate(tid, $0.baseAddress, $0.count) }
        if r != 0 { throw .errno("PTRACE_SETREGSET NT_X86_XSTATE on \(tid)") }
    }

    func getSigmask() throws(GhostError) -> UInt64 {
        var m: UInt64 = 0
        if ghost_get_sigmask(tid, &m) != 0 { throw .errno("PTRACE_GETSIGMASK on \(tid)") }
        return m
    }

    func setSigmask(_ m: UInt64) throws(GhostError) {
        if ghost_set_sigmask(tid, m) != 0 { throw .errno("PTRACE_SETSIGMASK on \(tid)") }
    }

    /// Raw siginfo_t (128 bytes) of the signal that caused a signal-delivery-stop.
    func getSiginfo() throws(GhostError) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: 128)
        let r = buf.withUnsafeMutableBytes {
            ghost_ptrace(PtraceRequest.getsiginfo, tid, 0, UInt(bitPattern: $0.baseAddress))
        }
        if r != 0 { throw .errno("PTRACE_GETSIGINFO on \(tid)") }
        return buf
    }

    /// Pending signals of the thread's own queue, or of the process's shared queue.
    func peekPending(shared: Bool) throws(GhostError) -> [[UInt8]] {
        var buf = [UInt8](repeating: 0, count: 128 * 64)
        var out: [[UInt8]] = []
        let n = buf.withUnsafeMutableBytes { ghost_peek_siginfo(tid, shared ? 1 : 0, $0.baseAddress, 64) }
        if n < 0 { throw .errno("PTRACE_PEEKSIGINFO on \(tid)") }
        for i in 0..<Int(n) { out.append(Array(buf[(i * 128)..<((i + 1) * 128)])) }
        return out
    }

    func singlestep() throws(GhostError) {
        if ghost_ptrace(PtraceRequest.singlestep, tid, 0, 0) != 0 { throw .errno("PTRACE_SINGLESTEP on \(tid)") }
    }

    func detach(signal: Int32 = 0) {
        _ = ghost_ptrace(PtraceRequest.detach, tid, 0, UInt(signal))
    }
}

extension ghost_regs_t {
    /// The 27 registers in user_regs_struct order, for the image.
    var asArray: [UInt64] {
        var copy = self
        return withUnsafeBytes(of: &copy) { Array($0.bindMemory(to: UInt64.self)) }
    }

    init(array: [UInt64]) throws(GhostError) {
        self.init()
        guard array.count == MemoryLayout<ghost_regs_t>.size / 8 else {
            throw .badImage("register set has \(array.count) entries, expected \(MemoryLayout<ghost_regs_t>.size / 8)")
        }
        withUnsafeMutableBytes(of: &self) { dst in
            array.withUnsafeBytes { dst.copyMemory(from: $0) }
        }
    }
}

/// Exit statuses collected by ptrace waits (a job can die mid-checkpoint, and
/// its status must still reach the supervisor). Used from the tracer thread only.
enum ReapedChildren {
    nonisolated(unsafe) private static var statuses: [pid_t: Int32] = [:]
    static func record(_ pid: pid_t, status: Int32) { statuses[pid] = status }
    static func take(_ pid: pid_t) -> Int32? { statuses.removeValue(forKey: pid) }
}
