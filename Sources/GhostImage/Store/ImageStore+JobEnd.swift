import Glibc
import FoundationEssentials

/// The record of a job that ended by itself (ENDED, JSON). See JobEnd.
extension ImageStore {
    /// Records the end (atomically, durable). Takes the writer lock.
    public func recordEnd(_ end: JobEnd) throws(ImageError) {
        try lockForWriting()
        let bytes: [UInt8]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do { bytes = Array(try encoder.encode(end)) + [UInt8(ascii: "\n")] }
        catch { throw .misuse("encoding the job's end: \(error)") }
        try Self.writeFileAtomically(dir: dirFD, dirPath: path, name: ImageLayout.ended, bytes: bytes)
    }

    /// The recorded end, nil if the job has not ended (or the record cannot be read: then the
    /// directory is treated as holding a job to resume, as before the record existed).
    public func jobEnd() -> JobEnd? {
        guard case .success(let bytes) = StoreIO.readSmallFile(dirFD, ImageLayout.ended, limit: 64 << 10) else { return nil }
        return try? JSONDecoder().decode(JobEnd.self, from: Data(bytes))
    }

    /// Forgets the end: the job runs again. Takes the writer lock.
    public func clearEnd() throws(ImageError) {
        try lockForWriting()
        if unlinkat(dirFD, ImageLayout.ended, 0) != 0 {
            if errno == ENOENT { return }
            throw io("remove", ImageLayout.ended)
        }
        _ = StoreIO.fsyncRetry(dirFD)
    }
}
