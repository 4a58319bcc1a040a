import Glibc
import CGhostSys
import GhostImage

/// What the supervisor does on scheduler events, beyond the defaults.
public struct SupervisorPolicy: Sendable {
    /// SIGUSR1 = checkpoint, requeue the Slurm job, stop the job, exit 0.
    public var requeueOnSignal = false
    /// SIGTERM = take a final checkpoint first, then stop the job.
    public var checkpointOnTerm = false
    /// Checkpoint and requeue this long before Slurm's end time for the job.
    public var requeueBeforeEnd: Double? = nil
    public init() {}
}

/// Watches a running job exactly the same way whether ghost-run started it
/// or ghost-resume rebuilt it: checkpoints on the timer and on SIGUSR1,
/// forwards the usual signals, reaps children, suspends and resumes on
/// request, and returns the job's exit status (128+N when signal N killed it).
public final class Supervisor {
    let store: ImageStore
    var job: JobRecord
    let policy: SupervisorPolicy
    /// The job's main process (0 while suspended: the job exists only as its image).
    var jobPid: pid_t = 0
    /// ghost-init, PID 1 of the job's namespaces, when it has them: the job ends when it ends.
    var initPid: pid_t = 0
    var handle: JobHandle { JobHandle(initPid: initPid == 0 ? nil : initPid, rootPid: jobPid) }
    private let signalFD: Int32
    /// Pages written between checkpoints, so incremental checkpoints read only those.
    let tracking = WriteTracking()
    private var stopping = false
    /// The job's raw wait status once it ended by itself.
    private var endStatus: Int32?
    /// A terminating signal from outside reached the job through ghost.
    private var stoppedFromOutside = false

    /// Signals ghost handles through a signalfd. They must be blocked before
    /// any thread starts, so `prepareSignals()` is the first thing a CLI does.
    static let handled: [Int32] = [SIGCHLD, SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGALRM, SIGCONT,
                                   SIGURG, SIGWINCH]
    static let forwarded: Set<Int32> = [SIGUSR2, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGALRM, SIGCONT]
    /// The forwarded signals that ask the job to stop.
    static let terminating: Set<Int32> = [SIGTERM, SIGINT, SIGHUP, SIGQUIT]
    /// Suspend (checkpoint, then free the job's memory) and resume-in-place requests.
    public static let suspendSignal = SIGURG, resumeSignal = SIGWINCH
    nonisolated(unsafe) private static var sharedFD: Int32 = -1

    /// Signals ignored by whoever started ghost (`nohup ghost-run`): the
    /// job starts with them ignored too (ghost_job_signals), and ghost does
    /// not act on them or pass them on.
    nonisolated(unsafe) private static var ignoredAtStart = Set<Int32>()

    public static func prepareSignals() {
        let ignored = ghost_record_ignored_signals()
        ignoredAtStart = Set((1...64).filter { ignored >> UInt64($0 - 1) & 1 == 1 }.map { Int32($0) })
        var set = sigset_t()
        sigemptyset(&set)
        for s in handled { sigaddset(&set, s) }
        sigprocmask(SIG_BLOCK, &set, nil)
        sharedFD = signalfd(-1, &set, Int32(SFD_CLOEXEC))
        // A job's child that outlives it is re-parented here, so it is reaped too.
        _ = ghost_set_child_subreaper()
    }

    public init(store: ImageStore, job: JobRecord, policy: SupervisorPolicy = SupervisorPolicy()) {
        self.store = store
        self.job = job
        self.policy = policy
        self.signalFD = Supervisor.sharedFD
    }

