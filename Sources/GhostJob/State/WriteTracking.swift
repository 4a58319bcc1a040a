import Glibc
import CGhostSys
import GhostImage

/// Which pages each process of the job wrote since the last checkpoint, so an
/// incremental checkpoint reads and stores only those and reuses the previous
/// checkpoint's blocks for the rest.
///
/// Mechanism (Linux 6.7+, unprivileged): a userfaultfd created inside the job
/// process by an injected userfaultfd(UFFD_USER_MODE_ONLY), taken over by
/// ghost with pidfd_getfd and closed in the job (the job never sees it), set
/// to asynchronous write-protect (UFFD_FEATURE_WP_ASYNC) and registered on the
/// process's private areas. A write to a protected page costs one minor fault
/// in the kernel, no event, no ghost involvement. At each checkpoint, while
/// the job is frozen, PAGEMAP_SCAN with PM_SCAN_WP_MATCHING on
/// /proc/PID/pagemap returns the pages written since the last scan and
/// protects them again in the same walk.
///
/// Anything not tracked falls back to the full read + content-addressed
/// dedup: areas that appeared or changed place since, processes forked or
/// exec'd since, shared memory, kernels without the feature. Lives in the
/// Supervisor, across checkpoints; a checkpoint that fails forgets everything
/// (its scan re-protected pages it then did not store).
public final class WriteTracking {
    /// What to read of one area at this checkpoint.
    enum Plan {
        /// Everything (not tracked, or nothing to compare with).
        case full
        /// Everything, these page ranges, listed before the area was armed:
        /// once armed, /proc/PID/pagemap shows its unpopulated pages as
        /// swapped (uffd-wp markers), which must not be mistaken for data.
        case fresh([(UInt64, UInt64)])
        /// Only the written pages: `written[b]` = pages of block b written
        /// since `previous` was stored (plus pages beyond its end).
        case delta(previous: VMARecord, written: [UInt64])
    }

    final class Process {
        var uffd: Int32
        /// VMAs of the last committed checkpoint, by start address.
        var previous: [UInt64: VMARecord] = [:]
        /// Areas armAhead registered for this checkpoint: not tracked since
        /// the previous one (new, or mapped again at an old address: what
        /// was written there before the arming is unknown), so read in full.
        var armedAhead: Set<UInt64> = []
        init(uffd: Int32) { self.uffd = uffd }
        deinit { if uffd >= 0 { close(uffd) } }
    }

    private var processes: [pid_t: Process] = [:]
    /// Set once the kernel refused: tracking is not tried again.
    private(set) var unavailable: String?

    /// GHOST_NO_WRITE_TRACKING=1 turns it off (every checkpoint reads all memory).
    public init() {
        if let v = getenv("GHOST_NO_WRITE_TRACKING"), String(cString: v) != "0" {
            unavailable = "write tracking turned off by GHOST_NO_WRITE_TRACKING"
        }
    }

    /// Areas bigger than this are tracked only when at least 1/`sparseRatio`
    /// of them is resident. Arming puts a write-protect marker in every
    /// page-table entry of the area, populated or not: page tables of 1/512
    /// of its size. For a sparse reservation that is ruinous (AddressSanitizer's
    /// 15 TiB shadow: 30 GiB of page tables, and the arming never ends), and
    /// such an area is cheap to read whole: only its resident pages are read.
    static let denseArea: UInt64 = 1 << 30, sparseRatio: UInt64 = 16

    /// Areas whose writes can be tracked: private memory a snapshot holds,
    /// that can be written (not PROT_NONE: a reservation) and is not sparse.
    static func trackable(_ m: ProcFS.Mapping, _ v: VMARecord) -> Bool {
        let size = m.end - m.start
        if v.prot == PROT_NONE { return false }
        if size > denseArea && (m.resident ?? 0) * sparseRatio < size { return false }
        switch v.kind {
        case .anonymous, .heap, .stack, .privateFile:
            // Not a private mapping of a shared object (memfd, deleted file):
            // SharedMemoryState reads the object's pages through it with
            // pagemap, which write-protect markers would make look copied.
            return !MemoryState.notInSnapshot(m, v) && !m.vmFlags.contains("io") && !m.vmFlags.contains("pf")
                && !SharedMemoryState.backsObject(m, v)
        case .sharedAnonymous, .sharedFile:
            return false   // other processes write it through their own page tables
        }
    }

