import Glibc
import CGhostSys
import GhostImage

/// The address space: every mapping, and the pages that only the process holds.
/// Capture stores, per block of `blockPages` pages, the pages that are not
/// zero and do not come from a file; restore maps the same areas at the same
/// addresses and writes those pages back.
enum MemoryState {
    static let blockPages = 64
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    struct CaptureStats {
        var mappedBytes: UInt64 = 0
        var storedPages = 0
        /// Pages read from the process (all of them without write tracking).
        var readPages = 0
    }

    // MARK: capture

    /// The areas of a process, described but without their pages yet.
    static func describe(_ mappings: [ProcFS.Mapping], pid: pid_t) throws(GhostError) -> [(ProcFS.Mapping, VMARecord)] {
        var out: [(ProcFS.Mapping, VMARecord)] = []
        for m in mappings where !VDSOState.names.contains(m.path) && m.path != "[vsyscall]" {
            let kind = try kindOf(m, pid: pid)
            var file: FileIdentity? = nil
            if (kind == .privateFile || kind == .sharedFile) && !SharedMemoryState.isShmemPath(m.path)
                && !m.path.hasSuffix(" (deleted)") {
                file = try identity(ofMapped: m, pid: pid)
            }
            var v = VMARecord(start: m.start, end: m.end, prot: m.prot, kind: kind,
                              growsDown: m.vmFlags.contains("gd"), fileOffset: m.offset, file: file, blocks: [])
            let advice = advices.keys.filter { m.vmFlags.contains($0) }.sorted()
            v.advice = advice.isEmpty ? nil : advice
            if m.vmFlags.contains("nr") { v.noReserve = true }
            out.append((m, v))
        }
        return out
    }

    /// VmFlags set by madvise() that change how the area behaves for the job
    /// (fork, core dumps, huge pages), with their MADV_* values; `required`:
    /// restoring fails without it (the others are hints a kernel may lack).
    static let advices: [String: (advice: Int32, required: Bool)] = [
        "dc": (10, true),   // MADV_DONTFORK: a child does not get the area
        "wf": (18, true),   // MADV_WIPEONFORK: a child gets it zeroed (e.g. a random generator's state)
        "dd": (16, true),   // MADV_DONTDUMP
        "hg": (14, false),  // MADV_HUGEPAGE
        "nh": (15, false),  // MADV_NOHUGEPAGE
    ]

    /// Areas whose pages a forked copy of the process would not hold as they
    /// are now: shared memory (the job keeps writing it), MADV_DONTFORK and
    /// MADV_WIPEONFORK areas. These are read while the job is frozen.
    static func notInSnapshot(_ m: ProcFS.Mapping, _ v: VMARecord) -> Bool {
        v.kind == .sharedAnonymous || m.vmFlags.contains("dc") || m.vmFlags.contains("wf")
    }

