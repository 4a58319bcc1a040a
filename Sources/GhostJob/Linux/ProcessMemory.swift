import Glibc
import CGhostSys

/// Reads and writes another process's memory. /proc/PID/mem reaches every page
/// (PROT_NONE too) for a tracer; process_vm_readv/writev is faster for
/// ordinary readable/writable pages.
final class ProcessMemory: @unchecked Sendable {
    let pid: pid_t
    private let fd: Int32
    /// Read only through /proc/PID/mem. For a forked snapshot: process_vm_readv
    /// pins pages (FOLL_PIN), and the kernel (5.19+) must first unshare a
    /// copy-on-write page it pins, so reading a snapshot that way copies every
    /// page into it (as slow as the job writing all its memory, and as much
    /// memory again). /proc/PID/mem takes page references without pinning.
    let withoutPinning: Bool

    init(pid: pid_t, writable: Bool, withoutPinning: Bool = false) throws(GhostError) {
        self.pid = pid
        self.withoutPinning = withoutPinning
        fd = open("/proc/\(pid)/mem", (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        if fd < 0 { throw .errno("open /proc/\(pid)/mem") }
    }

    deinit { close(fd) }

    func read(at address: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(GhostError) {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(Int64(bitPattern: address + UInt64(done))))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                throw .system("reading \(buffer.count) bytes at 0x\(String(address, radix: 16)) of process \(pid)",
                              errno: n == 0 ? EIO : errno)
            }
            done += n
        }
    }

    func write(at address: UInt64, from buffer: UnsafeRawBufferPointer) throws(GhostError) {
        var done = 0
        while done < buffer.count {
            let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(Int64(bitPattern: address + UInt64(done))))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                throw .system("writing \(buffer.count) bytes at 0x\(String(address, radix: 16)) of process \(pid)",
                              errno: n == 0 ? EIO : errno)
            }
            done += n
        }
    }

    func write(at address: UInt64, bytes: [UInt8]) throws(GhostError) {
        let r: Result<Void, GhostError> = bytes.withUnsafeBytes { b in Result { () throws(GhostError) in try write(at: address, from: b) } }
        try r.get()
    }

    func readBytes(at address: UInt64, count: Int) throws(GhostError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let r: Result<Void, GhostError> = out.withUnsafeMutableBytes { b in Result { () throws(GhostError) in try read(at: address, into: b) } }
        try r.get()
        return out
    }

    /// Copies contiguous remote ranges into one local buffer with a single
    /// process_vm_readv. Returns false if the kernel refused (caller falls back).
    func readRanges(_ ranges: [(address: UInt64, length: Int)], into buffer: UnsafeMutableRawBufferPointer) -> Bool {
        if withoutPinning {
            var off = 0
            for r in ranges {
                let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[off..<(off + r.length)])
                guard (try? read(at: r.address, into: slice)) != nil else { return false }
                off += r.length
            }
            return true
        }
        var remote = ranges.map { iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt($0.address)), iov_len: $0.length) }
        var local = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
        var total = 0
        for r in ranges { total += r.length }
        // The kernel takes at most IOV_MAX remote iovecs per call.
        var doneRanges = 0
        var localOffset = 0
        while doneRanges < remote.count {
            let batch = min(1024, remote.count - doneRanges)
            var batchBytes = 0
            for i in doneRanges..<(doneRanges + batch) { batchBytes += remote[i].iov_len }
            local = iovec(iov_base: buffer.baseAddress! + localOffset, iov_len: batchBytes)
            let n = remote.withUnsafeMutableBufferPointer { rp in
                ghost_process_vm_readv(pid, &local, 1, rp.baseAddress! + doneRanges, UInt(batch))
            }
            if n != batchBytes { return false }
            doneRanges += batch
            localOffset += batchBytes
        }
        return localOffset == total
    }

    /// Scatters one local buffer into remote ranges with process_vm_writev.
    func writeRanges(_ ranges: [(address: UInt64, length: Int)], from buffer: UnsafeRawBufferPointer) -> Bool {
        var remote = ranges.map { iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt($0.address)), iov_len: $0.length) }
        var doneRanges = 0
        var localOffset = 0
        while doneRanges < remote.count {
            let batch = min(1024, remote.count - doneRanges)
            var batchBytes = 0
            for i in doneRanges..<(doneRanges + batch) { batchBytes += remote[i].iov_len }
            var local = iovec(iov_base: UnsafeMutableRawPointer(mutating: buffer.baseAddress! + localOffset), iov_len: batchBytes)
            let n = remote.withUnsafeMutableBufferPointer { rp in
                ghost_process_vm_writev(pid, &local, 1, rp.baseAddress! + doneRanges, UInt(batch))
            }
            if n != batchBytes { return false }
            doneRanges += batch
            localOffset += batchBytes
        }
        return true
    }
}
