/*
 * fuzz_json.c: libFuzzer target for znode data as anyone may write it with
 * zkCli: the JSON reader, the worker-data validator and the weight rewrite.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "json.h"
#include "registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count(const dsp_json_member *m, void *ctx) {
  (*(size_t *)ctx) += strlen(m->key);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[200], out[8192];
  size_t n = 0;
  dsp_worker_spec spec;
  dsp_json_parse((const char *)data, size, count, &n, err, sizeof(err));
  if (dsp_worker_parse((const char *)data, size, NULL, &spec, err, sizeof(err)) == 0 &&
      dsp_worker_set_weight_json((const char *)data, size, 7, out, sizeof(out)) == 0) {
    /* A rewrite is valid worker data with the new weight. */
    dsp_worker_spec again;
    if (dsp_worker_parse(out, strlen(out), NULL, &again, err, sizeof(err)) != 0 || again.weight != 7 ||
        strcmp(again.addr, spec.addr) != 0)
      __builtin_trap();
  }
  return 0;
}
