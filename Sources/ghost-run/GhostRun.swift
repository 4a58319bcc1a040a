import ArgumentParser
import Glibc
import GhostImage
import GhostJob

@main
struct GhostRun: ParsableCommand {
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

    @Option(help: "Checkpoint every DURATION (e.g. 90s, 30m, 2h, 1h30m).")
    var checkpointInterval: String?

    @Option(help: "How many checkpoints to keep.")
    var keep: Int = 3

    @Option(help: "zstd compression level for memory (1 = fastest).")
    var zstdLevel: Int = 1

    @Argument(parsing: .captureForPassthrough, help: "-- PROGRAM ARGS...")
    var command: [String] = []

    func validate() throws {
        if command.first == "--" && command.count == 1 || command.isEmpty {
            throw ValidationError("no program given; usage: ghost-run [options] -- PROGRAM ARGS...")
        }
        if keep < 1 { throw ValidationError("--keep must be at least 1") }
        if !(1...19).contains(zstdLevel) { throw ValidationError("--zstd-level must be between 1 and 19") }
        if let c = checkpointInterval, Duration.parse(c) == nil {
            throw ValidationError("--checkpoint-interval '\(c)' is not a duration; use e.g. 90s, 30m, 2h")
        }
    }

    func run() throws {
        Supervisor.prepareSignals()
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
            try store.lockForWriting()
        } catch { fail("\(error)") }
        if let newest = store.checkpointNumbers().last {
            fail("\(dir) already holds checkpoint \(newest) of a job; resume it with `ghost-resume \(dir)`, "
                 + "or pass another --image-dir to start afresh")
        }
        let job = JobRecord(argv: argv, checkpointInterval: checkpointInterval.flatMap(Duration.parse),
                            keep: keep, zstdLevel: zstdLevel)
        let sup = Supervisor(store: store, job: job)
        do {
            let pid = try sup.launch(path: path, argv: argv)
            Log.info("started pid \(pid): \(argv.joined(separator: " ")); images in \(dir)")
        } catch { fail("\(error)", code: 126) }
        let code = sup.run()
        store.close()
        Glibc.exit(code)
    }

    func fail(_ message: String, code: Int32 = 125) -> Never {
        Log.error(tool: "ghost-run", message)
        Glibc.exit(code)
    }
}
