import ArgumentParser
import Glibc
import GhostImage
import GhostJob
import GhostCLI

@main
struct GhostResume: GhostCommand {
    static let configuration = CommandConfiguration(
        commandName: "ghost-resume",
        abstract: "Rebuild a job from its newest (or a chosen) checkpoint and keep supervising it like ghost-run.")

    @Option(help: "Resume this checkpoint number instead of the newest intact one.")
    var checkpoint: Int?

    @OptionGroup var supervision: SupervisionOptions

    @Flag(help: "List the checkpoints in the directory and exit.")
    var list = false

    @Argument(help: "The job's image directory.")
    var imageDir: String

    func run() throws {
        let store: ImageStore
        do { store = try ImageStore(path: imageDir, create: false) } catch { fail("\(error)") }
        if list { listCheckpoints(store); return }
        do { try store.lockForWriting() } catch { fail("\(error)") }
        if let end = store.jobEnd() {
            guard let n = checkpoint else {
                // Done: say so, and give the job's own status (as ghost-run --resume-if-present does).
                let newest = store.checkpointNumbers().last
                Log.info("the job in \(store.path) already ended (\(end.summary)); nothing to resume"
                         + (newest.map { ". Resuming would run its end again; to do that anyway, name the checkpoint: "
                                         + "ghost-resume --checkpoint \($0) \(imageDir)" } ?? ""))
                store.close()
                Glibc.exit(end.exitStatus)
            }
            Log.info("the job had ended (\(end.summary)); resuming checkpoint \(n) as asked")
        }

        let restorer = Restorer(store: store, warn: { Log.warn($0) })
        let number: Int, manifest: Manifest, handle: JobHandle
        do {
            (number, manifest) = try restorer.load(number: checkpoint)
            handle = try restorer.restore(manifest)
        } catch { fail("\(error)") }
        clearEnd(store)   // it runs again (a no-op unless it had ended)
        let job = supervision.applied(to: manifest.job)
        Log.info(Restorer.describe(number: number, manifest, handle))
        let sup = Supervisor(store: store, job: job, policy: supervision.policy)
        sup.adopt(handle)
        let code = sup.run()
        store.close()
        Glibc.exit(code)
    }

    func listCheckpoints(_ store: ImageStore) {
        let numbers = store.checkpointNumbers()
        if numbers.isEmpty { print("\(store.path): no checkpoints") }
        if let end = store.jobEnd() { print("job ended: \(end.summary)") }
        for n in numbers {
            do {
                let m = try Manifest.decode(try store.loadManifest(n))
                guard let p = m.processes.first else {
                    print("checkpoint \(n): holds no process (taken as the job ended); not resumable")
                    continue
                }
                let threads = m.processes.reduce(0) { $0 + $1.threads.count }
                print("checkpoint \(n): \(p.comm) pid \(p.pid) on \(m.hostname) (kernel \(m.kernelRelease)), "
                      + "\(m.processes.count) processes, \(threads) threads, "
                      + "\(m.processes.reduce(0) { $0 + $1.vmas.count }) mappings, \(m.processes.reduce(0) { $0 + $1.fds.count }) fds")
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
