/*
 * Batched UDP I/O for effect-distributor's native transport (src/internal/transport/native.ts):
 * recvmmsg on a uv_poll handle and sendmmsg, on sockets that node:dgram created, bound and
 * configured (the socket setup and its typed errors stay in TypeScript; only the per-datagram hot
 * path moves here). Linux only.
 *
 * Receive: the caller stops node's own reading of the socket (UDPWrap.recvStop, which takes the fd
 * out of libuv's watcher table) before rx_open polls a duplicate of the fd (see rx_open for why).
 * On each wake-up we read up to RX_VLEN messages per recvmmsg, at most RX_ROUNDS times (a busy
 * socket must not starve the loop; epoll is level-triggered, so what is left wakes us again), and
 * hand each round to JS as ONE ArrayBuffer plus offsets/lengths/source ip/port in a reused
 * Uint32Array: the datagrams copied back to back into a fresh buffer, or into the last round's
 * when JS said it kept nothing of it, or, once rounds keep coming back, the slots the kernel wrote
 * them into, with no copy (rx_deliver). With UDP_GRO a message can be a run of datagrams (see
 * below): split here.
 *
 * Send: the caller passes the queued datagrams where they lie (the ArrayBuffers they are views of,
 * and each one's buffer, offset and length) to ONE send_batch call; we send them with sendmmsg
 * (MSG_DONTWAIT), one iovec per datagram and no copy, until all left or one failed, and say how
 * many left and why the next did not. With gso, each run of equal-size datagrams is one message
 * with UDP_SEGMENT (GSO, Linux >= 4.18): the kernel cuts it into those datagrams, so the wire and
 * every receiver see exactly what was queued, for one trip through the stack per run instead of
 * one per datagram. On loopback the run reaches a UDP_GRO socket still whole.
 */
#define _GNU_SOURCE
/* napi_add_async_cleanup_hook (Node >= 14.10): worker threads can end with a receiver open. */
#define NAPI_VERSION 8
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "pool.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define RX_VLEN 64
#define RX_ROUNDS 4
/* Largest IPv4 UDP payload is 65507: one slot per datagram never truncates. The slots are
 * malloc'd (mmap'd, so only pages the kernel writes become resident). */
#define RX_SLOT 65536
#define TX_VLEN 64
/* Datagrams (and distinct base buffers) per sendBatch call at most (BATCH_DATAGRAMS in native.ts). */
#define TX_MAX 1024
/* Words of meta per datagram: offset, length, source ip (host order), source port. */
#define META 4
/* Datagrams per GSO send at most (the kernel's UDP_MAX_SEGMENTS is 64, 128 since 6.x), and bytes per
 * GSO send (one UDP payload: at most 65 507). */
#define GSO_SEGMENTS 64
#define GSO_BYTES 65000
/* Meta entries per recvmmsg round: each message may be a GRO run of up to 64 datagrams (the
 * kernel's UDP_GRO_CNT_MAX), so a round never runs out. */
#define RX_META (RX_VLEN * GSO_SEGMENTS)
/* Smallest buffer made while rounds come back (see rx_deliver). */
#define RX_SPARE_MIN (256 * 1024)
/* Rounds in a row that JS kept nothing of, after which rounds are handed over in the slots (rx_deliver). */
#define RX_DIRECT_AFTER 64

#define CHECK(call)                                                                                \
  do {                                                                                             \
    if ((call) != napi_ok) return NULL;                                                            \
  } while (0)

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_ref meta_ref;
  napi_async_context async;
  uint32_t *meta;
  int fd;
  uint32_t own_ip; /* network order; with own_port < 0 nothing is filtered */
  int own_port;
  int closing;
  int env_gone;
  napi_async_cleanup_hook_handle hook;
  uint8_t *slots;
  struct mmsghdr msgs[RX_VLEN];
  struct iovec iov[RX_VLEN];
  struct sockaddr_in from[RX_VLEN];
  /* The UDP_GRO cmsg of each message (the segment size of a coalesced run). */
  char control[RX_VLEN][CMSG_SPACE(sizeof(int))];
  /* Datagrams delivered from each message: 1, a GRO run's segments, or 0 (filtered). */
  uint32_t parts[RX_VLEN];
  /* The last round's buffer when JS said it kept nothing of it (its callback returned true): the
   * next round that fits is read into it instead of a fresh one. */
  napi_ref spare;
  void *spare_data;
  size_t spare_cap;
  /* Direct mode: rounds go to JS in the slots themselves, as one external ArrayBuffer (slots_ref),
   * with no copy, for as long as JS keeps nothing of them. */
  int direct;
  int free_streak;
  napi_ref slots_ref;
  /* The slots belong to that ArrayBuffer (its finalizer frees them), not to rx. */
  int slots_js;
} rx_t;