    /// Called while process `ctx.pid` is frozen, before its memory is read:
    /// scans (and re-protects) what was written, registers areas not tracked
    /// yet, and says for each area what must be read. Never fails the
    /// checkpoint: whatever goes wrong makes that area `.full`.
    ///
    /// `snapshotted(plans)` says whether memory will be read from a forked
    /// snapshot given these plans. Then new areas are armed without listing
    /// their pages first (a page-table walk in the freeze): the snapshot's
    /// own page tables, which a fork copies without the write-protect
    /// markers, list them.
    ///
    /// `stored(chunk)` says whether a chunk of the previous checkpoint is
    /// still in the image: an area whose blocks are not all there (image
    /// files deleted or damaged since) is read in full, and counted so when
    /// deciding on a snapshot, rather than read page by page in the freeze.
    func plan(ctx: ProcessContext, areas: [(ProcFS.Mapping, VMARecord)], stored: (ChunkID) -> Bool,
              snapshotted: ([Plan]) -> Bool) -> [Plan] {
        var plans = [Plan](repeating: .full, count: areas.count)
        guard unavailable == nil, areas.contains(where: { Self.trackable($0.0, $0.1) }) else { return plans }
        let pid = ctx.pid
        let pagemap = open("/proc/\(pid)/pagemap", O_RDONLY | O_CLOEXEC)
        if pagemap < 0 { return plans }
        defer { close(pagemap) }
        var proc = processes[pid]
        var new: [Int] = []
        for (i, (m, v)) in areas.enumerated() where Self.trackable(m, v) {
            switch scanWritten(pagemap: pagemap, m) {
            case .written(let masks):
                if proc?.armedAhead.contains(m.start) != true, let p = proc?.previous[m.start], p.kind == v.kind, p.file == v.file, p.fileOffset == v.fileOffset,
                   p.blocks.allSatisfy({ b in stored(b.chunk) && (b.overlays ?? []).allSatisfy { stored($0.chunk) } }) {
                    var masks = masks
                    if p.end < m.end { Self.markRange(&masks, area: m.start, from: p.end, to: m.end) }
                    plans[i] = .delta(previous: p, written: masks)
                }
            case .notRegistered:
                new.append(i)
            case .unsupported(let why):
                unavailable = why
                Log.info("incremental checkpoints read all memory: \(why)")
                return plans
            case .failed:
                continue
            }
        }
        let listFirst = !new.isEmpty && !snapshotted(plans)
        for i in new {
            let (m, v) = areas[i]
            // New area, new process, or one that exec'd: read in full this
            // time, track from now on.
            var e = proc.map { register($0, m) } ?? ESRCH
            if e == ESRCH {   // no userfaultfd yet, or the one of an address space now gone
                guard let fresh = makeUffd(ctx: ctx) else { return plans }
                proc = fresh
                processes[pid] = fresh
                e = register(fresh, m)
            }
            if e != 0 { continue }   // e.g. the job registered it itself (EBUSY)
            if !listFirst {
                _ = scanWritten(pagemap: pagemap, m)   // arms: protects every page
                continue                               // .full, listed from the snapshot
            }
            guard let pages = try? MemoryState.pagesToStore(m, kind: v.kind, pagemap: pagemap) else { continue }
            _ = scanWritten(pagemap: pagemap, m)
            plans[i] = .fresh(pages)
        }
        return plans
    }

    var available: Bool { unavailable == nil }

    /// Whether process `pid` has a userfaultfd (it may belong to an address space exec has replaced since).
    func hasUffd(_ pid: pid_t) -> Bool { processes[pid] != nil }

    /// Gives frozen process `ctx.pid` a userfaultfd, with nothing registered yet.
    func attach(ctx: ProcessContext) {
        guard unavailable == nil, processes[ctx.pid] == nil, let p = makeUffd(ctx: ctx) else { return }
        processes[ctx.pid] = p
    }

    /// Before the freeze, while the job runs: registers and arms the areas
    /// of `pid` that are not armed yet, so the freeze does not have to
    /// (arming walks every page table entry, ~14 ms per GiB). Such an area
    /// has no previous record, so the checkpoint that follows reads it in
    /// full, as any new area; its scan in the freeze only protects again
    /// the pages written since. An area armed already is never scanned
    /// here: that would take away the written pages the freeze must read.
    func armAhead(pid: pid_t, areas: [(ProcFS.Mapping, VMARecord)]) {
        guard unavailable == nil, let proc = processes[pid] else { return }
        let pagemap = open("/proc/\(pid)/pagemap", O_RDONLY | O_CLOEXEC)
        if pagemap < 0 { return }
        defer { close(pagemap) }
        for (m, v) in areas where Self.trackable(m, v) {
            guard let armed = isArmed(pagemap: pagemap, m), !armed else { continue }
            let e = register(proc, m)
            if e == ESRCH { return }   // its address space is gone (exec): the freeze makes a new userfaultfd
            if e != 0 { continue }
            proc.armedAhead.insert(m.start)
            _ = scanWritten(pagemap: pagemap, m)
        }
    }

