import Glibc
import CGhostSys

/// A userfaultfd of another process's address space. userfaultfd(2) binds
/// the new descriptor to the caller's memory, so the process creates it
/// itself (an injected call, with UFFD_USER_MODE_ONLY: what an unprivileged
/// user may create when vm.unprivileged_userfaultfd is 0), ghost takes a
/// duplicate with pidfd_getfd, and the process's copy is closed again: the
/// job never sees it.
enum Userfaultfd {
    /// ghost's descriptor, or the errno of the step that failed.
    static func inject(_ ctx: ProcessContext) -> Result<Int32, Errno> {
        let r: Int64
        do { r = try ctx.syscall.call(Int(GHOST_SYS_USERFAULTFD), UInt64(O_CLOEXEC | O_NONBLOCK) | 1 /* UFFD_USER_MODE_ONLY */) }
        catch { return .failure(Errno(EIO)) }
        if r < 0 { return .failure(Errno(Int32(-r))) }
        let mine = ghost_grab_fd(ctx.pid, Int32(r))
        let grabErrno = errno
        _ = try? ctx.syscall.call(SYS.close, UInt64(r))
        return mine < 0 ? .failure(Errno(grabErrno)) : .success(mine)
    }

    /// The errnos that mean this kernel or user cannot have one at all.
    static func isUnavailable(_ e: Errno) -> Bool { e.code == ENOSYS || e.code == EINVAL || e.code == EPERM }

    struct Errno: Error {
        let code: Int32
        init(_ code: Int32) { self.code = code }
        var text: String { String(cString: strerror(code)) }
    }
}
