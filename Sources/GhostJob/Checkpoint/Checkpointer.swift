import Glibc
import GhostImage
import CGhostSys

/// What one checkpoint did, for the log line and the benchmark.
public struct CheckpointResult: Sendable {
    public var number: Int
    public var mappedBytes: UInt64
    public var storedBytes: UInt64
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

    public init(store: ImageStore, job: JobRecord) {
        self.store = store
        self.job = job
    }

    public func checkpoint(pid: pid_t) throws(GhostError) -> CheckpointResult {
        try Self.checkShape(pid)
        let t0 = Clock.now()
        let writer: CheckpointWriter
        do { writer = try store.beginCheckpoint(zstdLevel: Int32(job.zstdLevel)) } catch { throw .image(error) }
        var committed = false
        defer { if !committed { writer.abort() } }

        var freezer = Freezer(pid: pid)
        defer { freezer.thaw() }
        try freezer.freeze()
        try Self.checkShape(pid)   // nothing new appeared between the check and the freeze

        let memory = try ProcessMemory(pid: pid, writable: true)
        let maps = try ProcFS.mappings(pid, flags: false)
        guard let vdso = maps.first(where: { $0.path == "[vdso]" }) else {
            throw .unsupported("process \(pid) has no vDSO; ghost needs one to drive it")
        }
        let ctx = ProcessContext(pid: pid, memory: memory,
                                 gadget: try RemoteSyscall.findGadget(memory: memory, start: vdso.start, end: vdso.end))
        let tracee = ctx.tracee
        let mask = try tracee.getSigmask()
        try tracee.setSigmask(~0)   // nothing may be delivered while we inject calls

        // State only the process itself can report, through injected calls
        // that need a scratch page; it is unmapped before memory is read.
        let scratchSize = 4 * MemoryState.pageSize
        let scratchAddr = try ctx.syscall.check("mmap of a scratch page", SYS.mmap, 0, UInt64(scratchSize),
                                                UInt64(PROT_READ | PROT_WRITE), UInt64(MAP_PRIVATE | MAP_ANONYMOUS),
                                                UInt64.max, 0)
        ctx.scratch = RemoteScratch(address: scratchAddr, size: scratchSize, memory: memory)
        let status = try ProcFS.status(pid)
        let attrs = try ProcessAttributes.capture(ctx: ctx, status: status)
        let signals = try SignalState.capture(ctx: ctx, status: status, dequeuedShared: [])
        let thread = try ThreadState.capture(ctx: ctx, tid: pid, mask: mask, dequeued: freezer.dequeued)
        // Signals the freeze dequeued go back on the queue of the running job.
        try ThreadState.restorePending(ThreadRecord(tid: pid, regs: [], xstate: [], sigmask: 0, pending: freezer.dequeued,
                                                    sigaltstack: AltStack(sp: 0, flags: 0, size: 0), clearChildTid: 0,
                                                    robustList: 0, robustListLen: 0, rseq: nil, syscallRestart: nil),
                                       ctx: ctx, tgid: pid)
        try ctx.syscall.check("munmap of the scratch page", SYS.munmap, scratchAddr, UInt64(scratchSize))
        try tracee.setSigmask(mask)

        let mappings = try ProcFS.mappings(pid, flags: true)
        let vdsoRecord = try VDSOState.capture(mappings: mappings, memory: memory)
        let fds = try FileState.capture(pid: pid, writer: writer)
        var areas = try MemoryState.describe(mappings, pid: pid)
        var memStats = MemoryState.CaptureStats()
        for (m, _) in areas { memStats.mappedBytes += m.end - m.start }

        // Most memory is read from a forked copy of the job (copy-on-write),
        // after the job runs again: the job is frozen only for the fork.
        let snapshot = try? Snapshot(of: ctx)
        defer { snapshot?.discard() }
        let inFreeze = snapshot == nil ? Array(areas.indices)
            : areas.indices.filter { MemoryState.notInSnapshot(areas[$0].0, areas[$0].1) }
        try MemoryState.storePages(&areas, which: inFreeze, pid: pid, memory: memory, writer: writer,
                                   workers: Self.workers, stats: &memStats)
        freezer.thaw()
        let frozen = Clock.now() - t0
        if let snapshot {
            let rest = areas.indices.filter { !MemoryState.notInSnapshot(areas[$0].0, areas[$0].1) }
            try MemoryState.storePages(&areas, which: rest, pid: snapshot.pid, memory: snapshot.memory, writer: writer,
                                       workers: Self.workers, stats: &memStats)
            snapshot.discard()
        }
        let vmas = areas.map { $0.1 }

        let process = ProcessRecord(
            pid: pid, ppid: attrs.ppid, pgid: attrs.pgid, sid: attrs.sid, comm: attrs.comm, exe: attrs.exe,
            cwd: attrs.cwd, umask: attrs.umask, personality: attrs.personality, rlimits: attrs.rlimits,
            mm: attrs.mm, vdso: vdsoRecord, vmas: vmas, fds: fds, signals: signals, threads: [thread],
            pdeathsig: attrs.pdeathsig)
        let manifest = Manifest(
            createdAt: Clock.wall(), hostname: Host.name, kernelRelease: Host.kernelRelease,
            pageSize: MemoryState.pageSize, blockPages: MemoryState.blockPages,
            cpu: CPURecord(xfeatures: ThreadState.xfeatures(of: thread.xstate), xstateSize: thread.xstate.count),
            job: job, processes: [process])
        let number: Int
        do {
            let payload = try manifest.encoded()
            number = try writer.commit(manifest: payload)
        } catch let e as ImageError {
            throw .image(e)
        } catch {
            throw .badImage("encoding the manifest: \(error)")
        }
        committed = true
        let stats = writer.stats
        return CheckpointResult(number: number, mappedBytes: memStats.mappedBytes,
                                storedBytes: UInt64(memStats.storedPages * MemoryState.pageSize),
                                writtenBytes: UInt64(stats.storedBytes), chunksWritten: stats.chunksWritten,
                                chunksReused: stats.chunksReused, seconds: Clock.now() - t0, frozenSeconds: frozen)
    }

    /// Threads used to read, hash and compress memory: the CPUs ghost may run on.
    static var workers: Int {
        max(1, min(Int(ghost_cpu_count()), 8))
    }

    /// Issue-2 scope: one single-threaded process. Say so instead of writing a broken image.
    static func checkShape(_ pid: pid_t) throws(GhostError) {
        let tasks = try ProcFS.tasks(pid)
        if tasks.count > 1 {
            throw .unsupported("the job (pid \(pid)) has \(tasks.count) threads; multi-threaded jobs are not supported yet")
        }
        let kids = try ProcFS.children(pid)
        if !kids.isEmpty {
            throw .unsupported("the job (pid \(pid)) has child processes (\(kids.map(String.init).joined(separator: ", "))); "
                + "process trees are not supported yet")
        }
    }
}

enum Clock {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
    static func wall() -> Double {
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
