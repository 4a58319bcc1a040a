import Glibc
import GhostImage
import CGhostSys

/// Unix domain sockets inside the job. Peers, queue lengths, names and
/// shutdown state come from sock_diag (unix_diag, works unprivileged in the
/// host's network namespace, which the job shares). Each socket's receive
/// queue is read without consuming it (MSG_PEEK stepping with SO_PEEK_OFF on
/// a pidfd_getfd duplicate, one datagram at a time for datagram and
/// seqpacket sockets). On restore a connected pair is one socketpair made by
/// ghost, each queue refilled by sending from the other end (datagram
/// boundaries kept); a listening socket is bound again to its name. Any
/// other socket (TCP, UDP, netlink, a peer outside the job) stops the
/// checkpoint with a message saying what it is.
enum UnixSockets {
    static let stateListen: UInt32 = 10, stateEstablished: UInt32 = 1

    /// Per process: the socket's inode, type and options; the rest needs the whole job (`link`).
    static func capture(pid: pid_t, into r: inout FDRecord) throws(GhostError) {
        let ino = UInt64(r.path.dropFirst(8).dropLast()) ?? 0     // "socket:[123]"
        let dup = ghost_grab_fd(pid, r.fd)
        if dup < 0 { throw .errno("duplicating fd \(r.fd) of process \(pid) (pidfd_getfd)") }
        defer { close(dup) }
        if option(dup, SO_DOMAIN) != AF_UNIX {
            throw .unsupported("fd \(r.fd) of process \(pid) is \(describe(dup)); ghost can checkpoint only unix sockets "
                + "between processes of the job: close network sockets before a checkpoint and open them again after it")
        }
        var s = UnixSocketRecord(id: ino, type: option(dup, SO_TYPE), state: .unconnected)
        s.sndbuf = option(dup, SO_SNDBUF)
        s.rcvbuf = option(dup, SO_RCVBUF)
        s.passcred = option(dup, SO_PASSCRED) != 0
        r.kind = .unixSocket
        r.offset = 0
        r.socket = s
    }

    static func option(_ fd: Int32, _ name: Int32) -> Int32 {
        var v: Int32 = 0
        var l = socklen_t(4)
        return getsockopt(fd, SOL_SOCKET, name, &v, &l) == 0 ? v : -1
    }

    static func describe(_ fd: Int32) -> String {
        var buf = [CChar](repeating: 0, count: 512)
        _ = ghost_sock_describe(fd, &buf, buf.count)
        return String(cString: buf)
    }

    /// All unix sockets of the network namespace, by inode.
    static func diag() throws(GhostError) -> [UInt64: ghost_unix_sock] {
        var room = 4096
        while true {
            var buf = [ghost_unix_sock](repeating: ghost_unix_sock(), count: room)
            let n = ghost_unix_diag(&buf, room)
            if n < 0 { throw .errno("listing unix sockets (NETLINK_SOCK_DIAG)") }
            if n <= room {
                return Dictionary(buf[0..<n].map { ($0.ino, $0) }, uniquingKeysWith: { a, _ in a })
            }
            room = n + 1024
        }
    }

    static func name(_ d: ghost_unix_sock) -> [UInt8] {
        withUnsafeBytes(of: d.name) { Array($0.prefix(Int(d.namelen))) }
    }

