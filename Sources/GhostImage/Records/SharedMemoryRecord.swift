/// A memory object that several mappings (in one or several processes) share,
/// so a write through one is seen through the others: shared anonymous memory
/// (MAP_SHARED|MAP_ANONYMOUS, /dev/zero), a memfd, a POSIX shared memory file
/// (tmpfs, e.g. /dev/shm), a disk file mapped writable and shared, or a file
/// deleted while the job uses it. Its pages
/// are stored once, by offset in the object; the VMAs and descriptors that use
/// it name it by `id`.
public struct SharedMemoryRecord: Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// No name: restored as a memfd (the kernel's shmem underneath, as before).
        case anonymous
        /// memfd_create(name): restored as a memfd with the same name and seals.
        case memfd
        /// A file on tmpfs (POSIX shm): recreated at `path` with its contents,
        /// because tmpfs does not survive a move to another node.
        case tmpfsFile
        /// A disk file mapped MAP_SHARED and writable: the stored pages are
        /// written back into it, so writes made after the checkpoint are undone.
        case diskFile
        /// A file deleted while the job had it open or mapped: its contents
        /// are stored, and it is recreated unlinked (O_TMPFILE) in the same
        /// directory `path` was in (a memfd where that is impossible).
        case deletedFile
    }
    /// Referenced by VMARecord.object and FDRecord.object; unique in a manifest.
    public var id: Int
    public var kind: Kind
    /// memfd name (without the "memfd:" prefix).
    public var name: String?
    /// tmpfsFile / diskFile: where the file lives.
    public var path: String?
    /// Bytes: the file size, or for mapped-only objects the largest mapped extent.
    public var size: Int64
    /// memfd seals (F_GET_SEALS), applied after the contents are back.
    public var seals: Int32?
    /// tmpfsFile: permission bits to recreate it with.
    public var mode: UInt32?
    /// diskFile: every page is stored (small files), so the file is rebuilt
    /// from the image, and created where it is missing.
    public var complete: Bool?
    /// Stored pages, in blocks of `Manifest.blockPages` pages from offset 0.
    /// Pages not stored are zero (holes), or for diskFile, unchanged in the file.
    @BlockTable public var blocks: [MemoryBlock]

    public init(id: Int, kind: Kind, name: String? = nil, path: String? = nil, size: Int64,
                seals: Int32? = nil, mode: UInt32? = nil, blocks: [MemoryBlock] = []) {
        self.id = id; self.kind = kind; self.name = name; self.path = path; self.size = size
        self.seals = seals; self.mode = mode; self.blocks = blocks
    }
}
