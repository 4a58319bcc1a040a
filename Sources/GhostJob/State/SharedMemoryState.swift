import Glibc
import CGhostSys
import GhostImage

/// Memory shared between mappings: MAP_SHARED|MAP_ANONYMOUS (which the kernel
/// backs with a /dev/zero shmem file), memfds, POSIX shared memory (files on
/// tmpfs such as /dev/shm) and disk files mapped shared and writable.
///
/// One object may be mapped by several processes at different addresses and
/// offsets, and each process's page tables only show the pages it touched, so
/// an object is captured once for the whole job: the union of the pages any
/// mapper has, plus (when the job holds a descriptor for it) every allocated
/// page of the file. It is read while the job is frozen: a forked snapshot
/// would share these pages with the running job.
///
/// Restore makes each object once in ghost (a memfd, or the file rewritten in
/// place) and hands its descriptor to every husk that maps or holds it, so a
/// write by one process is seen by the others again.
enum SharedMemoryState {
    static let tmpfsMagic: Int = 0x0102_1994
    static let fAddSeals: Int32 = 1033, fGetSeals: Int32 = 1034
    static let seekData: Int32 = 3, seekHole: Int32 = 4

    /// How the kernel names one object at checkpoint time.
    struct Key: Hashable { var dev: String; var inode: UInt64 }

    // MARK: which areas and descriptors are shared objects

    /// Mappings whose path names a shmem object rather than a file one can reopen.
    static func isShmemPath(_ path: String) -> Bool {
        path == "/dev/zero (deleted)" || path.hasPrefix("/memfd:")
            || (path.hasPrefix("/dev/shm/") && path.hasSuffix(" (deleted)"))
    }

    /// Whether area `v` maps a shared object whose pages are captured here
    /// (and not with the process's own memory).
    static func backsObject(_ m: ProcFS.Mapping, _ v: VMARecord) -> Bool {
        switch v.kind {
        case .sharedAnonymous: return true
        case .sharedFile: return m.prot & PROT_WRITE != 0 || isDeleted(m.path) || onTmpfs(m.path)
        // A private mapping of a memfd or deleted file: the object gives the
        // pages not yet copied on write; those copied are the process's own.
        case .privateFile: return isShmemPath(m.path) || isDeleted(m.path)
        default: return false
        }
    }

    static func isDeleted(_ path: String) -> Bool { path.hasSuffix(" (deleted)") }

    static func onTmpfs(_ path: String) -> Bool {
        ghost_fs_type(path) == tmpfsMagic
    }

    /// Whether descriptor `link` (/proc/PID/fd/N, pointing at `target`) is a
    /// memfd or a POSIX shared memory file: its contents go into the image,
    /// since neither survives a move to another node.
    static func isSharedMemoryFD(target: String, link: String) -> Bool {
        if target.hasPrefix("/memfd:") { return true }
        return target.hasPrefix("/dev/shm/") && onTmpfs(link)
    }

    // MARK: capture

    /// Pages of the process's shmem mappings (shared anonymous memory and
    /// memfds) that exist in the object, whether or not this process's page
    /// tables point at them: a page written by a process that since unmapped
    /// it, or put back by a restore and not touched since, shows in no
    /// pagemap. mincore() answers from the object's page cache, but only for
    /// the caller's own mappings, so it is injected. Keyed by mapping start.
    static func residentPages(ctx: ProcessContext) throws(GhostError) -> [UInt64: [(UInt64, UInt64)]] {
        let ps = UInt64(MemoryState.pageSize)
        let perCall = UInt64(ctx.scratch.size)          // one byte per page
        var out: [UInt64: [(UInt64, UInt64)]] = [:]
        for m in try ProcFS.mappings(ctx.pid, flags: false) where m.shared && isShmemPath(m.path) {
            var ranges: [(UInt64, UInt64)] = []
            var addr = m.start
            while addr < m.end {
                let pages = min(perCall, (m.end - addr) / ps)
                try ctx.syscall.check("mincore of shared memory at \(hex(addr))", SYS.mincore,
                                      addr, pages * ps, ctx.scratch.address)
                let vec = try ctx.scratch.get(Int(pages))
                for (i, v) in vec.enumerated() where v & 1 == 1 {
                    let p = addr + UInt64(i) * ps
                    if let last = ranges.last, last.1 == p { ranges[ranges.count - 1].1 = p + ps } else { ranges.append((p, p + ps)) }
                }
                addr += pages * ps
            }
            out[m.start] = ranges
        }
        return out
    }

