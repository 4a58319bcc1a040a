import Glibc
import GhostImage

/// Advisory file locks (flock, POSIX record locks, OFD locks) held through a
/// descriptor: read from the "lock:" lines of /proc/PID/fdinfo/FD (which
/// lists a POSIX lock only in the process that owns it, and flock/OFD locks
/// on every descriptor of their open file description), and taken again by
/// the rebuilt process itself, so a POSIX lock has the right owner.
enum FileLocks {
    /// "1: FLOCK  ADVISORY  WRITE 8704 fe:00:16220415 0 EOF" -> a record.
    static func parse(_ lines: [String], pid: pid_t, fd: Int32, path: String) throws(GhostError) -> [FileLockRecord]? {
        var out: [FileLockRecord] = []
        for line in lines {
            let f = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard f.count >= 8, let start = Int64(f[6]) else {
                throw .unsupported("fd \(fd) of process \(pid) (\(path)) holds a lock ghost cannot read: '\(line)'")
            }
            let kind: FileLockRecord.Kind
            switch f[1] {
            case "FLOCK": kind = .flock
            case "POSIX": kind = .posix
            case "OFDLCK": kind = .ofd
            default:
                // Leases and delegations are the kernel's business with other openers.
                Log.warn("fd \(fd) of process \(pid) (\(path)) holds a \(f[1]) lock, which a resume does not take again")
                continue
            }
            guard f[3] == "READ" || f[3] == "WRITE" else { continue }
            let rec = FileLockRecord(kind: kind, write: f[3] == "WRITE", start: start, end: f[7] == "EOF" ? nil : Int64(f[7]))
            if !out.contains(rec) { out.append(rec) }
        }
        return out.isEmpty ? nil : out
    }

    /// Takes each lock again, without waiting. A lock someone else holds now
    /// (the failed run's NFS lock not yet expired, another job) is not
    /// waited for: the job runs on without it, and the user is told.
    static func restore(_ records: [FDRecord], ctx: ProcessContext) throws(GhostError) {
        let fSetlk: UInt64 = 6, fOfdSetlk: UInt64 = 37
        let lockSh: UInt64 = 1, lockEx: UInt64 = 2, lockNb: UInt64 = 4
        for r in records {
            for l in r.locks ?? [] {
                let result: Int64
                switch l.kind {
                case .flock:
                    result = try ctx.syscall.call(SYS.flock, UInt64(r.fd), (l.write ? lockEx : lockSh) | lockNb)
                case .posix, .ofd:
                    // struct flock: l_type (short), l_whence (short), l_start, l_len, l_pid.
                    let type: UInt64 = l.write ? 1 : 0           // F_WRLCK : F_RDLCK
                    let whence: UInt64 = 0                       // SEEK_SET
                    let len = l.end.map { UInt64(bitPattern: $0 - l.start + 1) } ?? 0
                    let addr = try ctx.scratch.put(.le(type | whence << 16, UInt64(bitPattern: l.start), len, 0), at: 512)
                    result = try ctx.syscall.call(SYS.fcntl, UInt64(r.fd), l.kind == .posix ? fSetlk : fOfdSetlk, addr)
                }
                if result < 0 {
                    let range = l.kind == .flock ? "" : " on bytes \(l.start)-\(l.end.map(String.init) ?? "EOF")"
                    Log.warn("fd \(r.fd) of process \(ctx.pid) held a \(l.write ? "write" : "read") \(l.kind) lock on "
                        + "\(r.path)\(range), which cannot be taken again (\(String(cString: strerror(Int32(-result))))): "
                        + "another process holds it; the resumed job runs without it")
                }
            }
        }
    }
}
