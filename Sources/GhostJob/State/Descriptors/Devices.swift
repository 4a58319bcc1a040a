import Glibc

/// Which character devices a checkpoint may hold open. A device descriptor
/// is brought back by opening the same path again, which only makes sense
/// for devices without per-open state worth keeping:
///   /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom (major 1),
///   terminals: /dev/tty* and virtual consoles (major 4), /dev/tty and
///   /dev/console (5:0, 5:1), pseudo-terminal slaves /dev/pts/* (136-143).
/// Anything else (a pty master /dev/ptmx, /dev/fuse, /dev/kvm, GPUs, input
/// devices, /dev/kmsg, ...) carries state a reopen would lose or change, so
/// the checkpoint is refused with a message naming the descriptor.
enum Devices {
    static func reopenable(major: UInt32, minor: UInt32) -> Bool {
        switch major {
        case 1: return [3, 5, 7, 8, 9].contains(minor)   // null zero full random urandom
        case 4, 136...143: return true
        case 5: return minor == 0 || minor == 1
        default: return false
        }
    }

    static func check(_ st: stat, path: String, fd: Int32, pid: pid_t) throws(GhostError) {
        let major = UInt32((st.st_rdev >> 8) & 0xfff) | UInt32((st.st_rdev >> 32) & ~0xfff)
        let minor = UInt32(st.st_rdev & 0xff) | UInt32((st.st_rdev >> 12) & ~0xff)
        if reopenable(major: major, minor: minor) { return }
        let name = (try? ProcFS.stat(pid))?.comm ?? "?"
        throw .unsupported("fd \(fd) of process \(pid) (\(name)) is the device \(path) (\(major):\(minor)); ghost reopens "
            + "only /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom and terminals, since reopening another "
            + "device would not bring its state back: close it before checkpoints are taken")
    }
}