typedef struct {
  uv_poll_t poll;
} forget_t;

static void forget_closed(uv_handle_t *h) { free(h); }

static void rx_free(rx_t *rx) {
  napi_env env = rx->env;
  /* After the environment's teardown its references are gone with it: only memory is ours. */
  if (!rx->env_gone) {
    if (rx->callback) napi_delete_reference(env, rx->callback);
    if (rx->meta_ref) napi_delete_reference(env, rx->meta_ref);
    if (rx->spare) napi_delete_reference(env, rx->spare);
    if (rx->slots_ref) napi_delete_reference(env, rx->slots_ref);
    if (rx->async) napi_async_destroy(env, rx->async);
  }
  if (rx->fd >= 0) close(rx->fd);
  if (!rx->slots_js) free(rx->slots);
  free(rx);
}

/* The poll handle is closed: nothing refers to rx any more. Removing the cleanup hook here (and
 * not when the close starts) makes an environment teardown wait for this callback. */
static void rx_closed(uv_handle_t *h) {
  rx_t *rx = h->data;
  if (rx->hook) napi_remove_async_cleanup_hook(rx->hook);
  rx_free(rx);
}

static void rx_stop(rx_t *rx) {
  if (rx->closing) return;
  rx->closing = 1;
  uv_poll_stop(&rx->poll);
  uv_close((uv_handle_t *)&rx->poll, rx_closed);
}

/* Environment teardown (a worker thread ending, the process exiting) with the receiver open, or
 * with its close still pending: node waits until rx_closed removes the hook. */
static void rx_cleanup_hook(napi_async_cleanup_hook_handle handle, void *arg) {
  rx_t *rx = arg;
  rx->env_gone = 1;
  rx_stop(rx);
}

static void slots_finalize(napi_env env, void *data, void *hint) { free(data); }

/* Points each message's iovec at its slot. */
static void rx_aim(rx_t *rx) {
  for (int i = 0; i < RX_VLEN; i++) {
    rx->iov[i].iov_base = rx->slots + (size_t)i * RX_SLOT;
    rx->iov[i].iov_len = RX_SLOT;
  }
}

/* The slots as one external ArrayBuffer (made once per slots; they are its memory from then on). */
static int rx_slots_buffer(rx_t *rx, napi_value *ab) {
  napi_env env = rx->env;
  if (rx->slots_ref && napi_get_reference_value(env, rx->slots_ref, ab) == napi_ok && *ab) return 1;
  if (rx->slots_js) return 0; /* its reference is gone: never wrap the same memory twice */
  if (napi_create_external_arraybuffer(env, rx->slots, (size_t)RX_VLEN * RX_SLOT, slots_finalize, NULL, ab) != napi_ok)
    return 0;
  rx->slots_js = 1;
  if (napi_create_reference(env, *ab, 1, &rx->slots_ref) != napi_ok) rx->slots_ref = NULL;
  return 1;
}

/* After JS had a round: whether its buffer comes back for the next one (the spare), whether the
 * slots stay with us (direct mode), or whether JS keeps views of it. */
static void rx_settle(rx_t *rx, int direct, bool free_again, napi_value ab, void *data) {
  napi_env env = rx->env;
  size_t cap = 0;
  if (direct) {
    /* Without a reference (it could not be made) the buffer may be collected, and the slots
     * freed, at any time: as if JS kept them. */
    if (!free_again || rx->closing || !rx->slots_ref) {
      /* JS keeps views of the slots: they are its memory now. */
      if (rx->slots_ref) napi_delete_reference(env, rx->slots_ref);
      rx->slots_ref = NULL;
      rx->direct = 0;
      rx->free_streak = 0;
      uint8_t *fresh = malloc((size_t)RX_VLEN * RX_SLOT);
      if (fresh) {
        rx->slots = fresh;
        rx->slots_js = 0;
        rx_aim(rx);
      } else if (!rx->closing) {
        /* Nowhere to read to: stop, as on an unusable fd (the engine reports what goes missing). */
        uv_poll_stop(&rx->poll);
      }
    }
  } else if (free_again && !rx->closing && napi_get_arraybuffer_info(env, ab, NULL, &cap) == napi_ok) {
    if (++rx->free_streak >= RX_DIRECT_AFTER && !rx->slots_js) {
      /* Rounds keep coming back: hand over the next ones where they lie (the spare goes). */
      rx->direct = 1;
      if (rx->spare) napi_delete_reference(env, rx->spare);
      rx->spare = NULL;
    } else {
      if (!rx->spare && napi_create_reference(env, ab, 1, &rx->spare) != napi_ok) rx->spare = NULL;
      rx->spare_data = data;
      rx->spare_cap = cap;
    }
  } else {
    rx->free_streak = 0;
    if (rx->spare) {
      /* JS keeps views of it: it is no longer ours to write. */
      napi_delete_reference(env, rx->spare);
      rx->spare = NULL;
    }
  }
}

