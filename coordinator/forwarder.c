/*
 * forwarder.c: see forwarder.h.
 *
 * Pending requests live in a ring of slots indexed by their upstream id
 * (ids are handed out in sequence, so the live ones are the window
 * [low, next)); a reply finds its request in O(1). Each slot keeps the
 * encoded frame, so re-sending after a failover is a copy.
 *
 * The upstream connection is one uv_tcp to the leader's address; frames are
 * appended to `pending` and written once per loop turn (prepare/check), as
 * rpc_server.c does for replies. A 20 ms timer runs only while requests are
 * waiting: it expires the ones past their deadline, notices a new leader
 * (re-reading the leader znode's copy in member.c costs nothing) and
 * reconnects.
 *
 * Routes for one decision that ask for the same thing are gathered in
 * `open` as they arrive and become one slot (a batch: one Route with a
 * count, several waiters) when something else arrives, at BATCH_MAX, or
 * when the loop turn ends, just before the write.
 */
#include "forwarder.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "log.h"
#include "util.h"

#define TICK_MS 20
#define RECONNECT_MS 100
#define RELABEL_MAX 22 /* what forwarding appends: two tags, two varints */
#define BATCH_MAX 128  /* decisions per coalesced Route (service.c allows 1000) */

typedef struct {
  dsp_rpc_conn *conn;
  uint64_t id;            /* the client's request id */
} waiter;

typedef struct {
  uint64_t uid;           /* 0: free */
  waiter *w;              /* who is waiting: &one, or a batch's malloc'd array */
  unsigned nwait;
  int batch;              /* a coalesced Route: one decision of the reply each */
  waiter one;
  uint8_t *frame;         /* header + Request with id = uid: `small` or malloc'd */
  size_t len;
  uint64_t deadline;
  int sent;
  uint8_t small[64];      /* most requests fit: no malloc per request */
} slot;

typedef struct upconn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  struct dsp_forwarder *f;
  dsp_framer in;
  dsp_buf writing;
  char addr[DSP_ADDR_MAX];
  int connected, closing, write_busy;
} upconn;

struct dsp_forwarder {
  uv_loop_t *loop;
  dsp_member *member;
  uint64_t hold_ms;
  size_t max_frame;       /* the coordinator's, assumed ours; 0: no check */
  slot *slots;
  unsigned cap;           /* power of two */
  uint64_t next, low;     /* live uids are in [low, next) */
  unsigned npending;
  upconn *up;
  dsp_buf out;               /* frames for the upstream, not yet written */
  uint64_t reconnect_at;
  uv_timer_t tick;
  uv_prepare_t prepare;
  uv_check_t check;
  dsp_forwarder_local_cb local;
  dsp_forwarder_ready_cb ready;
  void *local_ctx;
  int64_t highest_epoch;   /* of every reply passed on */
  int closing, handles;
  /* The batch being gathered this loop turn: Routes for the same thing
     (their RouteRequest bytes), sent as one when the turn ends. */
  struct {
    uint8_t route[DSP_ROUTE_SUB_MAX];
    size_t routelen;
    unsigned n;
    waiter w[BATCH_MAX];
  } open;
};

static void up_close(dsp_forwarder *f);
static void pump(dsp_forwarder *f);
static void send_slot(dsp_forwarder *f, slot *s);
static void on_tick(uv_timer_t *t);

/* ---- slots ---------------------------------------------------------------- */

static slot *find(dsp_forwarder *f, uint64_t uid) {
  slot *s = &f->slots[uid & (f->cap - 1)];
  return (uid != 0 && s->uid == uid) ? s : NULL;
}

static void release(dsp_forwarder *f, slot *s) {
  for (unsigned i = 0; i < s->nwait; i++) dsp_rpc_conn_unref(s->w[i].conn);
  if (s->w != &s->one) free(s->w);
  if (s->frame != s->small) free(s->frame);
  memset(s, 0, sizeof(*s));
  f->npending--;
  while (f->low < f->next && f->slots[f->low & (f->cap - 1)].uid != f->low) f->low++;
}

