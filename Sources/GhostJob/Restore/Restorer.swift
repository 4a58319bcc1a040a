import Glibc
import CGhostSys
import GhostImage

/// Import: rebuilds a checkpointed process. A "husk" child sets up cwd,
/// umask, limits and descriptors, then execs the job's own executable under
/// PTRACE_TRACEME (so /proc/PID/exe is right with no privilege) and stops
/// before running anything; its address space is then replaced by the
/// image's, its kernel state set by injected calls, and it is let go.
public struct Restorer {
    let store: ImageStore
    let warn: (String) -> Void

    public init(store: ImageStore, warn: @escaping (String) -> Void) {
        self.store = store
        self.warn = warn
    }

    /// Loads checkpoint `number`, or the newest intact one.
    public func load(number: Int?) throws(GhostError) -> (number: Int, manifest: Manifest) {
        var times = PhaseTimes("loading the checkpoint")
        defer { times.report() }
        let n: Int, payload: [UInt8]
        do {
            if let number {
                n = number
                payload = try store.loadManifest(number)
            } else {
                let newest = try store.newestIntactCheckpoint()
                for s in newest.skipped { warn(s) }
                n = newest.number
                payload = newest.payload
            }
        } catch { throw .image(error) }
        times.mark("read and check")
        do {
            let m = try Manifest.decode(payload)
            times.mark("decode")
            return (n, m)
        } catch {
            throw .badImage("checkpoint \(n) in \(store.path): \(error)")
        }
    }

    /// The log line of a resume.
    public static func describe(number: Int, _ m: Manifest, _ h: JobHandle) -> String {
        let n = m.processes.filter { $0.zombieStatus == nil }.count
        let threads = m.processes.reduce(0) { $0 + $1.threads.count }
        let shape = n == 1 && threads == 1 ? "" : " (\(n) processes, \(threads) threads)"
        let pids = m.namespaces == true ? "the job sees the same PIDs as before"
            : "was pid \(m.processes[0].pid): without namespaces PIDs change"
        return "resumed checkpoint \(number) as pid \(h.rootPid)\(shape); \(pids); taken on \(m.hostname)"
    }

    /// Checks that the image can run here before anything is started.
    public static func checkCompatible(_ m: Manifest) throws(GhostError) {
        let live = m.processes.filter { $0.zombieStatus == nil }
        guard !live.isEmpty else { throw .badImage("the image holds no live process") }
        if m.namespaces != true && (m.processes.count != 1 || live[0].threads.count != 1) {
            throw .badImage("an image without namespaces must hold one single-threaded process")
        }
        let here = ghost_xgetbv0()
        let missing = m.cpu.xfeatures & ~here
        if missing != 0 {
            throw .incompatible("the image was taken on a CPU with \(XFeatures.names(missing)), which this CPU lacks; "
                + "resume it on a node with the same CPU features (constrain the job with --constraint)")
        }
        if m.pageSize != MemoryState.pageSize {
            throw .incompatible("the image uses \(m.pageSize)-byte pages, this node \(MemoryState.pageSize)")
        }
        if m.namespaces == true && !JobNamespace.available {
            throw .incompatible("the job ran in user + PID namespaces, which this node does not allow to ordinary users "
                + "(kernel.unprivileged_userns_clone or an AppArmor/SELinux policy); resume it on a node that does")
        }
    }

    /// Rebuilds the job and returns its processes; it is running when this returns.
    public func restore(_ m: Manifest) throws(GhostError) -> JobHandle {
        try Self.checkCompatible(m)
        let progress = Progress.begin("resume")
        var handle: JobHandle?
        defer { progress.finish(summary: handle == nil ? nil : { b, s in "restored \(Log.size(b)) of memory in \(Log.ms(s))" }) }
        // First: a program the job built may be one of them.
        try ClosedFiles.restore(m.closedFiles ?? [], store: store)
        for p in m.processes where p.zombieStatus == nil && p.exeObject == nil {
            try MemoryState.checkUnchanged(p.exe, at: p.mm.startCode)
        }
        handle = m.namespaces == true ? try restoreInNamespaces(m) : JobHandle(initPid: nil, rootPid: try restoreByExec(m))
        return handle!
    }

