import Glibc
import GhostImage
import CGhostSys

/// What one checkpoint did, for the log line and the benchmark.
public struct CheckpointResult: Sendable {
    public var number: Int
    public var mappedBytes: UInt64
    public var storedBytes: UInt64
    /// Memory read from the job: less than `storedBytes` when write tracking
    /// found blocks unchanged since the previous checkpoint.
    public var readBytes: UInt64
    public var writtenBytes: UInt64
    public var chunksWritten: Int
    public var chunksReused: Int
    public var seconds: Double
    public var frozenSeconds: Double
}

/// Export: freezes the job, captures every kind of state into a manifest and
/// chunks, lets the job go, then makes the checkpoint durable and visible.
public struct Checkpointer {
    let store: ImageStore
    let job: JobRecord
    /// Which pages the job wrote since the last checkpoint (kept by the Supervisor).
    let tracking: WriteTracking?

    public init(store: ImageStore, job: JobRecord, tracking: WriteTracking? = nil) {
        self.store = store
        self.job = job
        self.tracking = tracking
    }

    public func checkpoint(_ job: JobHandle) throws(GhostError) -> CheckpointResult {
        // Flags read before the freeze save a page-table walk in it; in the
        // rare case madvise() changed one in between, the checkpoint is taken
        // again with the flags read in the freeze (see AreaFlags).
        let started = Clock.now()
        var closedFiles: [ClosedFiles.Candidate] = []
        do {
            let pids = (try? TreeFreezer.list(job)) ?? []
            // (One after the other: run at once, both walks of the same page
            // tables took as long as the two in turn. The flags first: arming
            // must skip MADV_DONTFORK/WIPEONFORK areas, which are never
            // tracked; armed, a 512 MiB reservation that holds no page was
            // read whole in the freeze, its write-protect markers looking swapped.)
            let flags = AreaFlags(pids: pids)
            if let tracking { Self.armAhead(job, pids: pids, tracking: tracking, flags: flags) }
            closedFiles = self.job.startedAt.map {
                ClosedFiles.scan(dirs: ClosedFiles.directories(pids: pids), since: $0, exclude: store.path)
            } ?? []
            return try checkpoint(job, flags: flags, started: started, closedFiles: closedFiles)
        } catch {
            guard case .areaFlagsChanged = error else { throw error }
            Log.info("\(error); taking the checkpoint again")
            return try checkpoint(job, flags: .none, started: started, closedFiles: closedFiles)
        }
    }

