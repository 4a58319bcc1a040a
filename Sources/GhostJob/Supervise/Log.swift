import Glibc

/// ghost's own lines on stderr, each written with one write(2) so they do not
/// interleave with the job's output mid-line.
public enum Log {
    public static func info(_ s: String) { emit("ghost: \(s)\n") }
    public static func warn(_ s: String) { emit("ghost: warning: \(s)\n") }
    public static func error(tool: String, _ s: String) { emit("\(tool): error: \(s)\n") }

    static func emit(_ s: String) {
        var bytes = Array(s.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + off, $0.count - off) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            off += n
        }
    }

    public static func size(_ bytes: UInt64) -> String {
        let b = Double(bytes)
        if b >= 1073741824 { return String(format1: b / 1073741824) + " GiB" }
        if b >= 1048576 { return String(format1: b / 1048576) + " MiB" }
        if b >= 1024 { return String(format1: b / 1024) + " KiB" }
        return "\(bytes) B"
    }

    public static func ms(_ seconds: Double) -> String {
        seconds >= 10 ? String(format1: seconds) + " s" : "\(Int((seconds * 1000).rounded())) ms"
    }
}

extension String {
    /// One decimal, without Foundation.
    init(format1 v: Double) {
        let tenths = Int((v * 10).rounded())
        self = "\(tenths / 10).\(tenths % 10)"
    }
}

/// Where a checkpoint or resume spends its time, for tuning: with
/// GHOST_TIMINGS=1 each phase's milliseconds are logged in one line at the end.
struct PhaseTimes {
    static let enabled: Bool = getenv("GHOST_TIMINGS").map { String(cString: $0) != "0" } ?? false
    private var last: Double
    private var parts: [(String, Double)] = []
    private let what: String

    init(_ what: String, since: Double = Clock.now()) {
        self.what = what
        last = since
    }

    /// Ends the phase called `name` now.
    mutating func mark(_ name: String) {
        guard Self.enabled else { return }
        let now = Clock.now()
        parts.append((name, now - last))
        last = now
    }

    func report() {
        guard Self.enabled else { return }
        Log.info("\(what) timings: " + parts.map { "\($0.0) \(String(format1: $0.1 * 1000))" }.joined(separator: ", ") + " ms")
    }
}