/* Hands one round's `count` datagrams (already described in meta, at their offsets in a compact
 * copy) to JS. Never lets a JS exception reach libuv: the JS side catches everything, and whatever
 * still escapes is cleared here.
 *
 * Copy mode: the datagrams are copied back to back into one ArrayBuffer, the last round's when JS
 * kept nothing of it. Direct mode, once JS has kept nothing of RX_DIRECT_AFTER rounds in a row (the
 * fragments of large updates, which the engine copies out): JS gets the slots the kernel wrote,
 * with no copy, as long as it keeps nothing; the first round it keeps something of is its memory
 * from then on (JS holds views of it), and reads go to fresh slots, in copy mode again. */
static void rx_deliver(rx_t *rx, int n, uint32_t count, size_t total, uint32_t runs, uint32_t in_runs) {
  napi_env env = rx->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value ab, cb, recv, argv[4], result;
  void *data = NULL;
  napi_status made = napi_generic_failure;
  int direct = rx->direct && rx_slots_buffer(rx, &ab);
  if (rx->direct && !direct) rx->direct = 0;
  if (direct) {
    made = napi_ok;
    /* Offsets into the slots: message i's datagrams lie from i * RX_SLOT on. */
    for (int i = 0, k = 0; i < n && (uint32_t)k < count; i++) {
      if (rx->parts[i] == 0) continue;
      uint32_t at = rx->meta[k * META];
      for (uint32_t j = 0; j < rx->parts[i]; j++, k++) rx->meta[k * META] += (uint32_t)i * RX_SLOT - at;
    }
  } else if (rx->spare && total <= rx->spare_cap && napi_get_reference_value(env, rx->spare, &ab) == napi_ok && ab) {
    data = rx->spare_data;
    made = napi_ok;
  } else {
    /* While rounds come back (large updates, cut into fragments the engine copies out), a fresh
     * buffer gets room for the next rounds too; otherwise exactly this round's bytes (whatever
     * JS keeps a view of keeps the whole buffer). */
    size_t size = rx->spare && total < RX_SPARE_MIN ? RX_SPARE_MIN : total;
    if (rx->spare) {
      napi_delete_reference(env, rx->spare);
      rx->spare = NULL;
    }
    made = napi_create_arraybuffer(env, size, &data, &ab);
  }
  if (made == napi_ok) {
    uint8_t *out = data;
    /* A GRO run's datagrams lie back to back in its slot and stay so in `out`: one copy each. */
    for (int i = 0, k = 0; !direct && i < n && (uint32_t)k < count; i++) {
      if (rx->parts[i] == 0) continue; /* filtered */
      uint32_t at = rx->meta[k * META];
      k += rx->parts[i];
      uint32_t last = (uint32_t)(k - 1) * META;
      memcpy(out + at, rx->iov[i].iov_base, rx->meta[last] + rx->meta[last + 1] - at);
    }
    if (napi_get_reference_value(env, rx->callback, &cb) == napi_ok && napi_get_global(env, &recv) == napi_ok &&
        napi_create_uint32(env, count, &argv[1]) == napi_ok && napi_create_uint32(env, runs, &argv[2]) == napi_ok &&
        napi_create_uint32(env, in_runs, &argv[3]) == napi_ok) {
      argv[0] = ab;
      napi_status s = napi_make_callback(env, rx->async, recv, cb, 4, argv, &result);
      bool free_again = false;
      if (s != napi_ok) {
        bool pending = false;
        napi_value exc;
        if (napi_is_exception_pending(env, &pending) == napi_ok && pending)
          napi_get_and_clear_last_exception(env, &exc);
      } else if (napi_get_value_bool(env, result, &free_again) != napi_ok) {
        free_again = false;
      }
      rx_settle(rx, direct, free_again, ab, data);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void rx_readable(uv_poll_t *h, int status, int events) {
  rx_t *rx = h->data;
  if (rx->closing) return;
  if (status < 0) {
    /* The fd is unusable (e.g. closed under us): stop polling rather than spin. */
    uv_poll_stop(h);
    return;
  }
  for (int round = 0; round < RX_ROUNDS && !rx->closing; round++) {
    for (int i = 0; i < RX_VLEN; i++) {
      rx->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
      rx->msgs[i].msg_hdr.msg_flags = 0;
      rx->msgs[i].msg_hdr.msg_control = rx->control[i];
      rx->msgs[i].msg_hdr.msg_controllen = sizeof(rx->control[i]);
    }
    int n;
    do n = recvmmsg(rx->fd, rx->msgs, RX_VLEN, MSG_DONTWAIT, NULL);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return; /* EAGAIN: drained; any other error: the next wake-up tries again */
    uint32_t count = 0, runs = 0, in_runs = 0;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
      struct sockaddr_in *a = &rx->from[i];
      /* Our own datagrams, looped back by the kernel: skipped before they cost anything. */
      rx->parts[i] = 0;
      if ((rx->own_port >= 0 && a->sin_addr.s_addr == rx->own_ip && ntohs(a->sin_port) == rx->own_port) ||
          (rx->msgs[i].msg_hdr.msg_flags & MSG_TRUNC))
        continue;
      /* A GRO run (a GSO send on loopback, or same-size datagrams a NIC coalesced) comes as one
       * message with its segment size in a cmsg: datagrams of that size, the last maybe shorter. */
      uint32_t len = rx->msgs[i].msg_len, seg = len;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&rx->msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&rx->msgs[i].msg_hdr, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
          int g;
          memcpy(&g, CMSG_DATA(c), sizeof g);
          if (g > 0 && (uint32_t)g < len) seg = (uint32_t)g;
        }
      }
      uint32_t ip = ntohl(a->sin_addr.s_addr), port = ntohs(a->sin_port), used = 0;
      for (uint32_t o = 0; o < len && count < RX_META; o += seg, count++, rx->parts[i]++) {
        uint32_t *m = rx->meta + count * META;
        m[0] = (uint32_t)(total + o);
        m[1] = len - o < seg ? len - o : seg;
        m[2] = ip;
        m[3] = port;
        used = o + m[1];
      }
      total += used;
      if (rx->parts[i] > 1) runs++, in_runs += rx->parts[i];
    }
    if (count > 0) rx_deliver(rx, n, count, total, runs, in_runs);
    if (n < RX_VLEN) return;
  }
}

