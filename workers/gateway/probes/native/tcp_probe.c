/*
 * streamheal kernel TCP probes (Node-API, plain C, no node-addon-api).
 *
 *   tcpInfo(fd)                        getsockopt(TCP_INFO) + SO_SNDBUF + SIOCOUTQ/SIOCINQ of one socket
 *   setUserTimeout(fd, ms)             TCP_USER_TIMEOUT
 *   getUserTimeout(fd)
 *   setKeepalive(fd, idleS, intervalS, count)   SO_KEEPALIVE + TCP_KEEPIDLE/KEEPINTVL/KEEPCNT
 *   getKeepalive(fd)
 *   sweep(localPort[, stateMask])      one NETLINK_SOCK_DIAG dump (IPv4 then IPv6) on a libuv
 *                                      worker thread; resolves to { data: Uint32Array, count,
 *                                      stride, dumpUs } (row layout: the F_* constants below,
 *                                      exported as `fields`)
 *
 * Errors from the socket calls throw an Error whose `code` is the errno name (EBADF, ...); a
 * failed sweep rejects the same way. Off Linux the module exports only { supported: false }.
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __linux__

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <linux/tcp.h>

/* Row layout of a sweep (uint32 columns). Kept in sync with kernelProbe.ts through `fields`. */
enum {
  F_FAMILY = 0, /* 4 or 6 (IPv4-mapped IPv6 sockets are reported as 4) */
  F_STATE,
  F_LOCAL_PORT,
  F_REMOTE_PORT,
  F_INODE,
  F_RTT, /* us */
  F_RTTVAR,
  F_RETRANSMITS, /* unrecovered RTO timeouts in a row */
  F_TOTAL_RETRANS,
  F_UNACKED,
  F_LOST,
  F_NOTSENT,
  F_LAST_DATA_RECV, /* ms */
  F_SND_CWND,
  F_SNDBUF,
  F_OUTQ, /* bytes written and not yet acknowledged (SIOCOUTQ) */
  F_INQ,
  F_HAS_INFO, /* 1 when the kernel sent a tcp_info (not for TIME_WAIT / request sockets) */
  F_REMOTE_ADDR, /* 4 words; IPv4 in word 0, host order; IPv6 as 4 host-order words */
  F_LOCAL_ADDR = F_REMOTE_ADDR + 4,
  F_STRIDE = F_LOCAL_ADDR + 4
};

static const char *field_names[F_STRIDE] = {
    "family",      "state",        "localPort",     "remotePort", "inode",   "rtt",
    "rttvar",      "retransmits",  "totalRetrans",  "unacked",    "lost",    "notsentBytes",
    "lastDataRecv", "sndCwnd",     "sndBuf",        "outq",       "inq",     "hasInfo",
    "remoteAddr",  "remoteAddr1",  "remoteAddr2",   "remoteAddr3", "localAddr", "localAddr1",
    "localAddr2",  "localAddr3"};

/* ---------------------------------------------------------------------------------------- */
/* helpers                                                                                   */

static const char *errno_code(int err) {
  switch (err) {
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOMEM: return "ENOMEM";
    case ENOBUFS: return "ENOBUFS";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ENOENT: return "ENOENT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EINTR: return "EINTR";
    case EAGAIN: return "EAGAIN"; /* also the receive timeout */
    case ETIMEDOUT: return "ETIMEDOUT";
    case EIO: return "EIO";
    default: return "EUNKNOWN";
  }
}

