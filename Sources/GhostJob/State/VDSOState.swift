import Glibc
import CXXHash
import GhostImage

/// The vDSO and its data pages. They are not saved: the new kernel's are moved
/// to where the old ones were, because libc caches their addresses. If this
/// kernel's vDSO code differs from the image's, the old entry points would be
/// wrong, so the restore is refused.
enum VDSOState {
    static let names: Set<String> = ["[vvar]", "[vvar_vclock]", "[vdso]"]

    static func capture(mappings: [ProcFS.Mapping], memory: ProcessMemory) throws(GhostError) -> VDSORecord? {
        let regions = mappings.filter { names.contains($0.path) }
        guard let code = regions.first(where: { $0.path == "[vdso]" }) else { return nil }
        return VDSORecord(
            regions: regions.map { .init(name: $0.path, start: $0.start, end: $0.end) },
            codeHash: try codeHash(memory: memory, start: code.start, end: code.end))
    }

    static func codeHash(memory: ProcessMemory, start: UInt64, end: UInt64) throws(GhostError) -> UInt64 {
        let bytes = try memory.readBytes(at: start, count: Int(end - start))
        return bytes.withUnsafeBytes { XXH3_64bits($0.baseAddress, $0.count) }
    }

    /// Moves the husk's vDSO group to the image's addresses. `avoid` lists
    /// ranges that must not be used as a temporary landing place.
    static func restore(_ record: VDSORecord, ctx: ProcessContext, husk: [ProcFS.Mapping],
                        avoid: [(UInt64, UInt64)]) throws(GhostError) {
        let current = husk.filter { names.contains($0.path) }
        guard let code = current.first(where: { $0.path == "[vdso]" }),
              record.regions.contains(where: { $0.name == "[vdso]" }) else {
            throw .incompatible("this kernel maps no vDSO; the image needs one")
        }
        let hash = try codeHash(memory: ctx.memory, start: code.start, end: code.end)
        let sameShape = Set(current.map { "\($0.path):\($0.end - $0.start)" })
            == Set(record.regions.map { "\($0.name):\($0.end - $0.start)" })
        guard hash == record.codeHash && sameShape else {
            throw .incompatible("this kernel's vDSO differs from the one of the checkpointed kernel; "
                + "resume on a node with the same kernel release as the image (see `ghost-resume --info`)")
        }
        if current.allSatisfy({ c in record.regions.contains { $0.name == c.path && $0.start == c.start } }) { return }

        // Two moves: first to a spot free in both layouts, then to the old
        // addresses, so that the old and new places may overlap.
        let lo = current.map(\.start).min()!, hi = current.map(\.end).max()!
        let span = hi - lo
        let temp = try AddressSpace.freeRange(size: span, avoiding: avoid + husk.map { ($0.start, $0.end) })
        for m in current {
            try move(ctx, from: m.start, size: m.end - m.start, to: temp + (m.start - lo))
        }
        for m in current {
            let old = record.regions.first { $0.name == m.path }!
            try move(ctx, from: temp + (m.start - lo), size: m.end - m.start, to: old.start)
        }
    }

    private static func move(_ ctx: ProcessContext, from: UInt64, size: UInt64, to: UInt64) throws(GhostError) {
        let mremapMaymove: UInt64 = 1, mremapFixed: UInt64 = 2
        let r = try ctx.syscall.check("mremap of the vDSO to \(hex(to))", SYS.mremap, from, size, size,
                                      mremapMaymove | mremapFixed, to)
        if r != to { throw .restore("vDSO landed at \(hex(r)) instead of \(hex(to))") }
        // The gadget moves with the vDSO.
        if ctx.syscall.gadget >= from && ctx.syscall.gadget < from + size {
            ctx.syscall.gadget = ctx.syscall.gadget - from + to
        }
    }
}

/// Finding room in an address space.
enum AddressSpace {
    /// The lowest range of `size` bytes at or above 4 GiB that overlaps none of `avoiding`.
    static func freeRange(size: UInt64, avoiding: [(UInt64, UInt64)]) throws(GhostError) -> UInt64 {
        let sorted = avoiding.sorted { $0.0 < $1.0 }
        var candidate: UInt64 = 1 << 32
        let step: UInt64 = 1 << 20
        for (s, e) in sorted {
            if e <= candidate { continue }
            if s >= candidate + size { break }
            candidate = (e + step - 1) / step * step
        }
        if candidate + size >= (1 << 47) - (1 << 32) {
            throw .restore("no free address range of \(size) bytes for restore work space")
        }
        return candidate
    }
}
