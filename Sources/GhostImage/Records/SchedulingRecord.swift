/// How a thread is named and scheduled: its name (comm), the CPUs it may run
/// on, its nice value and its scheduling policy. HPC codes pin and name their
/// threads (OpenMP places, MPI progress threads); a resumed job keeps that.
public struct SchedulingRecord: Codable, Sendable {
    public var name: String
    /// CPU affinity mask, 64 CPUs per word.
    public var affinity: [UInt64]
    public var nice: Int32
    /// SCHED_OTHER (0), SCHED_BATCH (3), SCHED_IDLE (5); real-time policies
    /// need privilege and are not restored.
    public var policy: Int32
    public init(name: String, affinity: [UInt64], nice: Int32, policy: Int32) {
        self.name = name; self.affinity = affinity; self.nice = nice; self.policy = policy
    }
}