static void answer_error(dsp_forwarder *f, slot *s, int code, const char *msg) {
  for (unsigned i = 0; i < s->nwait; i++)
    dsp_rpc_reply_error(s->w[i].conn, s->w[i].id, 0, code, msg);
  release(f, s);
}

/* 1 when every client waiting on s has gone. */
static int abandoned(const slot *s) {
  for (unsigned i = 0; i < s->nwait; i++)
    if (!dsp_rpc_conn_closed(s->w[i].conn)) return 0;
  return 1;
}

/* The free slot for the next uid, or NULL when the window is full. */
static slot *claim(dsp_forwarder *f) {
  slot *s = &f->slots[f->next & (f->cap - 1)];
  return s->uid == 0 ? s : NULL;
}

/* s (claimed, frame and waiters set) is pending from now on. */
static void enqueue(dsp_forwarder *f, slot *s) {
  s->uid = f->next++;
  s->deadline = uv_now(f->loop) + f->hold_ms;
  s->sent = 0;
  f->npending++;
  if (f->up != NULL && f->up->connected) send_slot(f, s);
  else pump(f);
  if (!uv_is_active((uv_handle_t *)&f->tick) && f->npending > 0)
    uv_timer_start(&f->tick, on_tick, TICK_MS, TICK_MS);
}

/* ---- output --------------------------------------------------------------- */

static void send_slot(dsp_forwarder *f, slot *s) {
  if (dsp_buf_reserve(&f->out, s->len) == 0) {
    memcpy(f->out.p + f->out.len, s->frame, s->len);
    f->out.len += s->len;
    s->sent = 1;
  }
}

static void on_up_write(uv_write_t *w, int status) {
  upconn *u = w->data;
  u->write_busy = 0;
  u->writing.len = 0;
  if (status < 0 && !u->closing) {
    DSP_WARN("forwarding to %s: %s", u->addr, uv_strerror(status));
    if (u->f->up == u) up_close(u->f);
  }
}

static void flush(dsp_forwarder *f) {
  upconn *u = f->up;
  dsp_buf t;
  uv_buf_t b;
  int rc;
  if (u == NULL || !u->connected || u->closing || u->write_busy || f->out.len == 0) return;
  /* Written at once when the socket takes it all (no write request). */
  b = uv_buf_init((char *)f->out.p, (unsigned)f->out.len);
  rc = uv_try_write((uv_stream_t *)&u->tcp, &b, 1);
  if (rc == (int)f->out.len) {
    f->out.len = 0;
    return;
  }
  if (rc < 0 && rc != UV_EAGAIN) {
    DSP_WARN("forwarding to %s: %s", u->addr, uv_strerror(rc));
    up_close(f);
    return;
  }
  if (rc < 0) rc = 0;
  t = u->writing;
  u->writing = f->out;
  f->out = t;
  f->out.len = 0;
  b = uv_buf_init((char *)u->writing.p + rc, (unsigned)(u->writing.len - (size_t)rc));
  u->wreq.data = u;
  if (uv_write(&u->wreq, (uv_stream_t *)&u->tcp, &b, 1, on_up_write) != 0) {
    u->writing.len = 0;
    up_close(f);
    return;
  }
  u->write_busy = 1;
}

/* Send the batch gathered so far as one Route (count = its size). */
static void batch_close(dsp_forwarder *f) {
  unsigned n = f->open.n;
  size_t len = DSP_ROUTE_BATCH_FRAME_MAX(f->open.routelen);
  slot *s;
  if (n == 0) return;
  f->open.n = 0;
  s = claim(f);
  if (s != NULL) {
    s->frame = len <= sizeof(s->small) ? s->small : malloc(len);
    s->w = n == 1 ? &s->one : malloc(n * sizeof(waiter));
  }
  if (s == NULL || s->frame == NULL || s->w == NULL) {
    if (s != NULL && s->frame != s->small) free(s->frame);
    if (s != NULL && s->w != &s->one) free(s->w);
    for (unsigned i = 0; i < n; i++) {
      dsp_rpc_reply_error(f->open.w[i].conn, f->open.w[i].id, 0, DSP_PB(ERROR_CODE__BUSY),
                          s == NULL ? "too many requests waiting for the coordinator"
                                    : "out of memory");
      dsp_rpc_conn_unref(f->open.w[i].conn);
    }
    if (s != NULL) memset(s, 0, sizeof(*s));
    return;
  }
  memcpy(s->w, f->open.w, n * sizeof(waiter));
  s->nwait = n;
  s->batch = 1;
  s->len = dsp_pb_route_batch(s->frame, f->open.route, f->open.routelen, n, f->next);
  enqueue(f, s);
}

