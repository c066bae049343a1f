/*
 * forwarder.h: a follower's link to the coordinator. Requests that need the
 * coordinator (Route, Report, WorkerList) are sent on over one persistent,
 * multiplexed connection to the address in the leader znode, whatever is
 * pending gathered into as few writes as possible, and each client is
 * answered as the replies come back (docs/protocol.md, "Forwarding").
 *
 * Failover without client errors:
 *  - while no coordinator is known (or it cannot be reached), requests are
 *    held, up to `hold_ms` each; only past that are they answered
 *    NO_COORDINATOR;
 *  - when the leader changes or the connection breaks, every request not yet
 *    answered is sent again to the new coordinator;
 *  - a NOT_COORDINATOR reply (the member we reached has stepped down) sends
 *    the request again once a new leader is known;
 *  - the highest epoch seen is remembered, and a reply stamped with a lower
 *    one is never passed on (it came from a deposed coordinator): the
 *    request is sent again instead.
 * Requests go out byte for byte, client_token included, with an id field of
 * ours appended (protobuf keeps the last value of a scalar field), so a
 * follower neither decodes nor encodes what it passes along. The exception
 * is Routes for one decision: the alike ones of a loop turn are sent as one
 * Route with a count (frame.h, "Route batches"), and each client gets one
 * decision of the reply, in order.
 */
#ifndef DSP_FORWARDER_H
#define DSP_FORWARDER_H

#include <stdint.h>
#include <uv.h>

#include "frame.h"
#include "member.h"
#include "rpc_server.h"

typedef struct dsp_forwarder dsp_forwarder;

/* What to do with held requests once this member is the coordinator and
   ready to decide (ready returns 1): answer them itself (the service's
   request handler). While this member coordinates but is not ready (its
   table still loading), requests are held. */
typedef void (*dsp_forwarder_local_cb)(void *ctx, dsp_rpc_conn *c, const dsp_pb_request *req,
                                       const uint8_t *raw, size_t rawlen);
typedef int (*dsp_forwarder_ready_cb)(void *ctx);

/* hold_ms: how long a request may wait for a coordinator. max_pending: how
   many may be outstanding at once (more are answered BUSY). */
dsp_forwarder *dsp_forwarder_new(uv_loop_t *loop, dsp_member *m, uint64_t hold_ms,
                                 unsigned max_pending, dsp_forwarder_local_cb local,
                                 dsp_forwarder_ready_cb ready, void *local_ctx);

/* Requests within `max_frame - 22` bytes are forwarded; larger ones get
   TOO_LARGE (forwarding appends up to 22 bytes; give every member the same
   --max-frame). 0, the default, checks nothing. */
void dsp_forwarder_set_max_frame(dsp_forwarder *f, size_t max_frame);

/* Forward the request encoded in raw[rawlen], whose id is client_id
   (answered on c later; c is referenced meanwhile). The bytes are sent as
   they are, relabelled with an id of ours, and the reply is relabelled with
   client_id the same way: no decoding or encoding on the way. env is
   dsp_pb_peek()'s reading of raw when the caller made one, else NULL (it
   is made here: it says whether the request may join a route batch). */
void dsp_forwarder_submit(dsp_forwarder *f, dsp_rpc_conn *c, const dsp_pb_envelope *env,
                          uint64_t client_id, const uint8_t *raw, size_t rawlen);

/* The leader znode changed, or our role did: reconnect, re-send or hand
   held requests to the local service. */
void dsp_forwarder_poke(dsp_forwarder *f);

/* Answer everything pending NO_COORDINATOR, close; frees itself later. */
void dsp_forwarder_close(dsp_forwarder *f);


#endif