    /// `started`: when the checkpoint began, for its total time (the early
    /// smaps read, and a first attempt, count).
    /// `closedFiles`: candidates found before the freeze (see ClosedFiles).
    private func checkpoint(_ job: JobHandle, flags: AreaFlags, started: Double,
                            closedFiles: [ClosedFiles.Candidate]) throws(GhostError) -> CheckpointResult {
        var flags = flags
        let t0 = Clock.now()
        var times = PhaseTimes("checkpoint", since: started)
        times.mark("arm ahead+smaps")
        let writer: CheckpointWriter
        do { writer = try store.beginCheckpoint(zstdLevel: Int32(self.job.zstdLevel)) }
        catch { throw .image(error) }
        var committed = false
        defer {
            if !committed {
                writer.abort()
                tracking?.failed()
            }
        }
        let progress = Progress.begin("checkpoint \(writer.number)")
        defer { progress.finish() }  // the summary is the caller's "checkpoint N done" line

        var tree = TreeFreezer()
        defer { tree.thaw() }
        try tree.freeze(job)
        times.mark("freeze")
        if !tree.members.contains(where: { !$0.zombie }) {
            // The job ended as the checkpoint began: an image of nothing is no checkpoint.
            throw .unsupported("the job ended while the checkpoint began")
        }
        if job.initPid == nil {
            try Self.checkShapeWithoutNamespaces(tree)
        }
        var memStats = MemoryState.CaptureStats()
        var captured: [CapturedProcess] = []
        defer { for c in captured { c.snapshot?.discard() } }
        let outerToInner = Dictionary(uniqueKeysWithValues: tree.members.map {
            ($0.pid, job.initPid == nil ? $0.pid : JobNamespace.innerPid($0.pid))
        })
        for m in tree.members {
            captured.append(try captureProcess(m, job: job, outerToInner: outerToInner, flags: &flags, writer: writer,
                                               stats: &memStats))
        }
        times.mark("capture")
        var fdLists = captured.map { $0.record.fds }
        try FileState.link(&fdLists, outer: tree.members.map(\.pid), inner: captured.map(\.record.pid), writer: writer)
        for i in captured.indices { captured[i].record.fds = fdLists[i] }
        let shared = try captureSharedMemory(&captured, pids: tree.members.map(\.pid), writer: writer)
        let openFiles = Set(captured.flatMap { $0.record.fds.filter { $0.kind == .file }.map(\.path) })
        let closedNow = ClosedFiles.restat(closedFiles, open: openFiles)
        tree.thaw()
        let frozen = Clock.now() - t0
        times.mark("link+shared+thaw")

        // The flags check re-reads smaps (a page-table walk): on a thread of its
        // own, while the snapshots are read and the disk is the bottleneck.
        let flagsNow = flags
        let snapshotted = Set(captured.filter { $0.snapshot != nil }.map(\.outerPid))
        let flagsChecked = Parallel.background { () throws(GhostError) in try flagsNow.verify(snapshotted) }
        var joined = false
        defer { if !joined { try? flagsChecked.join() } }
        // Memory of forked snapshots is read while the job runs again.
        for i in captured.indices {
            guard let snap = captured[i].snapshot else { continue }
            let rest = captured[i].areas.indices.filter { !MemoryState.notInSnapshot(captured[i].areas[$0].0, captured[i].areas[$0].1) }
            try MemoryState.storePages(&captured[i].areas, which: rest, plans: captured[i].plans, pid: snap.pid, memory: snap.memory, writer: writer,
                                       workers: Self.workers, stats: &memStats)
            snap.kill()   // its address space is torn down while the checkpoint is committed
        }
        times.mark("snapshot read")
        let closed = try ClosedFiles.store(closedNow, writer: writer)
        joined = true
        try flagsChecked.join()
        times.mark("verify")
        let processes = captured.map { c -> ProcessRecord in
            var r = c.record
            if r.zombieStatus == nil { r.vmas = c.areas.map { $0.1 } }
            return r
        }
        let firstThread = processes.first { !$0.threads.isEmpty }?.threads.first
        var manifest = Manifest(
            createdAt: Clock.wall(), hostname: Host.name, kernelRelease: Host.kernelRelease,
            pageSize: MemoryState.pageSize, blockPages: MemoryState.blockPages,
            cpu: CPURecord(xfeatures: firstThread.map { ThreadState.xfeatures(of: $0.xstate) } ?? 3,
                           xstateSize: firstThread?.xstate.count ?? 0),
            job: self.job, processes: processes)
        manifest.namespaces = job.initPid != nil
        manifest.sharedMemory = shared.isEmpty ? nil : shared
        manifest.closedFiles = closed.isEmpty ? nil : closed
        let number: Int
        do {
            let payload = try manifest.encoded()
            times.mark("encode")
            number = try writer.commit(manifest: payload)
            times.mark("commit")
        } catch let e as ImageError {
            throw .image(e)
        } catch {
            throw .badImage("encoding the manifest: \(error)")
        }
        committed = true
        tracking?.committed(captured.map { ($0.outerPid, $0.areas.map(\.1)) })
        for c in captured { c.snapshot?.discard() }
        times.mark("discard")
        times.report()
        let stats = writer.stats
        return CheckpointResult(number: number, mappedBytes: memStats.mappedBytes,
                                storedBytes: UInt64(memStats.storedPages * MemoryState.pageSize),
                                readBytes: UInt64(memStats.readPages * MemoryState.pageSize),
                                writtenBytes: UInt64(stats.storedBytes), chunksWritten: stats.chunksWritten,
                                chunksReused: stats.chunksReused, seconds: Clock.now() - started, frozenSeconds: frozen)
    }

