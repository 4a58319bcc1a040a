import Glibc
import GhostImage

/// A small area of memory inside the tracee, used to pass structures to and
/// from injected system calls.
struct RemoteScratch {
    let address: UInt64
    let size: Int
    let memory: ProcessMemory

    /// Writes bytes at `offset` and returns their address in the tracee.
    @discardableResult
    func put(_ bytes: [UInt8], at offset: Int = 0) throws(GhostError) -> UInt64 {
        precondition(offset + bytes.count <= size)
        try memory.write(at: address + UInt64(offset), bytes: bytes)
        return address + UInt64(offset)
    }

    func putString(_ s: String, at offset: Int = 0) throws(GhostError) -> UInt64 {
        guard s.utf8.count + 1 <= size - offset else { throw .unsupported("path too long for restore: \(s)") }
        return try put(Array(s.utf8) + [0], at: offset)
    }

    func get(_ count: Int, at offset: Int = 0) throws(GhostError) -> [UInt8] {
        try memory.readBytes(at: address + UInt64(offset), count: count)
    }
}

/// Everything a state kind needs while a stopped process is captured or rebuilt.
final class ProcessContext {
    let pid: pid_t
    let tracee: Tracee
    let memory: ProcessMemory
    var syscall: RemoteSyscall
    var scratch: RemoteScratch!

    init(pid: pid_t, memory: ProcessMemory, gadget: UInt64) {
        self.pid = pid
        self.tracee = Tracee(tid: pid)
        self.memory = memory
        self.syscall = RemoteSyscall(tracee: Tracee(tid: pid), gadget: gadget)
    }
}

/// Bytes <-> fixed-width integers for kernel structures.
extension Array where Element == UInt8 {
    func u64(at o: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(self[o + i]) << (8 * UInt64(i)) }
        return v
    }
    func u32(at o: Int) -> UInt32 { UInt32(truncatingIfNeeded: u64Partial(at: o, 4)) }
    private func u64Partial(at o: Int, _ n: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<n { v |= UInt64(self[o + i]) << (8 * UInt64(i)) }
        return v
    }
    static func le(_ values: UInt64...) -> [UInt8] {
        var out: [UInt8] = []
        for v in values { for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        return out
    }
}

func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