    /// One process of the frozen job, as the capture sees it.
    struct Member {
        var pid: pid_t                 // outer PID (ghost's view)
        var inner: pid_t               // PID in the records (the job's view)
        var areas: [(ProcFS.Mapping, VMARecord)]
        var fds: [FDRecord]
        /// From residentPages, taken while the process was stopped.
        var resident: [UInt64: [(UInt64, UInt64)]]
        /// Set by capture when the process's executable was deleted.
        var exeObject: Int? = nil
    }

    private struct Mapper { var member: Int; var area: Int }

    private final class Object {
        let id: Int
        var kind: SharedMemoryRecord.Kind
        var name: String?, path: String?, mode: UInt32?, seals: Int32?
        var size: Int64 = 0
        var mappers: [Mapper] = []
        var fd: Int32 = -1            // ghost's descriptor for reading it, when it has one
        var wholeFile = false         // all allocated pages count, not only mapped ones
        var copiedIn: [Int: Set<Int>] = [:]   // mapper -> object pages it copied on write
        init(id: Int, kind: SharedMemoryRecord.Kind) { self.id = id; self.kind = kind }
    }

    /// Finds the job's shared objects, stores their pages, and sets
    /// `VMARecord.object` / `FDRecord.object` on the members. Runs while frozen.
    static func capture(_ members: inout [Member], writer: CheckpointWriter,
                        workers: Int) throws(GhostError) -> [SharedMemoryRecord] {
        var objects: [Key: Object] = [:]
        var order: [Key] = []
        func object(_ key: Key, _ kind: SharedMemoryRecord.Kind) -> Object {
            if let o = objects[key] { return o }
            let o = Object(id: order.count, kind: kind)
            objects[key] = o
            order.append(key)
            return o
        }
        defer { for o in objects.values where o.fd >= 0 { close(o.fd) } }

        for (mi, member) in members.enumerated() {
            for (ai, (m, v)) in member.areas.enumerated() where backsObject(m, v) {
                let o = object(Key(dev: m.dev, inode: m.inode), kindOf(path: m.path, shared: true))
                if o.kind == .memfd { o.name = memfdName(m.path) }
                if o.kind == .tmpfsFile || o.kind == .diskFile { o.path = m.path }
                if o.kind == .deletedFile { o.path = String(m.path.dropLast(10)) }
                o.mappers.append(Mapper(member: mi, area: ai))
                o.size = max(o.size, Int64(m.offset + (m.end - m.start)))
                members[mi].areas[ai].1.object = o.id
            }
            // A deleted executable: /proc/PID/exe still opens it (for a tracer).
            let exeLink = "/proc/\(member.pid)/exe"
            if (try? ProcFS.readLink(exeLink))?.hasSuffix(" (deleted)") == true {
                var st = stat()
                if stat(exeLink, &st) != 0 { throw .errno("stat of the executable of process \(member.pid)") }
                let o = object(Key(dev: devString(st.st_dev), inode: UInt64(st.st_ino)), .deletedFile)
                if o.path == nil { o.path = String(((try? ProcFS.readLink(exeLink)) ?? "exe").dropLast(10)) }
                if o.fd < 0 {
                    o.fd = open(exeLink, O_RDONLY | O_CLOEXEC)
                    if o.fd < 0 { throw .errno("opening the deleted executable of process \(member.pid)") }
                }
                members[mi].exeObject = o.id
            }
            for (fi, r) in member.fds.enumerated() where r.kind == .sharedMemory && r.sameAs == nil {
                let link = "/proc/\(member.pid)/fd/\(r.fd)"
                var st = stat()
                if stat(link, &st) != 0 { throw .errno("stat of fd \(r.fd) (\(r.path)) of process \(member.pid)") }
                let key = Key(dev: devString(st.st_dev), inode: UInt64(st.st_ino))
                let o = object(key, kindOf(path: r.path, shared: true))
                if o.kind == .memfd { o.name = memfdName(r.path) }
                if o.kind == .tmpfsFile { o.path = r.path }
                if o.kind == .deletedFile { o.path = String(r.path.dropLast(10)) }
                members[mi].fds[fi].object = o.id
                if o.fd < 0 {
                    o.fd = ghost_grab_fd(member.pid, r.fd)
                    if o.fd < 0 { throw .errno("duplicating fd \(r.fd) of process \(member.pid) (pidfd_getfd)") }
                }
            }
        }
        // Descriptors that share an earlier one's open file description.
        for mi in members.indices {
            for fi in members[mi].fds.indices where members[mi].fds[fi].kind == .sharedMemory && members[mi].fds[fi].object == nil {
                let r = members[mi].fds[fi]
                let owner = members.firstIndex { $0.inner == (r.sameAsPid ?? members[mi].inner) } ?? mi
                members[mi].fds[fi].object = members[owner].fds.first { $0.fd == r.sameAs }?.object
            }
        }

        var records: [SharedMemoryRecord] = []
        for key in order {
            let o = objects[key]!
            try describeFile(o, key: key, members: members)
            let pages = try pagesToStore(o, members: members)
            let blocks = try storePages(o, pages: pages, members: members, writer: writer, workers: workers)
            var record = SharedMemoryRecord(id: o.id, kind: o.kind, name: o.name, path: o.path, size: o.size,
                                            seals: o.seals, mode: o.mode, blocks: blocks)
            if o.kind == .diskFile && o.wholeFile { record.complete = true }
            records.append(record)
        }
        return records
    }