static void on_prepare(uv_prepare_t *p) {
  batch_close(p->data);
  flush(p->data);
}
static void on_check(uv_check_t *c) {
  batch_close(c->data);
  flush(c->data);
}

/* ---- upstream connection ------------------------------------------------- */

static void forwarder_free(dsp_forwarder *f) {
  free(f->slots);
  free(f->out.p);
  free(f);
}

static void on_up_closed(uv_handle_t *h) {
  upconn *u = h->data;
  dsp_forwarder *f = u->f;
  dsp_framer_free(&u->in);
  free(u->writing.p);
  free(u);
  if (--f->handles == 0) forwarder_free(f);
}

/* Drop the connection; what was sent on it and not answered goes again. */
static void up_close(dsp_forwarder *f) {
  upconn *u = f->up;
  if (u == NULL) return;
  f->up = NULL;
  u->closing = 1;
  uv_close((uv_handle_t *)&u->tcp, on_up_closed);
  f->out.len = 0;
  for (uint64_t id = f->low; id < f->next; id++) {
    slot *s = find(f, id);
    if (s != NULL && s->sent) {
      s->sent = 0;
    }
  }
  f->reconnect_at = uv_now(f->loop) + RECONNECT_MS;
}

/*
 * What the forwarder needs of a Response, read without decoding it all:
 * its id (field 1), epoch (2) and, for an error (3), the code (its field 1).
 * Returns 0, or -1 if the bytes are not a well-formed message.
 */
static int peek_reply(const uint8_t *p, size_t n, uint64_t *id, int64_t *epoch, int *code,
                      const uint8_t **route, size_t *routelen) {
  size_t off = 0;
  *id = 0;
  *epoch = 0;
  *code = 0;
  *route = NULL;
  *routelen = 0;
  while (off < n) {
    uint64_t tag, v;
    if (dsp_varint_get(p, n, &off, &tag) != 0) return -1;
    switch (tag & 7) {
      case 0:
        if (dsp_varint_get(p, n, &off, &v) != 0) return -1;
        if (tag >> 3 == 1) *id = v;
        if (tag >> 3 == 2) *epoch = (int64_t)v;
        break;
      case 1: off += 8; break;
      case 5: off += 4; break;
      case 2:
        if (dsp_varint_get(p, n, &off, &v) != 0 || v > n - off) return -1;
        if (tag >> 3 == 4) { /* RouteReply */
          *route = p + off;
          *routelen = (size_t)v;
        }
        if (tag >> 3 == 3) { /* Error { code = 1; message = 2; } */
          size_t e = off;
          uint64_t etag, ev;
          while (e < off + v) {
            if (dsp_varint_get(p, off + v, &e, &etag) != 0) return -1;
            if ((etag & 7) == 0) {
              if (dsp_varint_get(p, off + v, &e, &ev) != 0) return -1;
              if (etag >> 3 == 1) *code = (int)ev;
            } else if ((etag & 7) == 2) {
              if (dsp_varint_get(p, off + v, &e, &ev) != 0 || ev > off + v - e) return -1;
              e += ev;
            } else {
              return -1;
            }
          }
        }
        off += v;
        break;
      default: return -1;
    }
    if (off > n) return -1;
  }
  return 0;
}