    /// Without namespaces: one process, rebuilt in a husk that exec'ed the
    /// job's executable (so /proc/PID/exe is right without privilege).
    private func restoreByExec(_ m: Manifest) throws(GhostError) -> pid_t {
        let p = m.processes[0]
        // Descriptors are opened here and inherited by the husk at their numbers.
        let table = FileState.Table()
        defer { table.closeAll() }
        try SharedMemoryState.prepare(m.sharedMemory ?? [], executables: Set(m.processes.compactMap(\.exeObject)), store: store, blockPages: m.blockPages, table: table)
        let shm = try SharedMemoryState.husksDescriptors(p, table: table)
        let fds = try FileState.prepare(p.fds, pid: p.pid, allRecords: [(p.pid, p.fds)], table: table, store: store)
            + shm.fds
        let limits = ProcessAttributes.limitsForHusk(p.rlimits, warn: warn)
        // A deleted executable runs from ghost's copy, handed over as a descriptor.
        let exePath = p.exeObject.flatMap { shm.numbers[$0] }.map { "/proc/self/fd/\($0)" } ?? p.exe.path
        let pid = try spawnHusk(p, exe: exePath, fds: fds, limits: limits)
        var done = false
        defer { if !done { kill(pid, SIGKILL); var st: Int32 = 0; waitpid(pid, &st, __WALL) } }
        let tracee = Tracee(tid: pid)
        _ = try tracee.waitStop()   // SIGTRAP after exec: nothing of the program has run
        let rebuilt = try rebuild(p, pid: pid, innerPid: pid, manifest: m, huskFds: [], objects: shm.numbers, setExe: false)
        if p.signals.groupStop != nil { kill(pid, SIGSTOP) }     // stopped by job control: stops again (see below)
        for t in rebuilt { t.detach() }
        done = true
        return pid
    }