    /// Starts `program` (already resolved to a path) as the job, in its own
    /// user + PID namespaces when `namespaces` (then its PIDs can be restored).
    public func launch(path: String, argv: [String], namespaces: Bool) throws(GhostError) -> pid_t {
        var err: Int32 = 0, step: Int32 = 0
        let env = environ()
        if namespaces {
            var job: pid_t = 0
            let ip = withCStrings(argv) { a in withCStrings(env) { e in ghost_spawn_ns(path, a, e, &job, &err, &step) } }
            if ip < 0 {
                let what = ["", "creating namespaces", "mapping the user and group ids", "mounting /proc",
                            "fork", "executing \(path)"]
                throw .system(what[Int(step) < what.count ? Int(step) : 0], errno: err)
            }
            initPid = ip
            jobPid = job
            if jobPid == 0 { throw .system("the job's process did not appear", errno: ECHILD) }
            return jobPid
        }
        let pid = withCStrings(argv) { a in withCStrings(env) { e in ghost_spawn(path, a, e, SIGKILL, &err) } }
        if pid < 0 { throw .system("executing \(path)", errno: err) }
        jobPid = pid
        return pid
    }

    public func adopt(_ job: JobHandle) {
        jobPid = job.rootPid
        initPid = job.initPid ?? 0
    }

    /// Supervises the job until it ends (or ghost stops it); returns ghost's
    /// exit status. A job that exited by itself is recorded as ended in the
    /// image directory, so that resuming it later does not run its end again.
    public func run() -> Int32 {
        let code = supervise()
        if let status = endStatus { recordEnd(status) }
        return code
    }

    /// Records the end of a job that exited by itself. Not when it was
    /// killed by a signal (or exited 128 or more, which is how ghost-init
    /// passes on a signal death), nor when it exited after a terminating
    /// signal from outside (ghost forwarded one, or one is pending for
    /// ghost: a scheduler ending the job signals all its processes): a
    /// requeued run must resume such a job, not take it as finished.
    private func recordEnd(_ status: Int32) {
        guard ghost_wifexited(status) != 0, ghost_wexitstatus(status) < 128, !stoppedFromOutside else { return }
        var pending = sigset_t()
        sigpending(&pending)
        if Self.terminating.contains(where: { sigismember(&pending, $0) == 1 }) { return }
        let end = JobEnd(exitStatus: ghost_wexitstatus(status), lastCheckpoint: store.checkpointNumbers().last ?? 0,
                         argv: job.argv, hostname: Host.name, time: Int64(Glibc.time(nil)))
        do { try store.recordEnd(end) } catch { Log.warn("recording the job's end in \(store.path): \(error)") }
    }

