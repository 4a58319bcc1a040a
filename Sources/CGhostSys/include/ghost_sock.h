// Sockets and other descriptor kinds: what Swift cannot call conveniently
// (netlink sock_diag, recvmsg with control messages, sockaddr formatting).
#ifndef GHOST_SOCK_H
#define GHOST_SOCK_H
#include <stdint.h>
#include <sys/types.h>

/// One unix socket of the host's network namespace, from NETLINK_SOCK_DIAG.
struct ghost_unix_sock {
    uint64_t ino;
    uint64_t peer;        // inode of the peer, 0 if none
    uint32_t type;        // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
    uint32_t state;       // TCP_ESTABLISHED 1, TCP_CLOSE 7, TCP_LISTEN 10
    uint32_t rqueue;      // listening: connections waiting; else bytes queued (dgram: first datagram)
    uint32_t wqueue;      // listening: backlog
    uint32_t shutdown;    // sk_shutdown: 1 RCV_SHUTDOWN, 2 SEND_SHUTDOWN
    int32_t namelen;      // 0 unnamed; name[0] == 0 for an abstract name
    char name[108];
};

/// Fills `out` with up to `max` unix sockets (all states). Returns how many
/// there are (may exceed max: call again with more room), or -1 with errno.
long ghost_unix_diag(struct ghost_unix_sock *out, long max);

/// Peeks the message at the socket's current SO_PEEK_OFF without consuming
/// it (MSG_PEEK | MSG_DONTWAIT, MSG_TRUNC for datagrams). Returns the bytes
/// of that message (for datagrams its whole length, even if larger than len),
/// or -1 with errno (EAGAIN: nothing more). *flags: 1 it carried descriptors
/// (SCM_RIGHTS; they are closed here), 2 truncated.
long ghost_sock_peek(int fd, void *buf, size_t len, int dgram, int *flags);

/// SO_PEEK_OFF get/set (-1 = off).
int ghost_get_peek_off(int fd);
int ghost_set_peek_off(int fd, int off);

/// One line saying what socket `fd` is ("a TCP connection from 10.0.0.2:5000
/// to 10.0.0.1:80", "a netlink socket (protocol 0)"...). Returns 0.
int ghost_sock_describe(int fd, char *buf, size_t len);

/// A unix socket of `type` bound to `name` (namelen bytes, abstract when
/// name[0] == 0) and, if backlog >= 0, listening. Close-on-exec. -1 with errno.
int ghost_unix_listen(int type, const char *name, int namelen, int backlog);

/// connect(2) of unix socket fd to `name` (namelen bytes, abstract when name[0] == 0).
int ghost_unix_connect(int fd, const char *name, int namelen);
/// sendto(2) of one datagram to the unix socket `name`, non-blocking. Bytes sent or -1.
long ghost_unix_sendto(int fd, const void *buf, size_t len, const char *name, int namelen);

/// TFD_IOC_SET_TICKS: expirations not yet read. 0 or -1 with errno.
int ghost_timerfd_set_ticks(int fd, uint64_t ticks);
/// timerfd_settime relative (flags 0) with value and interval in nanoseconds.
int ghost_timerfd_arm(int fd, uint64_t value_ns, uint64_t interval_ns);
/// kcmp(KCMP_EPOLL_TFD): 0 when descriptor fd1 of process p1 is the file
/// that epoll efd of process p2 watches as its toff-th entry for number tfd.
int ghost_kcmp_epoll_tfd(pid_t p1, int fd1, pid_t p2, int efd, int tfd, int toff);
#endif
