import Glibc
import GhostImage

/// Every failure of the engine, with a message that names what failed and,
/// where there is one, what the user can do about it.
public enum GhostError: Error, CustomStringConvertible {
    /// A system call failed: what was being done, and errno.
    case system(String, errno: Int32)
    /// The job holds something this version cannot checkpoint.
    case unsupported(String)
    /// The image cannot run here (CPU features, vDSO, kernel).
    case incompatible(String)
    /// A file the job uses changed since the checkpoint in a way that cannot be reconciled.
    case fileChanged(String)
    /// The image store reported a problem.
    case image(ImageError)
    /// The image decodes but does not make sense.
    case badImage(String)
    /// Rebuilding the process failed part-way.
    case restore(String)
    /// Bad command-line input.
    case usage(String)
    /// madvise() changed whether an area is copied by fork while a checkpoint
    /// used flags read before the freeze (AreaFlags); the checkpoint is retaken.
    case areaFlagsChanged(pid: pid_t, start: UInt64)

    public var description: String {
        switch self {
        case let .system(what, errno): return errno == 0 ? what : "\(what): \(String(cString: strerror(errno)))"
        case let .unsupported(s): return s
        case let .incompatible(s): return s
        case let .fileChanged(s): return s
        case let .image(e): return e.description
        case let .badImage(s): return "damaged or foreign image: \(s)"
        case let .restore(s): return "restore failed: \(s)"
        case let .usage(s): return s
        case let .areaFlagsChanged(pid, start):
            return "process \(pid) changed the fork flags (MADV_DONTFORK/WIPEONFORK) of its area at 0x\(String(start, radix: 16)) during the checkpoint"
        }
    }

    /// Shorthand for `.system(what, errno: errno)` with the current errno.
    static func errno(_ what: String) -> GhostError { .system(what, errno: Glibc.errno) }
}
