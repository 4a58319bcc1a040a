import ArgumentParser
import GhostImage
import GhostJob

/// How a job is supervised: the same options for ghost-run and ghost-resume,
/// so a job resumed by hand can be supervised exactly as it was started.
public struct SupervisionOptions: ParsableArguments {
    @Option(help: "Checkpoint every DURATION (e.g. 90s, 30m, 2h, 1h30m). ghost-resume: default as the job was started.")
    public var checkpointInterval: String?

    @Option(help: "How many checkpoints to keep (default 3; ghost-resume: as the job was started).")
    public var keep: Int?

    @Flag(help: "On SIGUSR1: checkpoint, requeue this Slurm job, stop the job and exit 0 (default: checkpoint and continue).")
    public var requeueOnSignal = false

    @Flag(help: "On SIGTERM: take a final checkpoint, then stop the job (it resumes from there).")
    public var checkpointOnTerm = false

    @Option(help: "Checkpoint and requeue the Slurm job DURATION before its time limit (end time from Slurm).")
    public var requeueBeforeEnd: String?

    public init() {}

    public func validate() throws {
        if let k = keep, k < 1 { throw ValidationError("--keep must be at least 1") }
        for (name, value) in [("--checkpoint-interval", checkpointInterval), ("--requeue-before-end", requeueBeforeEnd)] {
            if let c = value, Duration.parse(c) == nil {
                throw ValidationError("\(name) '\(c)' is not a duration; use e.g. 90s, 30m, 2h")
            }
        }
    }

    public var policy: SupervisorPolicy {
        var p = SupervisorPolicy()
        p.requeueOnSignal = requeueOnSignal
        p.checkpointOnTerm = checkpointOnTerm
        p.requeueBeforeEnd = requeueBeforeEnd.flatMap(Duration.parse)
        return p
    }

    /// `job` with the interval and retention given on the command line, if any.
    public func applied(to job: JobRecord) -> JobRecord {
        var j = job
        if let c = checkpointInterval { j.checkpointInterval = Duration.parse(c) }
        if let k = keep { j.keep = k }
        return j
    }
}

/// A ghost command line tool: signals are blocked before anything else, so a
/// SIGUSR1 or SIGTERM that arrives while options are parsed waits instead of
/// killing ghost.
public protocol GhostCommand: ParsableCommand {}

extension GhostCommand {
    public static func main() {
        LauncherDescriptors.record()
        Supervisor.prepareSignals()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

/// Forgets a recorded end once the job runs again. The job is running by
/// then, so a failure is only a warning: the record would make the next
/// resume refuse until it is removed (the warning says which file).
public func clearEnd(_ store: ImageStore) {
    do { try store.clearEnd() } catch { Log.warn("\(error); remove \(store.path)/ENDED by hand before resuming this job again") }
}