    private static func kindOf(path: String, shared: Bool) -> SharedMemoryRecord.Kind {
        if path.hasPrefix("/memfd:") { return .memfd }
        if isShmemPath(path) { return .anonymous }
        if isDeleted(path) { return .deletedFile }
        return onTmpfs(path) ? .tmpfsFile : .diskFile
    }

    /// "/memfd:NAME (deleted)" -> NAME.
    static func memfdName(_ path: String) -> String {
        var s = Substring(path.dropFirst(7))
        if s.hasSuffix(" (deleted)") { s = s.dropLast(10) }
        return String(s)
    }

    static func devString(_ dev: dev_t) -> String {
        let major = (dev >> 8) & 0xfff | (dev >> 32) & ~0xfff
        let minor = dev & 0xff | (dev >> 12) & ~0xff
        func hex2(_ v: dev_t) -> String { let s = String(v, radix: 16); return s.count < 2 ? "0" + s : s }
        return "\(hex2(major)):\(hex2(minor))"
    }

    /// Size, seals and mode from the object's file, opening it by path if the
    /// job holds no descriptor for it.
    private static func describeFile(_ o: Object, key: Key, members: [Member]) throws(GhostError) {
        if o.fd < 0, o.kind == .tmpfsFile || o.kind == .diskFile, let path = o.path {
            o.fd = open(path, O_RDONLY | O_CLOEXEC)
            if o.fd < 0 { throw .errno("opening \(path), which the job maps shared") }
            var st = stat()
            if fstat(o.fd, &st) != 0 || UInt64(st.st_ino) != key.inode {
                throw .unsupported("\(path), mapped shared by the job, was replaced by another file; "
                    + "ghost cannot checkpoint a mapping of a file that is no longer there")
            }
        }
        guard o.fd >= 0 else { return }
        var st = stat()
        if fstat(o.fd, &st) != 0 { throw .errno("fstat of shared memory \(o.path ?? o.name ?? "")") }
        o.size = Int64(st.st_size)
        o.mode = UInt32(st.st_mode & 0o7777)
        // A small disk file is stored whole, so it can be recreated where it
        // is missing (a JVM's hsperfdata file in /tmp on another node).
        o.wholeFile = o.kind != .diskFile || o.size <= RegularFiles.smallFileLimit
        if o.kind == .memfd {
            let seals = fcntl(o.fd, fGetSeals)
            if seals > 0 { o.seals = seals }
        }
    }

