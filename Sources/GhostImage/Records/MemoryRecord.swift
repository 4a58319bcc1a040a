/// One virtual memory area, as /proc/PID/maps describes it, plus the pages
/// that must be stored because the file (or nothing) cannot give them back.
public struct VMARecord: Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// Private anonymous memory (malloc arenas, mmap(MAP_ANONYMOUS)).
        case anonymous
        /// The brk heap.
        case heap
        /// The main thread's stack (grows down).
        case stack
        /// A private mapping of a file: unwritten pages come from the file.
        case privateFile
        /// A shared mapping of a file: the file holds its contents.
        case sharedFile
        /// Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, /dev/zero).
        case sharedAnonymous
        // Shared anonymous memory, memfds and tmpfs files refer to a
        // SharedMemoryRecord through `object`.
    }
    public var start: UInt64
    public var end: UInt64
    /// PROT_* bits.
    public var prot: Int32
    public var kind: Kind
    public var growsDown: Bool
    public var fileOffset: UInt64
    public var file: FileIdentity?
    /// Stored pages, in blocks of `Manifest.blockPages` pages aligned to the VMA start.
    @BlockTable public var blocks: [MemoryBlock]
    /// For shared memory: the SharedMemoryRecord whose pages this area maps
    /// (from `fileOffset`); its pages are stored there, not in `blocks`.
    public var object: Int?
    /// madvise() advice the area had, as /proc/PID/smaps names it (VmFlags):
    /// "dc" MADV_DONTFORK, "wf" MADV_WIPEONFORK, "dd" MADV_DONTDUMP,
    /// "hg" MADV_HUGEPAGE, "nh" MADV_NOHUGEPAGE. Given again on restore.
    public var advice: [String]?
    /// Mapped with MAP_NORESERVE (smaps "nr"): no swap or commit charge is
    /// reserved for it, so a huge sparse reservation (a sanitizer's shadow
    /// memory) can be mapped again where overcommit would refuse it. Absent = false.
    public var noReserve: Bool?

    public init(start: UInt64, end: UInt64, prot: Int32, kind: Kind, growsDown: Bool,
                fileOffset: UInt64, file: FileIdentity?, blocks: [MemoryBlock]) {
        self.start = start; self.end = end; self.prot = prot; self.kind = kind
        self.growsDown = growsDown; self.fileOffset = fileOffset; self.file = file; self.blocks = blocks
    }
}

/// The stored pages of one block: bit i of `pageMask` set = page i of the block
/// is stored; pages not set are zero (anonymous) or come from the file.
/// Without overlays, `chunk` holds exactly the pages of `pageMask`, in order.
/// An incremental checkpoint that saw only a few pages of a block written
/// keeps the previous chunk as the base (holding the pages of `baseMask`) and
/// adds the written pages as overlays, applied in order (later wins); only the
/// pages of `pageMask` are then written back.
public struct MemoryBlock: Codable, Sendable, Equatable {
    public var index: Int
    public var pageMask: UInt64
    public var chunk: ChunkID
    /// Pages held by `chunk` when it differs from `pageMask` (absent in older images).
    public var baseMask: UInt64?
    /// Pages written since the base was stored, oldest first (absent in older images).
    public var overlays: [PageOverlay]?
    public init(index: Int, pageMask: UInt64, chunk: ChunkID, baseMask: UInt64? = nil, overlays: [PageOverlay]? = nil) {
        self.index = index; self.pageMask = pageMask; self.chunk = chunk
        self.baseMask = baseMask; self.overlays = overlays
    }
    /// Pages `chunk` holds.
    public var basePages: UInt64 { baseMask ?? pageMask }
}

/// Some pages of a block, stored as one chunk holding the pages of `pageMask` in order.
public struct PageOverlay: Codable, Sendable, Equatable {
    public var pageMask: UInt64
    public var chunk: ChunkID
    public init(pageMask: UInt64, chunk: ChunkID) { self.pageMask = pageMask; self.chunk = chunk }
}

/// Where the kernel's vDSO and its data pages were; restore moves the new
/// kernel's ones to the same place because libc caches these addresses.
public struct VDSORecord: Codable, Sendable {
    public struct Region: Codable, Sendable {
        public var name: String
        public var start: UInt64
        public var end: UInt64
        public init(name: String, start: UInt64, end: UInt64) { self.name = name; self.start = start; self.end = end }
    }
    public var regions: [Region]
    /// XXH3-64 of the [vdso] code pages, to detect a different kernel's vDSO.
    public var codeHash: UInt64
    public init(regions: [Region], codeHash: UInt64) { self.regions = regions; self.codeHash = codeHash }
}
