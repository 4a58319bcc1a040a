#define _GNU_SOURCE
#include "ghost_sock.h"
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

long ghost_unix_diag(struct ghost_unix_sock *out, long max) {
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0) return -1;
    struct {
        struct nlmsghdr nlh;
        struct unix_diag_req req;
    } msg;
    memset(&msg, 0, sizeof msg);
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.req.sdiag_family = AF_UNIX;
    msg.req.udiag_states = ~0u;
    msg.req.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN;
    if (send(nl, &msg, sizeof msg, 0) < 0) { int e = errno; close(nl); errno = e; return -1; }
    long n = 0;
    static __thread char buf[65536];   // more than a netlink dump message can be
    for (;;) {
        ssize_t r = recv(nl, buf, sizeof buf, 0);
        if (r < 0) { if (errno == EINTR) continue; int e = errno; close(nl); errno = e; return -1; }
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        for (; NLMSG_OK(h, (size_t)r); h = NLMSG_NEXT(h, r)) {
            if (h->nlmsg_type == NLMSG_DONE) { close(nl); return n; }
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *err = NLMSG_DATA(h);
                close(nl); errno = -err->error; return -1;
            }
            struct unix_diag_msg *m = NLMSG_DATA(h);
            struct ghost_unix_sock s;
            memset(&s, 0, sizeof s);
            s.ino = m->udiag_ino; s.type = m->udiag_type; s.state = m->udiag_state;
            int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
            for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
                void *d = RTA_DATA(a);
                int dl = (int)RTA_PAYLOAD(a);
                switch (a->rta_type) {
                case UNIX_DIAG_NAME:
                    s.namelen = dl > (int)sizeof s.name ? (int)sizeof s.name : dl;
                    memcpy(s.name, d, (size_t)s.namelen);
                    break;
                case UNIX_DIAG_PEER: s.peer = *(uint32_t *)d; break;
                case UNIX_DIAG_RQLEN: {
                    struct unix_diag_rqlen *q = d;
                    s.rqueue = q->udiag_rqueue; s.wqueue = q->udiag_wqueue;
                    break;
                }
                case UNIX_DIAG_SHUTDOWN: s.shutdown = *(uint8_t *)d; break;
                }
            }
            if (n < max) out[n] = s;
            n++;
        }
    }
}

long ghost_sock_peek(int fd, void *buf, size_t len, int dgram, int *flags) {
    struct iovec iov = { buf, len };
    union { char b[CMSG_SPACE(sizeof(int) * 253)]; struct cmsghdr align; } control;
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov; mh.msg_iovlen = 1;
    mh.msg_control = control.b; mh.msg_controllen = sizeof control.b;
    *flags = 0;
    ssize_t r = recvmsg(fd, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC | (dgram ? MSG_TRUNC : 0));
    if (r < 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int *fds = (int *)CMSG_DATA(c);
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) close(fds[i]);
            *flags |= 1;
        }
    }
    if (mh.msg_flags & MSG_CTRUNC) *flags |= 1;   // descriptors that did not fit
    if (mh.msg_flags & MSG_TRUNC) *flags |= 2;
    return (long)r;
}

int ghost_get_peek_off(int fd) {
    int v = -1; socklen_t l = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &v, &l) != 0) return -1;
    return v;
}

int ghost_set_peek_off(int fd, int off) {
    return setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off);
}

static void addr_str(const struct sockaddr_storage *a, socklen_t l, char *out, size_t len) {
    char host[INET6_ADDRSTRLEN] = "?";
    if (l == 0) { snprintf(out, len, "nothing"); return; }
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)a;
        inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
        snprintf(out, len, "%s:%u", host, ntohs(s->sin_port));
    } else if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const void *)a;
        inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
        snprintf(out, len, "[%s]:%u", host, ntohs(s->sin6_port));
    } else if (a->ss_family == AF_UNIX) {
        const struct sockaddr_un *s = (const void *)a;
        size_t n = l > offsetof(struct sockaddr_un, sun_path) ? l - offsetof(struct sockaddr_un, sun_path) : 0;
        if (n == 0) snprintf(out, len, "an unnamed socket");
        else if (s->sun_path[0] == 0) snprintf(out, len, "the abstract name @%.*s", (int)n - 1, s->sun_path + 1);
        else snprintf(out, len, "%.*s", (int)strnlen(s->sun_path, n), s->sun_path);
    } else {
        snprintf(out, len, "an address of family %d", a->ss_family);
    }
}