static napi_value get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "wrong number of arguments");
    return NULL;
  }
  return argv[0];
}

/* rxOpen(fd, ownIp, ownPort, meta: Uint32Array(RX_META * 4), callback(buffer, count, runs, inRuns)) -> handle
 * (runs: GRO reads of more than one datagram in this batch, inRuns: their datagrams) */
static napi_value rx_open(napi_env env, napi_callback_info info) {
  napi_value argv[5], handle, name;
  if (!get_args(env, info, 5, argv)) return NULL;
  int32_t fd, own_port;
  uint32_t own_ip;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_uint32(env, argv[1], &own_ip));
  CHECK(napi_get_value_int32(env, argv[2], &own_port));
  napi_typedarray_type type;
  size_t length;
  void *meta;
  CHECK(napi_get_typedarray_info(env, argv[3], &type, &length, &meta, NULL, NULL));
  if (type != napi_uint32_array || length < RX_META * META) {
    napi_throw_type_error(env, NULL, "meta must be a Uint32Array of at least RX_VLEN * 64 * 4 elements");
    return NULL;
  }
  rx_t *rx = calloc(1, sizeof(rx_t));
  if (!rx) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  rx->slots = malloc((size_t)RX_VLEN * RX_SLOT);
  if (!rx->slots) {
    free(rx);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  rx->env = env;
  rx->fd = -1;
  rx->own_ip = htonl(own_ip);
  rx->own_port = own_port;
  rx->meta = meta;
  rx_aim(rx);
  for (int i = 0; i < RX_VLEN; i++) {
    rx->msgs[i].msg_hdr.msg_iov = &rx->iov[i];
    rx->msgs[i].msg_hdr.msg_iovlen = 1;
    rx->msgs[i].msg_hdr.msg_name = &rx->from[i];
  }
  uv_loop_t *loop;
  int err = 0;
  forget_t *forget = malloc(sizeof(forget_t));
  if (!forget) {
    rx_free(rx);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  if (napi_get_uv_event_loop(env, &loop) != napi_ok ||
      napi_create_reference(env, argv[4], 1, &rx->callback) != napi_ok ||
      napi_create_reference(env, argv[3], 1, &rx->meta_ref) != napi_ok ||
      napi_create_string_utf8(env, "effect-distributor:udp", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, NULL, name, &rx->async) != napi_ok) {
    free(forget);
    rx_free(rx);
    napi_throw_error(env, NULL, "could not set up the receiver");
    return NULL;
  }
  /* We poll and read our own duplicate of node's fd: node closes its fd whenever it likes (an
   * environment teardown closes node's handles before any addon hook runs), and a watcher of ours
   * still waiting in libuv's queue on a closed fd number would abort the loop. node's fd must
   * leave libuv's epoll set properly, though (epoll keys on the open socket, which our duplicate
   * keeps alive, so stale events would come for node's fd number): stopping a throw-away poll
   * handle on it does that, the way libuv does for its own handles. */
  if ((err = uv_poll_init(loop, &forget->poll, fd)) != 0) {
    /* UV_EEXIST: libuv still watches the fd (node's reading was not stopped). */
    free(forget);
    rx_free(rx);
    napi_throw_error(env, uv_err_name(err), uv_strerror(err));
    return NULL;
  }
  uv_poll_stop(&forget->poll);
  uv_close((uv_handle_t *)&forget->poll, forget_closed);
  rx->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (rx->fd < 0 || (err = uv_poll_init(loop, &rx->poll, rx->fd)) != 0) {
    if (rx->fd < 0) err = uv_translate_sys_error(errno);
    rx_free(rx);
    napi_throw_error(env, uv_err_name(err), uv_strerror(err));
    return NULL;
  }
  /* Coalesced runs in one read where the kernel can (UDP_GRO, Linux >= 5.0); a kernel without it
   * refuses the option and datagrams come one per message, as before. */
  int one = 1;
  setsockopt(rx->fd, SOL_UDP, UDP_GRO, &one, sizeof one);
  rx->poll.data = rx;
  if ((err = uv_poll_start(&rx->poll, UV_READABLE, rx_readable)) != 0) {
    rx->closing = 1;
    uv_close((uv_handle_t *)&rx->poll, rx_closed);
    napi_throw_error(env, uv_err_name(err), uv_strerror(err));
    return NULL;
  }
  if (napi_add_async_cleanup_hook(env, rx_cleanup_hook, rx, &rx->hook) != napi_ok) rx->hook = NULL;
  CHECK(napi_create_external(env, rx, NULL, NULL, &handle));
  return handle;
}

/* rxClose(handle): stops polling now (so the fd can be closed right after); memory goes with the
 * handle's close callback. Idempotent. */
static napi_value rx_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  rx_t *rx;
  CHECK(napi_get_value_external(env, argv[0], (void **)&rx));
  rx_stop(rx);
  return NULL;
}

