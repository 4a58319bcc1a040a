import Dispatch
import Glibc
import Synchronization

/// Progress of a long checkpoint or resume, fed by byte counters. When stderr
/// is a terminal and the work takes longer than `delay`, one line
/// ("ghost: checkpoint 3: 412.0 MiB of 1.0 GiB") is redrawn in place; it is
/// erased when the work ends, so the summary line that follows stands alone.
/// When stderr is not a terminal nothing is drawn: the summary line is all.
final class Progress: @unchecked Sendable {
    /// The progress being fed by the memory code (one checkpoint or resume at a time).
    static let current = Mutex<Progress?>(nil)

    /// Seconds before the line appears (GHOST_PROGRESS_AFTER overrides, for tests).
    static let delay: Double = getenv("GHOST_PROGRESS_AFTER").flatMap { Double(String(cString: $0)) } ?? 1.0

    let label: String
    let total = Atomic<Int>(0)
    let done = Atomic<Int>(0)
    private let started = Clock.now()
    private let timer: DispatchSourceTimer?
    private let queue = DispatchQueue(label: "ghost.progress")
    private let drawn = Atomic<Bool>(false)

    private init(label: String) {
        self.label = label
        timer = isatty(2) == 1 ? DispatchSource.makeTimerSource(queue: queue) : nil
    }

    /// Starts reporting `label`; the memory code adds to it through `add(total:)` / `add(done:)`.
    static func begin(_ label: String) -> Progress {
        let p = Progress(label: label)
        if let t = p.timer {
            if delay <= 0 { p.queue.sync { p.draw() } }  // at once (tests)
            t.schedule(deadline: .now() + delay, repeating: 0.2)
            t.setEventHandler { [weak p] in p?.draw() }
            t.resume()
        }
        current.withLock { $0 = p }
        return p
    }

    static func add(total bytes: Int) { current.withLock { $0 }?.total.add(bytes, ordering: .relaxed) }
    static func add(done bytes: Int) { current.withLock { $0 }?.done.add(bytes, ordering: .relaxed) }

    private func draw() {
        let d = UInt64(done.load(ordering: .relaxed)), t = UInt64(total.load(ordering: .relaxed))
        let pct = t > 0 ? " (\(min(100, d * 100 / t))%)" : ""
        Log.emit("\r\u{1B}[Kghost: \(label): \(Log.size(d)) of \(Log.size(t))\(pct), \(Log.ms(Clock.now() - started))")
        drawn.store(true, ordering: .relaxed)
    }

    /// Stops and erases the line (if one was drawn); then logs `summary`, if given.
    func finish(summary: ((_ bytes: UInt64, _ seconds: Double) -> String)? = nil) {
        Progress.current.withLock { if $0 === self { $0 = nil } }
        if let timer {
            timer.cancel()
            queue.sync {}  // a draw in progress ends before the line is erased
            if drawn.load(ordering: .relaxed) { Log.emit("\r\u{1B}[K") }
        }
        if let summary { Log.info(summary(UInt64(done.load(ordering: .relaxed)), Clock.now() - started)) }
    }
}
