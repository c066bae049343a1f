/*
 * frame.c: see frame.h.
 */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

#define MIN_CAP 4096

void dsp_framer_init(dsp_framer *f, size_t max_frame) {
  memset(f, 0, sizeof(*f));
  f->max_frame = max_frame;
}

void dsp_framer_free(dsp_framer *f) {
  free(f->buf);
  f->buf = NULL;
  f->cap = f->start = f->end = 0;
}

static uint32_t get_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void dsp_frame_put_header(uint8_t out[DSP_FRAME_HEADER], uint32_t len) {
  out[0] = (uint8_t)(len >> 24);
  out[1] = (uint8_t)(len >> 16);
  out[2] = (uint8_t)(len >> 8);
  out[3] = (uint8_t)len;
}

int dsp_framer_reserve(dsp_framer *f, size_t want, uint8_t **ptr, size_t *len) {
  size_t have = f->end - f->start, need = want;
  /* A frame in progress whose header we have: make room for all of it. */
  if (have >= DSP_FRAME_HEADER) {
    uint32_t body = get_be32(f->buf + f->start);
    if (body <= f->max_frame && (size_t)body + DSP_FRAME_HEADER > have &&
        (size_t)body + DSP_FRAME_HEADER - have > need)
      need = (size_t)body + DSP_FRAME_HEADER - have;
  }
  if (f->start > 0 && (f->cap - f->end < need || f->start == f->end)) {
    memmove(f->buf, f->buf + f->start, have);
    f->start = 0;
    f->end = have;
  }
  if (f->cap - f->end < need) {
    size_t cap = f->cap ? f->cap : MIN_CAP;
    uint8_t *nb;
    while (cap - f->end < need) cap *= 2;
    nb = realloc(f->buf, cap);
    if (nb == NULL) return DSP_FRAME_NOMEM;
    f->buf = nb;
    f->cap = cap;
  }
  *ptr = f->buf + f->end;
  *len = f->cap - f->end;
  return 0;
}

void dsp_framer_commit(dsp_framer *f, size_t n) {
  f->end += n;
}

int dsp_framer_feed(dsp_framer *f, const void *data, size_t n) {
  uint8_t *p;
  size_t avail;
  if (n == 0) return 0;
  if (dsp_framer_reserve(f, n, &p, &avail) != 0) return DSP_FRAME_NOMEM;
  memcpy(p, data, n);
  dsp_framer_commit(f, n);
  return 0;
}

int dsp_framer_next(dsp_framer *f, const uint8_t **payload, size_t *len) {
  size_t have = f->end - f->start;
  uint32_t body;
  if (f->bad_len != 0) return DSP_FRAME_TOO_LARGE;
  if (have < DSP_FRAME_HEADER) return DSP_FRAME_NEED_MORE;
  body = get_be32(f->buf + f->start);
  if (body > f->max_frame) {
    f->bad_len = body ? body : 1;
    return DSP_FRAME_TOO_LARGE;
  }
  if (have - DSP_FRAME_HEADER < body) return DSP_FRAME_NEED_MORE;
  *payload = f->buf + f->start + DSP_FRAME_HEADER;
  *len = body;
  f->start += DSP_FRAME_HEADER + (size_t)body;
  if (f->start == f->end) f->start = f->end = 0;
  return DSP_FRAME_OK;
}

size_t dsp_framer_buffered(const dsp_framer *f) {
  return f->end - f->start;
}

size_t dsp_varint_put(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

int dsp_varint_get(const uint8_t *p, size_t n, size_t *off, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64 && *off < n; shift += 7) {
    uint8_t b = p[(*off)++];
    r |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return 0;
    }
  }
  return -1;
}

/* ---- the request envelope, unread ------------------------------------------ */

/* Wire types we accept (protobuf-c has no groups). */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* One field of a message. */
typedef struct {
  uint32_t num;
  unsigned wt;
  uint64_t v;             /* a varint's value */
  const uint8_t *sub;     /* a length-delimited payload */
  size_t sublen;
} pb_field;