    /// Write tracking armed before the freeze (see WriteTracking.armAhead),
    /// on the areas /proc/PID/maps shows that the early smaps read saw too,
    /// with their flags (trackable() leaves out MADV_DONTFORK/WIPEONFORK). A process without a userfaultfd yet gets
    /// one in a freeze of its own first, one injected call long, if it holds
    /// enough memory for arming to matter (a first checkpoint, a process
    /// forked since). Never fails the checkpoint: whatever is not armed here
    /// is armed in the freeze, as before.
    private static func armAhead(_ job: JobHandle, pids: [pid_t], tracking: WriteTracking, flags: AreaFlags) {
        guard tracking.available else { return }
        var areasOf: [pid_t: [(ProcFS.Mapping, VMARecord)]] = [:]
        for pid in pids {
            guard let maps = try? ProcFS.mappings(pid, flags: false) else { continue }
            areasOf[pid] = try? MemoryState.describe(flags.flagged(maps, pid: pid), pid: pid)
        }
        let needUffd = Set(areasOf.filter { pid, areas in
            !tracking.hasUffd(pid) && areas.reduce(0) { sum, a in
                sum + (WriteTracking.trackable(a.0, a.1) ? a.0.end - a.0.start : 0) } >= armAheadBytes
        }.keys)
        if !needUffd.isEmpty {
            var tree = TreeFreezer()
            if (try? tree.freeze(job)) != nil {
                for m in tree.members where needUffd.contains(m.pid) && !m.zombie {
                    try? giveUffd(m.pid, tracking: tracking)
                }
                tree.thawDelivering()
            }
        }
        for (pid, areas) in areasOf { tracking.armAhead(pid: pid, areas: areas) }
    }

    /// Below this much trackable memory a process is armed in the freeze
    /// (~1 ms for 64 MiB) rather than frozen once more for a userfaultfd.
    static let armAheadBytes: UInt64 = 64 << 20

    /// Injects userfaultfd() into frozen process `pid` (signals blocked meanwhile).
    private static func giveUffd(_ pid: pid_t, tracking: WriteTracking) throws(GhostError) {
        let memory = try ProcessMemory(pid: pid, writable: true)
        guard let vdso = try ProcFS.mappings(pid, flags: false).first(where: { $0.path == "[vdso]" }) else { return }
        let ctx = ProcessContext(pid: pid, memory: memory,
                                 gadget: try RemoteSyscall.findGadget(memory: memory, start: vdso.start, end: vdso.end))
        let t = Tracee(tid: pid)
        let mask = try t.getSigmask()
        try t.setSigmask(~0)
        tracking.attach(ctx: ctx)
        try t.setSigmask(mask)
    }

    /// Shared memory objects of the whole job, read while it is frozen.
    private func captureSharedMemory(_ captured: inout [CapturedProcess], pids: [pid_t],
                                     writer: CheckpointWriter) throws(GhostError) -> [SharedMemoryRecord] {
        var members = zip(captured, pids).map { c, pid in
            SharedMemoryState.Member(pid: pid, inner: c.record.pid, areas: c.areas, fds: c.record.fds, resident: c.resident)
        }
        let records = try SharedMemoryState.capture(&members, writer: writer, workers: Self.workers)
        for i in captured.indices {
            captured[i].areas = members[i].areas
            captured[i].record.fds = members[i].fds
            captured[i].record.exeObject = members[i].exeObject
        }
        return records
    }

    struct CapturedProcess {
        var outerPid: pid_t
        var record: ProcessRecord
        var areas: [(ProcFS.Mapping, VMARecord)]
        var plans: [WriteTracking.Plan]?
        var snapshot: Snapshot?
        var resident: [UInt64: [(UInt64, UInt64)]] = [:]
    }

