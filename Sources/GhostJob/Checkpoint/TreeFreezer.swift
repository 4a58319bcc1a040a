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

/// Freezes every thread of every process of the job. A process can fork,
/// start a thread, exec or exit until it is frozen, so the tree is listed
/// again after each round of seizing until a round finds nothing new; then
/// the result is checked (every live process fully frozen, every parent
/// present). A tree caught changing under the freeze (a frozen process gone,
/// a process that died half-frozen) is let go and frozen again from scratch.
struct TreeFreezer {
    struct Member {
        var pid: pid_t
        var threads: [Freezer]
        var zombie: Bool
    }
    private(set) var members: [Member] = []

    /// Changed: the tree changed in a way one round cannot absorb, start
    /// over. Refused: a real refusal (another tracer, permissions).
    private enum Outcome: Error { case changed(String), refused(GhostError) }

    mutating func freeze(_ job: JobHandle) throws(GhostError) {
        var last = ""
        for _ in 0..<50 {
            do throws(Outcome) {
                try freezeOnce(job)
                return
            } catch {
                thawDelivering()
                switch error {
                case .refused(let e): throw e
                case .changed(let why): last = why
                }
                usleep(2000)
            }
        }
        throw .unsupported("the job's processes kept changing while ghost froze them (\(last)); try again later")
    }

    private mutating func freezeOnce(_ job: JobHandle) throws(Outcome) {
        var gone = Set<pid_t>()      // tasks seen exiting: not new when listed again
        for _ in 0..<1000 {
            let pids: [pid_t]
            do { pids = try Self.list(job) } catch { throw .refused(error) }
            let listed = Set(pids)
            // A zombie reaped since it was seen has left the tree; a frozen process cannot leave.
            for m in members where !listed.contains(m.pid) {
                if !m.zombie { throw .changed("process \(m.pid) left the tree while frozen") }
            }
            members.removeAll { !listed.contains($0.pid) }
            var changed = false
            for pid in pids where !gone.contains(pid) {
                if !members.contains(where: { $0.pid == pid }) {
                    let zombie = Self.isZombie(pid)
                    if zombie, let live = Self.liveThreadsOfZombieLeader(pid) {
                        throw .refused(.unsupported("process \(pid) (\(live.comm)) of the job has no main thread: it "
                            + "called pthread_exit() while \(live.count) other thread(s) run on; ghost cannot "
                            + "checkpoint such a process yet"))
                    }
                    members.append(Member(pid: pid, threads: [], zombie: zombie))
                    changed = true
                }
                let idx = members.firstIndex { $0.pid == pid }!
                if members[idx].zombie { continue }
                let known = Set(members[idx].threads.map(\.pid))
                for tid in (try? ProcFS.tasks(pid)) ?? [] where !known.contains(tid) && !gone.contains(tid) {
                    if let worker = Self.kernelWorker(tid) {
                        throw .refused(.unsupported("process \(pid) (\((try? ProcFS.stat(pid))?.comm ?? "?")) has a kernel "
                            + "thread, \(tid) (\(worker)), " + (worker.hasPrefix("iou-") ? "of an io_uring instance; ghost "
                            + "cannot checkpoint io_uring yet" : "that ghost cannot stop; ghost cannot checkpoint such a process")))
                    }
                    var f = Freezer(pid: tid)
                    let ok: Bool
                    do { ok = try f.tryFreeze() } catch { throw .refused(error) }
                    changed = true
                    if ok { members[idx].threads.append(f); continue }
                    gone.insert(tid)
                    if tid == pid {
                        // The process died before it could be seized.
                        if !members[idx].threads.isEmpty { throw .changed("process \(pid) exited half-frozen") }
                        if Self.isZombie(pid) { members[idx].zombie = true; gone.remove(tid) }
                        break
                    }
                }
            }
            members.removeAll { !$0.zombie && $0.threads.isEmpty && gone.contains($0.pid) }
            if !changed { return try check(job) }
        }
        throw .changed("more than 1000 rounds")
    }

    /// Every live member has all its threads frozen and its parent in the job.
    private func check(_ job: JobHandle) throws(Outcome) {
        let pids = Set(members.map(\.pid))
        for m in members {
            guard let st = try? ProcFS.stat(m.pid) else { throw .changed("process \(m.pid) vanished") }
            if m.zombie != (st.fields.first == "Z") { throw .changed("process \(m.pid) changed state") }
            let ppid = pid_t(st.field(4))
            let top = job.initPid ?? getpid()
            if ppid != top && !pids.contains(ppid) && !(job.initPid == nil && m.pid == job.rootPid) {
                throw .changed("the parent \(ppid) of process \(m.pid) is not in the job")
            }
            if m.zombie { continue }
            let live = Set(((try? ProcFS.tasks(m.pid)) ?? []).filter { !Self.isZombie(m.pid, task: $0) })
            if !live.isSubset(of: Set(m.threads.map(\.pid))) {
                throw .changed("process \(m.pid) has threads that are not frozen")
            }
        }
    }

    /// The job's processes, parents before children.
    static func list(_ job: JobHandle) throws(GhostError) -> [pid_t] {
        if let initPid = job.initPid { return try JobNamespace.members(initPid: initPid) }
        var out: [pid_t] = [job.rootPid]
        var i = 0
        while i < out.count { out += (try? ProcFS.children(out[i])) ?? []; i += 1 }
        return out
    }

    static func isZombie(_ pid: pid_t) -> Bool {
        ((try? ProcFS.stat(pid))?.fields.first) == "Z"
    }

    /// A process whose leader thread is a zombie but whose other threads
    /// live (the main thread called pthread_exit): their number and the
    /// process's name; nil for a real zombie.
    static func liveThreadsOfZombieLeader(_ pid: pid_t) -> (count: Int, comm: String)? {
        let live = ((try? ProcFS.tasks(pid)) ?? []).filter { $0 != pid && !isZombie(pid, task: $0) }
        if live.isEmpty { return nil }
        return (live.count, (try? ProcFS.stat(pid))?.comm ?? "?")
    }

    /// The name of a kernel worker thread running in the process (io_uring's
    /// iou-sqp-*/iou-wrk-*, PF_IO_WORKER; vhost's, PF_USER_WORKER), nil for
    /// a thread of the program. Such a thread never enters a ptrace stop:
    /// waiting for it to stop would keep the whole job frozen for good.
    static func kernelWorker(_ tid: pid_t) -> String? {
        let pfIOWorker: UInt64 = 0x10, pfUserWorker: UInt64 = 0x4000
        guard let st = try? ProcFS.stat(tid), st.fields.count > 6, st.field(9) & (pfIOWorker | pfUserWorker) != 0 else { return nil }
        return st.comm
    }

    static func isZombie(_ pid: pid_t, task: pid_t) -> Bool {
        guard let text = try? ProcFS.readText("/proc/\(pid)/task/\(task)/stat"),
              let close = text.lastIndex(of: ")") else { return true }
        let state = text[text.index(close, offsetBy: 2)...].prefix(1)
        return state == "Z" || state == "X"
    }

    mutating func thaw() {
        for i in members.indices { for j in members[i].threads.indices { members[i].threads[j].thaw() } }
    }

    /// Lets go after a freeze that captured nothing: signals the freeze took
    /// are delivered as they would have been.
    mutating func thawDelivering() {
        for i in members.indices { for j in members[i].threads.indices { members[i].threads[j].thawDelivering() } }
        members = []
    }
}
