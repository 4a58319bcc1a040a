import Glibc

/// The VmFlags of the job's areas, read from /proc/PID/smaps before the
/// freeze. Reading smaps walks every page table entry of the process (about
/// 10 ms per GiB resident), which was a third of a checkpoint's freeze.
///
/// In the freeze, /proc/PID/maps (no page walk) is read instead, and each
/// area it shows exactly as before takes its flags from the early read; if
/// any area is new or different, smaps is read in the freeze as before.
/// The flags ghost acts on are fixed at mmap (gd, io, pf) except two that
/// madvise() can set on an unchanged area: dc (MADV_DONTFORK) and wf
/// (MADV_WIPEONFORK), which decide whether a forked snapshot holds the
/// area's pages. `verify` re-reads smaps after the thaw: if one of those
/// changed on an area whose early flags were used, the checkpoint is taken
/// again with smaps read in the freeze.
struct AreaFlags {
    struct Key: Hashable {
        var start: UInt64, end: UInt64, perms: String, offset: UInt64, inode: UInt64, dev: String, path: String
        init(_ m: ProcFS.Mapping) {
            start = m.start; end = m.end; perms = m.perms; offset = m.offset; inode = m.inode; dev = m.dev; path = m.path
        }
    }

    /// Flags a change of which after the early read matters (see above).
    static let forkFlags: Set<String> = ["dc", "wf"]

    /// What the early read says of an area: its flags and resident bytes
    /// (which decide whether its writes are tracked, see WriteTracking).
    struct Early { var flags: Set<String>, resident: UInt64? }

    private var early: [pid_t: [Key: Early]] = [:]
    /// Per process, the areas whose flags came from the early read.
    private var used: [pid_t: [Key: Set<String>]] = [:]

    /// `pids`: the job's processes as listed before the freeze (a process
    /// missing here, or that cannot be read, gets smaps in the freeze).
    init(pids: [pid_t]) {
        for pid in pids {
            guard let maps = try? ProcFS.mappings(pid, flags: true) else { continue }
            early[pid] = Dictionary(maps.map { (Key($0), Early(flags: $0.vmFlags, resident: $0.resident)) },
                                    uniquingKeysWith: { a, _ in a })
        }
    }

    /// The areas of `maps` (read without flags) that the early read saw,
    /// with their flags; areas it did not see are left out.
    func flagged(_ maps: [ProcFS.Mapping], pid: pid_t) -> [ProcFS.Mapping] {
        guard let known = early[pid] else { return [] }
        return maps.compactMap { m in known[Key(m)].map { var f = m; f.vmFlags = $0.flags; f.resident = $0.resident; return f } }
    }

    /// No early read: smaps in the freeze, as for a process started since.
    static let none = AreaFlags(pids: [])

    /// The areas of frozen process `pid` with their flags.
    mutating func mappings(_ pid: pid_t) throws(GhostError) -> [ProcFS.Mapping] {
        guard let known = early[pid] else { return try ProcFS.mappings(pid, flags: true) }
        var maps = try ProcFS.mappings(pid, flags: false)
        var took: [Key: Set<String>] = [:]
        for i in maps.indices {
            let key = Key(maps[i])
            guard let e = known[key] else { return try ProcFS.mappings(pid, flags: true) }
            maps[i].vmFlags = e.flags
            maps[i].resident = e.resident
            took[key] = e.flags
        }
        used[pid] = took
        return maps
    }

    /// Throws when an area whose early flags were used now has other
    /// dc/wf flags: the snapshot may have missed its pages. Only processes
    /// read from a snapshot (`snapshotted`) are checked: memory read from the
    /// frozen process itself is right whatever those flags are.
    func verify(_ snapshotted: Set<pid_t>) throws(GhostError) {
        for (pid, took) in used where snapshotted.contains(pid) {
            // A process gone since the thaw cannot be checked, and needs not be:
            // its memory was read from a snapshot or in the freeze already, and
            // the checkpoint shows it as it was.
            guard let now = try? ProcFS.mappings(pid, flags: true) else { continue }
            for m in now {
                guard let before = took[Key(m)] else { continue }
                if before.intersection(Self.forkFlags) != m.vmFlags.intersection(Self.forkFlags) {
                    throw .areaFlagsChanged(pid: pid, start: m.start)
                }
            }
        }
    }
}
