/*
 * rpc_server.c: see rpc_server.h.
 *
 * Writes: replies are packed straight into the connection's `pending`
 * buffer. Before the loop blocks (uv_prepare) and right after it polled
 * (uv_check), every connection with pending bytes swaps them into `writing`
 * and issues one uv_write: many replies, one syscall, as redis does in
 * beforeSleep. While a write is in flight new replies accumulate in
 * `pending`.
 *
 * Lifetime: a connection is freed when its two handles (tcp, idle timer)
 * are closed and no one holds a reference (the request handler may hold
 * some while answers are outstanding, the dirty list holds one while
 * queued for a flush).
 */
#include "rpc_server.h"

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fifo.h"
#include "frame.h"
#include "log.h"
#include "util.h"

#define READ_CHUNK 65536

struct dsp_rpc_conn {
  uv_tcp_t tcp;
  uv_timer_t idle;
  uv_write_t wreq;
  dsp_rpc_server *srv;
  dsp_framer in;
  dsp_buf writing, pending;
  int handles_open;
  int refs;
  unsigned closing : 1, write_busy : 1, dirty : 1, paused : 1, close_after_flush : 1;
  dsp_fifo_link open;          /* on the server's `conns` until closing */
  dsp_rpc_conn *next_dirty;
};

/*
 * Requests are decoded into an arena that is emptied after each request:
 * protobuf-c would otherwise malloc every submessage and string and free
 * them one by one (a tenth of a follower's time under load). Decoding
 * allocates from `first`; what does not fit goes to malloc'd blocks kept
 * until the reset.
 */
#define ARENA_FIRST 16384

typedef struct arena_block {
  struct arena_block *next;
  max_align_t data[];
} arena_block;

typedef struct {
  ProtobufCAllocator pb;
  int busy;              /* a request decoded here is being handled */
  size_t used;
  arena_block *more;
  _Alignas(max_align_t) unsigned char first[ARENA_FIRST];
} arena;

struct dsp_rpc_server {
  arena arena;
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_prepare_t prepare;
  uv_check_t check;
  dsp_rpc_limits lim;
  dsp_rpc_request_cb cb;
  dsp_rpc_raw_cb raw;
  void *ctx;
  dsp_fifo conns;             /* open connections (dsp_rpc_conn.open) */
  dsp_rpc_conn *dirty;
  int listening;
  int closing;
  int handles_open;
  int nconns;                 /* allocated, including closing ones */
};

static void conn_close(dsp_rpc_conn *c);
static void process_frames(dsp_rpc_conn *c);

const char *dsp_rpc_code_name(int code) {
  const ProtobufCEnumValue *v =
      protobuf_c_enum_descriptor_get_value(&dispatcher__v1__error_code__descriptor, code);
  return v ? v->name : "UNKNOWN";
}

/* ---- decoding arena ------------------------------------------------------ */

static void *arena_alloc(void *data, size_t size) {
  arena *a = data;
  size_t need = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
  arena_block *b;
  if (need >= size && need <= ARENA_FIRST - a->used) {
    void *p = a->first + a->used;
    a->used += need;
    return p;
  }
  if (size > SIZE_MAX - sizeof(*b) || (b = malloc(sizeof(*b) + size)) == NULL) return NULL;
  b->next = a->more;
  a->more = b;
  return b->data;
}

static void arena_free(void *data, void *p) {
  (void)data;
  (void)p; /* everything goes at arena_reset() */
}

static void arena_reset(arena *a) {
  while (a->more != NULL) {
    arena_block *b = a->more;
    a->more = b->next;
    free(b);
  }
  a->used = 0;
}

/* ---- lifetime ------------------------------------------------------------ */

static void server_maybe_free(dsp_rpc_server *s) {
  if (s->closing && s->handles_open == 0 && s->nconns == 0) {
    arena_reset(&s->arena);
    free(s);
  }
}

static void conn_free(dsp_rpc_conn *c) {
  dsp_rpc_server *s = c->srv;
  dsp_framer_free(&c->in);
  free(c->writing.p);
  free(c->pending.p);
  free(c);
  s->nconns--;
  server_maybe_free(s);
}

void dsp_rpc_conn_ref(dsp_rpc_conn *c) { c->refs++; }

void dsp_rpc_conn_unref(dsp_rpc_conn *c) {
  assert(c->refs > 0);
  if (--c->refs == 0 && c->handles_open == 0) conn_free(c);
}

