import Glibc
import CGhostSys

/// Processes of a job that runs in its own PID namespace under ghost-init:
/// the PIDs we see (outer) and the PIDs the job sees (inner, from NSpid).
public enum JobNamespace {
    /// Whether unprivileged user + PID namespaces work on this node.
    public static var available: Bool { ghost_namespaces_available() == 1 }

    /// Every process below ghost-init, parents before children.
    static func members(initPid: pid_t) throws(GhostError) -> [pid_t] {
        var out: [pid_t] = []
        var queue = try ProcFS.children(initPid)
        while !queue.isEmpty {
            let p = queue.removeFirst()
            out.append(p)
            queue += (try? ProcFS.children(p)) ?? []
        }
        return out
    }

    /// The innermost PID of an outer pid (last field of NSpid), or the pid itself.
    static func innerPid(_ outer: pid_t) -> pid_t {
        guard let st = try? ProcFS.status(outer), let ns = st["NSpid"] else { return outer }
        return ns.split(whereSeparator: { $0 == " " || $0 == "\t" }).last.flatMap { pid_t($0) } ?? outer
    }

    /// Innermost values of NSpgid / NSsid lines (0 when the leader is outside the namespace).
    static func innerField(_ status: [String: String], _ key: String) -> pid_t {
        guard let v = status[key] else { return 0 }
        let parts = v.split(whereSeparator: { $0 == " " || $0 == "\t" })
        return parts.count >= 2 ? pid_t(parts.last!) ?? 0 : 0
    }
}