/* A batch's RouteReply: its decisions, one to each client in order. */
static void split_reply(slot *s, int64_t epoch, const uint8_t *route, size_t routelen) {
  size_t off = 0, declen = 0;
  const uint8_t *dec = NULL;
  unsigned i = 0;
  for (; i < s->nwait; i++) {
    uint8_t head[DSP_ROUTE_REPLY_HEAD_MAX];
    if (dsp_pb_next_decision(route, routelen, &off, &dec, &declen) != 1) break;
    dsp_rpc_reply_raw(s->w[i].conn, head,
                      dsp_pb_route_reply_head(head, s->w[i].id, epoch, declen), dec, declen);
  }
  if (i < s->nwait)
    DSP_WARN("forwarding: a batch of %u routes got only %u decisions", s->nwait, i);
  for (; i < s->nwait; i++)
    dsp_rpc_reply_error(s->w[i].conn, s->w[i].id, 0, DSP_PB(ERROR_CODE__INTERNAL),
                        "the coordinator's reply was short of decisions");
}

static void on_reply(dsp_forwarder *f, const uint8_t *p, size_t n) {
  uint64_t id;
  int64_t epoch;
  int code;
  uint8_t suffix[11];
  const uint8_t *route;
  size_t routelen;
  slot *s;
  if (peek_reply(p, n, &id, &epoch, &code, &route, &routelen) != 0) {
    DSP_WARN("forwarding: undecodable reply from %s; reconnecting", f->up ? f->up->addr : "?");
    up_close(f);
    return;
  }
  s = find(f, id);
  if (s == NULL) return; /* answered or expired already */
  if (epoch != 0 && epoch < f->highest_epoch) {
    /* A deposed coordinator: never pass it on. */
    s->sent = 0;
    up_close(f);
    return;
  }
  if (code == DSP_PB(ERROR_CODE__NOT_COORDINATOR)) {
    /* It stepped down: wait for the leader znode to name the next one. */
    s->sent = 0;
    up_close(f);
    return;
  }
  if (epoch > f->highest_epoch) f->highest_epoch = epoch;
  if (s->batch && code == 0) {
    split_reply(s, epoch, route, routelen);
  } else {
    /* The reply as it came, or an error for all of a batch: relabelled. */
    suffix[0] = 0x08; /* field 1 (id), varint: the client's id wins */
    for (unsigned i = 0; i < s->nwait; i++)
      dsp_rpc_reply_raw(s->w[i].conn, p, n, suffix, 1 + dsp_varint_put(suffix + 1, s->w[i].id));
  }
  release(f, s);
}

static void on_up_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf) {
  upconn *u = h->data;
  uint8_t *p;
  size_t len;
  (void)sz;
  if (dsp_framer_reserve(&u->in, 65536, &p, &len) != 0) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init((char *)p, (unsigned)(len > UINT32_MAX ? UINT32_MAX : len));
}

static void on_up_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  upconn *u = st->data;
  dsp_forwarder *f = u->f;
  const uint8_t *p;
  size_t len;
  int rc;
  (void)buf;
  if (u->closing || f->up != u) return;
  if (n < 0) {
    DSP_INFO("forwarding: connection to %s closed (%s)", u->addr,
             n == UV_EOF ? "by the peer" : uv_strerror((int)n));
    up_close(f);
    return;
  }
  dsp_framer_commit(&u->in, (size_t)n);
  while (f->up == u && (rc = dsp_framer_next(&u->in, &p, &len)) == DSP_FRAME_OK)
    on_reply(f, p, len);
  if (f->up == u && rc == DSP_FRAME_TOO_LARGE) up_close(f);
}

static void on_up_connect(uv_connect_t *req, int status) {
  upconn *u = req->data;
  dsp_forwarder *f = u->f;
  if (u->closing || f->up != u) return;
  if (status < 0) {
    DSP_WARN("forwarding: cannot connect to the coordinator at %s: %s", u->addr,
             uv_strerror(status));
    up_close(f);
    return;
  }
  u->connected = 1;
  uv_tcp_nodelay(&u->tcp, 1);
  uv_read_start((uv_stream_t *)&u->tcp, on_up_alloc, on_up_read);
  DSP_INFO("forwarding to the coordinator at %s", u->addr);
  pump(f);
}

