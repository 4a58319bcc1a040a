// The manifest: everything about a checkpoint except memory contents, which
// live in content-addressed chunks. Encoded as JSON; `formatVersion` is bumped
// on any incompatible change, and readers refuse versions they do not know.

public struct Manifest: Codable, Sendable {
    /// Format 2 = format 1 + page overlays in memory blocks (MemoryBlock.baseMask,
    /// .overlays). Format 3 = format 2 with memory blocks as a binary table
    /// (BlockTable). Formats 1 and 2 are still read.
    public static let currentVersion = 3
    public static let readableVersions = 1...3

    public var formatVersion: Int = Manifest.currentVersion
    /// Seconds since the epoch when the job was frozen.
    public var createdAt: Double
    public var hostname: String
    public var kernelRelease: String
    public var pageSize: Int
    /// Pages per memory block (one chunk holds the stored pages of one block).
    public var blockPages: Int
    public var cpu: CPURecord
    public var job: JobRecord
    /// The process tree, parents before children.
    public var processes: [ProcessRecord]
    /// The job ran in its own user + PID namespaces: PIDs in the records are
    /// the ones the job saw, and a resume gives them back. nil = false.
    public var namespaces: Bool?
    /// Memory objects shared between mappings or processes (nil = none).
    public var sharedMemory: [SharedMemoryRecord]?
    /// Closed files the job created, stored to be recreated if gone (nil = none).
    public var closedFiles: [ClosedFileRecord]?

    public init(createdAt: Double, hostname: String, kernelRelease: String, pageSize: Int,
                blockPages: Int, cpu: CPURecord, job: JobRecord, processes: [ProcessRecord]) {
        self.createdAt = createdAt
        self.hostname = hostname
        self.kernelRelease = kernelRelease
        self.pageSize = pageSize
        self.blockPages = blockPages
        self.cpu = cpu
        self.job = job
        self.processes = processes
    }
}

/// What the saved register state needs from the CPU.
public struct CPURecord: Codable, Sendable {
    /// XCR0 feature bits present in the saved xstate (x87, SSE, AVX, AVX-512...).
    public var xfeatures: UInt64
    /// Bytes of NT_X86_XSTATE on the checkpointing CPU.
    public var xstateSize: Int
    public init(xfeatures: UInt64, xstateSize: Int) {
        self.xfeatures = xfeatures
        self.xstateSize = xstateSize
    }
}

/// How the job was started and supervised, so a resume supervises it the same way.
public struct JobRecord: Codable, Sendable {
    public var argv: [String]
    public var checkpointInterval: Double?
    public var keep: Int
    public var zstdLevel: Int
    /// Seconds since the epoch when ghost-run started the job (kept across
    /// resumes); files born since are the job's. Absent in older images.
    public var startedAt: Double?
    public init(argv: [String], checkpointInterval: Double?, keep: Int, zstdLevel: Int) {
        self.argv = argv
        self.checkpointInterval = checkpointInterval
        self.keep = keep
        self.zstdLevel = zstdLevel
    }
}
