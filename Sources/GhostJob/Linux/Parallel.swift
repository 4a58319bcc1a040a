import Dispatch
import Synchronization

/// Runs `body(i)` for i in 0..<count on up to `workers` threads; each thread
/// has its own scratch state from `makeState`. The first error stops the
/// remaining work and is thrown.
enum Parallel {
    static func run<State>(count: Int, workers: Int, makeState: @escaping @Sendable () -> State,
                           body: @escaping @Sendable (inout State, Int) throws(GhostError) -> Void) throws(GhostError) {
        let next = Atomic<Int>(0)
        let failure = Mutex<GhostError?>(nil)
        let n = max(1, min(workers, count))
        DispatchQueue.concurrentPerform(iterations: n) { _ in
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
        if let e = failure.withLock({ $0 }) { throw e }
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