static napi_value make_errno_error(napi_env env, const char *what, int err) {
  char msg[160];
  napi_value code, message, error;
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_create_string_utf8(env, errno_code(err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_value errno_value;
  napi_create_int32(env, -err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  return error;
}

static napi_value throw_errno(napi_env env, const char *what, int err) {
  napi_throw(env, make_errno_error(env, what, err));
  return NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return -1;
  if (argc < want) {
    napi_throw_type_error(env, "EINVAL", "missing arguments");
    return -1;
  }
  return 0;
}

static int arg_int(napi_env env, napi_value v, const char *name, int32_t *out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_number) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a number", name);
    napi_throw_type_error(env, "EINVAL", msg);
    return -1;
  }
  napi_get_value_int32(env, v, out);
  return 0;
}

static void set_u32(napi_env env, napi_value obj, const char *name, uint32_t value) {
  napi_value v;
  napi_create_uint32(env, value, &v);
  napi_set_named_property(env, obj, name, v);
}

/* ---------------------------------------------------------------------------------------- */
/* per-socket                                                                                 */

static napi_value TcpInfo(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (get_args(env, info, 1, argv) || arg_int(env, argv[0], "fd", &fd)) return NULL;

  struct tcp_info ti;
  socklen_t len = sizeof ti;
  memset(&ti, 0, sizeof ti);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return throw_errno(env, "TCP_INFO", errno);

  int sndbuf = 0;
  socklen_t blen = sizeof sndbuf;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &blen) != 0) sndbuf = -1;
  int outq = 0, inq = 0;
  if (ioctl(fd, SIOCOUTQ, &outq) != 0) outq = -1;
  if (ioctl(fd, SIOCINQ, &inq) != 0) inq = -1;

  napi_value obj;
  napi_create_object(env, &obj);
  set_u32(env, obj, "state", ti.tcpi_state);
  set_u32(env, obj, "rtt", ti.tcpi_rtt);
  set_u32(env, obj, "rttvar", ti.tcpi_rttvar);
  set_u32(env, obj, "retransmits", ti.tcpi_retransmits);
  set_u32(env, obj, "totalRetrans", ti.tcpi_total_retrans);
  set_u32(env, obj, "unacked", ti.tcpi_unacked);
  set_u32(env, obj, "lost", ti.tcpi_lost);
  set_u32(env, obj, "notsentBytes", len > offsetof(struct tcp_info, tcpi_notsent_bytes)
                                        ? ti.tcpi_notsent_bytes
                                        : 0);
  set_u32(env, obj, "lastDataRecv", ti.tcpi_last_data_recv);
  set_u32(env, obj, "sndCwnd", ti.tcpi_snd_cwnd);
  napi_value v;
  napi_create_int32(env, sndbuf, &v);
  napi_set_named_property(env, obj, "sndBuf", v);
  napi_create_int32(env, outq, &v);
  napi_set_named_property(env, obj, "outq", v);
  napi_create_int32(env, inq, &v);
  napi_set_named_property(env, obj, "inq", v);
  return obj;
}

static napi_value SetUserTimeout(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd, ms;
  if (get_args(env, info, 2, argv) || arg_int(env, argv[0], "fd", &fd) ||
      arg_int(env, argv[1], "ms", &ms))
    return NULL;
  if (ms < 0) return throw_errno(env, "TCP_USER_TIMEOUT", EINVAL);
  unsigned int value = (unsigned int)ms;
  if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &value, sizeof value) != 0)
    return throw_errno(env, "TCP_USER_TIMEOUT", errno);
  napi_value result;
  napi_get_boolean(env, 1, &result);
  return result;
}

static napi_value GetUserTimeout(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (get_args(env, info, 1, argv) || arg_int(env, argv[0], "fd", &fd)) return NULL;
  unsigned int value = 0;
  socklen_t len = sizeof value;
  if (getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &value, &len) != 0)
    return throw_errno(env, "TCP_USER_TIMEOUT", errno);
  napi_value result;
  napi_create_uint32(env, value, &result);
  return result;
}

static napi_value SetKeepalive(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t fd, idle, interval, count;
  if (get_args(env, info, 4, argv) || arg_int(env, argv[0], "fd", &fd) ||
      arg_int(env, argv[1], "idleS", &idle) || arg_int(env, argv[2], "intervalS", &interval) ||
      arg_int(env, argv[3], "count", &count))
    return NULL;
  int on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0)
    return throw_errno(env, "SO_KEEPALIVE", errno);
  if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) != 0)
    return throw_errno(env, "TCP_KEEPIDLE", errno);
  if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval) != 0)
    return throw_errno(env, "TCP_KEEPINTVL", errno);
  if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count) != 0)
    return throw_errno(env, "TCP_KEEPCNT", errno);
  napi_value result;
  napi_get_boolean(env, 1, &result);
  return result;
}

static napi_value GetKeepalive(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (get_args(env, info, 1, argv) || arg_int(env, argv[0], "fd", &fd)) return NULL;
  int on = 0, idle = 0, interval = 0, count = 0;
  socklen_t len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &len) != 0) return throw_errno(env, "SO_KEEPALIVE", errno);
  len = sizeof(int);
  if (getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &len) != 0) return throw_errno(env, "TCP_KEEPIDLE", errno);
  len = sizeof(int);
  if (getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, &len) != 0)
    return throw_errno(env, "TCP_KEEPINTVL", errno);
  len = sizeof(int);
  if (getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, &len) != 0) return throw_errno(env, "TCP_KEEPCNT", errno);
  napi_value obj, b;
  napi_create_object(env, &obj);
  napi_get_boolean(env, on != 0, &b);
  napi_set_named_property(env, obj, "enabled", b);
  set_u32(env, obj, "idleS", (uint32_t)idle);
  set_u32(env, obj, "intervalS", (uint32_t)interval);
  set_u32(env, obj, "count", (uint32_t)count);
  return obj;
}