    /// With namespaces: ghost-init and a tree of husks with the old PIDs
    /// (clone3 set_tid, inside namespaces ghost owns), each then filled in.
    private func restoreInNamespaces(_ m: Manifest) throws(GhostError) -> JobHandle {
        var times = PhaseTimes("resume in namespaces")
        defer { times.report() }
        let procs = m.processes
        let table = FileState.Table()
        defer { table.closeAll() }
        let all = procs.map { (pid: $0.pid, fds: $0.fds) }
        try SharedMemoryState.prepare(m.sharedMemory ?? [], executables: Set(m.processes.compactMap(\.exeObject)), store: store, blockPages: m.blockPages, table: table)
        var prepared: [[(src: Int32, dst: Int32)]] = []
        var objectNumbers: [[Int: Int32]] = []
        for p in procs {
            let shm = p.zombieStatus == nil ? try SharedMemoryState.husksDescriptors(p, table: table) : (fds: [], numbers: [:])
            prepared.append(p.zombieStatus == nil
                ? try FileState.prepare(p.fds, pid: p.pid, allRecords: all, table: table, store: store) + shm.fds : [])
            objectNumbers.append(shm.numbers)
        }
        var hold: [Int32] = [0, 0]
        if ghost_pipe2(&hold, O_CLOEXEC) != 0 { throw .errno("pipe2") }
        defer { close(hold[1]) }
        let index = Dictionary(procs.enumerated().map { ($1.pid, $0) }, uniquingKeysWith: { a, _ in a })
        let candidates = procs.indices.filter { procs[$0].ppid == 1 && procs[$0].zombieStatus == nil }
        let root: Int = candidates.min { procs[$0].pid < procs[$1].pid } ?? 0
        let limits = procs.map { ProcessAttributes.limitsForHusk($0.rlimits, warn: warn) }
        times.mark("shared memory+descriptors")
        var holds = [Int32](repeating: -1, count: 2 * procs.count)   // (hold, report) per husk
        var err: Int32 = 0, step: Int32 = 0

        // C arrays that live across the call.
        var cstrings: [UnsafeMutablePointer<CChar>?] = []
        defer { for c in cstrings { free(c) } }
        var keep: [UnsafeMutableBufferPointer<Int32>] = []
        var keep64: [UnsafeMutableBufferPointer<UInt64>] = []
        defer { keep.forEach { $0.deallocate() }; keep64.forEach { $0.deallocate() } }
        func ints(_ a: [Int32]) -> UnsafePointer<Int32> {
            let b = UnsafeMutableBufferPointer<Int32>.allocate(capacity: max(1, a.count))
            _ = b.initialize(from: a); keep.append(b); return UnsafePointer(b.baseAddress!)
        }
        func u64s(_ a: [UInt64]) -> UnsafePointer<UInt64> {
            let b = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: max(1, a.count))
            _ = b.initialize(from: a); keep64.append(b); return UnsafePointer(b.baseAddress!)
        }
        var specs: [ghost_tree_proc] = []
        for (i, p) in procs.enumerated() {
            let cwd = strdup(p.cwd), comm = strdup(p.comm); cstrings.append(cwd); cstrings.append(comm)
            let fds = prepared[i]
            let sid = index[p.sid] != nil ? p.sid : 0, pgid = index[p.pgid] != nil ? p.pgid : 0
            specs.append(ghost_tree_proc(
                pid: p.pid, parent: Int32(index[p.ppid] ?? -1), sid: sid, pgid: pgid,
                zombie: p.zombieStatus == nil ? 0 : 1, exit_status: p.zombieStatus ?? 0,
                comm: UnsafePointer(comm), cwd: UnsafePointer(cwd), umask: Int32(p.umask), pdeathsig: p.pdeathsig,
                nlimits: Int32(limits[i].count), limit_resources: ints(limits[i].map(\.resource)),
                limit_cur: u64s(limits[i].map(\.soft)), limit_max: u64s(limits[i].map(\.hard)),
                nfds: Int32(fds.count), fd_src: ints(fds.map(\.src)), fd_dst: ints(fds.map(\.dst))))
        }
        let initPid: pid_t = specs.withUnsafeBufferPointer { sp in
            var tree = ghost_tree(n: Int32(procs.count), procs: sp.baseAddress, root: Int32(root), ready_fd: -1, hold_fd: hold[0])
            return ghost_spawn_tree_ns(&tree, &holds, &err, &step)
        }
        close(hold[0])
        if initPid < 0 {
            let what = ["", "creating namespaces or changing directory", "mapping ids or setting resource limits",
                        "mounting /proc or setting up descriptors", "creating a process with its old PID",
                        "", "creating a session", "joining a process group"]
            throw .system("rebuilding the process tree: \(what[Int(step) < what.count ? Int(step) : 0])", errno: err)
        }
        times.mark("tree spawned")
        var done = false
        var stopped: [Tracee] = []
        defer {
            if !done {
                // ghost-init cannot finish while it has traced children we did not reap.
                kill(initPid, SIGKILL)
                var st: Int32 = 0
                for t in stopped { kill(t.tid, SIGKILL); waitpid(t.tid, &st, __WALL) }
                waitpid(initPid, &st, __WALL)
            }
        }