int dsp_rpc_conn_closed(const dsp_rpc_conn *c) { return c->closing; }

static void on_conn_handle_closed(uv_handle_t *h) {
  dsp_rpc_conn *c = h->data;
  if (--c->handles_open == 0 && c->refs == 0) conn_free(c);
}

static void conn_close(dsp_rpc_conn *c) {
  dsp_rpc_server *s = c->srv;
  if (c->closing) return;
  c->closing = 1;
  dsp_fifo_remove(&s->conns, &c->open);
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->idle, on_conn_handle_closed);
}

/* ---- writing ------------------------------------------------------------- */

static size_t unsent(const dsp_rpc_conn *c) { return c->writing.len + c->pending.len; }

static void mark_dirty(dsp_rpc_conn *c) {
  if (c->dirty) return;
  c->dirty = 1;
  c->refs++; /* the dirty list's reference */
  c->next_dirty = c->srv->dirty;
  c->srv->dirty = c;
}

static void flush_conn(dsp_rpc_conn *c);
static void resume_reading(dsp_rpc_conn *c);

static void maybe_resume(dsp_rpc_conn *c) {
  if (!c->paused || c->closing || unsent(c) > c->srv->lim.max_output / 2) return;
  c->paused = 0;
  resume_reading(c);
}

static void on_write(uv_write_t *w, int status) {
  dsp_rpc_conn *c = w->data;
  c->write_busy = 0;
  c->writing.len = 0;
  if (c->closing) {
    dsp_rpc_conn_unref(c);
    return;
  }
  if (status < 0) {
    DSP_DEBUG("rpc: write failed: %s", uv_strerror(status));
    conn_close(c);
  } else if (c->pending.len > 0) {
    flush_conn(c);
  } else if (c->close_after_flush) {
    conn_close(c);
  } else if (c->paused) {
    maybe_resume(c);
  }
  dsp_rpc_conn_unref(c); /* the write's reference */
}

static void flush_conn(dsp_rpc_conn *c) {
  dsp_buf t;
  uv_buf_t b;
  int rc;
  if (c->closing || c->write_busy || c->pending.len == 0) return;
  /* Usually everything fits in the socket buffer: write it now, with no
     write request (whose completion costs libuv 1.44 an epoll_ctl). */
  b = uv_buf_init((char *)c->pending.p, (unsigned)c->pending.len);
  rc = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (rc == (int)c->pending.len) {
    c->pending.len = 0;
    if (c->close_after_flush) conn_close(c);
    else if (c->paused) maybe_resume(c);
    return;
  }
  if (rc < 0 && rc != UV_EAGAIN) {
    DSP_DEBUG("rpc: write failed: %s", uv_strerror(rc));
    conn_close(c);
    return;
  }
  if (rc < 0) rc = 0;
  /* The rest waits for the socket to drain. */
  t = c->writing;
  c->writing = c->pending;
  c->pending = t;
  c->pending.len = 0;
  b = uv_buf_init((char *)c->writing.p + rc, (unsigned)(c->writing.len - (size_t)rc));
  c->wreq.data = c;
  rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (rc != 0) {
    c->writing.len = 0;
    conn_close(c);
    return;
  }
  c->write_busy = 1;
  c->refs++;
}

static void flush_all(dsp_rpc_server *s) {
  while (s->dirty != NULL) {
    dsp_rpc_conn *c = s->dirty;
    s->dirty = c->next_dirty;
    c->dirty = 0;
    flush_conn(c);
    dsp_rpc_conn_unref(c);
  }
}

static void on_prepare(uv_prepare_t *p) { flush_all(p->data); }
static void on_check(uv_check_t *p) { flush_all(p->data); }

/* Room for a frame of `n` bytes at the end of `pending`; NULL (and the
   connection closed) if it cannot be had. */
static uint8_t *frame_space(dsp_rpc_conn *c, size_t n) {
  if (n > UINT32_MAX || dsp_buf_reserve(&c->pending, n + DSP_FRAME_HEADER) != 0) {
    DSP_ERROR("rpc: cannot queue a reply of %zu bytes; closing the connection", n);
    conn_close(c);
    return NULL;
  }
  dsp_frame_put_header(c->pending.p + c->pending.len, (uint32_t)n);
  return c->pending.p + c->pending.len + DSP_FRAME_HEADER;
}

