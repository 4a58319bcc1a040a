import CZstd
import Glibc

/// Reading many chunks in few large reads (a resume reads every block of the
/// job): chunks that lie one after another in a pack are read together, with
/// one O_DIRECT read of up to a staging buffer. Per-chunk reads of 256 KiB
/// kept the disk's queue short, and buffered reads pay for filling the page
/// cache, which on a cold cache was most of a resume's time.
extension ImageStore {
    /// Unused bytes between two chunks of one group at most (read and dropped).
    static let groupGap: UInt64 = 64 << 10

    /// A packed entry that one staging buffer holds wherever it starts.
    static func fitsGroup(_ l: ChunkLocation) -> Bool {
        !l.isLoose && l.entryBytes + 2 * UInt64(PackWriter.alignment) <= UInt64(PackWriter.stageBytes)
    }

    /// Splits `ids` into groups of indices to pass to `readGroup`, each a run
    /// of chunks close together in one pack, or a single chunk.
    public func readGroups(_ ids: [ChunkID]) -> [[Int]] {
        let align = UInt64(PackWriter.alignment), limit = UInt64(PackWriter.stageBytes)
        var packed: [(index: Int, location: ChunkLocation)] = []
        var groups: [[Int]] = []
        for (i, id) in ids.enumerated() {
            if let l = try? location(of: id), Self.fitsGroup(l) {
                packed.append((i, l))
            } else {
                groups.append([i])   // loose, unknown (readGroup reports it) or too large
            }
        }
        packed.sort { ($0.location.pack, $0.location.offset) < ($1.location.pack, $1.location.offset) }
        var current: [Int] = []
        var pack: UInt64 = 0, start: UInt64 = 0, end: UInt64 = 0
        for (i, l) in packed {
            let s = l.offset / align * align
            let e = l.offset + l.entryBytes
            if !current.isEmpty && l.pack == pack && s <= end + Self.groupGap
                && (max(e, end) + align - 1) / align * align - start <= limit {
                current.append(i)
                end = max(end, e)
                continue
            }
            if !current.isEmpty { groups.append(current) }
            current = [i]
            pack = l.pack
            start = s
            end = e
        }
        if !current.isEmpty { groups.append(current) }
        return groups
    }

    /// Reads, checks and decompresses the chunks `group` of `ids` (one group
    /// from `readGroups`) and calls `body(index, bytes)` for each; `bytes` is
    /// valid during the call only. `scratch` holds a decompressed chunk
    /// (larger ones get a buffer of their own). `body` returns false to stop.
    public func readGroup(_ ids: [ChunkID], _ group: [Int], scratch: UnsafeMutableRawBufferPointer,
                          _ body: (Int, UnsafeRawBufferPointer) -> Bool) throws(ImageError) {
        guard let firstIndex = group.first else { return }
        let first = try location(of: ids[firstIndex])
        guard group.count > 1 || Self.fitsGroup(first) else {
            let bytes = try readChunk(ids[firstIndex])
            _ = bytes.withUnsafeBytes { body(firstIndex, $0) }
            return
        }
        let locations = try group.map { (i) throws(ImageError) in try location(of: ids[i]) }
        let align = UInt64(PackWriter.alignment)
        let start = locations.map(\.offset).min()! / align * align
        let end = (locations.map { $0.offset + $0.entryBytes }.max()! + align - 1) / align * align
        let rel = ImageLayout.packPath(first.pack)
        let buffer = stagingBuffers.take()
        defer { stagingBuffers.give(buffer) }
        var got = 0, e: Int32 = EINVAL
        if let direct = directPackFD(first.pack) {
            (got, e) = StoreIO.preadAll(direct, buffer, Int(end - start), at: Int(start), direct: true)
        }
        if e == EINVAL {   // no O_DIRECT here, or an alignment this device does not take
            (got, e) = StoreIO.preadAll(try packFD(first.pack, for: ids[firstIndex]), buffer, Int(end - start), at: Int(start))
        }
        if e != 0 { throw io("read", rel, e) }
        for (i, l) in zip(group, locations) {
            let id = ids[i]
            let damaged = { (reason: String) -> ImageError in
                .damagedChunk(id: id, path: "\(self.full(rel)) at offset \(l.offset)", reason: reason)
            }
            let skip = Int(l.offset - start)
            if got < skip + Int(l.entryBytes) { throw damaged("pack is truncated: entry ends past its end") }
            let entry = UnsafeRawPointer(buffer + skip)
            let raw = l.stored == l.length
            try checkEntryHeader(entry, l, id, raw: raw, damaged)
            let n = Int(l.length)
            let data: UnsafeRawPointer
            var own: UnsafeMutableRawBufferPointer?
            defer { own?.deallocate() }
            if raw {
                data = entry + Int(PackEntryHeader.size)
            } else {
                var out = scratch
                if n > scratch.count {
                    own = .allocate(byteCount: n, alignment: 64)
                    out = own!
                }
                try zstd.withDecompressor { (z) throws(ImageError) in
                    try Self.decompress(z, entry + Int(PackEntryHeader.size), l, into: out.baseAddress, damaged)
                }
                data = UnsafeRawPointer(out.baseAddress!)
            }
            try checkContent(data, n, id, damaged)
            if !body(i, UnsafeRawBufferPointer(start: data, count: n)) { return }
        }
    }
}