/* ---------------------------------------------------------------------------------------- */
/* sweep: NETLINK_SOCK_DIAG / inet_diag dump, the way `ss -ti sport = :PORT` asks for it      */

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int port;         /* 0: every TCP socket */
  uint32_t states;  /* bit per TCP state */
  uint32_t *rows;
  size_t count;
  size_t capacity;
  int err;          /* errno of a failure, 0 on success */
  const char *what; /* the step that failed */
  double dump_us;
} sweep_t;

static int ensure_capacity(sweep_t *s) {
  if (s->count < s->capacity) return 0;
  size_t cap = s->capacity ? s->capacity * 2 : 1024;
  uint32_t *rows = realloc(s->rows, cap * F_STRIDE * sizeof(uint32_t));
  if (!rows) return ENOMEM;
  s->rows = rows;
  s->capacity = cap;
  return 0;
}

static uint32_t load_be32(const uint32_t *p) { return ntohl(*p); }

static int is_v4_mapped(const uint32_t addr[4]) {
  return addr[0] == 0 && addr[1] == 0 && addr[2] == htonl(0x0000ffff);
}

static void put_addr(uint32_t *dst, int family, const uint32_t src[4], int *mapped_out) {
  if (family == AF_INET) {
    dst[0] = load_be32(&src[0]);
    dst[1] = dst[2] = dst[3] = 0;
    return;
  }
  if (is_v4_mapped(src)) {
    dst[0] = load_be32(&src[3]);
    dst[1] = dst[2] = dst[3] = 0;
    *mapped_out = 1;
    return;
  }
  for (int i = 0; i < 4; i++) dst[i] = load_be32(&src[i]);
}

static int add_row(sweep_t *s, const struct nlmsghdr *h) {
  const struct inet_diag_msg *m = NLMSG_DATA(h);
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof *m)) return 0;
  uint16_t sport = ntohs(m->id.idiag_sport);
  if (s->port && sport != s->port) return 0; /* the bytecode already filtered; belt and braces */
  int err = ensure_capacity(s);
  if (err) return err;
  uint32_t *r = s->rows + s->count * F_STRIDE;
  memset(r, 0, F_STRIDE * sizeof(uint32_t));

  int mapped_remote = 0, mapped_local = 0;
  put_addr(r + F_REMOTE_ADDR, m->idiag_family, m->id.idiag_dst, &mapped_remote);
  put_addr(r + F_LOCAL_ADDR, m->idiag_family, m->id.idiag_src, &mapped_local);
  r[F_FAMILY] = (m->idiag_family == AF_INET || (mapped_remote && mapped_local)) ? 4 : 6;
  if (r[F_FAMILY] == 6 && (mapped_remote || mapped_local)) {
    /* mixed: keep the raw IPv6 form of both */
    for (int i = 0; i < 4; i++) {
      r[F_REMOTE_ADDR + i] = load_be32(&m->id.idiag_dst[i]);
      r[F_LOCAL_ADDR + i] = load_be32(&m->id.idiag_src[i]);
    }
  }
  r[F_STATE] = m->idiag_state;
  r[F_LOCAL_PORT] = sport;
  r[F_REMOTE_PORT] = ntohs(m->id.idiag_dport);
  r[F_INODE] = m->idiag_inode;
  r[F_OUTQ] = m->idiag_wqueue;
  r[F_INQ] = m->idiag_rqueue;

  int rem = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *m);
  struct rtattr *a = (struct rtattr *)(m + 1);
  for (; RTA_OK(a, rem); a = RTA_NEXT(a, rem)) {
    if (a->rta_type == INET_DIAG_INFO) {
      struct tcp_info ti;
      size_t n = RTA_PAYLOAD(a);
      memset(&ti, 0, sizeof ti);
      memcpy(&ti, RTA_DATA(a), n < sizeof ti ? n : sizeof ti);
      r[F_HAS_INFO] = 1;
      r[F_RTT] = ti.tcpi_rtt;
      r[F_RTTVAR] = ti.tcpi_rttvar;
      r[F_RETRANSMITS] = ti.tcpi_retransmits;
      r[F_TOTAL_RETRANS] = ti.tcpi_total_retrans;
      r[F_UNACKED] = ti.tcpi_unacked;
      r[F_LOST] = ti.tcpi_lost;
      r[F_NOTSENT] = ti.tcpi_notsent_bytes;
      r[F_LAST_DATA_RECV] = ti.tcpi_last_data_recv;
      r[F_SND_CWND] = ti.tcpi_snd_cwnd;
    } else if (a->rta_type == INET_DIAG_SKMEMINFO) {
      const uint32_t *mem = RTA_DATA(a);
      if (RTA_PAYLOAD(a) > SK_MEMINFO_SNDBUF * sizeof(uint32_t))
        r[F_SNDBUF] = mem[SK_MEMINFO_SNDBUF];
    }
  }
  s->count++;
  return 0;
}

