import Glibc
import CGhostSys
import GhostImage

/// Watches a running job exactly the same way whether ghost-run started it
/// or ghost-resume rebuilt it: checkpoints on the timer and on SIGUSR1,
/// forwards the usual signals, reaps children, and returns the job's exit
/// status (128+N when a signal N killed it).
public final class Supervisor {
    let store: ImageStore
    var job: JobRecord
    var jobPid: pid_t = 0
    private let signalFD: Int32

    /// Signals ghost handles through a signalfd. They must be blocked before
    /// any thread starts, so `prepareSignals()` is the first thing a CLI does.
    static let handled: [Int32] = [SIGCHLD, SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGALRM, SIGCONT]
    static let forwarded: Set<Int32> = [SIGUSR2, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGALRM, SIGCONT]
    nonisolated(unsafe) private static var sharedFD: Int32 = -1

    public static func prepareSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        for s in handled { sigaddset(&set, s) }
        sigprocmask(SIG_BLOCK, &set, nil)
        sharedFD = signalfd(-1, &set, Int32(SFD_CLOEXEC))
        // A job's child that outlives it is re-parented here, so it is reaped too.
        _ = ghost_set_child_subreaper()
    }

    public init(store: ImageStore, job: JobRecord) {
        self.store = store
        self.job = job
        self.signalFD = Supervisor.sharedFD
    }

    /// Starts `program` (already resolved to a path) as the job.
    public func launch(path: String, argv: [String]) throws(GhostError) -> pid_t {
        var err: Int32 = 0
        let env = environ()
        let pid = withCStrings(argv) { a in withCStrings(env) { e in ghost_spawn(path, a, e, SIGKILL, &err) } }
        if pid < 0 { throw .system("executing \(path)", errno: err) }
        jobPid = pid
        return pid
    }

    public func adopt(pid: pid_t) { jobPid = pid }

    public func run() -> Int32 {
        var next = job.checkpointInterval.map { Clock.now() + $0 }
        while true {
            var timeout: Int32 = -1
            if let n = next { timeout = Int32(max(0, min(Double(Int32.max), (n - Clock.now()) * 1000))) }
            var pfd = pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, timeout)
            if r == 0, let interval = job.checkpointInterval {
                checkpoint(reason: "timer")
                if let code = reapedDuringCheckpoint() { return code }
                next = Clock.now() + interval
                continue
            }
            if r < 0 { continue }
            var info = signalfd_siginfo()
            let n = read(signalFD, &info, MemoryLayout<signalfd_siginfo>.size)
            guard n == MemoryLayout<signalfd_siginfo>.size else { continue }
            let sig = Int32(info.ssi_signo)
            switch sig {
            case SIGCHLD:
                if let code = reap() { return code }
            case SIGUSR1:
                checkpoint(reason: "SIGUSR1")
                if let code = reapedDuringCheckpoint() { return code }
                if let interval = job.checkpointInterval { next = Clock.now() + interval }
            default:
                // A terminal sends ^C to the whole foreground group, job included:
                // forward only what was sent to ghost alone.
                let fromKernel = info.ssi_code == 0x80   // SI_KERNEL
                if Supervisor.forwarded.contains(sig) && !fromKernel { kill(jobPid, sig) }
            }
        }
    }

    private func reapedDuringCheckpoint() -> Int32? {
        guard let status = ReapedChildren.take(jobPid) else { return nil }
        if ghost_wifexited(status) != 0 { return ghost_wexitstatus(status) }
        return 128 + ghost_wtermsig(status)
    }

    /// Reaps every finished child; the job's status once it is gone.
    private func reap() -> Int32? {
        var result: Int32? = nil
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG | __WALL)
            if pid <= 0 { break }
            if pid == jobPid {
                if ghost_wifexited(status) != 0 { result = ghost_wexitstatus(status) }
                else if ghost_wifsignaled(status) != 0 { result = 128 + ghost_wtermsig(status) }
            }
        }
        return result
    }

    public func checkpoint(reason: String) {
        let cp = Checkpointer(store: store, job: job)
        do {
            let r = try cp.checkpoint(pid: jobPid)
            Log.info("checkpoint \(r.number) done: memory \(Log.size(r.mappedBytes)), stored \(Log.size(r.storedBytes)), "
                + "wrote \(Log.size(r.writtenBytes)) (\(r.chunksWritten) new chunks, \(r.chunksReused) reused), "
                + "\(Log.ms(r.seconds)) total, frozen \(Log.ms(r.frozenSeconds)) [\(reason)] -> \(store.path)")
            do { try store.prune(keep: job.keep) } catch { Log.warn("pruning old checkpoints: \(error)") }
        } catch {
            let next = (store.checkpointNumbers().last ?? 0) + 1
            Log.info("checkpoint \(next) failed: \(error); the job keeps running"
                + (next > 1 ? ", checkpoint \(next - 1) is intact" : ""))
        }
    }

    private func environ() -> [String] {
        var out: [String] = []
        var p = Glibc.environ
        while let s = p.pointee { out.append(String(cString: s)); p += 1 }
        return out
    }
}
