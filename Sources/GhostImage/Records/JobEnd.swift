import Glibc

/// The job ran to its end under ghost (it exited by itself, not stopped from
/// outside): kept in the image directory (`ENDED`) so that a later resume,
/// e.g. a requeued batch script's `ghost-run --resume-if-present`, does not
/// run the job's end a second time.
public struct JobEnd: Codable, Sendable, Equatable {
    /// The job's exit status (it exited; a job killed by a signal is not recorded).
    public var exitStatus: Int32
    /// The newest checkpoint when it ended (0: none).
    public var lastCheckpoint: Int
    public var argv: [String]
    public var hostname: String
    /// Unix time (seconds) of the end.
    public var time: Int64

    public init(exitStatus: Int32, lastCheckpoint: Int, argv: [String], hostname: String, time: Int64) {
        self.exitStatus = exitStatus; self.lastCheckpoint = lastCheckpoint
        self.argv = argv; self.hostname = hostname; self.time = time
    }

    /// "exit status 0, on node12 at 2026-12-02 15:40:07 UTC, after checkpoint 7"
    public var summary: String {
        var t = time_t(time), tm = Glibc.tm()
        var buf = [CChar](repeating: 0, count: 64)
        gmtime_r(&t, &tm)
        let n = strftime(&buf, buf.count, "%Y-%m-%d %H:%M:%S UTC", &tm)
        let when = String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "exit status \(exitStatus), on \(hostname) at \(when), "
            + (lastCheckpoint > 0 ? "after checkpoint \(lastCheckpoint)" : "before any checkpoint")
    }
}
