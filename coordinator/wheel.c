/*
 * wheel.c: see wheel.h.
 */
#include "wheel.h"

#include <string.h>

#define MASK (DSP_WHEEL_SLOTS - 1)

void dsp_wheel_init(dsp_wheel *w, uint64_t now) {
  memset(w, 0, sizeof(*w));
  w->now = now;
}

void dsp_wheel_add(dsp_wheel *w, dsp_wheel_node *n, uint64_t due) {
  /* Past times go to the slot that runs next. */
  size_t i = (size_t)((due < w->now ? w->now : due) & MASK);
  n->due = due;
  n->slot = (uint32_t)i;
  n->prev = NULL;
  n->next = w->slot[i];
  if (n->next) n->next->prev = n;
  w->slot[i] = n;
  w->bits[i / 64] |= 1ULL << (i % 64);
  n->linked = 1;
  w->count++;
}

void dsp_wheel_remove(dsp_wheel *w, dsp_wheel_node *n) {
  if (!n->linked) return;
  if (n->prev) {
    n->prev->next = n->next;
  } else {
    w->slot[n->slot] = n->next;
    if (n->next == NULL) w->bits[n->slot / 64] &= ~(1ULL << (n->slot % 64));
  }
  if (n->next) n->next->prev = n->prev;
  n->prev = n->next = NULL;
  n->linked = 0;
  w->count--;
}

/* The first non-empty slot at or after slot `from`, as a distance (0 to
   SLOTS - 1), or SLOTS when all are empty. */
static size_t first_set(const dsp_wheel *w, size_t from) {
  for (size_t d = 0; d < DSP_WHEEL_SLOTS;) {
    size_t i = (from + d) & MASK;
    uint64_t word = w->bits[i / 64] >> (i % 64);
    if (word) return d + (size_t)__builtin_ctzll(word);
    d += 64 - i % 64;
  }
  return DSP_WHEEL_SLOTS;
}

uint64_t dsp_wheel_next(const dsp_wheel *w) {
  size_t d;
  if (w->count == 0) return UINT64_MAX;
  d = first_set(w, (size_t)(w->now & MASK));
  return d < DSP_WHEEL_SLOTS ? w->now + d : UINT64_MAX;
}

/* A node of slot i due by `now`, unlinked; NULL if none is. */
static dsp_wheel_node *take_due(dsp_wheel *w, size_t i, uint64_t now) {
  for (dsp_wheel_node *n = w->slot[i]; n != NULL; n = n->next)
    if (n->due <= now) {
      dsp_wheel_remove(w, n);
      return n;
    }
  return NULL;
}

dsp_wheel_node *dsp_wheel_expire(dsp_wheel *w, uint64_t now) {
  /* From w->now up to `now`, one lap at most: after a stall longer than
     the wheel, every slot is looked at once. */
  uint64_t lap_end = w->now + DSP_WHEEL_SLOTS;
  dsp_wheel_node *n;
  if (w->now > now) /* run already: only a node added since, in the past */
    return take_due(w, (size_t)(w->now & MASK), now);
  while (w->now <= now && w->now < lap_end && w->count > 0) {
    size_t d = first_set(w, (size_t)(w->now & MASK));
    if (d == DSP_WHEEL_SLOTS || w->now + d > now || w->now + d >= lap_end) break;
    w->now += d;
    if ((n = take_due(w, (size_t)(w->now & MASK), now)) != NULL) return n;
    w->now++; /* what is left in this slot is due in a later lap */
  }
  /* Every slot up to `now` has run. */
  if (w->now <= now) w->now = now + 1;
  return NULL;
}