/* One dump request for one address family; reads until NLMSG_DONE. */
static int dump_family(sweep_t *s, int nl, int family, uint32_t seq, char *buf, size_t buflen) {
  struct {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 req;
    struct rtattr bc_attr;
    struct inet_diag_bc_op ops[4];
  } msg;
  memset(&msg, 0, sizeof msg);
  size_t bc_len = 0;
  if (s->port) {
    /* sport >= port && sport <= port; `no` jumps past the end (len + 4) = reject */
    msg.ops[0].code = INET_DIAG_BC_S_GE;
    msg.ops[0].yes = sizeof(struct inet_diag_bc_op) * 2;
    msg.ops[0].no = sizeof(struct inet_diag_bc_op) * 4 + 4;
    msg.ops[1].no = (uint16_t)s->port;
    msg.ops[2].code = INET_DIAG_BC_S_LE;
    msg.ops[2].yes = sizeof(struct inet_diag_bc_op) * 2;
    msg.ops[2].no = sizeof(struct inet_diag_bc_op) * 2 + 4;
    msg.ops[3].no = (uint16_t)s->port;
    bc_len = sizeof msg.ops;
    msg.bc_attr.rta_type = INET_DIAG_REQ_BYTECODE;
    msg.bc_attr.rta_len = RTA_LENGTH(bc_len);
  }
  size_t total = NLMSG_LENGTH(sizeof msg.req) + (s->port ? RTA_SPACE(bc_len) : 0);
  msg.nlh.nlmsg_len = (uint32_t)total;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.nlh.nlmsg_seq = seq;
  msg.req.sdiag_family = (uint8_t)family;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = s->states;
  msg.req.idiag_ext = (1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_SKMEMINFO - 1));

  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t sent;
  do {
    sent = sendto(nl, &msg, total, 0, (struct sockaddr *)&kernel, sizeof kernel);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    s->what = "netlink sendto";
    return errno;
  }

  for (;;) {
    ssize_t n;
    do {
      n = recv(nl, buf, buflen, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      s->what = "netlink recv";
      return errno;
    }
    if (n == 0) {
      s->what = "netlink recv (closed)";
      return EIO;
    }
    int len = (int)n;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type == NLMSG_DONE) return 0;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        s->what = "inet_diag dump";
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof *e)) return EIO;
        /* family without inet_diag support (IPv6 disabled): treat as empty */
        if (family == AF_INET6 && (e->error == -ENOENT || e->error == -EAFNOSUPPORT)) return 0;
        return e->error ? -e->error : EIO;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      int err = add_row(s, h);
      if (err) {
        s->what = "allocating rows";
        return err;
      }
    }
  }
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void sweep_execute(napi_env env, void *data) {
  (void)env;
  sweep_t *s = data;
  double t0 = now_us();
  int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) {
    s->err = errno;
    s->what = "socket(NETLINK_SOCK_DIAG)";
    return;
  }
  int rcvbuf = 1 << 20;
  setsockopt(nl, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  /* Never park a libuv worker forever on a kernel that does not answer. */
  struct timeval timeout = {.tv_sec = 5, .tv_usec = 0};
  setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  size_t buflen = 64 * 1024;
  char *buf = malloc(buflen);
  if (!buf) {
    close(nl);
    s->err = ENOMEM;
    s->what = "allocating the receive buffer";
    return;
  }
  s->err = dump_family(s, nl, AF_INET, 1, buf, buflen);
  if (!s->err) s->err = dump_family(s, nl, AF_INET6, 2, buf, buflen);
  free(buf);
  close(nl);
  s->dump_us = now_us() - t0;
}

