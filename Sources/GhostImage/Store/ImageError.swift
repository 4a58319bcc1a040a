import Glibc

/// Everything that can go wrong with an image, typed so the engine can react
/// (fall back to an older checkpoint, wait for a lock) and so every message
/// names the file at fault and says what the user can do about it.
public enum ImageError: Error, CustomStringConvertible, Sendable, Equatable {
    case notAnImageDirectory(path: String)
    case unsafePermissions(path: String, reason: String)
    case foreignOwner(path: String, uid: UInt32)
    case noCheckpoints(path: String)
    case noSuchCheckpoint(path: String, number: Int, available: [Int])
    /// Every checkpoint was skipped; `problems` holds one line per checkpoint, newest first.
    case noIntactCheckpoint(path: String, problems: [String])
    case damagedManifest(path: String, reason: String)
    case damagedChunk(id: ChunkID, path: String, reason: String)
    case missingChunk(id: ChunkID, path: String)
    case locked(path: String, holder: String)
    case io(op: String, path: String, errno: Int32)
    case unsupportedVersion(path: String, found: Int)
    case chunkTooLarge(size: Int, limit: Int)
    case bufferTooSmall(id: ChunkID, needed: Int, available: Int)
    /// The store was closed (its writer lock released); open it again to write.
    case closed(path: String)
    /// The API was used in an order it does not allow (a bug in the caller).
    case misuse(String)

    public var description: String {
        switch self {
        case .notAnImageDirectory(let path):
            return "\(path) is not a ghost image directory (no valid GHOST-IMAGE marker); "
                + "give the directory ghost-run wrote its checkpoints to, or a new or empty one"
        case .unsafePermissions(let path, let reason):
            return "refusing image directory \(path): \(reason) (images hold the job's whole memory, "
                + "so they must be private to you)"
        case .foreignOwner(let path, let uid):
            return "refusing \(path): it belongs to uid \(uid), not to you (uid \(geteuid())); "
                + "use an image directory you own"
        case .noCheckpoints(let path):
            return "image \(path) holds no checkpoint yet; the job was never checkpointed, start it again with ghost-run"
        case .noSuchCheckpoint(let path, let number, let available):
            let list = available.isEmpty ? "none" : available.map(String.init).joined(separator: ", ")
            return "checkpoint \(number) does not exist in image \(path); available checkpoints: \(list)"
        case .noIntactCheckpoint(let path, let problems):
            return "image \(path) has no intact checkpoint (\(problems.count) checked, all damaged or incomplete; "
                + "newest: \(problems.first ?? "?")); the job cannot be resumed from it, start it again with ghost-run"
        case .damagedManifest(let path, let reason):
            return "checkpoint file \(path) is damaged: \(reason); resume from an older checkpoint"
        case .damagedChunk(let id, let path, let reason):
            return "memory chunk \(id) (\(path)) is damaged: \(reason); checkpoints that use it cannot be resumed, "
                + "use an older one"
        case .missingChunk(let id, let path):
            return "memory chunk \(id) is missing (\(path)); checkpoints that use it cannot be resumed, use an older one"
        case .locked(let path, let holder):
            return "image \(path) is being written by another ghost process (\(holder)); "
                + "wait for it to finish or stop it, or use another image directory"
        case .io(let op, let path, let code):
            let hint = ImageError.hint(code)
            return "cannot \(op) \(path): \(String(cString: strerror(code))) (errno \(code))"
                + (hint.isEmpty ? "" : "; \(hint)")
        case .unsupportedVersion(let path, let found):
            return "\(path) uses image format version \(found), but this ghost reads version "
                + "\(ImageLayout.formatVersion); use the ghost version that wrote it"
        case .chunkTooLarge(let size, let limit):
            return "memory chunk of \(size) bytes is larger than the limit of \(limit) bytes; store smaller blocks"
        case .bufferTooSmall(let id, let needed, let available):
            return "memory chunk \(id) holds \(needed) bytes but the buffer has room for \(available); pass a larger buffer"
        case .closed(let path):
            return "image store \(path) was closed; open it again to write to it"
        case .misuse(let what):
            return "internal error in ghost: \(what); please report it"
        }
    }

    /// What the user can do about the common storage errors.
    static func hint(_ code: Int32) -> String {
        switch code {
        case ENOSPC: return "the file system is full: free space or keep fewer checkpoints"
        case EDQUOT: return "your disk quota is exhausted: free space or keep fewer checkpoints"
        case EFBIG: return "the file size limit (ulimit -f) was reached"
        case EACCES, EPERM: return "check that you own the image directory and may write to it"
        case EROFS: return "the file system is mounted read-only"
        case EIO: return "the storage reported an I/O error; check the file system"
        case EMFILE, ENFILE: return "too many open files (ulimit -n)"
        default: return ""
        }
    }
}
