/*
 * fuzz_frame.c: libFuzzer target for what a member does with bytes from a
 * client: frames them (in chunks of varying size, as reads arrive) and
 * decodes each frame as a Request. Nothing here may crash, leak or read out
 * of bounds, whatever the bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "frame.h"
#include "rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dsp_framer f;
  size_t off = 1;
  if (size < 1) return 0;
  /* First byte: read size pattern (1..64 bytes per "read"). */
  size_t chunk = (size_t)(data[0] % 64) + 1;
  dsp_framer_init(&f, 4096);
  while (off < size) {
    uint8_t *p;
    size_t avail, n = size - off < chunk ? size - off : chunk;
    const uint8_t *payload;
    size_t len;
    int rc;
    if (dsp_framer_reserve(&f, n, &p, &avail) != 0) break;
    memcpy(p, data + off, n);
    dsp_framer_commit(&f, n);
    off += n;
    while ((rc = dsp_framer_next(&f, &payload, &len)) == DSP_FRAME_OK) {
      dsp_pb_request *req = dispatcher__v1__request__unpack(NULL, len, payload);
      if (req != NULL) dispatcher__v1__request__free_unpacked(req, NULL);
    }
    if (rc == DSP_FRAME_TOO_LARGE) break;
  }
  dsp_framer_free(&f);
  return 0;
}