    /// Everything of one frozen process; its private memory is left in a
    /// snapshot when one could be made.
    private func captureProcess(_ m: TreeFreezer.Member, job: JobHandle, outerToInner: [pid_t: pid_t],
                                flags: inout AreaFlags, writer: CheckpointWriter, stats: inout MemoryState.CaptureStats) throws(GhostError) -> CapturedProcess {
        let pid = m.pid
        let st = try ProcFS.stat(pid)
        let status = try ProcFS.status(pid)
        let inner = outerToInner[pid] ?? pid
        func innerOf(_ outer: pid_t) -> pid_t { outer == 0 ? 0 : (outerToInner[outer] ?? 0) }
        let ppidOuter = pid_t(st.field(4))
        let ppid: pid_t = job.initPid.map { ppidOuter == $0 ? 1 : innerOf(ppidOuter) } ?? ppidOuter
        let pgid = job.initPid == nil ? pid_t(st.field(5)) : JobNamespace.innerField(status, "NSpgid")
        let sid = job.initPid == nil ? pid_t(st.field(6)) : JobNamespace.innerField(status, "NSsid")
        if m.zombie {
            let record = ProcessRecord(
                pid: inner, ppid: ppid, pgid: pgid, sid: sid, comm: st.comm,
                exe: FileIdentity(path: "", size: 0, mtimeNanos: 0), cwd: "/", umask: 0o022, personality: 0,
                rlimits: [], mm: MMRecord(startCode: 0, endCode: 0, startData: 0, endData: 0, startBrk: 0, brk: 0,
                                          startStack: 0, argStart: 0, argEnd: 0, envStart: 0, envEnd: 0, auxv: []),
                vdso: nil, vmas: [], fds: [], signals: SignalRecord(actions: [], sharedPending: []), threads: [],
                pdeathsig: 0, zombieStatus: Int32(truncatingIfNeeded: st.field(52)))
            return CapturedProcess(outerPid: pid, record: record, areas: [], plans: nil, snapshot: nil)
        }

        var times = PhaseTimes("capture of \(pid)")
        defer { times.report() }
        let memory = try ProcessMemory(pid: pid, writable: true)
        let maps = try ProcFS.mappings(pid, flags: false)
        guard let vdso = maps.first(where: { $0.path == "[vdso]" }) else {
            throw .unsupported("process \(pid) has no vDSO; ghost needs one to drive it")
        }
        let ctx = ProcessContext(pid: pid, memory: memory,
                                 gadget: try RemoteSyscall.findGadget(memory: memory, start: vdso.start, end: vdso.end))
        // Nothing may be delivered while calls are injected: block all, per thread.
        var masks: [pid_t: UInt64] = [:]
        for f in m.threads {
            let t = Tracee(tid: f.pid)
            masks[f.pid] = try t.getSigmask()
            try t.setSigmask(~0)
        }
        // State only the process itself can report, through injected calls
        // that need a scratch page; it is unmapped before memory is read.
        let scratchSize = 4 * MemoryState.pageSize
        let scratchAddr = try ctx.syscall.check("mmap of a scratch page", SYS.mmap, 0, UInt64(scratchSize),
                                                UInt64(PROT_READ | PROT_WRITE), UInt64(MAP_PRIVATE | MAP_ANONYMOUS),
                                                UInt64.max, 0)
        ctx.scratch = RemoteScratch(address: scratchAddr, size: scratchSize, memory: memory)
        let attrs = try ProcessAttributes.capture(ctx: ctx, status: status)
        var signals = try SignalState.capture(ctx: ctx, status: status, dequeuedShared: [])
        signals.groupStop = m.threads.lazy.map(\.groupStopSignal).first { $0 != 0 }
        let timers = try TimerState.capture(ctx: ctx) { job.initPid == nil ? $0 : JobNamespace.innerPid($0) }
        var threads: [ThreadRecord] = []
        for f in m.threads {
            let tctx = ProcessContext(pid: f.pid, memory: memory, gadget: ctx.syscall.gadget)
            tctx.scratch = ctx.scratch
            var t = try ThreadState.capture(ctx: tctx, tid: f.pid, mask: masks[f.pid] ?? 0, dequeued: f.dequeued)
            t.tid = outerToInner[f.pid] ?? (job.initPid == nil ? f.pid : JobNamespace.innerPid(f.pid))
            t.scheduling = try SchedulingState.capture(pid: pid, tid: f.pid)
            threads.append(t)
            // Signals the freeze dequeued go back on the queue of the running job.
            if !f.dequeued.isEmpty {
                var again = t
                again.pending = f.dequeued
                try ThreadState.restorePending(again, ctx: tctx, tgid: inner, tid: t.tid)
            }
        }
        times.mark("attrs+signals+timers+threads")
        let resident = try SharedMemoryState.residentPages(ctx: ctx)
        times.mark("resident")
        try ctx.syscall.check("munmap of the scratch page", SYS.munmap, scratchAddr, UInt64(scratchSize))
        for f in m.threads { try Tracee(tid: f.pid).setSigmask(masks[f.pid] ?? 0) }

        let mappings = try flags.mappings(pid)
        times.mark("maps")
        let vdsoRecord = try VDSOState.capture(mappings: mappings, memory: memory)
        let fds = try FileState.capture(pid: pid, writer: writer)
        times.mark("vdso+fds")
        var areas = try MemoryState.describe(mappings, pid: pid)
        times.mark("describe")
        for (mp, _) in areas { stats.mappedBytes += mp.end - mp.start }

        // Most memory is read from a forked copy (copy-on-write) after the job
        // runs again; see Snapshot for how the job is kept from seeing it.
        // Write tracking says which pages changed since the last checkpoint;
        // when that is little, it is read now and no snapshot is needed.
        let plans = tracking?.plan(ctx: ctx, areas: areas, stored: { writer.isStored($0) }) { Self.wantsSnapshot(areas, $0) }
        times.mark("tracking plan")
        let parentIsGhost = job.initPid.map { ppidOuter == $0 } ?? (ppidOuter == getpid())
        let snapshot = Self.wantsSnapshot(areas, plans)
            ? (try? Snapshot(of: ctx, placement: parentIsGhost ? .sibling(parent: ppidOuter) : .hiddenChild)) : nil
        let inFreeze = snapshot == nil ? Array(areas.indices)
            : areas.indices.filter { MemoryState.notInSnapshot(areas[$0].0, areas[$0].1) }
        do {
            try MemoryState.storePages(&areas, which: inFreeze, plans: plans, pid: pid, memory: memory, writer: writer,
                                       workers: Self.workers, stats: &stats)
        } catch {
            snapshot?.discard()
            throw error
        }
        times.mark("snapshot+in-freeze pages")
        var record = ProcessRecord(
            pid: inner, ppid: ppid, pgid: pgid, sid: sid, comm: attrs.comm, exe: attrs.exe,
            cwd: attrs.cwd, umask: attrs.umask, personality: attrs.personality, rlimits: attrs.rlimits,
            mm: attrs.mm, vdso: vdsoRecord, vmas: [], fds: fds, signals: signals, threads: threads,
            pdeathsig: attrs.pdeathsig)
        record.timers = timers
        return CapturedProcess(outerPid: pid, record: record, areas: areas, plans: plans, snapshot: snapshot,
                               resident: resident)
    }

