import Glibc
import CGhostSys
import GhostImage

/// What a process is besides memory, files, signals and threads: tree
/// position, executable, cwd, umask, rlimits, personality, the mm fields
/// (code/data/brk/stack/args/env/auxv) and its parent-death signal.
enum ProcessAttributes {
    static let resources: [Int32] = (0..<16).map { Int32($0) }   // RLIMIT_CPU ... RLIMIT_RTTIME

    struct Captured {
        var pid: pid_t, ppid: pid_t, pgid: pid_t, sid: pid_t
        var comm: String, exe: FileIdentity, cwd: String, umask: UInt32, personality: UInt64
        var rlimits: [RlimitRecord], mm: MMRecord, pdeathsig: Int32
    }

    static func capture(ctx: ProcessContext, status: [String: String]) throws(GhostError) -> Captured {
        let pid = ctx.pid
        let st = try ProcFS.stat(pid)
        // A deleted (or replaced) executable is stored with the shared
        // memory objects (SharedMemoryState); the path is kept for messages.
        var exePath = try ProcFS.readLink("/proc/\(pid)/exe")
        if exePath.hasSuffix(" (deleted)") { exePath = String(exePath.dropLast(10)) }
        var s = stat()
        if stat("/proc/\(pid)/exe", &s) != 0 { throw .errno("stat of the executable of process \(pid)") }
        let exe = FileIdentity(path: exePath, size: Int64(s.st_size),
                               mtimeNanos: s.mtimeNanos)
        let cwd = try ProcFS.readLink("/proc/\(pid)/cwd")
        if cwd.hasSuffix(" (deleted)") {
            throw .unsupported("the working directory of process \(pid), \(cwd.dropLast(10)), was deleted")
        }
        let umask = UInt32(status["Umask"] ?? "0022", radix: 8) ?? 0o022
        let personality = UInt64((try? ProcFS.readText("/proc/\(pid)/personality"))?.trimmingCharacters(in: "\n ") ?? "0", radix: 16) ?? 0

        var limits: [RlimitRecord] = []
        for r in resources {
            var lim = rlimit()
            if ghost_syscall6(SYS.prlimit64, Int(pid), Int(r), 0, withUnsafeMutablePointer(to: &lim) { Int(bitPattern: $0) }, 0, 0) != 0 {
                throw .errno("prlimit(\(r)) of process \(pid)")
            }
            limits.append(RlimitRecord(resource: r, soft: UInt64(lim.rlim_cur), hard: UInt64(lim.rlim_max)))
        }

        let brk = try ctx.syscall.check("brk(0)", SYS.brk, 0)
        let auxBytes = ProcFS.readFile("/proc/\(pid)/auxv") ?? []
        var auxv: [UInt64] = []
        for i in stride(from: 0, to: auxBytes.count - 7, by: 8) { auxv.append(auxBytes.u64(at: i)) }
        let mm = MMRecord(startCode: st.field(26), endCode: st.field(27), startData: st.field(45), endData: st.field(46),
                          startBrk: st.field(47), brk: brk, startStack: st.field(28),
                          argStart: st.field(48), argEnd: st.field(49), envStart: st.field(50), envEnd: st.field(51),
                          auxv: auxv)
        let prGetPdeathsig: UInt64 = 2
        try ctx.syscall.check("prctl(PR_GET_PDEATHSIG)", SYS.prctl, prGetPdeathsig, ctx.scratch.address)
        let pdeathsig = Int32(bitPattern: try ctx.scratch.get(4).u32(at: 0))
        return Captured(pid: pid, ppid: pid_t(st.field(4)), pgid: pid_t(st.field(5)), sid: pid_t(st.field(6)),
                        comm: st.comm, exe: exe, cwd: cwd, umask: umask, personality: personality,
                        rlimits: limits, mm: mm, pdeathsig: pdeathsig)
    }

    /// Resource limits the husk can take: a hard limit above ours cannot be
    /// raised by an ordinary user, so it is lowered to ours (with a warning).
    static func limitsForHusk(_ saved: [RlimitRecord], warn: (String) -> Void) -> [RlimitRecord] {
        saved.map { r in
            var own = rlimit()
            getrlimit(__rlimit_resource_t(UInt32(r.resource)), &own)
            var out = r
            if r.hard > UInt64(own.rlim_max) && geteuid() != 0 {
                out.hard = UInt64(own.rlim_max)
                out.soft = min(out.soft, out.hard)
                warn("resource limit \(r.resource) hard \(r.hard) lowered to \(out.hard), the most this node allows")
            }
            return out
        }
    }

    /// prctl(PR_SET_MM, PR_SET_MM_MAP): code/data/brk/stack/arg/env/auxv in one
    /// call, which the kernel allows an unprivileged process to do to itself.
    /// With `exe`, /proc/PID/exe is set to it too (exe_fd; needs
    /// CAP_SYS_ADMIN in the process's user namespace, which a husk there has).
    /// `exe`: a path to open in the process, or `exeFd`: a descriptor it already has.
    static func restoreMM(_ mm: MMRecord, ctx: ProcessContext, exe: String? = nil, exeFd: Int32? = nil) throws(GhostError) {
        var exeFD: UInt32 = UInt32.max
        if let exe, exeFd == nil {
            let path = try ctx.scratch.putString(exe, at: 3072)
            exeFD = UInt32(try ctx.syscall.check("opening \(exe)", SYS.openat, UInt64(bitPattern: Int64(AT_FDCWD)), path,
                                                 UInt64(O_RDONLY | O_CLOEXEC)))
        }
        defer { if exeFD != UInt32.max && exeFd == nil { _ = try? ctx.syscall.call(SYS.close, UInt64(exeFD)) } }
        if let exeFd { exeFD = UInt32(exeFd) }
        let auxBytes = Array<UInt8>.le(contentsOf: mm.auxv)
        let auxAddr = try ctx.scratch.put(auxBytes, at: 512)
        // struct prctl_mm_map: 13 u64 fields, then auxv_size (u32) and exe_fd (u32).
        var map = Array<UInt8>.le(mm.startCode, mm.endCode, mm.startData, mm.endData, mm.startBrk, mm.brk,
                                  mm.startStack, mm.argStart, mm.argEnd, mm.envStart, mm.envEnd, auxAddr)
        map += Array<UInt8>.le32(UInt32(auxBytes.count), exeFD)
        try ctx.scratch.put(map, at: 0)
        let prSetMM: UInt64 = 35, prSetMMMap: UInt64 = 14
        try ctx.syscall.check("prctl(PR_SET_MM_MAP)", SYS.prctl, prSetMM, prSetMMMap, ctx.scratch.address, UInt64(map.count))
    }

    static func restoreComm(_ comm: String, ctx: ProcessContext) throws(GhostError) {
        let prSetName: UInt64 = 15
        let addr = try ctx.scratch.putString(String(comm.utf8.prefix(15)) ?? comm, at: 0)
        try ctx.syscall.check("prctl(PR_SET_NAME)", SYS.prctl, prSetName, addr)
    }
}

extension Array where Element == UInt8 {
    static func le(contentsOf values: [UInt64]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(values.count * 8)
        for v in values { for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        return out
    }
    static func le32(_ values: UInt32...) -> [UInt8] {
        var out: [UInt8] = []
        for v in values { for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
        return out
    }
}
