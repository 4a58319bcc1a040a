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
        // A thread that cannot be made leaves its share to the others.
        let threads = (1..<n).compactMap { _ in thread(work) }
        work()
        for t in threads { pthread_join(t, nil) }
        if let e = failure.withLock({ $0 }) { throw e }
    }

    /// Starts `body` on a thread of its own; `join()` waits for it and gives
    /// its outcome. Where no thread can be made, `body` runs at once.
    static func background(_ body: @escaping @Sendable () throws(GhostError) -> Void) -> Joinable {
        let j = Joinable()
        let work: @Sendable () -> Void = {
            let r = Result { () throws(GhostError) in try body() }
            j.outcome.withLock { $0 = r }
        }
        j.thread = thread(work)
        if j.thread == nil { work() }
        return j
    }

    final class Joinable: @unchecked Sendable {
        /// Set once, before `background` returns.
        fileprivate var thread: pthread_t?
        fileprivate let outcome = Mutex<Result<Void, GhostError>>(.success(()))
        /// Waits for the thread (call once) and throws what it threw.
        func join() throws(GhostError) {
            if let thread { pthread_join(thread, nil) }
            try outcome.withLock { $0 }.get()
        }
    }

    private static func thread(_ work: @escaping @Sendable () -> Void) -> pthread_t? {
        let box = Unmanaged.passRetained(WorkBox(work)).toOpaque()
        var t = pthread_t()
        guard pthread_create(&t, nil, { arg in
            Unmanaged<WorkBox>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, box) == 0 else {
            Unmanaged<WorkBox>.fromOpaque(box).release()
            return nil
        }
        return t
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
/// Storage allocated once, never an Array: Array.withUnsafeMutableBufferPointer
/// moves the array out of its variable for the duration of the call, so two
/// threads writing different slots at once raced on the array itself (a lost
/// or doubly freed buffer: ghost-run crashed in malloc, most often when many
/// small blocks were stored at once).
final class ResultSlots<T>: @unchecked Sendable {
    private let slots: UnsafeMutableBufferPointer<T>
    private let count: Int
    init(count: Int, initial: T) {
        self.count = count
        slots = .allocate(capacity: max(count, 1))
        slots.initialize(repeating: initial)
    }
    deinit {
        slots.deinitialize()
        slots.deallocate()
    }
    subscript(i: Int) -> T {
        get { slots[i] }
        set { slots[i] = newValue }
    }
    /// Read once every writer is done.
    var all: [T] { Array(slots.prefix(count)) }
}