    /// Below this many pages (4 MiB) to read, reading them while the job is
    /// frozen is quicker than forking a snapshot of it.
    static let readInFreezePages = 1024

    /// Whether memory is read from a forked snapshot (write tracking arms
    /// new areas on the same answer, so both must come from here).
    static func wantsSnapshot(_ areas: [(ProcFS.Mapping, VMARecord)], _ plans: [WriteTracking.Plan]?) -> Bool {
        pagesToRead(areas, plans) > readInFreezePages
    }

    /// At most how many pages a snapshot would be read for (whole areas where
    /// nothing is tracked).
    static func pagesToRead(_ areas: [(ProcFS.Mapping, VMARecord)], _ plans: [WriteTracking.Plan]?) -> Int {
        var n = 0
        for (i, (m, v)) in areas.enumerated() where !MemoryState.notInSnapshot(m, v) && v.kind != .sharedFile {
            if case .delta(_, let written)? = plans?[i] {
                n += written.reduce(0) { $0 + $1.nonzeroBitCount }
            } else {
                n += Int((m.end - m.start) / UInt64(MemoryState.pageSize))
            }
        }
        return n
    }

    /// Threads used to read, hash, compress and write memory: two per CPU
    /// ghost may run on (at most 8), because a thread writing its staging
    /// buffer to a pack (O_DIRECT) waits for the disk without using its CPU.
    static var workers: Int {
        max(1, min(2 * Int(ghost_cpu_count()), 8))
    }

    /// Without namespaces, PIDs and thread IDs cannot be given back, and
    /// programs keep them (glibc caches thread IDs, parents wait for child
    /// PIDs): only a single-threaded single process is checkpointed then.
    static func checkShapeWithoutNamespaces(_ tree: TreeFreezer) throws(GhostError) {
        guard let root = tree.members.first else { return }
        if root.threads.count > 1 {
            throw .unsupported("the job (pid \(root.pid)) has \(root.threads.count) threads; without user namespaces "
                + "ghost cannot give threads their IDs back, so multi-threaded jobs need them (run without --no-namespaces)")
        }
        if tree.members.count > 1 {
            let kids = tree.members.dropFirst().map { String($0.pid) }.joined(separator: ", ")
            throw .unsupported("the job (pid \(root.pid)) has child processes (\(kids)); without user namespaces ghost "
                + "cannot give them their PIDs back, so process trees need them (run without --no-namespaces)")
        }
    }
}

public enum Clock {
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
    public static func wall() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

enum Host {
    static var name: String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, 255)
        return String(cString: buf)
    }
    static var kernelRelease: String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: u.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
    }
}