    /// Peers, names, shutdown state and queued bytes of every socket of the job.
    static func link(_ records: inout [[FDRecord]], outer: [pid_t], writer: CheckpointWriter) throws(GhostError) {
        let firsts = FileState.firsts(records, .unixSocket)
        if firsts.isEmpty { return }
        let all = try diag()
        let inJob = Set(firsts.map { records[$0.0][$0.1].socket!.id })
        for (pi, i) in firsts {
            let pid = outer[pi], fd = records[pi][i].fd
            var s = records[pi][i].socket!
            guard let d = all[s.id] else {
                throw .unsupported("fd \(fd) of process \(pid) is a unix socket (\(records[pi][i].path)) that sock_diag "
                    + "does not list: the job uses another network namespace, which ghost does not support")
            }
            let dup = ghost_grab_fd(pid, fd)
            if dup < 0 { throw .errno("duplicating fd \(fd) of process \(pid) (pidfd_getfd)") }
            defer { close(dup) }
            s.shutdown = d.shutdown
            if d.state == stateListen {
                if d.rqueue > 0 {
                    throw .unsupported("fd \(fd) of process \(pid) is \(describe(dup)) with \(d.rqueue) connection(s) "
                        + "not accepted yet; ghost cannot checkpoint those: take the checkpoint once they are accepted")
                }
                s.state = .listening
                s.backlog = Int32(d.wqueue)
                s.name = try absolute(name(d), pid: pid, fd: fd)
            } else if d.peer != 0 {
                if inJob.contains(d.peer) {
                    // A pair only if each end is the other's peer; a datagram socket
                    // connect()ed to a bound one that others send to is not.
                    if all[d.peer]?.peer == s.id {
                        s.state = .connected
                    } else if let p = all[d.peer], p.namelen > 0, s.type == Int32(SOCK_DGRAM.rawValue) {
                        // connect()ed to a bound datagram socket that others may send to too.
                        s.state = .connectedToBound
                    } else {
                        throw .unsupported("fd \(fd) of process \(pid) is \(describe(dup)), connected to a socket of the "
                            + "job that is not connected back; ghost cannot checkpoint that yet")
                    }
                    s.peer = d.peer
                } else if all[d.peer] == nil && s.type != Int32(SOCK_DGRAM.rawValue) && d.shutdown != 3 {
                    // The peer is not listed yet not closed (closing it would have shut this one down):
                    // a connection still waiting in a listener's queue.
                    throw .unsupported("fd \(fd) of process \(pid) is \(describe(dup)), whose connection has not been "
                        + "accepted yet; ghost cannot checkpoint that: take the checkpoint once it is accepted")
                } else if all[d.peer] != nil {
                    throw .unsupported("fd \(fd) of process \(pid) is \(describe(dup)), whose other end (socket:[\(d.peer)]) "
                        + "is held by a program outside the job; ghost cannot checkpoint connections to other programs: "
                        + "close it before a checkpoint and connect again after it")
                } else {
                    s.state = .peerClosed
                }
            } else if d.state == stateEstablished && s.type != Int32(SOCK_DGRAM.rawValue) && d.shutdown == 3 {
                // Its peer was closed and is gone (the kernel shut this end down both ways and
                // reports no peer inode): one end of a socketpair whose other end was closed, as
                // the JVM keeps for closing sockets asynchronously.
                s.state = .peerClosed
            } else if d.state == stateEstablished && s.type != Int32(SOCK_DGRAM.rawValue) {
                // Connected to a socket without an inode yet: one waiting in a listener's queue.
                throw .unsupported("fd \(fd) of process \(pid) is \(describe(dup)), whose connection has not been "
                    + "accepted yet; ghost cannot checkpoint that: take the checkpoint once it is accepted")
            } else {
                s.state = .unconnected
            }
            if s.state == .unconnected || s.state == .connectedToBound, d.namelen > 0 {
                s.name = try absolute(name(d), pid: pid, fd: fd)
            }
            if s.state != .listening {
                let dgram = s.type != Int32(SOCK_STREAM.rawValue)
                let (bytes, lengths) = try peekQueue(dup, dgram: dgram, receiveShut: d.shutdown & 1 != 0, what: "fd \(fd) of process \(pid)")
                // Datagrams queued on a socket that is not one end of a pair are sent to its name
                // again on restore (from an unnamed socket); without a name nobody can send them.
                if !bytes.isEmpty && (s.state == .unconnected || s.state == .connectedToBound) && s.name == nil {
                    throw .unsupported("fd \(fd) of process \(pid) is \(describe(dup)) with \(bytes.count) bytes queued "
                        + "and no name to send them to again; ghost cannot checkpoint that")
                }
                s.data = try Pipes.put(bytes, writer)
                s.dataLength = bytes.count
                s.messages = dgram ? lengths : nil
            }
            records[pi][i].socket = s
        }
    }

    /// A path name relative to the binder's directory is made absolute (ghost
    /// binds it again from elsewhere); abstract names (first byte 0) stay.
    static func absolute(_ name: [UInt8], pid: pid_t, fd: Int32) throws(GhostError) -> [UInt8] {
        guard let first = name.first, first != 0, first != UInt8(ascii: "/") else { return name }
        let path = String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
        let cwd = try ProcFS.readLink("/proc/\(pid)/cwd")
        let full = Array((cwd + "/" + path).utf8)
        if full.count >= 108 {
            throw .unsupported("fd \(fd) of process \(pid) is bound to the relative path \(path), too long as \(cwd)/\(path)")
        }
        return full
    }

