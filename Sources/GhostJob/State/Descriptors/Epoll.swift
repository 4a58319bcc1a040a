import Glibc
import GhostImage
import CGhostSys

/// epoll. The instance is made by the resuming tool like any description;
/// its interest list (fdinfo: tfd, events, data) is added back by an
/// epoll_ctl injected into a process of the job that holds both the epoll
/// and the watched file at that number, since entries are keyed by file and
/// descriptor number. Flag bits (EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE) are
/// part of `events`; a fired one-shot entry has only them and stays disarmed.
enum Epoll {
    static let sysEpollCtl = 233, sysEpollCreate1 = 291, ctlAdd: UInt64 = 1

    static func capture(pid: pid_t, into r: inout FDRecord) throws(GhostError) {
        var entries: [EpollRecord.Entry] = []
        for (k, v) in try FileState.fdinfo(pid, r.fd) where k == "tfd" {
            // "       5 events: 80000019 data:                5  pos:0 ino:a7eb6 sdev:9"
            let t = v.split(separator: " ")
            guard let fd = t.first.flatMap({ Int32($0) }),
                  let ei = t.firstIndex(of: "events:"), ei + 1 < t.count, let events = UInt32(t[ei + 1], radix: 16),
                  let di = t.firstIndex(of: "data:"), di + 1 < t.count, let data = UInt64(t[di + 1], radix: 16) else {
                throw .unsupported("fd \(r.fd) of process \(pid) is an epoll whose entry '\(v)' ghost cannot read")
            }
            entries.append(EpollRecord.Entry(fd: fd, events: events, data: data))
        }
        r.kind = .epoll
        r.offset = 0
        r.epoll = EpollRecord(entries: entries)
    }

    /// Gives each entry of each epoll to one process that holds the epoll and,
    /// at the entry's number, the very file it watches (kcmp KCMP_EPOLL_TFD).
    static func link(_ records: inout [[FDRecord]], outer: [pid_t], inner: [pid_t]) throws(GhostError) {
        for (rp, ri) in FileState.firsts(records, .epoll) {
            let all = records[rp][ri].epoll?.entries ?? []
            // Holders: (process, record) of every descriptor of this epoll, first one per process.
            var holders: [(Int, Int)] = []
            for pj in records.indices {
                if let k = records[pj].indices.first(where: {
                    records[pj][$0].kind == .epoll && FileState.root(records, inner: inner, pj, $0) == (rp, ri)
                }) { holders.append((pj, k)) }
            }
            for (pj, k) in holders { records[pj][k].epoll = EpollRecord(entries: []) }
            var seen: [Int32: Int32] = [:]
            for e in all {
                let toff = seen[e.fd, default: 0]
                seen[e.fd] = toff + 1
                guard let (pj, k) = holders.first(where: { (pj, _) in
                    records[pj].contains { $0.fd == e.fd }
                        && ghost_kcmp_epoll_tfd(outer[pj], e.fd, outer[rp], records[rp][ri].fd, e.fd, toff) == 0
                }) else {
                    throw .unsupported("fd \(records[rp][ri].fd) of process \(outer[rp]) is an epoll watching a file "
                        + "registered as fd \(e.fd), which no process of the job that holds the epoll has at that number "
                        + "any more; ghost cannot rebuild that entry")
                }
                records[pj][k].epoll!.entries.append(e)
            }
        }
    }

    static func open(_ r: FDRecord) throws(GhostError) -> Int32 {
        let fd = Int32(ghost_syscall6(sysEpollCreate1, Int(O_CLOEXEC), 0, 0, 0, 0, 0))
        if fd < 0 { throw .errno("epoll_create1 for fd \(r.fd) of the job") }
        return fd
    }

    /// In the rebuilt process: epoll_ctl(ADD) of the entries it owns.
    static func restoreEntries(_ records: [FDRecord], ctx: ProcessContext) throws(GhostError) {
        for r in records where r.kind == .epoll {
            for e in r.epoll?.entries ?? [] {
                // struct epoll_event is packed on x86-64: u32 events, u64 data.
                var ev = withUnsafeBytes(of: e.events.littleEndian) { Array($0) }
                ev += withUnsafeBytes(of: e.data.littleEndian) { Array($0) }
                let addr = try ctx.scratch.put(ev)
                try ctx.syscall.check("epoll_ctl(\(r.fd), EPOLL_CTL_ADD, \(e.fd))", sysEpollCtl,
                                      UInt64(r.fd), ctlAdd, UInt64(e.fd), addr)
            }
        }
    }
}
