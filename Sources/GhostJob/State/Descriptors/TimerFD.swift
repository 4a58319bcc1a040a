import Glibc
import GhostImage
import CGhostSys

/// timerfd: clock, time left, period and unread expirations from fdinfo.
/// Recreated armed with the time that was left (relative, so a different
/// node's clocks do not matter); unread expirations are set back with
/// TFD_IOC_SET_TICKS.
enum TimerFD {
    static let sysTimerfdCreate = 283

    static func capture(pid: pid_t, into r: inout FDRecord) throws(GhostError) {
        let info = try FileState.fdinfo(pid, r.fd)
        func value(_ k: String) -> String? { info.first { $0.key == k }?.value }
        /// "(sec, nsec)" -> nanoseconds.
        func nanos(_ k: String) -> UInt64? {
            guard let v = value(k) else { return nil }
            let parts = v.trimmingCharacters(in: "()").split(separator: ",").map { UInt64($0.trimmingCharacters(in: " ")) }
            guard parts.count == 2, let s = parts[0], let n = parts[1] else { return nil }
            return s * 1_000_000_000 + n
        }
        guard let clock = value("clockid").flatMap({ Int32($0) }), let left = nanos("it_value"),
              let period = nanos("it_interval") else {
            throw .unsupported("fd \(r.fd) of process \(pid) is a timerfd whose state this kernel does not report in fdinfo")
        }
        r.kind = .timerfd
        r.offset = 0
        r.timerfd = TimerFDRecord(clockid: clock, remainingNanos: left, intervalNanos: period,
                                  ticks: value("ticks").flatMap { UInt64($0) } ?? 0)
    }

    static func open(_ r: FDRecord) throws(GhostError) -> Int32 {
        guard let t = r.timerfd else { throw .badImage("timerfd record without its state for fd \(r.fd)") }
        let fd = Int32(ghost_syscall6(sysTimerfdCreate, Int(t.clockid), Int(O_CLOEXEC | (r.flags & O_NONBLOCK)), 0, 0, 0, 0))
        if fd < 0 { throw .errno("timerfd_create(clock \(t.clockid)) for fd \(r.fd) of the job") }
        // A timer that expired just as it was captured shows 0 left: it is disarmed unless periodic.
        if t.remainingNanos > 0 || t.intervalNanos > 0,
           ghost_timerfd_arm(fd, max(t.remainingNanos, 1), t.intervalNanos) != 0 {
            let e = GhostError.errno("arming timerfd \(r.fd)"); close(fd); throw e
        }
        if t.ticks > 0 && ghost_timerfd_set_ticks(fd, t.ticks) != 0 {
            let e = GhostError.errno("setting the \(t.ticks) unread expirations of timerfd \(r.fd) (TFD_IOC_SET_TICKS)")
            close(fd); throw e
        }
        return fd
    }
}
