import Glibc

/// Readers for /proc/PID files. Each returns parsed values or throws a
/// GhostError naming the file.
enum ProcFS {
    static func readText(_ path: String) throws(GhostError) -> String {
        guard let bytes = readFile(path) else { throw .errno("reading \(path)") }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    static func readLink(_ path: String) throws(GhostError) -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buf, buf.count - 1)
        if n < 0 { throw .errno("readlink \(path)") }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Task (thread) ids of a process.
    static func tasks(_ pid: pid_t) throws(GhostError) -> [pid_t] {
        try listDir("/proc/\(pid)/task").compactMap { pid_t($0) }.sorted()
    }

    static func listDir(_ path: String) throws(GhostError) -> [String] {
        guard let d = opendir(path) else { throw .errno("listing \(path)") }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Children of every thread of a process (from /proc/PID/task/TID/children).
    static func children(_ pid: pid_t) throws(GhostError) -> [pid_t] {
        var out: [pid_t] = []
        for t in try tasks(pid) {
            let text = (try? readText("/proc/\(pid)/task/\(t)/children")) ?? ""
            out += text.split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: " \n")) }
        }
        return out
    }

    /// The fields of /proc/PID/stat after "(comm)", so index 0 is field 3 (state).
    struct Stat {
        let comm: String
        let fields: [String]
        /// Field number n as man proc(5) counts them (1-based).
        func field(_ n: Int) -> UInt64 { UInt64(fields[n - 3]) ?? UInt64(bitPattern: Int64(fields[n - 3]) ?? 0) }
    }

    static func stat(_ pid: pid_t) throws(GhostError) -> Stat {
        let text = try readText("/proc/\(pid)/stat")
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")") else {
            throw .system("parsing /proc/\(pid)/stat", errno: EINVAL)
        }
        let comm = String(text[text.index(after: open)..<close])
        let rest = text[text.index(after: close)...].split(separator: " ").map(String.init)
        return Stat(comm: comm, fields: rest.map { $0.trimmingCharacters(in: "\n") })
    }

    /// "Key:\tvalue" lines of /proc/PID/status.
    static func status(_ pid: pid_t) throws(GhostError) -> [String: String] {
        var out: [String: String] = [:]
        for line in try readText("/proc/\(pid)/status").split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            out[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: " \t")
        }
        return out
    }

    /// One /proc/PID/smaps entry.
    struct Mapping {
        var start: UInt64
        var end: UInt64
        var perms: String
        var offset: UInt64
        var inode: UInt64
        var path: String
        /// "major:minor" (hex) of the device holding the mapped file; with
        /// `inode` it names one object, e.g. the shmem behind shared memory.
        var dev: String = ""
        var vmFlags: Set<String> = []
        /// Resident bytes (smaps "Rss"); nil when read from maps.
        var resident: UInt64? = nil
        var readable: Bool { perms.hasPrefix("r") }
        var shared: Bool { perms.hasSuffix("s") }
        var prot: Int32 {
            var p: Int32 = 0
            let c = Array(perms)
            if c[0] == "r" { p |= PROT_READ }
            if c[1] == "w" { p |= PROT_WRITE }
            if c[2] == "x" { p |= PROT_EXEC }
            return p
        }
    }

    /// Memory map with VmFlags (from smaps when `flags`, else the cheaper maps).
    static func mappings(_ pid: pid_t, flags: Bool = true) throws(GhostError) -> [Mapping] {
        let text = try readText("/proc/\(pid)/\(flags ? "smaps" : "maps")")
        var out: [Mapping] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("VmFlags:") {
                if !out.isEmpty {
                    out[out.count - 1].vmFlags = Set(line.dropFirst(8).split(separator: " ").map(String.init))
                }
                continue
            }
            if line.hasPrefix("Rss:") {
                if !out.isEmpty, let kb = UInt64(line.dropFirst(4).trimmingCharacters(in: " \t").dropLast(3)) {
                    out[out.count - 1].resident = kb * 1024
                }
                continue
            }
            guard let m = parseMapsLine(line) else { continue }
            out.append(m)
        }
        return out
    }

    static func parseMapsLine(_ line: Substring) -> Mapping? {
        // start-end perms offset dev inode   path (path may hold spaces)
        var idx = line.startIndex
        func token() -> Substring? {
            while idx < line.endIndex && line[idx] == " " { idx = line.index(after: idx) }
            let s = idx
            while idx < line.endIndex && line[idx] != " " { idx = line.index(after: idx) }
            return s < idx ? line[s..<idx] : nil
        }
        guard let range = token(), let dash = range.firstIndex(of: "-"),
              let start = UInt64(range[..<dash], radix: 16),
              let end = UInt64(range[range.index(after: dash)...], radix: 16),
              let perms = token(), perms.count == 4,
              let offText = token(), let offset = UInt64(offText, radix: 16),
              let dev = token(), let inoText = token(), let inode = UInt64(inoText) else { return nil }
        while idx < line.endIndex && line[idx] == " " { idx = line.index(after: idx) }
        return Mapping(start: start, end: end, perms: String(perms), offset: offset, inode: inode,
                       path: String(line[idx...]), dev: String(dev))
    }

    /// fdinfo of one descriptor: pos, flags (octal) and its "lock:" lines.
    static func fdinfo(_ pid: pid_t, _ fd: Int32) throws(GhostError) -> (pos: Int64, flags: Int32, locks: [String]) {
        var pos: Int64 = 0, flags: Int32 = 0, locks: [String] = []
        for line in try readText("/proc/\(pid)/fdinfo/\(fd)").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: " \t") }
            guard parts.count == 2 else { continue }
            if parts[0] == "pos" { pos = Int64(parts[1]) ?? 0 }
            if parts[0] == "flags" { flags = Int32(parts[1], radix: 8) ?? 0 }
            if parts[0] == "lock" { locks.append(parts[1]) }
        }
        return (pos, flags, locks)
    }
}

extension stat {
    /// st_mtim in nanoseconds since the epoch (FileIdentity.mtimeNanos).
    var mtimeNanos: Int64 { Int64(st_mtim.tv_sec) * 1_000_000_000 + Int64(st_mtim.tv_nsec) }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
