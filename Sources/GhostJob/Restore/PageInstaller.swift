import Glibc
import CGhostSys
import Synchronization

/// Writes the stored pages of a restored process's fresh private anonymous
/// areas with UFFDIO_COPY. process_vm_writev makes the kernel fault in a
/// zeroed page and then copy into it; UFFDIO_COPY allocates the page and
/// copies once. Zeroing was over half of a resume's CPU time (perf: 54% in
/// clear_page), and 512 MiB went in 115-125 ms instead of 200-225 ms.
///
/// While an area is registered for missing pages, nothing else may write it:
/// any other write to a missing page fails (a kernel-mode fault on a
/// UFFD_USER_MODE_ONLY descriptor is refused), and the process must not run.
/// So the installer takes only the first layer of a resume (the base chunks,
/// into areas that hold no page yet) and is finished (everything
/// unregistered) before overlays are written and before anything else
/// touches the process. Wherever it cannot install a page, the caller writes
/// it the ordinary way; an area that failed is unregistered first.
final class PageInstaller: @unchecked Sendable {
    private let uffd: Int32
    /// Registered areas, start -> end; nil once finished (descriptor closed).
    private let areas: Mutex<[UInt64: UInt64]?>

    /// nil where userfaultfd cannot be had (the fill then goes through
    /// process_vm_writev). GHOST_NO_UFFD_RESTORE=1 turns it off.
    static func make(ctx: ProcessContext, areas: [(start: UInt64, end: UInt64)]) -> PageInstaller? {
        if areas.isEmpty { return nil }
        if let v = getenv("GHOST_NO_UFFD_RESTORE"), String(cString: v) != "0" { return nil }
        guard case .success(let fd) = Userfaultfd.inject(ctx) else { return nil }
        return PageInstaller(uffd: fd, areas: areas)
    }

    /// Takes over `uffd` (a fresh userfaultfd of the process whose `areas`
    /// are to be filled) and registers the areas; nil if none could be.
    init?(uffd: Int32, areas: [(start: UInt64, end: UInt64)]) {
        var registered: [UInt64: UInt64] = [:]
        if ghost_uffd_api_missing(uffd) == 0 {
            for a in areas where ghost_uffd_register_missing(uffd, a.start, a.end - a.start) == 0 {
                registered[a.start] = a.end
            }
        }
        if registered.isEmpty { close(uffd); return nil }
        self.uffd = uffd
        self.areas = Mutex(registered)
    }

    /// Pages installed by UFFDIO_COPY, and pages found present and written
    /// the ordinary way (for tests and timings).
    let installed = Atomic<Int>(0), presentWrites = Atomic<Int>(0)

    deinit { finish() }

    /// Whether the area starting at `start` is registered.
    func covers(_ start: UInt64) -> Bool { areas.withLock { $0?[start] != nil } }

    /// Installs `runs` of area `area` from `source` (the runs' bytes, in
    /// order). A page that is present already is written through `memory`.
    /// False if the area could not be filled this way: it is unregistered
    /// then, and the caller writes the runs itself.
    func install(_ runs: [(address: UInt64, length: Int)], area: UInt64, from source: UnsafeRawBufferPointer,
                 memory: ProcessMemory) -> Bool {
        let ps = MemoryState.pageSize
        var offset = 0
        for r in runs {
            var done = 0, stalled = 0
            while done < r.length {
                var copied: UInt64 = 0
                let e = ghost_uffd_copy(uffd, r.address + UInt64(done), source.baseAddress! + offset + done,
                                        UInt64(r.length - done), &copied)
                done += Int(copied)
                installed.add(Int(copied) / ps, ordering: .relaxed)
                stalled = copied == 0 ? stalled + 1 : 0
                switch e {
                case 0:
                    continue
                case EAGAIN:   // the address space was changing (or a short copy): go on, within reason
                    if stalled > 100 { return giveUp(area) }
                case EEXIST:   // present already: an ordinary write does not fault
                    let page = UnsafeRawBufferPointer(rebasing: source[(offset + done)..<(offset + done + ps)])
                    guard memory.writeRanges([(r.address + UInt64(done), ps)], from: page) else { return giveUp(area) }
                    done += ps
                    presentWrites.add(1, ordering: .relaxed)
                default:
                    return giveUp(area)
                }
            }
            offset += r.length
        }
        return true
    }

    private func giveUp(_ area: UInt64) -> Bool {
        areas.withLock { a in
            if let end = a?.removeValue(forKey: area) { _ = ghost_uffd_unregister(uffd, area, end - area) }
        }
        return false
    }

    /// Unregisters every area and closes the descriptor (idempotent).
    func finish() {
        areas.withLock { a in
            guard let registered = a else { return }
            for (start, end) in registered { _ = ghost_uffd_unregister(uffd, start, end - start) }
            close(uffd)
            a = nil
        }
    }
}