    /// Page indexes (in the object) to store: those present in any mapper,
    /// and for memfds and tmpfs files every allocated page.
    private static func pagesToStore(_ o: Object, members: [Member]) throws(GhostError) -> [Int] {
        let ps = MemoryState.pageSize
        var set = Set<Int>()
        for (mi, mp) in o.mappers.enumerated() {
            let (m, v) = members[mp.member].areas[mp.area]
            let pagemap = open("/proc/\(members[mp.member].pid)/pagemap", O_RDONLY | O_CLOEXEC)
            if pagemap < 0 { throw .errno("open /proc/\(members[mp.member].pid)/pagemap") }
            defer { close(pagemap) }
            if v.kind == .privateFile {
                // Pages of a private mapping are the file's until copied on
                // write. Only a deleted file nobody holds open (a replaced
                // library) is read through them: every page not copied.
                guard o.kind == .deletedFile && o.fd < 0 else { continue }
                let first = Int(m.offset) / ps
                var copied = Set<Int>()
                for (s, e) in try MemoryState.pagesToStore(m, kind: .privateFile, pagemap: pagemap) {
                    for i in 0..<Int((e - s) / UInt64(ps)) { copied.insert(first + Int((s - m.start) / UInt64(ps)) + i) }
                }
                o.copiedIn[mi] = copied
                for p in first..<(first + Int((m.end - m.start) / UInt64(ps))) where !copied.contains(p) { set.insert(p) }
                continue
            }
            let present = try MemoryState.pagesToStore(m, kind: .sharedAnonymous, pagemap: pagemap)
            // A deleted disk file read only through its mappings: every page
            // (those not in memory are still on disk, but nowhere after restore).
            let all = o.kind == .deletedFile && o.fd < 0 ? [(m.start, m.end)] : []
            for (s, e) in present + (members[mp.member].resident[m.start] ?? []) + all {
                let first = Int((s - m.start) / UInt64(ps)) + Int(m.offset) / ps
                for i in 0..<Int((e - s) / UInt64(ps)) { set.insert(first + i) }
            }
        }
        if o.wholeFile && o.fd >= 0 {
            var pos: off_t = 0
            let size = off_t(o.size)
            while pos < size {
                let data = lseek(o.fd, pos, seekData)
                if data < 0 { break }      // ENXIO: no data after pos
                let hole = min(lseek(o.fd, data, seekHole), size)
                var p = Int(data) / ps
                while p * ps < Int(hole) { set.insert(p); p += 1 }
                pos = hole
            }
        }
        let lastPage = Int((o.size + Int64(ps) - 1) / Int64(ps))
        return set.filter { o.kind != .diskFile || $0 < lastPage }.sorted()
    }

