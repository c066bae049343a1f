/*
 * fuzz_peek.c: libFuzzer target for dsp_pb_peek(), which lets a follower
 * forward a request without decoding it. Its promise is one-way: whatever
 * it accepts, protobuf-c decodes, to the same id, body and origin_id (the
 * coordinator would otherwise reject a forwarded frame and drop the
 * follower's link). Any disagreement aborts.
 *
 * The same for its `single` verdict, which lets a follower gather Routes
 * into one: what it calls single decodes to a Route for one decision, and
 * the batch built from it decodes to the same strategy and key with the
 * batch's count and id.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* env: dsp_pb_peek()'s reading of data, which it accepted as single. */
static void check_batch(const uint8_t *data, size_t size, const dsp_pb_envelope *env) {
  const uint8_t *route = env->route;
  size_t routelen = env->routelen, n;
  uint8_t out[DSP_ROUTE_BATCH_FRAME_MAX(DSP_ROUTE_SUB_MAX)];
  dsp_pb_request *orig, *batch;
  uint32_t count = 1 + (uint32_t)(size % 200);
  orig = dispatcher__v1__request__unpack(NULL, size, data);
  if (orig == NULL || orig->body_case != DSP_PB(REQUEST__BODY_ROUTE) || orig->route->count > 1 ||
      orig->origin_id != 0 || orig->client_token != 0 || routelen > DSP_ROUTE_SUB_MAX)
    abort();
  n = dsp_pb_route_batch(out, route, routelen, count, size + 1);
  if (n > sizeof(out)) abort();
  batch = dispatcher__v1__request__unpack(NULL, n - DSP_FRAME_HEADER, out + DSP_FRAME_HEADER);
  if (batch == NULL || batch->body_case != DSP_PB(REQUEST__BODY_ROUTE) ||
      batch->route->count != count || batch->id != size + 1 || batch->origin_id != size + 1 ||
      strcmp(batch->route->strategy, orig->route->strategy) != 0 ||
      batch->route->key.len != orig->route->key.len ||
      (orig->route->key.len > 0 &&
       memcmp(batch->route->key.data, orig->route->key.data, orig->route->key.len) != 0))
    abort();
  dispatcher__v1__request__free_unpacked(orig, NULL);
  dispatcher__v1__request__free_unpacked(batch, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dsp_pb_envelope env;
  dsp_pb_request *req;
  if (dsp_pb_peek(data, size, &env) != 0) return 0;
  if (env.single) check_batch(data, size, &env);
  req = dispatcher__v1__request__unpack(NULL, size, data);
  if (req == NULL) abort(); /* peek accepted what the decoder rejects */
  if (req->id != env.id || req->origin_id != env.origin_id ||
      (unsigned)req->body_case != env.body)
    abort();
  dispatcher__v1__request__free_unpacked(req, NULL);
  return 0;
}