static void up_open(dsp_forwarder *f, const char *addr) {
  char host[DSP_ADDR_MAX];
  int port;
  struct sockaddr_storage ss;
  upconn *u;
  if (dsp_parse_hostport(addr, host, sizeof(host), &port) != 0 ||
      (strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss)
                         : uv_ip4_addr(host, port, (struct sockaddr_in *)&ss)) != 0) {
    DSP_WARN("forwarding: leader address '%s' is not a numeric host:port", addr);
    f->reconnect_at = uv_now(f->loop) + RECONNECT_MS * 10;
    return;
  }
  u = calloc(1, sizeof(*u));
  if (u == NULL) return;
  u->f = f;
  snprintf(u->addr, sizeof(u->addr), "%s", addr);
  dsp_framer_init(&u->in, 64u << 20);
  uv_tcp_init(f->loop, &u->tcp);
  u->tcp.data = u;
  u->creq.data = u;
  f->handles++;
  f->up = u;
  if (uv_tcp_connect(&u->creq, &u->tcp, (const struct sockaddr *)&ss, on_up_connect) != 0)
    up_close(f);
}

/* ---- the pump ------------------------------------------------------------- */

/* A batch, once this member coordinates: each of its Routes, decided here. */
static void answer_batch_here(dsp_forwarder *f, slot *s) {
  waiter w[BATCH_MAX];
  unsigned n = s->nwait;
  dsp_pb_request *req =
      dispatcher__v1__request__unpack(NULL, s->len - DSP_FRAME_HEADER, s->frame + DSP_FRAME_HEADER);
  if (req == NULL || req->body_case != DSP_PB(REQUEST__BODY_ROUTE)) {
    if (req != NULL) dispatcher__v1__request__free_unpacked(req, NULL);
    answer_error(f, s, DSP_PB(ERROR_CODE__INTERNAL), "cannot re-read a held request");
    return;
  }
  memcpy(w, s->w, n * sizeof(*w));
  for (unsigned i = 0; i < n; i++) dsp_rpc_conn_ref(w[i].conn);
  release(f, s);
  req->route->count = 1;
  req->origin_id = 0;
  for (unsigned i = 0; i < n; i++) {
    uint8_t raw[DSP_ROUTE_BATCH_FRAME_MAX(DSP_ROUTE_SUB_MAX)];
    size_t len;
    req->id = w[i].id;
    if (dispatcher__v1__request__get_packed_size(req) <= sizeof(raw)) {
      len = dispatcher__v1__request__pack(req, raw);
      f->local(f->local_ctx, w[i].conn, req, raw, len);
    } else { /* cannot be: the batch came from a Route of at most that */
      dsp_rpc_reply_error(w[i].conn, w[i].id, 0, DSP_PB(ERROR_CODE__INTERNAL),
                          "cannot re-read a held request");
    }
    dsp_rpc_conn_unref(w[i].conn);
  }
  dispatcher__v1__request__free_unpacked(req, NULL);
}