    /// Stores the pages of `areas[i]` for every i in `which`, reading them
    /// from process `pid` (the job, or a forked snapshot of it), with
    /// `workers` threads reading, hashing and compressing in parallel.
    /// `plans[i]` (write tracking) may say that only some pages of an area
    /// were written since the previous checkpoint: the other blocks are
    /// reused from it, and blocks with few written pages get an overlay.
    static func storePages(_ areas: inout [(ProcFS.Mapping, VMARecord)], which: [Int], plans: [WriteTracking.Plan]? = nil,
                           pid: pid_t, memory: ProcessMemory, writer: CheckpointWriter, workers: Int,
                           stats: inout CaptureStats) throws(GhostError) {
        let pagemap = open("/proc/\(pid)/pagemap", O_RDONLY | O_CLOEXEC)
        if pagemap < 0 { throw .errno("open /proc/\(pid)/pagemap") }
        defer { close(pagemap) }
        var work: [BlockWork] = []
        var kept: [(area: Int, block: MemoryBlock)] = []
        // Shared memory is stored once per object, by SharedMemoryState.
        for i in which where areas[i].1.kind != .sharedFile && areas[i].1.kind != .sharedAnonymous {
            let (m, v) = areas[i]
            var recheck: [UInt64] = []
            let pages: [(UInt64, UInt64)]
            if case .fresh(let listed)? = plans?[i] { pages = listed } else {
                // In a tracked private file mapping, a copied-on-write page
                // dropped since (MADV_DONTNEED) shows as swapped, like one
                // really swapped out: the write-protect marker left in its
                // place is a swap entry to the kernel, and an unprivileged
                // reader cannot tell them apart. Stored pages in that state
                // are read again, so what the process sees now (its copy, or
                // the file's bytes) is stored.
                // (Left empty elsewhere, where marking it does nothing.)
                if case .delta(_, let written)? = plans?[i], v.kind == .privateFile {
                    recheck = [UInt64](repeating: 0, count: written.count)
                }
                pages = try pagesToStore(m, kind: v.kind, pagemap: pagemap) { s, e in
                    WriteTracking.markRange(&recheck, area: m.start, from: s, to: e)
                }
            }
            if case .delta(let previous, let written)? = plans?[i] {
                let (w, k) = delta(pages, area: i, mapping: m, kind: v.kind, previous: previous, written: written,
                                   recheck: recheck, writer: writer)
                work += w
                kept += k
            } else {
                work += blocks(of: pages, area: i, mapping: m, kind: v.kind)
            }
        }
        stats.readPages += work.reduce(0) { $0 + $1.pages.count }
        Progress.add(total: work.reduce(0) { $0 + $1.pages.count } * pageSize)
        let results = ResultSlots<(block: MemoryBlock?, pages: Int)>(count: work.count, initial: (nil, 0))
        let allWork = work
        let blockBytes = blockPages * pageSize
        try Parallel.run(count: work.count, workers: workers, makeState: { ScratchBuffer(size: blockBytes) }) {
            (buffer: inout ScratchBuffer, i: Int) throws(GhostError) in
            results[i] = try storeBlock(allWork[i], buffer: buffer.bytes, memory: memory, writer: writer)
            Progress.add(done: allWork[i].pages.count * pageSize)
        }
        var touched = Set<Int>()
        for (w, r) in zip(work, results.all) {
            guard let block = r.block else { continue }
            areas[w.area].1.blocks.append(block)
            touched.insert(w.area)
            stats.storedPages += block.pageMask.nonzeroBitCount
        }
        for k in kept {
            areas[k.area].1.blocks.append(k.block)
            touched.insert(k.area)
            stats.storedPages += k.block.pageMask.nonzeroBitCount
        }
        for i in touched { areas[i].1.blocks.sort { $0.index < $1.index } }
    }

    /// Overlays older than this many layers, or holding more than this many
    /// pages, are folded: the block is stored whole again.
    static let maxOverlays = 4, maxOverlayPages = 32

    /// Work for an area whose written pages are known: blocks nobody wrote are
    /// kept as they were (minus pages that are gone, e.g. MADV_DONTNEED), blocks
    /// with written pages get an overlay holding those, or are read whole
    /// (new block, too many layers, base chunk no longer in the image).
    /// `recheck[b]` (empty: none): pages of block b to read again if they were stored, as if written.
    static func delta(_ ranges: [(UInt64, UInt64)], area: Int, mapping m: ProcFS.Mapping, kind: VMARecord.Kind,
                      previous: VMARecord, written: [UInt64], recheck: [UInt64], writer: CheckpointWriter)
        -> (work: [BlockWork], kept: [(area: Int, block: MemoryBlock)]) {
        var want = [UInt64](repeating: 0, count: written.count)
        for (s, e) in ranges { WriteTracking.markRange(&want, area: m.start, from: s, to: e) }
        let old = Dictionary(previous.blocks.map { ($0.index, $0) }, uniquingKeysWith: { a, _ in a })
        let ps = UInt64(pageSize), blockBytes = UInt64(blockPages) * ps
        var work: [BlockWork] = []
        var kept: [(area: Int, block: MemoryBlock)] = []
        for b in want.indices where want[b] != 0 || old[b] != nil {
            let again = b < recheck.count ? recheck[b] & (old[b]?.pageMask ?? 0) : 0
            let wr = (written[b] | again) & want[b]
            func item(_ mask: UInt64, base: MemoryBlock?, keep: UInt64) -> BlockWork {
                let start = m.start + UInt64(b) * blockBytes
                var pages: [UInt64] = []
                for bit in 0..<UInt64(blockPages) where mask >> bit & 1 == 1 { pages.append(start + bit * ps) }
                return BlockWork(area: area, index: b, blockStart: start, pages: pages, readable: m.readable,
                                 keepZeroPages: kind == .privateFile, base: base, keep: keep)
            }
            guard let o = old[b] else {
                // Nothing stored here before: unwritten pages are still zero (or the file's).
                let read = wr   // a private file page becomes the process's own only by a write
                if read != 0 { work.append(item(read, base: nil, keep: 0)) }
                continue
            }
            let layers = o.overlays ?? []
            let reusable = writer.reuse(o.chunk) && layers.allSatisfy { writer.reuse($0.chunk) }
            let keep = o.pageMask & want[b] & ~wr
            if !reusable {
                work.append(item(want[b], base: nil, keep: 0))
            } else if wr == 0 {
                if keep != 0 { kept.append((area, withPages(o, keep))) }
            } else if layers.count + 1 > maxOverlays
                        || layers.reduce(wr.nonzeroBitCount, { $0 + $1.pageMask.nonzeroBitCount }) > maxOverlayPages {
                work.append(item(want[b], base: nil, keep: 0))   // compaction
            } else {
                work.append(item(wr, base: o, keep: keep))
            }
        }
        return (work, kept)
    }

