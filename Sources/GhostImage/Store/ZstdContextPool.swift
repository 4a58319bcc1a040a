import CZstd
import Glibc
import Synchronization

/// zstd contexts and their scratch buffers, reused across chunks: creating a
/// context per 256 KiB chunk would cost more than compressing it. A thread
/// takes one for the duration of a call and gives it back, so concurrent
/// put() calls each get their own without thread-local storage.
final class ZstdContextPool: Sendable {
    private let compressors = Mutex<[ZstdScratch]>([])
    private let decompressors = Mutex<[ZstdScratch]>([])

    func withCompressor<R>(_ body: (ZstdScratch) throws(ImageError) -> R) throws(ImageError) -> R {
        let scratch = compressors.withLock { $0.popLast() } ?? ZstdScratch(compressing: true)
        defer { compressors.withLock { $0.append(scratch) } }
        return try body(scratch)
    }

    func withDecompressor<R>(_ body: (ZstdScratch) throws(ImageError) -> R) throws(ImageError) -> R {
        let scratch = decompressors.withLock { $0.popLast() } ?? ZstdScratch(compressing: false)
        defer { decompressors.withLock { $0.append(scratch) } }
        return try body(scratch)
    }
}

/// One zstd context (compression or decompression) plus a growable buffer.
/// Used by one thread at a time, handed around by `ZstdContextPool`.
final class ZstdScratch: @unchecked Sendable {
    let cctx: OpaquePointer?
    let dctx: OpaquePointer?
    private(set) var buffer: UnsafeMutableRawPointer
    private(set) var capacity: Int

    init(compressing: Bool) {
        cctx = compressing ? ZSTD_createCCtx() : nil
        dctx = compressing ? nil : ZSTD_createDCtx()
        capacity = 0
        buffer = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 64)
    }

    deinit {
        if let cctx { ZSTD_freeCCtx(cctx) }
        if let dctx { ZSTD_freeDCtx(dctx) }
        buffer.deallocate()
    }

    /// Makes `buffer` hold at least `bytes`; old contents are not kept.
    func reserve(_ bytes: Int) {
        guard bytes > capacity else { return }
        buffer.deallocate()
        capacity = max(bytes, 64 << 10)
        buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
    }

    /// The levels libzstd accepts (negative ones are its fastest modes).
    static let levels: ClosedRange<Int32> = ZSTD_minCLevel()...ZSTD_maxCLevel()

    static func isError(_ code: Int) -> Bool { ZSTD_isError(code) != 0 }

    static func errorName(_ code: Int) -> String { String(cString: ZSTD_getErrorName(code)) }
}
