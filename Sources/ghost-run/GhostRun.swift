import ArgumentParser
import Glibc
import GhostImage
import GhostJob
import GhostCLI

@main
struct GhostRun: GhostCommand {
    static let configuration = CommandConfiguration(
        commandName: "ghost-run",
        abstract: "Run a program under ghost: checkpoint it on a timer or on SIGUSR1, resume it later with ghost-resume.",
        discussion: """
        Examples:
          ghost-run --checkpoint-interval 30m -- ./app input.dat
          kill -USR1 <ghost-run pid>        # checkpoint now, keep running
          ghost-resume ./ghost-images/app   # after a crash, on any node
        """)

    @Option(help: "Directory for the images (default ./ghost-images/<program> or ./ghost-images/$SLURM_JOB_ID).")
    var imageDir: String?

    @OptionGroup var supervision: SupervisionOptions

    @Option(help: "zstd compression level for memory (1 = fastest).")
    var zstdLevel: Int = 1

    @Flag(help: "If the image directory holds a checkpoint of this command, resume it instead of starting (automatic when SLURM_RESTART_COUNT > 0).")
    var resumeIfPresent = false

    @Option(help: "Wait up to DURATION for another ghost holding the image directory to let go (default 0, or 5m under Slurm).")
    var lockTimeout: String?

    @Flag(help: "Run the job without its own user + PID namespaces (then only single-threaded single-process jobs can be checkpointed, and PIDs change on resume).")
    var noNamespaces = false

    @Argument(parsing: .captureForPassthrough, help: "-- PROGRAM ARGS...")
    var command: [String] = []

    func validate() throws {
        if command.first == "--" && command.count == 1 || command.isEmpty {
            throw ValidationError("no program given; usage: ghost-run [options] -- PROGRAM ARGS...")
        }
        if command.first == "--help" || command.first == "-h" { throw CleanExit.helpRequest(self) }
        if let first = command.first, first.hasPrefix("-"), first != "--" {
            throw ValidationError("unknown option '\(first)'; see ghost-run --help (put the program after --)")
        }
        if !(1...19).contains(zstdLevel) { throw ValidationError("--zstd-level must be between 1 and 19") }
        if let c = lockTimeout, Duration.parse(c) == nil && c != "0" {
            throw ValidationError("--lock-timeout '\(c)' is not a duration; use e.g. 0, 90s, 5m")
        }
    }

    func run() throws {
        let startedAt = Clock.wall()   // files born after this are the job's (see ClosedFiles)
        let argv = command.first == "--" ? Array(command.dropFirst()) : command
        let path: String
        switch Program.resolve(argv[0]) {
        case .found(let p): path = p
        case .notFound: fail("\(argv[0]): program not found (not a file, and not in PATH)", code: 127)
        case .notExecutable(let p): fail("\(p): not executable (chmod +x it, or run it through its interpreter)", code: 126)
        }
        let dir = imageDir ?? ImageDirectory.defaultPath(program: argv[0])
        let store: ImageStore
        do {
            store = try ImageStore(path: dir, create: true)
        } catch { fail("\(error)") }
        let defaultWait = Slurm.jobID != nil ? 300.0 : 0
        do { try Locking.acquire(store, waitingUpTo: lockTimeout.map { Duration.parse($0) ?? 0 } ?? defaultWait) }
        catch { fail("\(error)") }

        var job = JobRecord(argv: argv, checkpointInterval: supervision.checkpointInterval.flatMap(Duration.parse),
                            keep: supervision.keep ?? 3, zstdLevel: zstdLevel)
        job.startedAt = startedAt
        let policy = supervision.policy

        let sup: Supervisor
        let resuming = resumeIfPresent || Slurm.restartCount > 0
        if let end = store.jobEnd() {
            guard end.argv == argv else {
                fail("\(dir) holds another command (\(end.argv.joined(separator: " "))), which ended; "
                     + "use another --image-dir for this one")
            }
            if resuming {
                // A requeued run of a job that had finished: it is done, not to be run again.
                Log.info("the job in \(dir) already ended (\(end.summary)); not running it again. "
                         + "To run it anew, remove \(dir) or pass another --image-dir")
                store.close()
                Glibc.exit(end.exitStatus)
            }
            if !store.checkpointNumbers().isEmpty {
                fail("\(dir) holds a job that ended (\(end.summary)); remove \(dir) or pass another --image-dir "
                     + "to run it anew")
            }
        }
        if let newest = store.checkpointNumbers().last {
            guard resuming else {
                fail("\(dir) already holds checkpoint \(newest) of a job; resume it with `ghost-resume \(dir)` or "
                     + "`ghost-run --resume-if-present ...`, or pass another --image-dir to start afresh")
            }
            let restorer = Restorer(store: store, warn: { Log.warn($0) })
            do {
                let (n, m) = try restorer.load(number: nil)
                guard m.job.argv == argv else {
                    fail("\(dir) holds checkpoints of another command (\(m.job.argv.joined(separator: " "))); "
                         + "use another --image-dir for this one")
                }
                job.zstdLevel = zstdLevel
                if job.checkpointInterval == nil { job.checkpointInterval = m.job.checkpointInterval }
                sup = Supervisor(store: store, job: job, policy: policy)
                let handle = try restorer.restore(m)
                sup.adopt(handle)
                Log.info(Restorer.describe(number: n, m, handle) + "; images in \(dir)")
            } catch { fail("cannot resume \(dir): \(error)") }
        } else {
            if Slurm.restartCount > 0 {
                Log.info("no checkpoint in \(dir) yet; starting the job from the beginning")
            }
            sup = Supervisor(store: store, job: job, policy: policy)
            var namespaces = !noNamespaces
            if namespaces && !JobNamespace.available {
                Log.warn("this node does not let ordinary users create user + PID namespaces; the job runs without them, "
                    + "so only a single-threaded single process can be checkpointed and PIDs will change on resume")
                namespaces = false
            }
            do {
                let pid = try sup.launch(path: path, argv: argv, namespaces: namespaces)
                clearEnd(store)   // a job that ended before any checkpoint runs anew
                Log.info("started pid \(pid): \(argv.joined(separator: " ")); images in \(dir)")
            } catch { fail("\(error)", code: 126) }
        }
        let code = sup.run()
        store.close()
        Glibc.exit(code)
    }

    func fail(_ message: String, code: Int32 = 125) -> Never {
        Log.error(tool: "ghost-run", message)
        Glibc.exit(code)
    }
}
