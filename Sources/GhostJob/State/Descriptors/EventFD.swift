import Glibc
import GhostImage
import CGhostSys

/// eventfd: the counter and EFD_SEMAPHORE from fdinfo; recreated with the
/// counter written back (eventfd(2) takes only 32 bits of initial value).
enum EventFD {
    static let semaphoreFlag: Int32 = 1, sysEventfd2 = 290   // EFD_SEMAPHORE

    static func capture(pid: pid_t, into r: inout FDRecord) throws(GhostError) {
        let info = try FileState.fdinfo(pid, r.fd)
        guard let count = info.first(where: { $0.key == "eventfd-count" }).flatMap({ UInt64($0.value, radix: 16) }) else {
            throw .unsupported("fd \(r.fd) of process \(pid) is an eventfd whose counter this kernel does not report in fdinfo")
        }
        // Kernels before 6.6 do not say; EFD_SEMAPHORE is then taken as off.
        let sem = info.first { $0.key == "eventfd-semaphore" }?.value == "1"
        r.kind = .eventfd
        r.offset = 0
        r.eventfd = EventFDRecord(count: count, semaphore: sem)
    }

    static func open(_ r: FDRecord) throws(GhostError) -> Int32 {
        guard let e = r.eventfd else { throw .badImage("eventfd record without its state for fd \(r.fd)") }
        let flags = O_CLOEXEC | (e.semaphore ? semaphoreFlag : 0) | (r.flags & O_NONBLOCK)
        let fd = Int32(ghost_syscall6(sysEventfd2, 0, Int(flags), 0, 0, 0, 0))
        if fd < 0 { throw .errno("eventfd for fd \(r.fd) of the job") }
        if e.count > 0 {
            var v = e.count
            if write(fd, &v, 8) != 8 { let e = GhostError.errno("setting the counter of eventfd \(r.fd)"); close(fd); throw e }
        }
        return fd
    }
}
