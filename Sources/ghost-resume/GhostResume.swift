import ArgumentParser
import Glibc
import GhostImage
import GhostJob

@main
struct GhostResume: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ghost-resume",
        abstract: "Rebuild a job from its newest (or a chosen) checkpoint and keep supervising it like ghost-run.")

    @Option(help: "Resume this checkpoint number instead of the newest intact one.")
    var checkpoint: Int?

    @Option(help: "Checkpoint every DURATION from now on (default: as the job was started).")
    var checkpointInterval: String?

    @Option(help: "How many checkpoints to keep (default: as the job was started).")
    var keep: Int?

    @Flag(help: "List the checkpoints in the directory and exit.")
    var list = false

    @Argument(help: "The job's image directory.")
    var imageDir: String

    func validate() throws {
        if let c = checkpointInterval, Duration.parse(c) == nil {
            throw ValidationError("--checkpoint-interval '\(c)' is not a duration; use e.g. 90s, 30m, 2h")
        }
        if let k = keep, k < 1 { throw ValidationError("--keep must be at least 1") }
    }

    /// Signals are blocked before anything else, so a SIGUSR1 or SIGTERM
    /// that arrives while options are parsed waits instead of killing ghost.
    static func main() {
        Supervisor.prepareSignals()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }

    func run() throws {
        let store: ImageStore
        do { store = try ImageStore(path: imageDir, create: false) } catch { fail("\(error)") }
        if list { listCheckpoints(store); return }
        do { try store.lockForWriting() } catch { fail("\(error)") }

        let restorer = Restorer(store: store, warn: { Log.warn($0) })
        let number: Int, manifest: Manifest, handle: JobHandle
        do {
            (number, manifest) = try restorer.load(number: checkpoint)
            handle = try restorer.restore(manifest)
        } catch { fail("\(error)") }
        var job = manifest.job
        if let c = checkpointInterval { job.checkpointInterval = Duration.parse(c) }
        if let k = keep { job.keep = k }
        Log.info(Restorer.describe(number: number, manifest, handle))
        let sup = Supervisor(store: store, job: job)
        sup.adopt(handle)
        let code = sup.run()
        store.close()
        Glibc.exit(code)
    }

    func listCheckpoints(_ store: ImageStore) {
        let numbers = store.checkpointNumbers()
        if numbers.isEmpty { print("\(store.path): no checkpoints") }
        for n in numbers {
            do {
                let m = try Manifest.decode(try store.loadManifest(n))
                let p = m.processes[0]
                print("checkpoint \(n): \(p.comm) pid \(p.pid) on \(m.hostname) (kernel \(m.kernelRelease)), "
                      + "\(p.vmas.count) mappings, \(p.fds.count) fds")
            } catch {
                print("checkpoint \(n): damaged: \(error)")
            }
        }
    }

    func fail(_ message: String) -> Never {
        Log.error(tool: "ghost-resume", message)
        Glibc.exit(125)
    }
}