/* Move requests along: expire, hand to the local service, (re)connect, send. */
static void pump(dsp_forwarder *f) {
  const dsp_leader_info *l = dsp_member_leader(f->member);
  uint64_t now = uv_now(f->loop);
  int coordinating = dsp_member_is_coordinator(f->member, NULL);
  int local = coordinating && f->ready(f->local_ctx);

  if (f->closing) return;
  for (uint64_t id = f->low; id < f->next; id++) {
    slot *s = find(f, id);
    if (s == NULL || s->sent) continue;
    if (abandoned(s)) {
      release(f, s); /* its clients are gone */
    } else if (local && s->batch) {
      answer_batch_here(f, s);
    } else if (local) {
      /* We are the coordinator now: answer it ourselves. */
      dsp_pb_request *req =
          dispatcher__v1__request__unpack(NULL, s->len - DSP_FRAME_HEADER, s->frame + DSP_FRAME_HEADER);
      if (req != NULL) {
        dsp_rpc_conn *c = s->one.conn;
        size_t flen = s->len;
        uint8_t *frame = s->frame != s->small ? s->frame : malloc(flen);
        if (frame == NULL) {
          dispatcher__v1__request__free_unpacked(req, NULL);
          answer_error(f, s, DSP_PB(ERROR_CODE__BUSY), "out of memory");
          continue;
        }
        if (s->frame == s->small) memcpy(frame, s->small, flen);
        req->id = s->one.id;
        s->frame = NULL; /* ours now */
        dsp_rpc_conn_ref(c);
        release(f, s);
        f->local(f->local_ctx, c, req, frame + DSP_FRAME_HEADER, flen - DSP_FRAME_HEADER);
        dsp_rpc_conn_unref(c);
        dispatcher__v1__request__free_unpacked(req, NULL);
        free(frame);
      } else {
        answer_error(f, s, DSP_PB(ERROR_CODE__INTERNAL), "cannot re-read a held request");
      }
    } else if (now >= s->deadline) {
      answer_error(f, s, DSP_PB(ERROR_CODE__NO_COORDINATOR),
                   "no coordinator answered before the deadline");
    }
  }
  if (coordinating) {
    up_close(f); /* answered here once ready */
    return;
  }
  /* The connection should go to the current leader, unless that is us
     (about to coordinate: hold on). */
  if (f->up != NULL && (!l->known || strcmp(f->up->addr, l->addr) != 0 ||
                        strcmp(l->id, dsp_member_id(f->member)) == 0))
    up_close(f);
  if (f->up == NULL && l->known && f->npending > 0 && now >= f->reconnect_at &&
      strcmp(l->id, dsp_member_id(f->member)) != 0)
    up_open(f, l->addr);
  if (f->up != NULL && f->up->connected)
    for (uint64_t id = f->low; id < f->next; id++) {
      slot *s = find(f, id);
      if (s != NULL && !s->sent) send_slot(f, s);
    }
}

static void on_tick(uv_timer_t *t) {
  dsp_forwarder *f = t->data;
  pump(f);
  if (f->npending == 0) uv_timer_stop(&f->tick);
}

/* ---- API ------------------------------------------------------------------ */

dsp_forwarder *dsp_forwarder_new(uv_loop_t *loop, dsp_member *m, uint64_t hold_ms,
                                 unsigned max_pending, dsp_forwarder_local_cb local,
                                 dsp_forwarder_ready_cb ready, void *local_ctx) {
  dsp_forwarder *f = calloc(1, sizeof(*f));
  unsigned cap = 1024;
  if (f == NULL) return NULL;
  while (cap < max_pending) cap *= 2;
  f->slots = calloc(cap, sizeof(*f->slots));
  if (f->slots == NULL) {
    free(f);
    return NULL;
  }
  f->cap = cap;
  f->next = f->low = 1;
  f->loop = loop;
  f->member = m;
  f->hold_ms = hold_ms;
  f->local = local;
  f->ready = ready;
  f->local_ctx = local_ctx;
  uv_timer_init(loop, &f->tick);
  uv_prepare_init(loop, &f->prepare);
  uv_check_init(loop, &f->check);
  f->tick.data = f->prepare.data = f->check.data = f;
  uv_prepare_start(&f->prepare, on_prepare);
  uv_check_start(&f->check, on_check);
  uv_unref((uv_handle_t *)&f->prepare);
  uv_unref((uv_handle_t *)&f->check);
  f->handles = 3;
  return f;
}

void dsp_forwarder_set_max_frame(dsp_forwarder *f, size_t max_frame) {
  f->max_frame = max_frame;
}

