import Glibc
import GhostImage
import CGhostSys

/// signalfd: its signal mask, from fdinfo. The signals themselves are
/// pending on the process (SignalState), not on the descriptor.
enum SignalFD {
    static let sysSignalfd4 = 289

    static func capture(pid: pid_t, into r: inout FDRecord) throws(GhostError) {
        guard let mask = try FileState.fdinfo(pid, r.fd).first(where: { $0.key == "sigmask" })
            .flatMap({ UInt64($0.value, radix: 16) }) else {
            throw .unsupported("fd \(r.fd) of process \(pid) is a signalfd whose mask this kernel does not report in fdinfo")
        }
        r.kind = .signalfd
        r.offset = 0
        r.signalfd = SignalFDRecord(mask: mask)
    }

    static func open(_ r: FDRecord) throws(GhostError) -> Int32 {
        guard var mask = r.signalfd?.mask else { throw .badImage("signalfd record without its mask for fd \(r.fd)") }
        let fd = withUnsafeMutablePointer(to: &mask) { p in
            Int32(ghost_syscall6(sysSignalfd4, -1, Int(bitPattern: p), 8, Int(O_CLOEXEC | (r.flags & O_NONBLOCK)), 0, 0))
        }
        if fd < 0 { throw .errno("signalfd for fd \(r.fd) of the job") }
        return fd
    }
}