/* sendBatch(fd, bases: ArrayBuffer[], which, offsets, lengths: Uint32Array, count, status: Int32Array(3), gso)
 * -> sent. Datagram i is lengths[i] bytes at offsets[i] of bases[which[i]]: sent from where it lies
 * (one iovec each), no copy. status[1], status[2]: GSO messages of more than one datagram sent, and
 * their datagrams. Returns how many left; when fewer than `count`, status[0] is the errno of the
 * first that did not (EAGAIN: the send buffer is full). */
static napi_value send_batch(napi_env env, napi_callback_info info) {
  napi_value argv[8], result;
  if (!get_args(env, info, 8, argv)) return NULL;
  int32_t fd;
  uint32_t count, nbases;
  bool gso = false;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_array_length(env, argv[1], &nbases));
  CHECK(napi_get_value_uint32(env, argv[5], &count));
  CHECK(napi_get_value_bool(env, argv[7], &gso));
  napi_typedarray_type type;
  size_t len;
  void *arr[4];
  size_t lens_of[4];
  for (int a = 0; a < 3; a++) {
    CHECK(napi_get_typedarray_info(env, argv[2 + a], &type, &lens_of[a], &arr[a], NULL, NULL));
    if (type != napi_uint32_array) {
      napi_throw_type_error(env, NULL, "which, offsets and lengths must be Uint32Arrays");
      return NULL;
    }
  }
  CHECK(napi_get_typedarray_info(env, argv[6], &type, &len, &arr[3], NULL, NULL));
  if (type != napi_int32_array || len < 3 || count > TX_MAX || nbases > TX_MAX || count > lens_of[0] ||
      count > lens_of[1] || count > lens_of[2]) {
    napi_throw_range_error(env, NULL, "bad status, count or bases");
    return NULL;
  }
  uint32_t *which = arr[0], *offsets = arr[1], *lens = arr[2];
  int32_t *status = arr[3];
  uint8_t *base[TX_MAX];
  size_t base_len[TX_MAX];
  for (uint32_t b = 0; b < nbases; b++) {
    napi_value v;
    void *data = NULL;
    CHECK(napi_get_element(env, argv[1], b, &v));
    if (napi_get_arraybuffer_info(env, v, &data, &base_len[b]) != napi_ok) {
      napi_throw_type_error(env, NULL, "bases must be ArrayBuffers");
      return NULL;
    }
    base[b] = data;
  }
  struct iovec iov[TX_MAX];
  for (uint32_t i = 0; i < count; i++) {
    if (which[i] >= nbases || (size_t)offsets[i] + lens[i] > base_len[which[i]]) {
      napi_throw_range_error(env, NULL, "a datagram lies outside its base");
      return NULL;
    }
    iov[i].iov_base = base[which[i]] + offsets[i];
    iov[i].iov_len = lens[i];
  }
  struct mmsghdr msgs[TX_VLEN];
  char control[TX_VLEN][CMSG_SPACE(sizeof(uint16_t))];
  uint32_t runs[TX_VLEN];
  uint32_t done = 0;
  status[0] = status[1] = status[2] = 0;
  while (done < count) {
    /* With gso, each message is a run of datagrams of one size (the last may be shorter): their
     * iovecs and a UDP_SEGMENT cmsg, and the kernel cuts it into exactly these datagrams (a
     * receiver without UDP_GRO gets them one by one, as if sent so). */
    uint32_t n = 0, next = done;
    while (next < count && n < TX_VLEN) {
      uint32_t seg = lens[next], k = 1;
      size_t bytes = seg;
      while (gso && next + k < count && k < GSO_SEGMENTS && lens[next + k] <= seg && bytes + lens[next + k] <= GSO_BYTES) {
        bytes += lens[next + k];
        if (lens[next + k++] < seg) break;
      }
      memset(&msgs[n].msg_hdr, 0, sizeof(struct msghdr));
      msgs[n].msg_hdr.msg_iov = &iov[next];
      msgs[n].msg_hdr.msg_iovlen = k;
      if (k > 1) {
        msgs[n].msg_hdr.msg_control = control[n];
        msgs[n].msg_hdr.msg_controllen = sizeof(control[n]);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[n].msg_hdr);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t g = (uint16_t)seg;
        memcpy(CMSG_DATA(c), &g, sizeof g);
      }
      runs[n++] = k;
      next += k;
    }
    int r;
    do r = sendmmsg(fd, msgs, n, MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      /* EAGAIN: the send buffer is full. EIO / EINVAL with gso: the route cannot segment (no
       * checksum offload, a segment above the MTU); the caller then sends without gso. */
      status[0] = errno;
      break;
    }
    for (int i = 0; i < r; i++) {
      done += runs[i];
      if (runs[i] > 1) status[1]++, status[2] += (int32_t)runs[i];
    }
    /* A short count means the next one failed; sendmmsg reports why on the next call. */
  }
  CHECK(napi_create_uint32(env, done, &result));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"rxOpen", NULL, rx_open, NULL, NULL, NULL, napi_default, NULL},
    {"rxClose", NULL, rx_close, NULL, NULL, NULL, napi_default, NULL},
    {"sendBatch", NULL, send_batch, NULL, NULL, NULL, napi_default, NULL},
    {"poolAlloc", NULL, pool_alloc, NULL, NULL, NULL, napi_default, NULL},
    {"poolStats", NULL, pool_stats, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
