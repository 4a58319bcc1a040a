import Glibc
import Synchronization

/// Runs `body(i)` for i in 0..<count on up to `workers` threads; each thread
/// has its own scratch state from `makeState`. The first error stops the
/// remaining work and is thrown.
///
/// Real threads, not DispatchQueue.concurrentPerform: that runs no more
/// iterations at once than there are CPUs, and workers spend much of their
/// time waiting for the disk (O_DIRECT writes and reads), so more of them
/// than CPUs keep both the CPUs and the disk busy.
enum Parallel {
    static func run<State>(count: Int, workers: Int, makeState: @escaping @Sendable () -> State,
                           body: @escaping @Sendable (inout State, Int) throws(GhostError) -> Void) throws(GhostError) {
        let next = Atomic<Int>(0)
        let failure = Mutex<GhostError?>(nil)
        let n = max(1, min(workers, count))
        let work: @Sendable () -> Void = {
            var state = makeState()
            while true {
                let i = next.add(1, ordering: .relaxed).oldValue
                if i >= count || failure.withLock({ $0 != nil }) { return }
                let outcome = Result { () throws(GhostError) in try body(&state, i) }
                if case .failure(let error) = outcome {
                    failure.withLock { if $0 == nil { $0 = error } }
                    return
                }
            }
        }
        var threads: [pthread_t] = []
        for _ in 1..<n {
            let box = Unmanaged.passRetained(WorkBox(work)).toOpaque()
            var t = pthread_t()
            if pthread_create(&t, nil, { arg in
                let w = Unmanaged<WorkBox>.fromOpaque(arg!).takeRetainedValue()
                w.run()
                return nil
            }, box) == 0 {
                threads.append(t)
            } else {
                Unmanaged<WorkBox>.fromOpaque(box).release()   // fewer threads: the others take its share
            }
        }
        work()
        for t in threads { pthread_join(t, nil) }
        if let e = failure.withLock({ $0 }) { throw e }
    }

    private final class WorkBox {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
}

/// A per-thread buffer (freed with the thread's state).
final class ScratchBuffer: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer
    init(size: Int) { bytes = .allocate(byteCount: size, alignment: 4096) }
    deinit { bytes.deallocate() }
}

/// Results written by index from several threads; each index by one thread only.
final class ResultSlots<T>: @unchecked Sendable {
    private var slots: [T]
    init(count: Int, initial: T) { slots = Array(repeating: initial, count: count) }
    subscript(i: Int) -> T {
        get { slots.withUnsafeBufferPointer { $0[i] } }
        set { slots.withUnsafeMutableBufferPointer { $0[i] = newValue } }
    }
    var all: [T] { slots }
}