        // Our PIDs for theirs.
        var outer: [pid_t: pid_t] = [:]
        for o in try JobNamespace.members(initPid: initPid) { outer[JobNamespace.innerPid(o)] = o }
        for (i, p) in procs.enumerated() where p.zombieStatus == nil {
            guard let o = outer[p.pid] else { throw .restore("process \(p.pid) did not appear in the new namespace") }
            var f = Freezer(pid: o)
            try f.freeze()
            stopped.append(Tracee(tid: o))
            let threads = try rebuild(p, pid: o, innerPid: p.pid, manifest: m, huskFds: [holds[2 * i], holds[2 * i + 1]],
                                      objects: objectNumbers[i], setExe: true)
            stopped += threads.filter { $0.tid != o }
        }
        // A process stopped by job control stops again as soon as it is let
        // go, before it runs an instruction (the stop is pending while traced).
        for p in procs where p.zombieStatus == nil && p.signals.groupStop != nil {
            if let o = outer[p.pid] { kill(o, SIGSTOP) }
        }
        // Everyone is rebuilt: let them all go at once.
        for t in stopped { t.detach() }
        done = true
        guard let rootOuter = outer[procs[root].pid] else { throw .restore("the job's main process is missing") }
        return JobHandle(initPid: initPid, rootPid: rootOuter)
    }

    /// Fills a stopped husk with process `p`. Returns its threads, stopped,
    /// with their final registers set: the caller detaches them.
    private func rebuild(_ p: ProcessRecord, pid: pid_t, innerPid: pid_t, manifest m: Manifest,
                         huskFds: [Int32], objects: [Int: Int32], setExe: Bool) throws(GhostError) -> [Tracee] {
        var times = PhaseTimes("rebuild of \(p.pid)")
        defer { times.report() }
        let tracee = Tracee(tid: pid)
        try tracee.setSigmask(~0)
        let memory = try ProcessMemory(pid: pid, writable: true)
        let husk = try ProcFS.mappings(pid, flags: false)
        guard let vdso = husk.first(where: { $0.path == "[vdso]" }) else {
            throw .incompatible("this kernel maps no vDSO")
        }
        let ctx = ProcessContext(pid: pid, memory: memory,
                                 gadget: try RemoteSyscall.findGadget(memory: memory, start: vdso.start, end: vdso.end))

        // Work space for injected calls, free in both the husk's and the image's layout.
        var imageRanges = p.vmas.map { ($0.start, $0.end) }
        imageRanges += (p.vdso?.regions ?? []).map { ($0.start, $0.end) }
        let scratchSize = 16 * MemoryState.pageSize
        let scratchAddr = try AddressSpace.freeRange(size: UInt64(scratchSize),
                                                     avoiding: imageRanges + husk.map { ($0.start, $0.end) })
        try ctx.syscall.check("mmap of restore work space", SYS.mmap, scratchAddr, UInt64(scratchSize),
                              UInt64(PROT_READ | PROT_WRITE), UInt64(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), UInt64.max, 0)
        ctx.scratch = RemoteScratch(address: scratchAddr, size: scratchSize, memory: memory)

        // Empty the husk: everything but the vDSO group and the work space.
        // A husk forked from ghost has glibc's rseq area registered; the kernel
        // would write to it on every return to user space once it is unmapped.
        var abi: UInt64 = 0, rlen: UInt32 = 0, rflags: UInt32 = 0, rsig: UInt32 = 0
        if ghost_get_rseq(pid, &abi, &rlen, &rflags, &rsig) == 0 && abi != 0 {
            let rseqUnregister: UInt64 = 1
            try ctx.syscall.check("unregistering the husk's rseq", SYS.rseq, abi, UInt64(rlen), rseqUnregister, UInt64(rsig))
        }
        for m in husk where !VDSOState.names.contains(m.path) && m.path != "[vsyscall]" {
            try ctx.syscall.check("unmapping \(m.path.isEmpty ? hex(m.start) : m.path) of the husk",
                                  SYS.munmap, m.start, m.end - m.start)
        }
        if let v = p.vdso {
            try VDSOState.restore(v, ctx: ctx, husk: husk,
                                  avoid: imageRanges + [(scratchAddr, scratchAddr + UInt64(scratchSize))])
        }
        times.mark("empty husk")
        try MemoryState.restore(p.vmas, ctx: ctx, store: store, blockPages: m.blockPages, objects: objects)
        times.mark("memory")
        // The husk's hold and report pipes (the report one may already be closed).
        for h in huskFds where h >= 0 { try ctx.syscall.call(SYS.close, UInt64(h)) }
        try FileState.restoreFlags(p.fds, ctx: ctx)
        try FileState.restoreInProcess(p.fds, ctx: ctx)
        try SignalState.restoreActions(p.signals, ctx: ctx)
        try ProcessAttributes.restoreComm(p.comm, ctx: ctx)
        try ProcessAttributes.restoreMM(p.mm, ctx: ctx, exe: setExe ? p.exe.path : nil,
                                        exeFd: setExe ? p.exeObject.flatMap { objects[$0] } : nil)
        for n in objects.values { try ctx.syscall.call(SYS.close, UInt64(n)) }

        // Threads: the first record is the thread the husk already is; the
        // others are cloned with their old thread IDs (needs the namespace's
        // CAP_SYS_ADMIN, which the husk has until the end of this function).
        guard let main = p.threads.first(where: { $0.tid == innerPid }) ?? p.threads.first else {
            throw .badImage("process \(p.pid) has no threads")
        }
        var threads: [(ThreadRecord, Tracee, ProcessContext)] = [(main, tracee, ctx)]
        for t in p.threads where t.tid != main.tid {
            let tid = try Threads.clone(t.tid, ctx: ctx, processOuter: pid)
            let tctx = ProcessContext(pid: tid, memory: memory, gadget: ctx.syscall.gadget)
            tctx.scratch = ctx.scratch
            threads.append((t, Tracee(tid: tid), tctx))
        }
        for (t, _, tctx) in threads {
            try ThreadState.restoreKernelState(t, ctx: tctx)
            if let s = t.scheduling { try SchedulingState.restore(s, ctx: tctx, tid: tctx.pid, warn: warn) }
        }
        try SignalState.restorePending(p.signals, ctx: ctx, tgid: innerPid)
        for (t, _, tctx) in threads {
            try ThreadState.restorePending(t, ctx: tctx, tgid: innerPid, tid: t.tid)
        }
        // Late: threads exist (SIGEV_THREAD_ID) and handlers are back; signals stay blocked until detach.
        if let timers = p.timers { try TimerState.restore(timers, ctx: ctx, pidThen: p.pid, pidNow: innerPid) }
        if setExe {
            // The job never had these capabilities: every thread gives them up.
            for (_, _, tctx) in threads { try Threads.dropCapabilities(ctx: tctx) }
        }
        try ctx.syscall.check("unmapping restore work space", SYS.munmap, scratchAddr, UInt64(scratchSize))
        for (t, tr, _) in threads {
            try ThreadState.restoreRegisters(t, tracee: tr, xfeatures: m.cpu.xfeatures)
        }
        times.mark("descriptors+signals+threads")
        return threads.map { $0.1 }
    }

    private func spawnHusk(_ p: ProcessRecord, exe: String, fds: [(src: Int32, dst: Int32)],
                           limits: [RlimitRecord]) throws(GhostError) -> pid_t {
        var err: Int32 = 0, step: Int32 = 0
        let src = fds.map(\.src), dst = fds.map(\.dst)
        let res = limits.map(\.resource), cur = limits.map(\.soft), max = limits.map(\.hard)
        let pid: pid_t = withCStrings([exe]) { argv in
            withCStrings([]) { envp in
                exe.withCString { path in
                    p.cwd.withCString { cwd in
                        src.withUnsafeBufferPointer { srcp in dst.withUnsafeBufferPointer { dstp in
                            res.withUnsafeBufferPointer { rp in cur.withUnsafeBufferPointer { cp in
                                max.withUnsafeBufferPointer { mp in
                                    var cfg = ghost_husk_config(
                                        path: path, argv: argv, envp: envp, cwd: cwd, umask: Int32(p.umask),
                                        pdeathsig: p.pdeathsig, nlimits: Int32(limits.count),
                                        limit_resources: rp.baseAddress, limit_cur: cp.baseAddress, limit_max: mp.baseAddress,
                                        nfds: Int32(fds.count), fd_src: srcp.baseAddress, fd_dst: dstp.baseAddress)
                                    return ghost_husk_spawn(&cfg, &err, &step)
                                }
                            }}
                        }}
                    }
                }
            }
        }
        if pid > 0 { return pid }
        let what = ["fork", "changing to the directory \(p.cwd)", "setting resource limits",
                    "setting up file descriptors", "PTRACE_TRACEME", "executing \(exe)"]
        throw .system("starting the process to restore into: \(what[Int(step) < what.count ? Int(step) : 0])", errno: err)
    }
}

/// Runs `body` with a NULL-terminated C array of C strings.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var ptrs: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    ptrs.append(nil)
    defer { for p in ptrs { free(p) } }
    return ptrs.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// Names of XCR0 feature bits, for messages.
enum XFeatures {
    static let bits: [(Int, String)] = [(0, "x87"), (1, "SSE"), (2, "AVX"), (3, "MPX bounds"), (4, "MPX CSR"),
        (5, "AVX-512 opmask"), (6, "AVX-512 ZMM_Hi256"), (7, "AVX-512 Hi16_ZMM"), (9, "PKRU"),
        (11, "CET user"), (12, "CET supervisor"), (17, "AMX TILECFG"), (18, "AMX TILEDATA"), (19, "APX")]
    static func names(_ mask: UInt64) -> String {
        var out: [String] = []
        for b in 0..<64 where mask >> UInt64(b) & 1 == 1 {
            out.append(bits.first { $0.0 == b }?.1 ?? "feature bit \(b)")
        }
        return out.joined(separator: ", ")
    }
}