    /// Whether `m` is registered for asynchronous write-protect (a look at
    /// its first page that changes nothing); nil when that cannot be told.
    private func isArmed(pagemap: Int32, _ m: ProcFS.Mapping) -> Bool? {
        var region = [UInt64](repeating: 0, count: 3)
        var walkEnd: UInt64 = 0
        let n = ghost_pagemap_scan(pagemap, m.start, m.start + UInt64(MemoryState.pageSize),
                                   UInt64(GHOST_PAGE_IS_WPALLOWED), UInt64(GHOST_PAGE_IS_WPALLOWED), &region, 1, &walkEnd)
        return n < 0 ? nil : n > 0
    }

    /// After a committed checkpoint: its records are the base of the next one.
    func committed(_ records: [(pid: pid_t, vmas: [VMARecord])]) {
        let live = Set(records.map(\.pid))
        processes = processes.filter { live.contains($0.key) }
        for r in records {
            processes[r.pid]?.previous = Dictionary(r.vmas.map { ($0.start, $0) }, uniquingKeysWith: { a, _ in a })
        }
        for p in processes.values { p.armedAhead = [] }
    }

    /// After a failed checkpoint: pages its scans re-protected were not
    /// stored, so nothing may be reused; the next checkpoint reads in full.
    func failed() {
        for p in processes.values { p.previous = [:]; p.armedAhead = [] }
    }

    // MARK: kernel side

    enum ScanResult { case written([UInt64]), notRegistered, unsupported(String), failed }

    /// Written pages of `m` since the last scan, as one mask per block, re-protecting them.
    func scanWritten(pagemap: Int32, _ m: ProcFS.Mapping) -> ScanResult {
        let ps = UInt64(MemoryState.pageSize)
        let blockBytes = UInt64(MemoryState.blockPages) * ps
        var masks = [UInt64](repeating: 0, count: Int((m.end - m.start + blockBytes - 1) / blockBytes))
        var regions = [UInt64](repeating: 0, count: 3 * 1024)
        var cursor = m.start
        while cursor < m.end {
            var walkEnd: UInt64 = 0
            let n = ghost_pagemap_scan_written(pagemap, cursor, m.end, &regions, 1024, &walkEnd)
            if n < 0 {
                switch errno {
                case EPERM: return .notRegistered
                case ENOTTY, EINVAL: return .unsupported("this kernel has no PAGEMAP_SCAN write-protect (Linux 6.7+ needed)")
                default: return .failed
                }
            }
            for k in 0..<Int(n) { Self.markRange(&masks, area: m.start, from: regions[3 * k], to: regions[3 * k + 1]) }
            if walkEnd <= cursor { break }
            cursor = walkEnd
        }
        return .written(masks)
    }

    /// Sets the bits of the pages [from, to) in per-block masks of an area starting at `area`.
    static func markRange(_ masks: inout [UInt64], area: UInt64, from: UInt64, to: UInt64) {
        let ps = UInt64(MemoryState.pageSize), bp = UInt64(MemoryState.blockPages)
        var page = (from - area) / ps
        let end = (to - area + ps - 1) / ps
        while page < end {
            let b = Int(page / bp), bit = page % bp
            let n = min(bp - bit, end - page)
            guard b < masks.count else { return }
            masks[b] |= (n == 64 ? ~0 : ((1 << n) - 1)) << bit
            page += n
        }
    }

    /// 0 or the errno of UFFDIO_REGISTER (ESRCH: the address space of this userfaultfd is gone).
    private func register(_ p: Process, _ m: ProcFS.Mapping) -> Int32 {
        ghost_uffd_register_wp(p.uffd, m.start, m.end - m.start) == 0 ? 0 : errno
    }

    /// A userfaultfd of the process's current address space (Userfaultfd.inject).
    private func makeUffd(ctx: ProcessContext) -> Process? {
        let mine: Int32
        switch Userfaultfd.inject(ctx) {
        case .success(let fd): mine = fd
        case .failure(let e):
            if Userfaultfd.isUnavailable(e) {
                unavailable = "userfaultfd is not available to this user (\(e.text))"
                Log.info("incremental checkpoints read all memory: \(unavailable!)")
            }
            return nil
        }
        if ghost_uffd_api(mine) != 0 {
            close(mine)
            unavailable = "this kernel has no asynchronous userfaultfd write-protect (Linux 6.7+ needed)"
            Log.info("incremental checkpoints read all memory: \(unavailable!)")
            return nil
        }
        return Process(uffd: mine)
    }
}
