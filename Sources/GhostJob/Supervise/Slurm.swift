import Glibc
import CGhostSlurm

/// The Slurm job ghost runs in, if any: its id and restart count from the
/// environment, and requeue / end time through libslurm (loaded on demand).
public enum Slurm {
    public static var jobID: UInt32? { getenv("SLURM_JOB_ID").flatMap { UInt32(String(cString: $0)) } }
    /// 0 on the first run, 1, 2, ... after each requeue.
    public static var restartCount: Int {
        getenv("SLURM_RESTART_COUNT").flatMap { Int(String(cString: $0)) } ?? 0
    }

    static func requireJob(_ what: String) throws(GhostError) -> UInt32 {
        guard let id = jobID else {
            throw .usage("\(what) needs a Slurm job, but SLURM_JOB_ID is not set")
        }
        return id
    }

    public static func requeue() throws(GhostError) {
        let id = try requireJob("requeueing")
        var err = [CChar](repeating: 0, count: 512)
        if ghost_slurm_requeue(id, &err, Int32(err.count)) != 0 {
            throw .system("requeueing Slurm job \(id): \(String(cString: err))", errno: 0)
        }
    }

    /// Seconds since the epoch at which Slurm will end the job.
    public static func endTime() throws(GhostError) -> Double {
        let id = try requireJob("finding the job's end time")
        var err = [CChar](repeating: 0, count: 512)
        var end: Int64 = 0
        if ghost_slurm_end_time(id, &end, &err, Int32(err.count)) != 0 {
            throw .system("asking Slurm for the end time of job \(id): \(String(cString: err))", errno: 0)
        }
        return Double(end)
    }
}