    /// `block` restricted to the pages `mask` (the base chunk keeps holding what it holds).
    static func withPages(_ block: MemoryBlock, _ mask: UInt64) -> MemoryBlock {
        var b = block
        if mask != block.pageMask { b.baseMask = block.basePages }
        b.pageMask = mask
        return b
    }

    /// Reads one block's pages, drops zero pages (anonymous memory only) and
    /// stores the rest as one chunk: the whole block, or an overlay on `w.base`.
    static func storeBlock(_ w: BlockWork, buffer: UnsafeMutableRawBufferPointer, memory: ProcessMemory,
                           writer: CheckpointWriter) throws(GhostError) -> (block: MemoryBlock?, pages: Int) {
        let ps = pageSize
        let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(w.pages.count * ps)])
        try readPages(w.pages, into: bytes, memory: memory, readable: w.readable)
        var mask: UInt64 = 0
        var kept = 0
        for (i, p) in w.pages.enumerated() {
            let src = bytes.baseAddress! + i * ps
            if !w.keepZeroPages && isZero(src) { continue }
            if kept != i { (bytes.baseAddress! + kept * ps).copyMemory(from: src, byteCount: ps) }
            kept += 1
            mask |= 1 << ((p - w.blockStart) / UInt64(ps))
        }
        if kept == 0 {
            // Written pages that are zero now: they leave the block.
            guard let base = w.base, w.keep != 0 else { return (nil, 0) }
            return (withPages(base, w.keep), 0)
        }
        let id: ChunkID
        do { id = try writer.put(UnsafeRawBufferPointer(rebasing: bytes[0..<(kept * ps)])) }
        catch { throw .image(error) }
        guard let base = w.base else { return (MemoryBlock(index: w.index, pageMask: mask, chunk: id), kept) }
        var block = withPages(base, w.keep | mask)
        block.baseMask = base.basePages
        block.overlays = (base.overlays ?? []) + [PageOverlay(pageMask: mask, chunk: id)]
        return (block, kept)
    }

    /// One block's worth of pages to read and store.
    struct BlockWork: Sendable {
        var area: Int
        var index: Int
        var blockStart: UInt64
        var pages: [UInt64]
        var readable: Bool
        var keepZeroPages: Bool
        /// Set for an overlay: the previous block, and which of its pages stay.
        var base: MemoryBlock? = nil
        var keep: UInt64 = 0
    }

    static func blocks(of ranges: [(UInt64, UInt64)], area: Int, mapping m: ProcFS.Mapping,
                       kind: VMARecord.Kind) -> [BlockWork] {
        let ps = UInt64(pageSize)
        let blockBytes = UInt64(blockPages) * ps
        var out: [BlockWork] = []
        for (s, e) in ranges {
            var p = s
            while p < e {
                let b = Int((p - m.start) / blockBytes)
                if out.last?.index != b {
                    out.append(BlockWork(area: area, index: b, blockStart: m.start + UInt64(b) * blockBytes, pages: [],
                                         readable: m.readable, keepZeroPages: kind == .privateFile))
                }
                out[out.count - 1].pages.append(p)
                p += ps
            }
        }
        return out
    }

    static func kindOf(_ m: ProcFS.Mapping, pid: pid_t) throws(GhostError) -> VMARecord.Kind {
        switch m.path {
        case "[heap]": return .heap
        case "[stack]": return .stack
        case "": return m.shared ? .sharedAnonymous : .anonymous
        default: break
        }
        if m.path.hasPrefix("/SYSV") {
            throw .unsupported("process \(pid) has System V shared memory (\(m.path)) attached at \(hex(m.start)); "
                + "ghost cannot checkpoint SysV segments yet (POSIX shm_open, memfd or MAP_SHARED|MAP_ANONYMOUS work)")
        }
        if SharedMemoryState.isShmemPath(m.path) {
            return m.shared ? .sharedAnonymous : .privateFile   // a memfd or unlinked shm file: kept as an object
        }
        if m.path.hasPrefix("[") {
            throw .unsupported("process \(pid) has a special mapping \(m.path) at \(hex(m.start)) that ghost cannot restore")
        }
        // A deleted file is a shared memory object (SharedMemoryState): its
        // contents go into the image.
        return m.shared ? .sharedFile : .privateFile
    }

    static func identity(ofMapped m: ProcFS.Mapping, pid: pid_t) throws(GhostError) -> FileIdentity {
        var st = stat()
        if stat(m.path, &st) != 0 { throw .errno("stat of \(m.path), mapped by process \(pid)") }
        if UInt64(st.st_ino) != m.inode {
            throw .unsupported("process \(pid) maps \(m.path) at \(hex(m.start)), but that file was replaced since; "
                + "ghost cannot checkpoint mappings of replaced files")
        }
        return FileIdentity(path: m.path, size: Int64(st.st_size),
                            mtimeNanos: st.mtimeNanos)
    }

    /// Page-aligned address ranges of `m` whose contents must be stored.
    /// `swapped` is also given the ranges that are swapped out (or hold a
    /// write-protect marker), from the same walk; the pagemap-file fallback
    /// (kernels without PAGEMAP_SCAN, hence without write tracking) gives none.
    static func pagesToStore(_ m: ProcFS.Mapping, kind: VMARecord.Kind, pagemap: Int32,
                             swapped: (UInt64, UInt64) -> Void = { _, _ in }) throws(GhostError) -> [(UInt64, UInt64)] {
        var out: [(UInt64, UInt64)] = []
        func want(_ cat: UInt64) -> Bool {
            let present = cat & UInt64(GHOST_PAGE_IS_PRESENT) != 0
            let swapped = cat & UInt64(GHOST_PAGE_IS_SWAPPED) != 0
            let file = cat & UInt64(GHOST_PAGE_IS_FILE) != 0
            let zero = cat & UInt64(GHOST_PAGE_IS_PFNZERO) != 0
            switch kind {
            case .privateFile: return swapped || (present && !file)   // copied-on-write pages only
            case .sharedAnonymous: return swapped || present
            case .sharedFile: return false
            default: return swapped || (present && !zero)
            }
        }
        // PAGE_IS_FILE costs the kernel a page lookup per present page (a
        // third of an unchanged incremental checkpoint of 1 GiB): asked only
        // where it decides something.
        var returned = UInt64(GHOST_PAGE_IS_PRESENT | GHOST_PAGE_IS_SWAPPED | GHOST_PAGE_IS_PFNZERO)
        if kind == .privateFile { returned |= UInt64(GHOST_PAGE_IS_FILE) }
        var regions = [UInt64](repeating: 0, count: 3 * 512)
        var cursor = m.start
        while cursor < m.end {
            var walkEnd: UInt64 = 0
            let n = ghost_pagemap_scan(pagemap, cursor, m.end,
                                       UInt64(GHOST_PAGE_IS_PRESENT | GHOST_PAGE_IS_SWAPPED), returned,
                                       &regions, 512, &walkEnd)
            if n < 0 {
                if errno == ENOTTY || errno == EINVAL { return try pagesFromPagemapFile(m, kind: kind, pagemap: pagemap) }
                throw .errno("PAGEMAP_SCAN of \(hex(m.start))-\(hex(m.end))")
            }
            for i in 0..<Int(n) {
                let s = regions[3 * i], e = regions[3 * i + 1], cat = regions[3 * i + 2]
                if cat & UInt64(GHOST_PAGE_IS_SWAPPED) != 0 { swapped(s, e) }
                guard want(cat) else { continue }
                if let last = out.last, last.1 == s { out[out.count - 1].1 = e } else { out.append((s, e)) }
            }
            if walkEnd <= cursor { break }
            cursor = walkEnd
        }
        return out
    }

    /// Fallback for kernels without PAGEMAP_SCAN: 8 bytes per page of /proc/PID/pagemap.
    static func pagesFromPagemapFile(_ m: ProcFS.Mapping, kind: VMARecord.Kind, pagemap: Int32) throws(GhostError) -> [(UInt64, UInt64)] {
        var out: [(UInt64, UInt64)] = []
        let ps = UInt64(pageSize)
        var addr = m.start
        var entries = [UInt64](repeating: 0, count: 4096)
        while addr < m.end {
            let count = min(UInt64(entries.count), (m.end - addr) / ps)
            let want = Int(count) * 8
            let n = entries.withUnsafeMutableBytes { pread(pagemap, $0.baseAddress, want, off_t(addr / ps * 8)) }
            if n != want { throw .errno("reading /proc/PID/pagemap at \(hex(addr))") }
            for i in 0..<Int(count) {
                let e = entries[i]
                let present = e >> 63 & 1 == 1, swapped = e >> 62 & 1 == 1, file = e >> 61 & 1 == 1
                let take: Bool
                switch kind {
                case .privateFile: take = swapped || (present && !file)
                case .sharedFile: take = false
                default: take = present || swapped
                }
                if take {
                    let p = addr + UInt64(i) * ps
                    if let last = out.last, last.1 == p { out[out.count - 1].1 = p + ps } else { out.append((p, p + ps)) }
                }
            }
            addr += count * ps
        }
        return out
    }

    static func readPages(_ pages: [UInt64], into bytes: UnsafeMutableRawBufferPointer, memory: ProcessMemory,
                          readable: Bool) throws(GhostError) {
        let runs = coalesce(pages)
        if readable && memory.readRanges(runs, into: bytes) { return }
        // PROT_NONE or write-only pages: /proc/PID/mem reads them for a tracer.
        var off = 0
        for r in runs {
            try memory.read(at: r.address, into: UnsafeMutableRawBufferPointer(rebasing: bytes[off..<(off + r.length)]))
            off += r.length
        }
    }

    static func coalesce(_ pages: [UInt64]) -> [(address: UInt64, length: Int)] {
        var runs: [(address: UInt64, length: Int)] = []
        for p in pages {
            if let last = runs.last, last.address + UInt64(last.length) == p {
                runs[runs.count - 1].length += pageSize
            } else {
                runs.append((p, pageSize))
            }
        }
        return runs
    }

    /// Whether a page holds only zero bytes (8 bytes at a time; stops at the first non-zero).
    static func isZero(_ p: UnsafeRawPointer) -> Bool {
        let words = p.assumingMemoryBound(to: UInt64.self)
        for i in 0..<(pageSize / 8) where words[i] != 0 { return false }
        return true
    }

    // MARK: restore

    /// `objects`: shared memory object id -> its descriptor number in the husk.
    static func restore(_ vmas: [VMARecord], ctx: ProcessContext, store: ImageStore,
                        blockPages: Int, objects: [Int: Int32] = [:]) throws(GhostError) {
        var jobs: [BlockFill] = []
        var reprotect: [(UInt64, UInt64, Int32)] = []
        for vma in vmas {
            let len = vma.end - vma.start
            let isShared = vma.kind == .sharedFile || vma.kind == .sharedAnonymous
            var mapProt = vma.prot
            if !vma.blocks.isEmpty { mapProt |= PROT_READ | PROT_WRITE }
            var flags = Int32(MAP_FIXED) | (isShared ? MAP_SHARED : MAP_PRIVATE)
            if vma.growsDown { flags |= MAP_GROWSDOWN }
            if vma.noReserve == true { flags |= MAP_NORESERVE }
            var fd: Int64 = -1
            var ownFd = false
            switch vma.kind {
            case _ where vma.object != nil:
                guard let n = objects[vma.object!] else { throw .badImage("area \(hex(vma.start)) maps a missing shared memory object") }
                fd = Int64(n)
            case .anonymous, .heap, .stack, .sharedAnonymous: flags |= MAP_ANONYMOUS
            case .privateFile, .sharedFile:
                ownFd = true
                guard let file = vma.file else { throw .badImage("file mapping at \(hex(vma.start)) has no file") }
                try checkUnchanged(file, at: vma.start)
                let openFlags = (vma.kind == .sharedFile && vma.prot & PROT_WRITE != 0) ? O_RDWR : O_RDONLY
                let path = try ctx.scratch.putString(file.path)
                fd = Int64(bitPattern: try ctx.syscall.check("opening \(file.path)", SYS.openat,
                    UInt64(bitPattern: Int64(AT_FDCWD)), path, UInt64(openFlags | O_CLOEXEC)))
            }
            if vma.kind == .sharedFile && !vma.blocks.isEmpty { mapProt = vma.prot }
            let addr = try ctx.syscall.check("mapping \(hex(vma.start))-\(hex(vma.end)) (\(vma.file?.path ?? vma.kind.rawValue))",
                SYS.mmap, vma.start, len, UInt64(mapProt), UInt64(UInt32(bitPattern: flags)),
                UInt64(bitPattern: fd), vma.fileOffset)
            if ownFd { try ctx.syscall.call(SYS.close, UInt64(fd)) }
            if addr != vma.start { throw .restore("mapping for \(hex(vma.start)) landed at \(hex(addr))") }

            jobs += vma.blocks.map { BlockFill(vmaStart: vma.start, vmaEnd: vma.end, block: $0,
                                               writable: mapProt & PROT_WRITE != 0) }
            if mapProt != vma.prot { reprotect.append((vma.start, len, vma.prot)) }
        }
        // Fresh private anonymous areas get their first layer through UFFDIO_COPY.
        let installer = PageInstaller.make(ctx: ctx, areas: vmas.filter {
            !$0.blocks.isEmpty && $0.object == nil && [.anonymous, .heap, .stack].contains($0.kind)
        }.map { ($0.start, $0.end) })
        defer { installer?.finish() }
        try fillAll(jobs, store: store, memory: ctx.memory, blockPages: blockPages, installer: installer)
        if PhaseTimes.enabled {
            Log.info("memory of \(ctx.pid): " + (installer.map { "\($0.installed.load(ordering: .relaxed)) pages installed with UFFDIO_COPY" }
                                                ?? "no userfaultfd, written with process_vm_writev"))
        }
        for (start, len, prot) in reprotect {
            try ctx.syscall.check("mprotect \(hex(start))", SYS.mprotect, start, len, UInt64(prot))
        }
        for vma in vmas {
            for name in vma.advice ?? [] {
                guard let a = advices[name] else { continue }   // from a newer ghost: not known here
                let r = try ctx.syscall.call(SYS.madvise, vma.start, vma.end - vma.start, UInt64(a.advice))
                if r < 0 && a.required {
                    throw .restore("madvise(\(name)) of \(hex(vma.start))-\(hex(vma.end)): \(String(cString: strerror(Int32(-r))))")
                }
            }
        }
    }

    struct BlockFill: Sendable {
        var vmaStart: UInt64, vmaEnd: UInt64
        var block: MemoryBlock
        var writable: Bool
    }

    /// The stored contents of every block, written into the restored
    /// process in layers: first each block's base chunk, then the first
    /// overlay of each block that has one, then the second, and so on, so a
    /// page several layers hold ends with the newest. Within a layer, chunks
    /// that lie together in a pack are read together (one O_DIRECT read) and
    /// several threads read, decompress and write. (Building each layered
    /// block in memory instead read its overlays one small read at a time:
    /// a 1 GiB image after a few incremental checkpoints resumed 200 ms
    /// slower than its bytes take to read.)
    /// `installer` (if any) writes the first layer and is finished after it.
    static func fillAll(_ fills: [BlockFill], store: ImageStore, memory: ProcessMemory, blockPages: Int,
                        installer: PageInstaller? = nil) throws(GhostError) {
        for f in fills where f.block.overlays != nil || f.block.baseMask != nil {
            let held = (f.block.overlays ?? []).reduce(f.block.basePages) { $0 | $1.pageMask }
            guard f.block.pageMask & ~held == 0 else {
                throw .badImage("block \(f.block.index) of \(hex(f.vmaStart)) lists pages that none of its chunks holds")
            }
        }
        Progress.add(total: fills.reduce(0) { $0 + $1.block.pageMask.nonzeroBitCount } * pageSize)
        let layers = fills.reduce(0) { max($0, $1.block.overlays?.count ?? 0) }
        for layer in 0...layers {
            if layer == 1 { installer?.finish() }   // overlays write over present pages
            let installer = layer == 0 ? installer : nil
            // (block, chunk, the pages it holds) of the blocks that have this layer.
            let items: [(fill: Int, id: ChunkID, mask: UInt64)] = layer == 0
                ? fills.indices.map { ($0, fills[$0].block.chunk, fills[$0].block.basePages) }
                : fills.indices.compactMap { i in
                    guard let o = fills[i].block.overlays, o.count >= layer else { return nil }
                    return (i, o[layer - 1].chunk, o[layer - 1].pageMask)
                }
            let ids = items.map(\.id)
            let groups = store.readGroups(ids)
            try Parallel.run(count: groups.count, workers: Checkpointer.workers,
                             makeState: { ScratchBuffer(size: blockPages * pageSize) }) {
                (scratch: inout ScratchBuffer, g: Int) throws(GhostError) in
                var failure: GhostError?
                do throws(ImageError) {
                    try store.readGroup(ids, groups[g], scratch: scratch.bytes) { k, data in
                        let f = fills[items[k].fill]
                        do throws(GhostError) { try fill(f, chunk: items[k].id, holding: items[k].mask, data: data, memory: memory,
                                                         blockPages: blockPages, installer: installer) }
                        catch { failure = error; return false }
                        if layer == 0 { Progress.add(done: f.block.pageMask.nonzeroBitCount * pageSize) }
                        return true
                    }
                } catch { throw .image(error) }
                if let failure { throw failure }
            }
        }
    }

    /// Writes into the restored process the pages of chunk `id` (`data`: the
    /// pages of `mask`, in order) that its block keeps (`pageMask`).
    static func fill(_ j: BlockFill, chunk id: ChunkID, holding mask: UInt64, data: UnsafeRawBufferPointer,
                     memory: ProcessMemory, blockPages: Int, installer: PageInstaller? = nil) throws(GhostError) {
        let ps = UInt64(pageSize)
        guard data.count == mask.nonzeroBitCount * pageSize else {
            throw .badImage("memory chunk \(id) does not match its page mask in block \(j.block.index) of \(hex(j.vmaStart))")
        }
        let blockStart = j.vmaStart + UInt64(j.block.index) * UInt64(blockPages) * ps
        let keep = mask & j.block.pageMask
        if keep == 0 { return }
        var pages: [UInt64] = []
        for bit in 0..<64 where keep >> UInt64(bit) & 1 == 1 { pages.append(blockStart + UInt64(bit) * ps) }
        guard pages.last! < j.vmaEnd else {
            throw .badImage("memory chunk \(id) reaches past the end of its area \(hex(j.vmaStart))-\(hex(j.vmaEnd))")
        }
        // The kept pages, contiguous (the chunk's own bytes when it keeps them all).
        var compacted: [UInt8] = []
        if keep != mask {
            compacted.reserveCapacity(pages.count * pageSize)
            var k = 0
            for bit in 0..<64 where mask >> UInt64(bit) & 1 == 1 {
                if keep >> UInt64(bit) & 1 == 1 { compacted += data[(k * pageSize)..<((k + 1) * pageSize)] }
                k += 1
            }
        }
        let runs = coalesce(pages)
        try compacted.withUnsafeBytes { c in
            let src = keep == mask ? data : c
            return Result { () throws(GhostError) in
                if let installer, installer.covers(j.vmaStart),
                   installer.install(runs, area: j.vmaStart, from: src, memory: memory) { return }
                if j.writable && memory.writeRanges(runs, from: src) { return }
                var off = 0
                for r in runs {
                    try memory.write(at: r.address, bytes: Array(src[off..<(off + r.length)]))
                    off += r.length
                }
            }
        }.get()
    }

    /// A mapped file must be the same as at the checkpoint: its unwritten
    /// pages are read from it again.
    static func checkUnchanged(_ file: FileIdentity, at address: UInt64) throws(GhostError) {
        var st = stat()
        if stat(file.path, &st) != 0 {
            throw .fileChanged("\(file.path), mapped by the job at \(hex(address)), is gone (\(String(cString: strerror(errno)))); "
                + "restore it or resume on a node that has it")
        }
        let mtime = st.mtimeNanos
        if Int64(st.st_size) != file.size || mtime != file.mtimeNanos {
            throw .fileChanged("\(file.path), mapped by the job at \(hex(address)), changed since the checkpoint "
                + "(size \(file.size) -> \(st.st_size)); the job would see different code or data. "
                + "Put the original file back, or resume on a node with the same software")
        }
    }
}
