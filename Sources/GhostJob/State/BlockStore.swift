import Glibc
import Dispatch
import Synchronization
import GhostImage

/// Reads, filters and stores memory blocks on several threads: reading
/// (process_vm_readv), the zero-page filter, hashing and zstd all scale with
/// cores, so a 2-core node checkpoints about twice as fast as with one.
final class BlockStore: @unchecked Sendable {
    struct Result: Sendable { var block: MemoryBlock?; var pages: Int }

    let work: [MemoryState.BlockWork]
    let memory: ProcessMemory
    let writer: CheckpointWriter
    private let next = Atomic<Int>(0)
    private let failure = Mutex<GhostError?>(nil)
    private var results: [Result]

    init(work: [MemoryState.BlockWork], memory: ProcessMemory, writer: CheckpointWriter) {
        self.work = work
        self.memory = memory
        self.writer = writer
        self.results = Array(repeating: Result(block: nil, pages: 0), count: work.count)
    }

    func run(workers: Int) throws(GhostError) -> [Result] {
        let n = max(1, min(workers, work.count))
        results.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let out = out
            DispatchQueue.concurrentPerform(iterations: n) { _ in self.worker(out) }
        }
        if let e = failure.withLock({ $0 }) { throw e }
        return results
    }

    private func worker(_ out: UnsafeMutableBufferPointer<Result>) {
        let ps = MemoryState.pageSize
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: MemoryState.blockPages * ps, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let i = next.add(1, ordering: .relaxed).oldValue
            if i >= work.count || failure.withLock({ $0 != nil }) { return }
            do {
                out[i] = try store(work[i], buffer: buffer)
            } catch {
                failure.withLock { if $0 == nil { $0 = error } }
                return
            }
        }
    }

    private func store(_ w: MemoryState.BlockWork, buffer: UnsafeMutableRawBufferPointer) throws(GhostError) -> Result {
        let ps = MemoryState.pageSize
        let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(w.pages.count * ps)])
        try MemoryState.readPages(w.pages, into: bytes, memory: memory, readable: w.readable)
        var mask: UInt64 = 0
        var kept = 0
        for (i, p) in w.pages.enumerated() {
            let src = bytes.baseAddress! + i * ps
            if !w.keepZeroPages && MemoryState.isZero(src) { continue }
            if kept != i { (bytes.baseAddress! + kept * ps).copyMemory(from: src, byteCount: ps) }
            kept += 1
            mask |= 1 << ((p - w.blockStart) / UInt64(ps))
        }
        if kept == 0 { return Result(block: nil, pages: 0) }
        do {
            let id = try writer.put(UnsafeRawBufferPointer(rebasing: bytes[0..<(kept * ps)]))
            return Result(block: MemoryBlock(index: w.index, pageMask: mask, chunk: id), pages: kept)
        } catch {
            throw .image(error)
        }
    }
}