    /// The bytes queued to be read from socket `fd`, not consumed, and for
    /// datagrams the length of each. SO_PEEK_OFF is put back as it was.
    static func peekQueue(_ fd: Int32, dgram: Bool, receiveShut: Bool, what: String) throws(GhostError) -> ([UInt8], [Int]?) {
        let old = ghost_get_peek_off(fd)
        defer { _ = ghost_set_peek_off(fd, old) }
        var out: [UInt8] = [], lengths: [Int] = []
        var buf = [UInt8](repeating: 0, count: 256 * 1024)
        while true {
            if ghost_set_peek_off(fd, Int32(out.count)) != 0 { throw .errno("SO_PEEK_OFF on \(what)") }
            var flags: Int32 = 0
            let n = buf.withUnsafeMutableBytes { ghost_sock_peek(fd, $0.baseAddress, $0.count, dgram ? 1 : 0, &flags) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK { break }
                throw .errno("peeking at the data queued on \(what)")
            }
            if flags & 1 != 0 {
                throw .unsupported("\(what) is a unix socket with descriptors in flight (SCM_RIGHTS) in its queue; "
                    + "ghost cannot checkpoint those: take the checkpoint once they are received")
            }
            if dgram && flags & 2 != 0 {
                buf = [UInt8](repeating: 0, count: n)   // a datagram larger than our buffer: again, with room
                continue
            }
            if n == 0 {
                // A shut-down datagram socket reads 0 when empty; otherwise 0 is an empty datagram.
                if dgram && !receiveShut {
                    throw .unsupported("\(what) has an empty datagram queued, which ghost cannot step over without "
                        + "consuming it; take the checkpoint once it is read")
                }
                break   // stream: end of file after a shutdown
            }
            out += buf[0..<n]
            lengths.append(n)
            if out.count >= Int(Int32.max) { throw .unsupported("\(what) has more than 2 GiB queued") }
        }
        return (out, dgram ? lengths : nil)
    }

    // MARK: Restore

    static func open(_ r: FDRecord, allRecords: [(pid: Int32, fds: [FDRecord])],
                     table: FileState.Table, store: ImageStore) throws(GhostError) -> Int32 {
        guard let s = r.socket else { throw .badImage("socket record without its state for fd \(r.fd)") }
        if let fd = table.sockets[s.id] { return fd }
        let fd: Int32
        switch s.state {
        case .connected, .peerClosed:
            var sv: [Int32] = [0, 0]
            if socketpair(AF_UNIX, s.type | Int32(SOCK_CLOEXEC.rawValue), 0, &sv) != 0 {
                throw .errno("socketpair for fd \(r.fd) of the job")
            }
            table.opened += sv
            fd = sv[0]
            let peerRecord = s.peer.flatMap { p in
                allRecords.flatMap { $0.fds }.first { $0.sameAs == nil && $0.kind == .unixSocket && $0.socket?.id == p }
            }
            if s.state == .connected && peerRecord == nil {
                throw .badImage("fd \(r.fd) of the job is connected to socket \(s.peer ?? 0), which the image does not hold")
            }
            // Each queue is refilled by sending from the other end, with the default
            // buffer sizes (the job may have made them smaller since), before any shutdown.
            try refill(s, from: sv[1], store: store, what: "fd \(r.fd) of the job")
            if let p = peerRecord?.socket { try refill(p, from: sv[0], store: store, what: "its peer") }
            try setOptions(sv[0], r)
            if let p = peerRecord { try setOptions(sv[1], p) }
            try shutdowns(sv[0], s, peer: peerRecord?.socket)
            if let p = peerRecord?.socket {
                try shutdowns(sv[1], p, peer: s)
                table.sockets[p.id] = sv[1]
            } else {
                // The other end was closed: the job reads what was queued, then end of file.
                if let i = table.opened.firstIndex(of: sv[1]) { table.opened.remove(at: i) }
                close(sv[1])
            }
        case .listening, .unconnected, .connectedToBound:
            // The socket it sends to first, so it can connect to its name.
            var target: [UInt8]? = nil
            if s.state == .connectedToBound {
                guard let p = s.peer, let pr = allRecords.flatMap({ $0.fds }).first(where: {
                    $0.sameAs == nil && $0.kind == .unixSocket && $0.socket?.id == p
                }), let pname = pr.socket?.name else {
                    throw .badImage("fd \(r.fd) of the job is connected to socket \(s.peer ?? 0), which the image does not hold")
                }
                if table.sockets[p] == nil { _ = try open(pr, allRecords: allRecords, table: table, store: store) }
                target = pname
            }
            if let name = s.name, !name.isEmpty {
                try removeStale(name, what: "fd \(r.fd) of the job")
                fd = name.withUnsafeBufferPointer { b in
                    b.withMemoryRebound(to: CChar.self) { ghost_unix_listen(s.type, $0.baseAddress, Int32(b.count),
                                                                             s.state == .listening ? (s.backlog ?? 128) : -1) }
                }
                if fd < 0 { throw .errno("binding a unix socket to \(printable(name)) again (fd \(r.fd) of the job)") }
            } else {
                fd = socket(AF_UNIX, s.type | Int32(SOCK_CLOEXEC.rawValue), 0)
                if fd < 0 { throw .errno("socket for fd \(r.fd) of the job") }
            }
            table.opened.append(fd)
            if let name = s.name, s.data != nil { try refill(s, to: name, store: store, what: "fd \(r.fd) of the job") }
            if let t = target {
                let rc = t.withUnsafeBufferPointer { b in
                    b.withMemoryRebound(to: CChar.self) { ghost_unix_connect(fd, $0.baseAddress, Int32(b.count)) }
                }
                if rc != 0 { throw .errno("connecting fd \(r.fd) of the job to \(printable(t)) again") }
            }
            try setOptions(fd, r)
            try shutdowns(fd, s, peer: nil)
        }
        table.sockets[s.id] = fd
        return fd
    }

