/*
 * fuzz_peek.c: libFuzzer target for dsp_pb_peek(), which lets a follower
 * forward a request without decoding it. Its promise is one-way: whatever
 * it accepts, protobuf-c decodes, to the same id, body and origin_id (the
 * coordinator would otherwise reject a forwarded frame and drop the
 * follower's link). Any disagreement aborts.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "frame.h"
#include "rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dsp_pb_envelope env;
  dsp_pb_request *req;
  if (dsp_pb_peek(data, size, &env) != 0) return 0;
  req = dispatcher__v1__request__unpack(NULL, size, data);
  if (req == NULL) abort(); /* peek accepted what the decoder rejects */
  if (req->id != env.id || req->origin_id != env.origin_id ||
      (unsigned)req->body_case != env.body)
    abort();
  dispatcher__v1__request__free_unpacked(req, NULL);
  return 0;
}
