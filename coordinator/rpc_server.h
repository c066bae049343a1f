/*
 * rpc_server.h: the RPC listener of a member (docs/protocol.md): libuv TCP,
 * length-prefixed protobuf frames, many requests in flight per connection.
 *
 * Each decoded Request goes to the request callback, which must answer it
 * exactly once with dsp_rpc_reply(), at once or later (then holding a
 * reference on the connection with dsp_rpc_conn_ref()). Replies to one
 * connection are gathered and written once per loop turn.
 *
 * Bad input never takes the server down: an oversize length gets TOO_LARGE,
 * an undecodable message or unknown body BAD_REQUEST (with the request id
 * when it could be read), then that connection closes once the error is
 * written. A connection whose unsent replies exceed max_output stops being
 * read until the client catches up (backpressure); one that leaves half a
 * frame unfinished for idle_timeout_ms is dropped.
 */
#ifndef DSP_RPC_SERVER_H
#define DSP_RPC_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rpc.h"

typedef struct dsp_rpc_server dsp_rpc_server;
typedef struct dsp_rpc_conn dsp_rpc_conn;

typedef struct {
  size_t max_frame;          /* largest request body; default 1 MiB */
  size_t max_output;         /* unsent reply bytes before reads pause; 4 MiB */
  uint64_t idle_timeout_ms;  /* half a frame left this long: drop; 10000 */
} dsp_rpc_limits;

/* `req`, and the bytes it was decoded from (`raw`, `rawlen`), are valid
   only during the call; copy what you keep. */
typedef void (*dsp_rpc_request_cb)(void *ctx, dsp_rpc_conn *c, const dsp_pb_request *req,
                                   const uint8_t *raw, size_t rawlen);

/* An optional look at a request's bytes before they are decoded: return 1
   if it was handled (it is then never decoded), 0 to decode it and call
   the request callback as usual. Same lifetime rules. */
typedef int (*dsp_rpc_raw_cb)(void *ctx, dsp_rpc_conn *c, const uint8_t *raw, size_t rawlen);

/* limits may be NULL for the defaults. Returns NULL when out of memory. */
dsp_rpc_server *dsp_rpc_server_new(uv_loop_t *loop, const dsp_rpc_limits *limits,
                                   dsp_rpc_request_cb cb, void *ctx);

/* Set the raw callback (NULL: none), called with the same ctx. */
void dsp_rpc_server_set_raw(dsp_rpc_server *s, dsp_rpc_raw_cb raw);

/* Bind and listen on host:port. Returns 0 or a negative libuv error. */
int dsp_rpc_server_listen(dsp_rpc_server *s, const char *host, int port);

/* Close the listener and every connection; frees itself once all handles
   are closed (replies still pending are dropped). */
void dsp_rpc_server_close(dsp_rpc_server *s);

/* Encode and queue `resp` on c. Dropped silently if c is closing. */
void dsp_rpc_reply(dsp_rpc_conn *c, const dsp_pb_response *resp);

/*
 * Queue an already-encoded Response: `msg` followed by `suffix` (which may
 * re-set fields: protobuf keeps the last value of a repeated scalar field,
 * so a suffix of field 1 relabels the reply's id without decoding it).
 */
void dsp_rpc_reply_raw(dsp_rpc_conn *c, const uint8_t *msg, size_t len, const uint8_t *suffix,
                       size_t slen);

/* Answer request `id` with an error. */
void dsp_rpc_reply_error(dsp_rpc_conn *c, uint64_t id, int64_t epoch, int code,
                         const char *message);

/* Keep c (its memory) alive past the callback; pair with unref. */
void dsp_rpc_conn_ref(dsp_rpc_conn *c);
void dsp_rpc_conn_unref(dsp_rpc_conn *c);
/* 1 once the connection is closing: replies to it go nowhere. */
int dsp_rpc_conn_closed(const dsp_rpc_conn *c);


#endif
