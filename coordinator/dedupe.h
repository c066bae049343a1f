/*
 * dedupe.h: remembers the last N (client token, request id) pairs, so that
 * a request sent again after a lost reply is recognised and not applied
 * twice (docs/protocol.md, client_token). Pure: no I/O, no clock. O(1) per
 * check; the oldest pair is forgotten when N are held.
 */
#ifndef DSP_DEDUPE_H
#define DSP_DEDUPE_H

#include <stddef.h>
#include <stdint.h>

typedef struct dsp_dedupe dsp_dedupe;

/* Remember up to `capacity` pairs (at least 1). NULL when out of memory. */
dsp_dedupe *dsp_dedupe_new(size_t capacity);
void dsp_dedupe_free(dsp_dedupe *d);

/* 1 if (token, id) was seen among the last `capacity` pairs (nothing
   changes then); otherwise remember it and return 0. */
int dsp_dedupe_seen(dsp_dedupe *d, uint64_t token, uint64_t id);

/* How many pairs are remembered now. */
size_t dsp_dedupe_count(const dsp_dedupe *d);

#endif
