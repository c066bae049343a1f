/*
 * dedupe.c: see dedupe.h. A ring holds the pairs in arrival order; an
 * open-addressing index (linear probing, twice the ring's size, deletion by
 * backward shift so no tombstones pile up) finds them.
 */
#include "dedupe.h"

#include <stdlib.h>

typedef struct {
  uint64_t token, id;
} pair;

struct dsp_dedupe {
  pair *ring;
  size_t cap, head, count; /* ring: `count` pairs ending before `head` */
  uint32_t *index;         /* ring position + 1; 0 = empty */
  size_t mask;
};

static size_t hash(uint64_t token, uint64_t id) {
  uint64_t h = token * 0x9E3779B97F4A7C15ULL ^ (id + 0x632BE59BD9B4E019ULL) * 0xC2B2AE3D27D4EB4FULL;
  return (size_t)(h ^ (h >> 29));
}

dsp_dedupe *dsp_dedupe_new(size_t capacity) {
  dsp_dedupe *d = calloc(1, sizeof(*d));
  size_t n = 2;
  if (d == NULL) return NULL;
  if (capacity < 1) capacity = 1;
  if (capacity > UINT32_MAX / 4) capacity = UINT32_MAX / 4;
  while (n < capacity * 2) n *= 2;
  d->ring = calloc(capacity, sizeof(*d->ring));
  d->index = calloc(n, sizeof(*d->index));
  if (d->ring == NULL || d->index == NULL) {
    dsp_dedupe_free(d);
    return NULL;
  }
  d->cap = capacity;
  d->mask = n - 1;
  return d;
}

void dsp_dedupe_free(dsp_dedupe *d) {
  if (d == NULL) return;
  free(d->ring);
  free(d->index);
  free(d);
}

size_t dsp_dedupe_count(const dsp_dedupe *d) { return d->count; }

/* Slot of the index holding ring position `pos`, or of the pair. */
static size_t find(const dsp_dedupe *d, uint64_t token, uint64_t id, int *found) {
  size_t i = hash(token, id) & d->mask;
  for (;;) {
    uint32_t e = d->index[i];
    if (e == 0) {
      *found = 0;
      return i;
    }
    if (d->ring[e - 1].token == token && d->ring[e - 1].id == id) {
      *found = 1;
      return i;
    }
    i = (i + 1) & d->mask;
  }
}

/* Remove index slot i, shifting later entries of the same run back. */
static void index_delete(dsp_dedupe *d, size_t i) {
  size_t j = i;
  for (;;) {
    size_t k;
    j = (j + 1) & d->mask;
    if (d->index[j] == 0) break;
    k = hash(d->ring[d->index[j] - 1].token, d->ring[d->index[j] - 1].id) & d->mask;
    /* Move j back to i unless its home k lies cyclically in (i, j]. */
    if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j)) continue;
    d->index[i] = d->index[j];
    i = j;
  }
  d->index[i] = 0;
}

int dsp_dedupe_seen(dsp_dedupe *d, uint64_t token, uint64_t id) {
  int found;
  size_t slot = find(d, token, id, &found);
  if (found) return 1;
  if (d->count == d->cap) {
    /* Forget the oldest: the one at head (the ring is full). */
    pair *old = &d->ring[d->head];
    int f;
    size_t os = find(d, old->token, old->id, &f);
    if (f) index_delete(d, os);
    d->count--;
    slot = find(d, token, id, &found); /* the delete may have moved things */
  }
  d->ring[d->head].token = token;
  d->ring[d->head].id = id;
  d->index[slot] = (uint32_t)(d->head + 1);
  d->head = (d->head + 1) % d->cap;
  d->count++;
  return 0;
}
