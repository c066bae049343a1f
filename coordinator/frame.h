/*
 * frame.h: length-prefixed framing for the RPC (docs/protocol.md). A frame
 * is a 4-byte big-endian length followed by that many bytes of message.
 *
 * dsp_framer is an incremental decoder over a growable buffer: the reader
 * reserves space, reads into it (libuv's alloc/read callbacks, so bytes are
 * copied once), commits what arrived, then takes complete frames out. It is
 * pure (no I/O) and never trusts the length it reads: a length over the
 * configured maximum is an error before any byte of the body is buffered.
 */
#ifndef DSP_FRAME_H
#define DSP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define DSP_FRAME_HEADER 4
#define DSP_FRAME_DEFAULT_MAX (1u << 20) /* 1 MiB */

enum {
  DSP_FRAME_NEED_MORE = 0,   /* no complete frame yet */
  DSP_FRAME_OK = 1,          /* *payload and *len set */
  DSP_FRAME_TOO_LARGE = -1,  /* announced length > max: close the stream */
  DSP_FRAME_NOMEM = -2
};

typedef struct {
  uint8_t *buf;
  size_t cap;       /* allocated */
  size_t start;     /* first unconsumed byte */
  size_t end;       /* one past the last byte read */
  size_t max_frame; /* largest body accepted */
  uint32_t bad_len; /* the offending length after DSP_FRAME_TOO_LARGE */
} dsp_framer;

/* Initialise an empty decoder accepting bodies of up to max_frame bytes. */
void dsp_framer_init(dsp_framer *f, size_t max_frame);

/* Release the buffer. The framer may be initialised again. */
void dsp_framer_free(dsp_framer *f);

/*
 * Space to read into: at least `want` bytes (more when a frame in progress
 * needs it). Returns 0 with *ptr and *len set, or DSP_FRAME_NOMEM. Compacts the
 * buffer, so pointers from dsp_framer_next() are invalid afterwards.
 */
int dsp_framer_reserve(dsp_framer *f, size_t want, uint8_t **ptr, size_t *len);

/* n bytes were written at the pointer dsp_framer_reserve() returned. */
void dsp_framer_commit(dsp_framer *f, size_t n);

/* Copy bytes in (reserve + memcpy + commit). Returns 0 or DSP_FRAME_NOMEM. */
int dsp_framer_feed(dsp_framer *f, const void *data, size_t n);

/*
 * Take the next complete frame. Returns DSP_FRAME_OK with *payload and *len
 * (valid until the next reserve/feed), DSP_FRAME_NEED_MORE, or
 * DSP_FRAME_TOO_LARGE (sticky: the stream cannot be resynchronised).
 */
int dsp_framer_next(dsp_framer *f, const uint8_t **payload, size_t *len);

/* Bytes buffered that are not yet a complete frame (a half frame waiting). */
size_t dsp_framer_buffered(const dsp_framer *f);

/* A growable byte buffer for outgoing frames (rpc_server, forwarder). */
typedef struct {
  uint8_t *p;
  size_t len, cap;
} dsp_buf;

/* Make room for `more` bytes after len. Returns 0, or DSP_FRAME_NOMEM
   (nothing changed). Free with free(b->p). */
int dsp_buf_reserve(dsp_buf *b, size_t more);

/* Protobuf varints, for code that reads or relabels a message without
   decoding it (forwarder.c, the benchmark). put writes at most 10 bytes
   and returns how many; get reads at p[*off..n) and returns 0, or -1 if
   the varint is cut short or too long. */
size_t dsp_varint_put(uint8_t *p, uint64_t v);
int dsp_varint_get(const uint8_t *p, size_t n, size_t *off, uint64_t *v);

/*
 * The envelope of a dispatcher.v1.Request, read without decoding it: id
 * (field 1), the body's field number (2-9, 0 if none) and origin_id (field
 * 14), each the last occurrence, as a decoder takes them. Returns 0 only
 * when the whole message is well-formed wire data that the protobuf-c
 * decoder accepts with exactly these values, which is checked only for the
 * bodies a follower forwards unread: route (2), report (3), worker_list (8)
 * and heartbeat (9), with their own fields; -1 for anything else (another
 * body, a field of the wrong wire type, groups, cut-short data), and the
 * caller then decodes it fully. Stricter than the decoder, never looser
 * (tests/fuzz/fuzz_peek.c checks it against protobuf-c).
 *
 * `single` is 1 when the request may join a route batch (below): it has
 * only id (1) fields and exactly one route (2) of at most DSP_ROUTE_SUB_MAX
 * bytes asking for one decision (count absent, 0 or 1); `route` and
 * `routelen` are then the RouteRequest's bytes.
 */
typedef struct {
  uint64_t id, origin_id;
  unsigned body;
  int single;
  const uint8_t *route;
  size_t routelen;
} dsp_pb_envelope;
int dsp_pb_peek(const uint8_t *p, size_t n, dsp_pb_envelope *out);

/*
 * Route batches: a follower gathers the Route requests of one loop turn that
 * ask for the same thing (strategy and key) into one Route with count = how
 * many, and hands each client one decision of the reply, in order
 * (forwarder.c; docs/protocol.md, "Forwarding").
 *
 * Which requests may join a batch is dsp_pb_peek()'s `single` (above).
 *
 * dsp_pb_route_batch: the frame (header included) of Request{route = the
 * RouteRequest bytes route[routelen] with count set to `count`; id =
 * origin_id = id} into out (origin_id marks it forwarded, as forwarder.c
 * marks every request it passes on), which has room for
 * DSP_ROUTE_BATCH_FRAME_MAX(routelen) bytes; returns its length.
 *
 * dsp_pb_next_decision: the next Decision in the RouteReply p[n], from
 * *off (start at 0): 1 with *dec and *declen set, 0 at the end, -1 if
 * malformed.
 *
 * dsp_pb_route_reply_head: the bytes of Response{id; epoch; route{
 * decisions: [dec]}} that come before a Decision of `declen` bytes, into
 * out (DSP_ROUTE_REPLY_HEAD_MAX bytes); returns their length. The reply is
 * those bytes, then the Decision's.
 */
#define DSP_ROUTE_SUB_MAX 256
#define DSP_ROUTE_BATCH_FRAME_MAX(routelen) (DSP_FRAME_HEADER + (routelen) + 40)
#define DSP_ROUTE_REPLY_HEAD_MAX 34
size_t dsp_pb_route_batch(uint8_t *out, const uint8_t *route, size_t routelen, uint32_t count,
                          uint64_t id);
int dsp_pb_next_decision(const uint8_t *p, size_t n, size_t *off, const uint8_t **dec,
                         size_t *declen);
size_t dsp_pb_route_reply_head(uint8_t out[DSP_ROUTE_REPLY_HEAD_MAX], uint64_t id,
                               int64_t epoch, size_t declen);

/* Write the 4-byte header for a body of `len` bytes. */
void dsp_frame_put_header(uint8_t out[DSP_FRAME_HEADER], uint32_t len);

#endif