void dsp_forwarder_submit(dsp_forwarder *f, dsp_rpc_conn *c, const dsp_pb_envelope *env,
                          uint64_t client_id, const uint8_t *raw, size_t rawlen) {
  slot *s;
  size_t n;
  dsp_pb_envelope scanned;
  if (f->max_frame != 0 && rawlen + RELABEL_MAX > f->max_frame) {
    /* With our two fields it would be over the coordinator's limit, which
       answers that by closing the link every forwarded request shares. */
    char msg[160];
    snprintf(msg, sizeof(msg),
             "request of %zu bytes is too large to forward (at most %zu, the frame limit "
             "less %d)", rawlen, f->max_frame - RELABEL_MAX, RELABEL_MAX);
    dsp_rpc_reply_error(c, client_id, 0, DSP_PB(ERROR_CODE__TOO_LARGE), msg);
    return;
  }
  if (f->closing) {
    dsp_rpc_reply_error(c, client_id, 0, DSP_PB(ERROR_CODE__NO_COORDINATOR), "shutting down");
    return;
  }
  if (env == NULL && dsp_pb_peek(raw, rawlen, &scanned) == 0) env = &scanned;
  if (env != NULL && env->single &&
      (f->max_frame == 0 ||
       DSP_ROUTE_BATCH_FRAME_MAX(env->routelen) - DSP_FRAME_HEADER <= f->max_frame)) {
    /* Gathered with the other Routes for the same thing this turn. */
    if (f->open.n > 0 && (env->routelen != f->open.routelen ||
                          memcmp(env->route, f->open.route, env->routelen) != 0))
      batch_close(f);
    if (f->open.n == 0) {
      memcpy(f->open.route, env->route, env->routelen);
      f->open.routelen = env->routelen;
    }
    f->open.w[f->open.n].conn = c;
    f->open.w[f->open.n].id = client_id;
    f->open.n++;
    dsp_rpc_conn_ref(c);
    if (f->open.n == BATCH_MAX) batch_close(f);
    return;
  }
  s = claim(f);
  if (s == NULL) {
    dsp_rpc_reply_error(c, client_id, 0, DSP_PB(ERROR_CODE__BUSY),
                        "too many requests waiting for the coordinator");
    return;
  }
  n = DSP_FRAME_HEADER + rawlen + RELABEL_MAX;
  s->frame = n <= sizeof(s->small) ? s->small : malloc(n);
  if (s->frame == NULL) {
    dsp_rpc_reply_error(c, client_id, 0, DSP_PB(ERROR_CODE__BUSY), "out of memory");
    return;
  }
  /* The client's bytes, then origin_id (field 14) = the client's id, and
     id (field 1) = ours: the last value of a field wins. */
  memcpy(s->frame + DSP_FRAME_HEADER, raw, rawlen);
  n = rawlen;
  s->frame[DSP_FRAME_HEADER + n++] = 0x70;
  n += dsp_varint_put(s->frame + DSP_FRAME_HEADER + n, client_id);
  s->frame[DSP_FRAME_HEADER + n++] = 0x08;
  n += dsp_varint_put(s->frame + DSP_FRAME_HEADER + n, f->next);
  dsp_frame_put_header(s->frame, (uint32_t)n);
  s->len = n + DSP_FRAME_HEADER;
  s->one.conn = c;
  s->one.id = client_id;
  s->w = &s->one;
  s->nwait = 1;
  dsp_rpc_conn_ref(c);
  enqueue(f, s);
}

void dsp_forwarder_poke(dsp_forwarder *f) {
  if (f->npending > 0) pump(f);
}

static void on_handle_closed(uv_handle_t *h) {
  dsp_forwarder *f = h->data;
  if (--f->handles == 0) forwarder_free(f);
}

void dsp_forwarder_close(dsp_forwarder *f) {
  if (f == NULL || f->closing) return;
  for (unsigned i = 0; i < f->open.n; i++) {
    dsp_rpc_reply_error(f->open.w[i].conn, f->open.w[i].id, 0,
                        DSP_PB(ERROR_CODE__NO_COORDINATOR), "shutting down");
    dsp_rpc_conn_unref(f->open.w[i].conn);
  }
  f->open.n = 0;
  for (uint64_t id = f->low; id < f->next; id++) {
    slot *s = find(f, id);
    if (s != NULL) answer_error(f, s, DSP_PB(ERROR_CODE__NO_COORDINATOR), "shutting down");
  }
  up_close(f);
  f->closing = 1;
  uv_close((uv_handle_t *)&f->tick, on_handle_closed);
  uv_close((uv_handle_t *)&f->prepare, on_handle_closed);
  uv_close((uv_handle_t *)&f->check, on_handle_closed);
}