/* The frame of `n` bytes written at frame_space() is queued. */
static void frame_queued(dsp_rpc_conn *c, size_t n) {
  c->pending.len += n + DSP_FRAME_HEADER;
  mark_dirty(c);
  /* Backpressure: a client that does not read its replies stops being read. */
  if (!c->paused && unsent(c) > c->srv->lim.max_output) {
    c->paused = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
  }
}

void dsp_rpc_reply(dsp_rpc_conn *c, const dsp_pb_response *resp) {
  size_t n;
  uint8_t *p;
  if (c->closing) return;
  n = dispatcher__v1__response__get_packed_size(resp);
  if ((p = frame_space(c, n)) == NULL) return;
  dispatcher__v1__response__pack(resp, p);
  frame_queued(c, n);
}

void dsp_rpc_reply_raw(dsp_rpc_conn *c, const uint8_t *msg, size_t len, const uint8_t *suffix,
                       size_t slen) {
  uint8_t *p;
  if (c->closing || (p = frame_space(c, len + slen)) == NULL) return;
  memcpy(p, msg, len);
  if (slen) memcpy(p + len, suffix, slen);
  frame_queued(c, len + slen);
}

void dsp_rpc_reply_error(dsp_rpc_conn *c, uint64_t id, int64_t epoch, int code,
                         const char *message) {
  dsp_pb_response r = DISPATCHER__V1__RESPONSE__INIT;
  dsp_pb_error e = DISPATCHER__V1__ERROR__INIT;
  e.code = (dsp_pb_code)code;
  e.message = (char *)message;
  r.id = id;
  r.epoch = epoch;
  r.body_case = DSP_PB(RESPONSE__BODY_ERROR);
  r.error = &e;
  dsp_rpc_reply(c, &r);
}

/* ---- reading ------------------------------------------------------------- */

static void on_idle(uv_timer_t *t) {
  dsp_rpc_conn *c = t->data;
  if (dsp_framer_buffered(&c->in) == 0) return;
  DSP_WARN("rpc: dropping a client that left %zu bytes of an unfinished frame for %llu ms",
           dsp_framer_buffered(&c->in), (unsigned long long)c->srv->lim.idle_timeout_ms);
  conn_close(c);
}

static void bad_input(dsp_rpc_conn *c, uint64_t id, int code, const char *msg) {
  DSP_WARN("rpc: %s; answering %s and closing the connection", msg, dsp_rpc_code_name(code));
  dsp_rpc_reply_error(c, id, 0, code, msg);
  c->close_after_flush = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
}