    /// Reads and stores the pages, `blockPages` to a chunk, zero pages
    /// dropped (a hole reads back as zero) except for disk files.
    private static func storePages(_ o: Object, pages: [Int], members: [Member], writer: CheckpointWriter,
                                   workers: Int) throws(GhostError) -> [MemoryBlock] {
        let ps = MemoryState.pageSize, bp = MemoryState.blockPages
        var groups: [(index: Int, pages: [Int])] = []
        for p in pages {
            if groups.last?.index == p / bp { groups[groups.count - 1].pages.append(p) } else { groups.append((p / bp, [p])) }
        }
        // Without a descriptor, pages are read through a mapper that covers them.
        var sources: [(start: Int, end: Int, address: UInt64, memory: ProcessMemory, copied: Set<Int>)] = []
        if o.fd < 0 {
            for (mi, mp) in o.mappers.enumerated() {
                let (m, v) = members[mp.member].areas[mp.area]
                if v.kind == .privateFile && o.copiedIn[mi] == nil { continue }
                let first = Int(m.offset) / ps
                sources.append((first, first + Int((m.end - m.start) / UInt64(ps)), m.start,
                                try ProcessMemory(pid: members[mp.member].pid, writable: false), o.copiedIn[mi] ?? []))
            }
        }
        let fd = o.fd, keepZero = o.kind == .diskFile && !o.wholeFile, all = groups, srcs = sources
        let results = ResultSlots<MemoryBlock?>(count: groups.count, initial: nil)
        try Parallel.run(count: all.count, workers: workers, makeState: { ScratchBuffer(size: bp * ps) }) {
            (buffer: inout ScratchBuffer, gi: Int) throws(GhostError) in
            let g = all[gi]
            var mask: UInt64 = 0, kept = 0
            for p in g.pages {
                let dst = UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[(kept * ps)..<((kept + 1) * ps)])
                if fd >= 0 {
                    let n = pread(fd, dst.baseAddress, ps, off_t(p * ps))
                    if n < 0 { throw .errno("reading page \(p) of shared memory") }
                    if n < ps { (dst.baseAddress! + max(0, n)).initializeMemory(as: UInt8.self, repeating: 0, count: ps - max(0, n)) }
                } else {
                    guard let s = srcs.first(where: { p >= $0.start && p < $0.end && !$0.copied.contains(p) }) else { continue }
                    try s.memory.read(at: s.address + UInt64((p - s.start) * ps), into: dst)
                }
                if !keepZero && MemoryState.isZero(dst.baseAddress!) { continue }
                mask |= 1 << UInt64(p % bp)
                kept += 1
            }
            if kept == 0 { return }
            do throws(ImageError) {
                let id = try writer.put(UnsafeRawBufferPointer(rebasing: buffer.bytes[0..<(kept * ps)]))
                results[gi] = MemoryBlock(index: g.index, pageMask: mask, chunk: id)
            } catch { throw .image(error) }
        }
        return results.all.compactMap { $0 }
    }

    // MARK: restore

    /// Makes every object in ghost: a memfd filled with its pages, or the file
    /// brought back to its checkpoint contents. Returns id -> ghost's descriptor;
    /// the descriptors are owned by `table`.
    /// `executables`: objects that are a process's executable.
    static func prepare(_ records: [SharedMemoryRecord], executables: Set<Int>, store: ImageStore, blockPages: Int,
                        table: FileState.Table) throws(GhostError) {
        for r in records {
            let fd: Int32
            switch r.kind {
            case .anonymous, .memfd:
                fd = ghost_memfd_create(r.kind == .memfd ? (r.name ?? "") : "ghost-shared", 1 | 2)   // CLOEXEC|ALLOW_SEALING
                if fd < 0 { throw .errno("memfd_create for shared memory \(r.name ?? "")") }
            case .deletedFile:
                fd = try unlinkedFile(r)
            case .tmpfsFile, .diskFile:
                guard let path = r.path else { throw .badImage("shared memory object \(r.id) has no path") }
                let create = r.kind == .tmpfsFile || r.complete == true ? O_CREAT : 0
                fd = open(path, O_RDWR | O_CLOEXEC | create, mode_t(r.mode ?? 0o600))
                if fd < 0 {
                    throw .fileChanged("cannot open \(path), which the job maps shared: \(String(cString: strerror(errno))); "
                        + (r.kind == .diskFile ? "restore the file or resume where it exists" : "check /dev/shm is writable"))
                }
            }
            table.opened.append(fd)
            table.objects[r.id] = fd
            // A tmpfs file and a fresh memfd are rebuilt from scratch (holes
            // stay holes); a disk file keeps what the image does not hold.
            if (r.kind != .diskFile || r.complete == true) && ftruncate(fd, 0) != 0 { throw .errno("emptying shared memory \(r.path ?? r.name ?? "")") }
            if ftruncate(fd, off_t(r.size)) != 0 { throw .errno("sizing shared memory \(r.path ?? r.name ?? "") to \(r.size) bytes") }
            try fill(fd, r, store: store, blockPages: blockPages)
            if let seals = r.seals, fcntl(fd, fAddSeals, seals) != 0 {
                throw .errno("sealing memfd \(r.name ?? "")")
            }
            if executables.contains(r.id) {
                // The kernel runs no file that is open for writing (and
                // PR_SET_MM_MAP refuses it as an executable): keep a read-only one.
                let ro = open("/proc/self/fd/\(fd)", O_RDONLY | O_CLOEXEC)
                if ro < 0 { throw .errno("reopening the executable \(r.path ?? "") read-only") }
                table.opened.removeAll { $0 == fd }
                close(fd)
                table.opened.append(ro)
                table.objects[r.id] = ro
            }
        }
    }

    /// An unlinked file like the deleted one: in its directory if that still
    /// exists (same filesystem, same /proc/PID/fd look), else a memfd.
    private static func unlinkedFile(_ r: SharedMemoryRecord) throws(GhostError) -> Int32 {
        let oTmpfile: Int32 = 0o20200000
        let path = r.path ?? "/tmp/deleted"
        let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let fd = open(dir.isEmpty ? "/" : dir, oTmpfile | O_RDWR | O_CLOEXEC, mode_t(r.mode ?? 0o600))
        if fd >= 0 { return fd }
        let m = ghost_memfd_create(String(path.split(separator: "/").last ?? "deleted"), 1)
        if m < 0 { throw .errno("recreating the deleted file \(path)") }
        return m
    }

    private static func fill(_ fd: Int32, _ r: SharedMemoryRecord, store: ImageStore, blockPages: Int) throws(GhostError) {
        let ps = MemoryState.pageSize, blocks = r.blocks
        try Parallel.run(count: blocks.count, workers: Checkpointer.workers, makeState: { () }) {
            (_: inout Void, i: Int) throws(GhostError) in
            let b = blocks[i]
            let data: [UInt8]
            do throws(ImageError) { data = try store.readChunk(b.chunk) } catch { throw .image(error) }
            guard data.count == b.pageMask.nonzeroBitCount * ps else {
                throw .badImage("shared memory chunk \(b.chunk) does not match block \(b.index)")
            }
            var k = 0
            for bit in 0..<64 where b.pageMask >> UInt64(bit) & 1 == 1 {
                let off = (b.index * blockPages + bit) * ps
                let n = data.withUnsafeBytes { pwrite(fd, $0.baseAddress! + k * ps, ps, off_t(off)) }
                if n != ps { throw .errno("writing shared memory back (\(r.path ?? r.name ?? "object \(r.id)"))") }
                k += 1
            }
        }
    }

    /// The objects process `p` maps, as (ghost's descriptor, number in the
    /// husk) pairs above every descriptor the process will have, and the
    /// object -> number map the memory restore uses; closed after it.
    static func husksDescriptors(_ p: ProcessRecord, table: FileState.Table) throws(GhostError)
        -> (fds: [(src: Int32, dst: Int32)], numbers: [Int: Int32]) {
        var next = (p.fds.map(\.fd).max() ?? 2) + 1
        var fds: [(src: Int32, dst: Int32)] = [], numbers: [Int: Int32] = [:]
        for id in Set(p.vmas.compactMap(\.object) + (p.exeObject.map { [$0] } ?? [])).sorted() {
            guard let src = table.objects[id] else { throw .badImage("process \(p.pid) maps shared memory object \(id), which is missing") }
            fds.append((src, next))
            numbers[id] = next
            next += 1
        }
        return (fds, numbers)
    }

    /// A descriptor of the job that was this object: reopened from ghost's
    /// memfd or file with its own flags and offset.
    static func reopen(_ r: FDRecord, table: FileState.Table) throws(GhostError) -> Int32 {
        guard let id = r.object, let g = table.objects[id] else {
            throw .badImage("fd \(r.fd) (\(r.path)) names a shared memory object that is missing")
        }
        // O_NOFOLLOW (shm_open sets it) would refuse the /proc/self/fd link;
        // O_TMPFILE (tmpfile() sets it, with O_DIRECTORY) would make a new file.
        let oTmpfile: Int32 = 0o20000000 | O_DIRECTORY
        let fd = open("/proc/self/fd/\(g)", r.flags & ~(O_CREAT | O_TRUNC | O_EXCL | O_NOFOLLOW | oTmpfile) | O_CLOEXEC)
        if fd < 0 { throw .errno("reopening \(r.path) for fd \(r.fd)") }
        table.opened.append(fd)
        if r.offset != 0 && lseek(fd, off_t(r.offset), SEEK_SET) < 0 { throw .errno("seeking \(r.path) to \(r.offset)") }
        return fd
    }
}