/* The field at p[*off..n), *off moved past it. 0, or -1 if malformed. */
static int next_field(const uint8_t *p, size_t n, size_t *off, pb_field *f) {
  uint64_t tag;
  size_t start = *off;
  f->v = 0;
  f->sub = NULL;
  f->sublen = 0;
  if (dsp_varint_get(p, n, off, &tag) != 0 || *off - start > 5) return -1;
  if ((tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return -1;
  f->num = (uint32_t)(tag >> 3);
  f->wt = (unsigned)(tag & 7);
  switch (f->wt) {
    case WT_VARINT:
      start = *off;
      return dsp_varint_get(p, n, off, &f->v) == 0 && *off - start <= 10 ? 0 : -1;
    case WT_I64:
      if (n - *off < 8) return -1;
      *off += 8;
      return 0;
    case WT_I32:
      if (n - *off < 4) return -1;
      *off += 4;
      return 0;
    case WT_LEN:
      /* protobuf-c reads a length in at most 5 bytes. */
      start = *off;
      if (dsp_varint_get(p, n, off, &f->v) != 0 || *off - start > 5 || f->v > n - *off ||
          f->v > 0x7fffffff)
        return -1;
      f->sub = p + *off;
      f->sublen = (size_t)f->v;
      *off += (size_t)f->v;
      return 0;
    default:
      return -1;
  }
}

/* A body message whose known fields are `spec`: for field k (1..3), the
   wire type it must have, or -1 for none. 1 if well-formed; then, if
   `last` is not NULL, last[k] is the last value of varint field k (0 when
   absent). */
static int body_ok(const uint8_t *p, size_t n, const int spec[4], uint64_t last[4]) {
  size_t off = 0;
  pb_field f;
  if (last != NULL) memset(last, 0, 4 * sizeof(*last));
  while (off < n) {
    if (next_field(p, n, &off, &f) != 0) return 0;
    if (f.num <= 3 && spec[f.num] >= 0 && (unsigned)spec[f.num] != f.wt) return 0;
    if (f.num <= 3 && f.wt == WT_VARINT && last != NULL) last[f.num] = f.v;
  }
  return 1;
}

/* Known fields of RouteRequest, ReportRequest, WorkerListRequest and
   HeartbeatRequest (proto/dispatcher.proto). */
static const int route_spec[4] = {-1, WT_LEN, WT_LEN, WT_VARINT};
static const int report_spec[4] = {-1, WT_LEN, WT_VARINT, WT_VARINT};
static const int none_spec[4] = {-1, -1, -1, -1};
static const int heartbeat_spec[4] = {-1, WT_LEN, -1, -1};

int dsp_pb_peek(const uint8_t *p, size_t n, dsp_pb_envelope *out) {
  size_t off = 0;
  pb_field f;
  uint64_t last[4];
  int nroute = 0, others = 0;
  memset(out, 0, sizeof(*out));
  while (off < n) {
    if (next_field(p, n, &off, &f) != 0) return -1;
    if (f.num != 1) others += f.num != 2;
    switch (f.num) {
      case 1: case 14: case 15:
        if (f.wt != WT_VARINT) return -1;
        if (f.num == 1) out->id = f.v;
        if (f.num == 14) out->origin_id = f.v;
        break;
      case 2:
        if (f.wt != WT_LEN || !body_ok(f.sub, f.sublen, route_spec, last)) return -1;
        out->body = f.num;
        nroute++;
        /* One decision: count (field 3, the last one wins) is 0 or 1. */
        out->single = f.sublen <= DSP_ROUTE_SUB_MAX && last[3] <= 1;
        out->route = f.sub;
        out->routelen = f.sublen;
        break;
      case 3: case 8: case 9:
        if (f.wt != WT_LEN ||
            !body_ok(f.sub, f.sublen,
                     f.num == 3 ? report_spec : f.num == 8 ? none_spec : heartbeat_spec, NULL))
          return -1;
        out->body = f.num;
        break;
      case 4: case 5: case 6: case 7:
        return -1; /* bodies we do not read here */
      default:
        break; /* unknown fields are kept by the decoder */
    }
  }
  if (nroute != 1 || others != 0) out->single = 0;
  return 0;
}

/* ---- route batches (forwarder.c) ------------------------------------------ */

/* A one-byte tag, then a varint (a value, or the length of what follows). */
static size_t put_tagged(uint8_t *out, uint8_t tag, uint64_t v) {
  out[0] = tag;
  return 1 + dsp_varint_put(out + 1, v);
}

size_t dsp_pb_route_batch(uint8_t *out, const uint8_t *route, size_t routelen, uint32_t count,
                          uint64_t id) {
  uint8_t tail[6];
  size_t n = DSP_FRAME_HEADER;
  /* RouteRequest.count, after the client's: the last one wins. */
  size_t t = put_tagged(tail, 0x18, count);
  n += put_tagged(out + n, 0x12, routelen + t); /* Request.route */
  memcpy(out + n, route, routelen);
  memcpy(out + n + routelen, tail, t);
  n += routelen + t;
  /* Request.origin_id (forwarded: never to be forwarded again), Request.id */
  n += put_tagged(out + n, 0x70, id);
  n += put_tagged(out + n, 0x08, id);
  dsp_frame_put_header(out, (uint32_t)(n - DSP_FRAME_HEADER));
  return n;
}

int dsp_pb_next_decision(const uint8_t *p, size_t n, size_t *off, const uint8_t **dec,
                         size_t *declen) {
  pb_field f;
  while (*off < n) {
    if (next_field(p, n, off, &f) != 0) return -1;
    if (f.num == 1 && f.wt == WT_LEN) {
      *dec = f.sub;
      *declen = f.sublen;
      return 1;
    }
  }
  return 0;
}

size_t dsp_pb_route_reply_head(uint8_t out[DSP_ROUTE_REPLY_HEAD_MAX], uint64_t id,
                               int64_t epoch, size_t declen) {
  uint8_t head[6];
  size_t h = put_tagged(head, 0x0a, declen); /* RouteReply.decisions */
  size_t n = put_tagged(out, 0x08, id);      /* Response.id */
  if (epoch != 0) n += put_tagged(out + n, 0x10, (uint64_t)epoch); /* Response.epoch */
  n += put_tagged(out + n, 0x22, h + declen); /* Response.route */
  memcpy(out + n, head, h);
  return n + h;
}

int dsp_buf_reserve(dsp_buf *b, size_t more) {
  size_t cap;
  uint8_t *np;
  if (b->cap - b->len >= more) return 0;
  cap = b->cap ? b->cap : MIN_CAP;
  while (cap - b->len < more) cap *= 2;
  np = realloc(b->p, cap);
  if (np == NULL) return DSP_FRAME_NOMEM;
  b->p = np;
  b->cap = cap;
  return 0;
}