int ghost_sock_describe(int fd, char *buf, size_t len) {
    int domain = 0, type = 0, proto = 0, listening = 0;
    socklen_t l = sizeof(int);
    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l); l = sizeof(int);
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l); l = sizeof(int);
    getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l); l = sizeof(int);
    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l);
    struct sockaddr_storage me, peer;
    socklen_t ml = sizeof me, pl = sizeof peer;
    memset(&me, 0, sizeof me); memset(&peer, 0, sizeof peer);
    if (getsockname(fd, (struct sockaddr *)&me, &ml) != 0) ml = 0;
    int connected = getpeername(fd, (struct sockaddr *)&peer, &pl) == 0;
    char a[160], b[160];
    addr_str(&me, ml, a, sizeof a);
    addr_str(&peer, connected ? pl : 0, b, sizeof b);
    if (domain == AF_INET || domain == AF_INET6) {
        const char *what = type == SOCK_STREAM ? "TCP" : type == SOCK_DGRAM ? "UDP" : "raw IP";
        if (listening) snprintf(buf, len, "a %s socket listening on %s", what, a);
        else if (connected) snprintf(buf, len, "a %s connection from %s to %s", what, a, b);
        else snprintf(buf, len, "an unconnected %s socket bound to %s", what, a);
    } else if (domain == AF_UNIX) {
        const char *what = type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "datagram" : "seqpacket";
        if (listening) snprintf(buf, len, "a unix %s socket listening on %s", what, a);
        else if (connected) snprintf(buf, len, "a unix %s socket (%s) connected to %s", what, a, b);
        else snprintf(buf, len, "an unconnected unix %s socket (%s)", what, a);
    } else if (domain == AF_NETLINK) {
        snprintf(buf, len, "a netlink socket (protocol %d)", proto);
    } else if (domain == AF_PACKET) {
        snprintf(buf, len, "a packet socket");
    } else {
        snprintf(buf, len, "a socket of family %d, type %d", domain, type);
    }
    return 0;
}

int ghost_unix_listen(int type, const char *name, int namelen, int backlog) {
    struct sockaddr_un a;
    if (namelen <= 0 || namelen > (int)sizeof a.sun_path) { errno = EINVAL; return -1; }
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, name, (size_t)namelen);
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    socklen_t l = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)namelen);
    if (bind(fd, (struct sockaddr *)&a, l) != 0 || (backlog >= 0 && listen(fd, backlog) != 0)) {
        int e = errno; close(fd); errno = e; return -1;
    }
    return fd;
}

static socklen_t unix_addr(struct sockaddr_un *a, const char *name, int namelen) {
    if (namelen <= 0 || namelen > (int)sizeof a->sun_path) return 0;
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    memcpy(a->sun_path, name, (size_t)namelen);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)namelen);
}

int ghost_unix_connect(int fd, const char *name, int namelen) {
    struct sockaddr_un a;
    socklen_t l = unix_addr(&a, name, namelen);
    if (l == 0) { errno = EINVAL; return -1; }
    return connect(fd, (struct sockaddr *)&a, l);
}

long ghost_unix_sendto(int fd, const void *buf, size_t len, const char *name, int namelen) {
    struct sockaddr_un a;
    socklen_t l = unix_addr(&a, name, namelen);
    if (l == 0) { errno = EINVAL; return -1; }
    return (long)sendto(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&a, l);
}

int ghost_timerfd_set_ticks(int fd, uint64_t ticks) {
    return ioctl(fd, TFD_IOC_SET_TICKS, &ticks);
}

int ghost_timerfd_arm(int fd, uint64_t value_ns, uint64_t interval_ns) {
    struct itimerspec t;
    t.it_value.tv_sec = (time_t)(value_ns / 1000000000ull); t.it_value.tv_nsec = (long)(value_ns % 1000000000ull);
    t.it_interval.tv_sec = (time_t)(interval_ns / 1000000000ull); t.it_interval.tv_nsec = (long)(interval_ns % 1000000000ull);
    return timerfd_settime(fd, 0, &t, NULL);
}

int ghost_kcmp_epoll_tfd(pid_t p1, int fd1, pid_t p2, int efd, int tfd, int toff) {
    struct { uint32_t efd, tfd, toff; } slot = { (uint32_t)efd, (uint32_t)tfd, (uint32_t)toff };
    return (int)syscall(SYS_kcmp, p1, p2, 7 /* KCMP_EPOLL_TFD */, fd1, (unsigned long)&slot);
}
