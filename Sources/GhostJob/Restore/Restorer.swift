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
        do {
            return (n, try Manifest.decode(payload))
        } catch {
            throw .badImage("checkpoint \(n) in \(store.path): \(error)")
        }
    }

    /// Checks that the image can run here before anything is started.
    public static func checkCompatible(_ m: Manifest) throws(GhostError) {
        guard m.processes.count == 1, m.processes[0].threads.count == 1 else {
            throw .unsupported("the image holds \(m.processes.count) processes; this ghost restores single-process, single-thread jobs")
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
    }

    /// Rebuilds the process and returns its pid; it is running when this returns.
    public func restore(_ m: Manifest) throws(GhostError) -> pid_t {
        try Self.checkCompatible(m)
        let p = m.processes[0]
        try MemoryState.checkUnchanged(p.exe, at: p.mm.startCode)

        // Descriptors are opened here and inherited by the husk at their numbers.
        let prepared = try FileState.prepare(p.fds, store: store)
        let fds = prepared.filter { $0.dst >= 0 }
        defer { for f in prepared where f.opened { close(f.src) } }
        let limits = ProcessAttributes.limitsForHusk(p.rlimits, warn: warn)
        let pid = try spawnHusk(p, fds: fds, limits: limits)
        var done = false
        defer { if !done { kill(pid, SIGKILL); var st: Int32 = 0; waitpid(pid, &st, __WALL) } }

        let tracee = Tracee(tid: pid)
        _ = try tracee.waitStop()   // SIGTRAP after exec: nothing of the program has run
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
        for m in husk where !VDSOState.names.contains(m.path) && m.path != "[vsyscall]" {
            try ctx.syscall.check("unmapping \(m.path.isEmpty ? hex(m.start) : m.path) of the husk",
                                  SYS.munmap, m.start, m.end - m.start)
        }
        if let v = p.vdso {
            try VDSOState.restore(v, ctx: ctx, husk: husk,
                                  avoid: imageRanges + [(scratchAddr, scratchAddr + UInt64(scratchSize))])
        }
        try MemoryState.restore(p.vmas, ctx: ctx, store: store, blockPages: m.blockPages)
        try FileState.restoreFlags(p.fds, ctx: ctx)
        try SignalState.restoreActions(p.signals, ctx: ctx)
        let thread = p.threads[0]
        try ThreadState.restoreKernelState(thread, ctx: ctx)
        try ProcessAttributes.restoreComm(p.comm, ctx: ctx)
        try ProcessAttributes.restoreMM(p.mm, ctx: ctx)
        try SignalState.restorePending(p.signals, ctx: ctx, tgid: pid)
        try ThreadState.restorePending(thread, ctx: ctx, tgid: pid)
        try ctx.syscall.check("unmapping restore work space", SYS.munmap, scratchAddr, UInt64(scratchSize))
        try ThreadState.restoreRegisters(thread, tracee: tracee, xfeatures: m.cpu.xfeatures)
        tracee.detach()
        done = true
        return pid
    }

    private func spawnHusk(_ p: ProcessRecord, fds: [(src: Int32, dst: Int32, opened: Bool)],
                           limits: [RlimitRecord]) throws(GhostError) -> pid_t {
        var err: Int32 = 0, step: Int32 = 0
        let src = fds.map(\.src), dst = fds.map(\.dst)
        let res = limits.map(\.resource), cur = limits.map(\.soft), max = limits.map(\.hard)
        let pid: pid_t = withCStrings([p.exe.path]) { argv in
            withCStrings([]) { envp in
                p.exe.path.withCString { path in
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
                    "setting up file descriptors", "PTRACE_TRACEME", "executing \(p.exe.path)"]
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