    private func supervise() -> Int32 {
        var nextCheckpoint = job.checkpointInterval.map { Clock.now() + $0 }
        var endDeadline = policy.requeueBeforeEnd.flatMap { endDeadlineFromSlurm(margin: $0) }
        while true {
            let deadlines = [nextCheckpoint, endDeadline].compactMap { $0 }
            var timeout: Int32 = -1
            if let d = deadlines.min() { timeout = Int32(max(0, min(Double(Int32.max), (d - Clock.now()) * 1000))) }
            var pfd = pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, timeout)
            if r == 0 {
                let now = Clock.now()
                if let d = endDeadline, now >= d {
                    if let code = checkpointAndRequeue(reason: "end of the job's time limit is near") { return code }
                    endDeadline = nil
                } else if let n = nextCheckpoint, now >= n, jobPid != 0 {
                    checkpoint(reason: "timer")
                    if let code = reapedDuringCheckpoint() { return code }
                }
                if let i = job.checkpointInterval, let n = nextCheckpoint, now >= n { nextCheckpoint = now + i }
                continue
            }
            if r < 0 { continue }
            var info = signalfd_siginfo()
            let n = read(signalFD, &info, MemoryLayout<signalfd_siginfo>.size)
            guard n == MemoryLayout<signalfd_siginfo>.size else { continue }
            let sig = Int32(info.ssi_signo)
            if Self.ignoredAtStart.contains(sig) && sig != SIGCHLD { continue }
            switch sig {
            case SIGCHLD:
                if let code = reap() { return code }
            case SIGUSR1 where jobPid != 0:
                if policy.requeueOnSignal {
                    if let code = checkpointAndRequeue(reason: "SIGUSR1") { return code }
                } else {
                    checkpoint(reason: "SIGUSR1")
                }
                if let code = reapedDuringCheckpoint() { return code }
                if let i = job.checkpointInterval { nextCheckpoint = Clock.now() + i }
            case Supervisor.suspendSignal:
                suspend()
            case Supervisor.resumeSignal:
                resumeInPlace()
            case SIGTERM where policy.checkpointOnTerm && jobPid != 0 && !stopping && !isJobProcess(pid_t(info.ssi_pid)):
                if let code = checkpointAndStop(reason: "SIGTERM") { return code }
                stoppedFromOutside = true
                kill(jobPid, SIGTERM)   // no checkpoint: the job ends as it would without ghost
            default:
                if jobPid == 0 && Self.terminating.contains(sig) {
                    Log.info("stopping while suspended; the job stays in \(store.path)")
                    return 128 + sig
                }
                // A terminal sends ^C to the whole foreground group, job included,
                // and so does the job's own kill(0, sig) (`trap 'kill 0' EXIT`):
                // forward only what was sent to ghost alone.
                let fromKernel = info.ssi_code == 0x80   // SI_KERNEL
                if Supervisor.forwarded.contains(sig) && !fromKernel && jobPid != 0 && !isJobProcess(pid_t(info.ssi_pid)) {
                    if Self.terminating.contains(sig) { stoppedFromOutside = true }
                    kill(jobPid, sig)
                }
            }
        }
    }

    /// Whether `pid` (a signal's sender) is a process of the job. The kernel
    /// does not translate a sender's PID from a child PID namespace, so a
    /// job in namespaces shows its own (inner) PID; without namespaces the
    /// sender is a descendant of ghost (the job's subreaper). A sender
    /// already gone counts as outside.
    func isJobProcess(_ pid: pid_t) -> Bool {
        guard pid > 0, pid != getpid() else { return false }
        if initPid != 0, let members = try? JobNamespace.members(initPid: initPid),
           members.contains(where: { JobNamespace.innerPid($0) == pid }) { return true }
        var p = pid
        for _ in 0..<128 {
            guard let st = try? ProcFS.stat(p) else { return false }
            let parent = pid_t(st.field(4))
            if parent == getpid() { return true }
            if parent <= 1 { return false }
            p = parent
        }
        return false
    }

    private func reapedDuringCheckpoint() -> Int32? {
        guard let status = ReapedChildren.take(initPid != 0 ? initPid : jobPid) else { return nil }
        endStatus = status
        return Self.exitCode(status)
    }

    static func exitCode(_ status: Int32) -> Int32 {
        ghost_wifexited(status) != 0 ? ghost_wexitstatus(status) : 128 + ghost_wtermsig(status)
    }

    /// Reaps every finished child; the job's status once it is gone.
    private func reap() -> Int32? {
        var result: Int32? = nil
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG | __WALL)
            if pid <= 0 { break }
            let main = initPid != 0 ? initPid : jobPid
            if pid == main && main != 0 && (ghost_wifexited(status) != 0 || ghost_wifsignaled(status) != 0) {
                endStatus = status
                result = Self.exitCode(status)
            }
        }
        return result
    }

    /// Takes a checkpoint and logs it; nil when it failed (also logged).
    @discardableResult
    public func checkpoint(reason: String) -> CheckpointResult? {
        let cp = Checkpointer(store: store, job: job, tracking: tracking)
        do {
            let r = try cp.checkpoint(handle)
            Log.info("checkpoint \(r.number) done: memory \(Log.size(r.mappedBytes)), stored \(Log.size(r.storedBytes)), "
                + "read \(Log.size(r.readBytes)), "
                + "wrote \(Log.size(r.writtenBytes)) (\(r.chunksWritten) new chunks, \(r.chunksReused) reused), "
                + "\(Log.ms(r.seconds)) total, frozen \(Log.ms(r.frozenSeconds)) [\(reason)] -> \(store.path)")
            do { try store.prune(keep: job.keep) } catch { Log.warn("pruning old checkpoints: \(error)") }
            return r
        } catch {
            let next = (store.checkpointNumbers().last ?? 0) + 1
            Log.info("checkpoint \(next) failed: \(error); the job keeps running"
                + (next > 1 ? ", checkpoint \(next - 1) is intact" : ""))
            return nil
        }
    }

    /// Checkpoint, then kill the job (frozen first, so it cannot react to
    /// anything after its image was taken). Exit code for ghost, or nil when
    /// the checkpoint failed and the job keeps running.
    private func checkpointAndStop(reason: String, then: () throws(GhostError) -> Void = {}) -> Int32? {
        guard let r = checkpoint(reason: reason) else { return nil }
        var freezer = Freezer(pid: jobPid)
        try? freezer.freeze()
        do { try then() } catch {
            freezer.thaw()
            Log.info("\(error); the job keeps running")
            return nil
        }
        stopping = true
        killAndReap()
        Log.info("job stopped after checkpoint \(r.number); it resumes from there (\(store.path))")
        return 0
    }

    private func checkpointAndRequeue(reason: String) -> Int32? {
        checkpointAndStop(reason: reason) { () throws(GhostError) in
            try Slurm.requeue()
            Log.info("requeued Slurm job \(Slurm.jobID.map(String.init) ?? "?")")
        }
    }

    private func killAndReap() {
        let main = initPid != 0 ? initPid : jobPid   // killing ghost-init ends its whole namespace
        var status: Int32 = 0
        if main != jobPid && jobPid != 0 {
            // The job may still be seized by us: ghost-init cannot finish until
            // we, its tracer, have reaped it.
            kill(jobPid, SIGKILL)
            while waitpid(jobPid, &status, __WALL) < 0 && errno == EINTR {}
        }
        kill(main, SIGKILL)
        while waitpid(main, &status, __WALL) < 0 && errno == EINTR {}
        jobPid = 0
        initPid = 0
    }

    /// Checkpoint, then end the job's processes so their memory is freed;
    /// ghost keeps waiting for a resume request.
    private func suspend() {
        guard jobPid != 0 else { Log.info("already suspended"); return }
        guard let r = checkpoint(reason: "suspend") else { Log.info("not suspended: the checkpoint failed"); return }
        var freezer = Freezer(pid: jobPid)
        try? freezer.freeze()
        killAndReap()
        Log.info("suspended: the job is in checkpoint \(r.number) and uses no memory; "
            + "send SIGWINCH to ghost (pid \(getpid())) to resume it here")
    }

    private func resumeInPlace() {
        guard jobPid == 0 else { Log.info("not suspended; nothing to resume"); return }
        let restorer = Restorer(store: store, warn: { Log.warn($0) })
        do {
            let (n, m) = try restorer.load(number: nil)
            adopt(try restorer.restore(m))
            Log.info("resumed checkpoint \(n) as pid \(jobPid)")
        } catch {
            Log.info("resume failed: \(error); still suspended")
        }
    }

    private func endDeadlineFromSlurm(margin: Double) -> Double? {
        do {
            let end = try Slurm.endTime()
            let secondsLeft = end - Clock.wall()
            Log.info("the Slurm job ends in \(Int(secondsLeft)) s; checkpoint and requeue \(Int(margin)) s before")
            return Clock.now() + max(0, secondsLeft - margin)
        } catch {
            Log.warn("\(error); --requeue-before-end is off")
            return nil
        }
    }

    private func environ() -> [String] {
        var out: [String] = []
        var p = Glibc.environ
        while let s = p.pointee { out.append(String(cString: s)); p += 1 }
        return out
    }
}