static void sweep_free(sweep_t *s) {
  free(s->rows);
  free(s);
}

static void rows_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void sweep_complete(napi_env env, napi_status status, void *data) {
  sweep_t *s = data;
  if (status != napi_ok || s->err) {
    napi_value error;
    if (status != napi_ok) {
      napi_value code, message;
      napi_create_string_utf8(env, "ECANCELED", NAPI_AUTO_LENGTH, &code);
      napi_create_string_utf8(env, "sweep cancelled", NAPI_AUTO_LENGTH, &message);
      napi_create_error(env, code, message, &error);
    } else {
      error = make_errno_error(env, s->what ? s->what : "sweep", s->err);
    }
    napi_reject_deferred(env, s->deferred, error);
    napi_delete_async_work(env, s->work);
    sweep_free(s);
    return;
  }

  size_t bytes = s->count * F_STRIDE * sizeof(uint32_t);
  napi_value ab, arr, result, v;
  void *copy = NULL;
  /* Hand the rows over without a copy where the runtime allows external buffers. */
  if (bytes > 0 &&
      napi_create_external_arraybuffer(env, s->rows, bytes, rows_finalize, NULL, &ab) == napi_ok) {
    s->rows = NULL;
  } else {
    napi_create_arraybuffer(env, bytes, &copy, &ab);
    if (bytes) memcpy(copy, s->rows, bytes);
  }
  napi_create_typedarray(env, napi_uint32_array, s->count * F_STRIDE, ab, 0, &arr);
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "data", arr);
  napi_create_uint32(env, (uint32_t)s->count, &v);
  napi_set_named_property(env, result, "count", v);
  napi_create_uint32(env, F_STRIDE, &v);
  napi_set_named_property(env, result, "stride", v);
  napi_create_double(env, s->dump_us, &v);
  napi_set_named_property(env, result, "dumpUs", v);
  napi_resolve_deferred(env, s->deferred, result);
  napi_delete_async_work(env, s->work);
  sweep_free(s);
}

static napi_value Sweep(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t port = 0;
  uint32_t states = 0xfff & ~(1u << 10); /* every state but LISTEN */
  if (argc >= 1 && arg_int(env, argv[0], "localPort", &port)) return NULL;
  if (port < 0 || port > 65535) {
    napi_throw_range_error(env, "EINVAL", "localPort must be 0..65535");
    return NULL;
  }
  if (argc >= 2) {
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t == napi_number) napi_get_value_uint32(env, argv[1], &states);
  }

  sweep_t *s = calloc(1, sizeof *s);
  if (!s) return throw_errno(env, "sweep", ENOMEM);
  s->port = port;
  s->states = states;
  napi_value promise, name;
  if (napi_create_promise(env, &s->deferred, &promise) != napi_ok) {
    free(s);
    return NULL;
  }
  napi_create_string_utf8(env, "streamheal.kernelSweep", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, sweep_execute, sweep_complete, s, &s->work) != napi_ok) {
    napi_reject_deferred(env, s->deferred, make_errno_error(env, "creating the sweep", EIO));
    free(s);
  } else if (napi_queue_async_work(env, s->work) != napi_ok) {
    napi_reject_deferred(env, s->deferred, make_errno_error(env, "queueing the sweep", EIO));
    napi_delete_async_work(env, s->work);
    free(s);
  }
  return promise;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
      {"tcpInfo", NULL, TcpInfo, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setUserTimeout", NULL, SetUserTimeout, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getUserTimeout", NULL, GetUserTimeout, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setKeepalive", NULL, SetKeepalive, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getKeepalive", NULL, GetKeepalive, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sweep", NULL, Sweep, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns);

  napi_value fields, v;
  napi_create_object(env, &fields);
  for (int i = 0; i < F_STRIDE; i++) {
    napi_create_uint32(env, (uint32_t)i, &v);
    napi_set_named_property(env, fields, field_names[i], v);
  }
  napi_set_named_property(env, exports, "fields", fields);
  napi_get_boolean(env, 1, &v);
  napi_set_named_property(env, exports, "supported", v);
  napi_create_uint32(env, 1, &v);
  napi_set_named_property(env, exports, "abiVersion", v);
  return exports;
}

#else /* !__linux__ */

static napi_value Init(napi_env env, napi_value exports) {
  napi_value v;
  napi_get_boolean(env, 0, &v);
  napi_set_named_property(env, exports, "supported", v);
  return exports;
}

#endif

NAPI_MODULE_INIT() { return Init(env, exports); }