    static func printable(_ name: [UInt8]) -> String {
        name.first == 0 ? "@" + String(decoding: name.dropFirst(), as: UTF8.self)
            : String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// A socket file left at the path by the old run (nobody listens on it
    /// any more) is removed so the name can be bound again.
    static func removeStale(_ name: [UInt8], what: String) throws(GhostError) {
        guard name.first != 0 else { return }      // abstract: nothing on disk
        let path = printable(name)
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if st.st_mode & S_IFMT != S_IFSOCK {
            throw .fileChanged("\(path), where \(what) was listening, is now a file of another kind; remove it and resume")
        }
        if unlink(path) != 0 { throw .errno("removing the old socket file \(path)") }
    }

    /// O_NONBLOCK, buffer sizes and SO_PASSCRED as they were.
    static func setOptions(_ fd: Int32, _ r: FDRecord) throws(GhostError) {
        guard let s = r.socket else { return }
        if r.flags & O_NONBLOCK != 0 { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        // getsockopt reports twice what was asked for; the kernel doubles it again.
        for (opt, v) in [(SO_SNDBUF, s.sndbuf), (SO_RCVBUF, s.rcvbuf)] {
            guard let v, v > 0, option(fd, opt) != v else { continue }
            var half = v / 2
            _ = setsockopt(fd, SOL_SOCKET, opt, &half, 4)
        }
        if s.passcred == true {
            var one: Int32 = 1
            if setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, 4) != 0 { throw .errno("SO_PASSCRED on fd \(r.fd) of the job") }
        }
    }

    /// Puts back the bytes that were queued on `s` by sending them from its new peer.
    static func refill(_ s: UnixSocketRecord, from sender: Int32, store: ImageStore, what: String) throws(GhostError) {
        guard let chunk = s.data else { return }
        let bytes = try Pipes.load(chunk, store)
        let pieces = s.messages ?? [bytes.count]
        var off = 0
        for len in pieces {
            var done = 0
            repeat {
                let n = bytes.withUnsafeBytes {
                    send(sender, $0.baseAddress! + off + done, len - done, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                }
                if n < 0 { throw .errno("refilling the \(bytes.count) bytes queued on \(what)") }
                if s.messages != nil && n != len { throw .restore("a datagram queued on \(what) was cut") }
                done += n
            } while done < len
            off += len
        }
    }

    /// Puts back datagrams queued on a named socket by sending them to its
    /// name from an unnamed socket (their senders' addresses are not kept).
    static func refill(_ s: UnixSocketRecord, to name: [UInt8], store: ImageStore, what: String) throws(GhostError) {
        guard let chunk = s.data else { return }
        let bytes = try Pipes.load(chunk, store)
        let sender = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if sender < 0 { throw .errno("socket") }
        defer { close(sender) }
        var off = 0
        for len in s.messages ?? [bytes.count] {
            let n = bytes.withUnsafeBytes { b in
                name.withUnsafeBufferPointer { nb in
                    nb.withMemoryRebound(to: CChar.self) {
                        ghost_unix_sendto(sender, b.baseAddress! + off, len, $0.baseAddress, Int32(nb.count))
                    }
                }
            }
            if n != len { throw .errno("refilling the datagrams queued on \(what) (\(printable(name)))") }
            off += len
        }
    }

    /// shutdown(2) as it was: our own send side, and a receive side shut
    /// here rather than by the peer's SHUT_WR.
    static func shutdowns(_ fd: Int32, _ s: UnixSocketRecord, peer: UnixSocketRecord?) throws(GhostError) {
        let bits = s.shutdown ?? 0
        let peerSent = (peer?.shutdown ?? 0) & 2 != 0
        if bits & 2 != 0 && shutdown(fd, Int32(SHUT_WR)) != 0 { throw .errno("shutdown(SHUT_WR)") }
        if bits & 1 != 0 && !peerSent && peer != nil && shutdown(fd, Int32(SHUT_RD)) != 0 { throw .errno("shutdown(SHUT_RD)") }
    }
}
