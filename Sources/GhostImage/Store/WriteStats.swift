/// What one checkpoint writer did, for progress lines and benchmarks.
public struct WriteStats: Sendable, Equatable {
    /// Chunks compressed and written to disk by this writer.
    public var chunksWritten: Int
    /// put() calls that wrote nothing because the chunk was already stored.
    public var chunksReused: Int
    /// Bytes passed to put(), all calls.
    public var rawBytes: Int
    /// Bytes actually written to chunk files (headers + compressed data).
    public var storedBytes: Int

    public init(chunksWritten: Int = 0, chunksReused: Int = 0, rawBytes: Int = 0, storedBytes: Int = 0) {
        self.chunksWritten = chunksWritten
        self.chunksReused = chunksReused
        self.rawBytes = rawBytes
        self.storedBytes = storedBytes
    }
}
