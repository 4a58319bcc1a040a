import Glibc
import CGhostSys

/// The job's processes, as seen from ghost (outer PIDs) and by the job (inner PIDs).
public struct JobHandle: Sendable {
    /// ghost-init, PID 1 of the job's namespaces, if the job has them.
    public var initPid: pid_t?
    /// The job's main process.
    public var rootPid: pid_t
    public init(initPid: pid_t?, rootPid: pid_t) { self.initPid = initPid; self.rootPid = rootPid }
}

/// Freezes every thread of every process of the job. A process can fork or
/// start a thread until it is frozen, so the tree is listed again after each
/// round of seizing until a round finds nothing new: then nothing can change.
struct TreeFreezer {
    struct Member {
        var pid: pid_t
        var threads: [Freezer]
        var zombie: Bool
    }
    private(set) var members: [Member] = []

    mutating func freeze(_ job: JobHandle) throws(GhostError) {
        var seen = Set<pid_t>()
        for _ in 0..<1000 {
            let pids = try list(job)
            var changed = false
            for pid in pids {
                if !seen.contains(pid) {
                    seen.insert(pid)
                    members.append(Member(pid: pid, threads: [], zombie: Self.isZombie(pid)))
                    changed = true
                }
                let idx = members.firstIndex { $0.pid == pid }!
                if members[idx].zombie { continue }
                let known = Set(members[idx].threads.map(\.pid))
                for tid in (try? ProcFS.tasks(pid)) ?? [] where !known.contains(tid) {
                    var f = Freezer(pid: tid)
                    try f.freeze()
                    members[idx].threads.append(f)
                    changed = true
                }
            }
            if !changed { return }
        }
        throw .unsupported("the job keeps creating processes or threads faster than ghost can freeze them")
    }

    /// The job's processes, parents before children.
    private func list(_ job: JobHandle) throws(GhostError) -> [pid_t] {
        if let initPid = job.initPid { return try JobNamespace.members(initPid: initPid) }
        var out: [pid_t] = [job.rootPid]
        var i = 0
        while i < out.count { out += (try? ProcFS.children(out[i])) ?? []; i += 1 }
        return out
    }

    static func isZombie(_ pid: pid_t) -> Bool {
        ((try? ProcFS.stat(pid))?.fields.first) == "Z"
    }

    mutating func thaw() {
        for i in members.indices { for j in members[i].threads.indices { members[i].threads[j].thaw() } }
    }
}