static void process_frames(dsp_rpc_conn *c) {
  const uint8_t *payload;
  size_t len;
  int rc;
  while (!c->closing && !c->close_after_flush && !c->paused) {
    rc = dsp_framer_next(&c->in, &payload, &len);
    if (rc == DSP_FRAME_NEED_MORE) break;
    if (rc == DSP_FRAME_TOO_LARGE) {
      char msg[128];
      snprintf(msg, sizeof(msg), "frame of %u bytes is over the limit of %zu", c->in.bad_len,
               c->srv->lim.max_frame);
      bad_input(c, 0, DSP_PB(ERROR_CODE__TOO_LARGE), msg);
      break;
    }
    if (c->srv->raw != NULL) {
      int handled, last;
      c->refs++; /* the handler may close or release the connection */
      handled = c->srv->raw(c->srv->ctx, c, payload, len);
      last = c->refs == 1 && c->handles_open == 0;
      dsp_rpc_conn_unref(c);
      if (last) return;
      if (handled) continue;
    }
    /* The arena, unless a handler up the stack still uses it. */
    arena *a = c->srv->arena.busy ? NULL : &c->srv->arena;
    ProtobufCAllocator *pa = a ? &a->pb : NULL;
    dsp_pb_request *req = dispatcher__v1__request__unpack(pa, len, payload);
    if (req == NULL || req->body_case == DSP_PB(REQUEST__BODY__NOT_SET)) {
      uint64_t id = req ? req->id : 0;
      if (a) arena_reset(a);
      else if (req) dispatcher__v1__request__free_unpacked(req, NULL);
      bad_input(c, id, DSP_PB(ERROR_CODE__BAD_REQUEST),
                req ? "unknown or missing request body" : "undecodable request");
      break;
    }
    c->refs++; /* the handler may close or release the connection */
    if (a) a->busy = 1;
    c->srv->cb(c->srv->ctx, c, req, payload, len);
    if (a) {
      a->busy = 0;
      arena_reset(a); /* req and everything in it */
    } else {
      dispatcher__v1__request__free_unpacked(req, NULL);
    }
    {
      /* Ours the last reference of a closed connection: it goes now. */
      int last = c->refs == 1 && c->handles_open == 0;
      dsp_rpc_conn_unref(c);
      if (last) return;
    }
  }
  if (c->closing) return;
  if (dsp_framer_buffered(&c->in) > 0 && !c->close_after_flush)
    uv_timer_start(&c->idle, on_idle, c->srv->lim.idle_timeout_ms, 0);
  else
    uv_timer_stop(&c->idle);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  dsp_rpc_conn *c = h->data;
  uint8_t *p;
  size_t len;
  (void)suggested;
  if (dsp_framer_reserve(&c->in, READ_CHUNK, &p, &len) != 0) {
    *buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS: the read fails, we close */
    return;
  }
  *buf = uv_buf_init((char *)p, (unsigned)(len > UINT32_MAX ? UINT32_MAX : len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  dsp_rpc_conn *c = st->data;
  (void)buf;
  if (nread < 0) {
    if (nread != UV_EOF) DSP_DEBUG("rpc: read: %s", uv_strerror((int)nread));
    conn_close(c);
    return;
  }
  dsp_framer_commit(&c->in, (size_t)nread);
  process_frames(c);
}

static void resume_reading(dsp_rpc_conn *c) {
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  process_frames(c); /* frames that arrived before the pause */
}

/* ---- accepting ----------------------------------------------------------- */

static void on_connection(uv_stream_t *l, int status) {
  dsp_rpc_server *s = l->data;
  dsp_rpc_conn *c;
  if (status < 0) {
    DSP_WARN("rpc: accept: %s", uv_strerror(status));
    return;
  }
  c = calloc(1, sizeof(*c));
  if (c == NULL) return;
  c->srv = s;
  s->nconns++;
  dsp_framer_init(&c->in, s->lim.max_frame);
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->idle);
  c->tcp.data = c->idle.data = c;
  c->handles_open = 2;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->idle, on_conn_handle_closed);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  dsp_fifo_push(&s->conns, &c->open);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

void dsp_rpc_server_set_raw(dsp_rpc_server *s, dsp_rpc_raw_cb raw) { s->raw = raw; }

dsp_rpc_server *dsp_rpc_server_new(uv_loop_t *loop, const dsp_rpc_limits *limits,
                                   dsp_rpc_request_cb cb, void *ctx) {
  dsp_rpc_server *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->arena.pb.alloc = arena_alloc;
  s->arena.pb.free = arena_free;
  s->arena.pb.allocator_data = &s->arena;
  s->loop = loop;
  s->cb = cb;
  s->ctx = ctx;
  s->lim.max_frame = DSP_FRAME_DEFAULT_MAX;
  s->lim.max_output = 4u << 20;
  s->lim.idle_timeout_ms = 10000;
  if (limits != NULL) {
    if (limits->max_frame) s->lim.max_frame = limits->max_frame;
    if (limits->max_output) s->lim.max_output = limits->max_output;
    if (limits->idle_timeout_ms) s->lim.idle_timeout_ms = limits->idle_timeout_ms;
  }
  uv_tcp_init(loop, &s->listener);
  uv_prepare_init(loop, &s->prepare);
  uv_check_init(loop, &s->check);
  s->listener.data = s->prepare.data = s->check.data = s;
  s->handles_open = 3;
  uv_prepare_start(&s->prepare, on_prepare);
  uv_check_start(&s->check, on_check);
  uv_unref((uv_handle_t *)&s->prepare);
  uv_unref((uv_handle_t *)&s->check);
  return s;
}

int dsp_rpc_server_listen(dsp_rpc_server *s, const char *host, int port) {
  struct sockaddr_storage ss;
  int rc;
  if (strchr(host, ':') != NULL)
    rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  else
    rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (rc != 0) return rc;
  rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
  if (rc == 0) s->listening = 1;
  return rc;
}

static void on_server_handle_closed(uv_handle_t *h) {
  dsp_rpc_server *s = h->data;
  s->handles_open--;
  server_maybe_free(s);
}

void dsp_rpc_server_close(dsp_rpc_server *s) {
  if (s->closing) return;
  s->closing = 1;
  flush_all(s);
  while (s->conns.head != NULL) conn_close(DSP_CONTAINER_OF(s->conns.head, dsp_rpc_conn, open));
  uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
  uv_close((uv_handle_t *)&s->prepare, on_server_handle_closed);
  uv_close((uv_handle_t *)&s->check, on_server_handle_closed);
}

