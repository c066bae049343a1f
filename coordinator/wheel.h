/*
 * wheel.h: a hashed timing wheel of millisecond slots, for thousands of
 * timers that would otherwise crowd libuv's timer heap.
 *
 * The monitor keeps a probe timer per worker. As uv_timers, 10,000 of them
 * made every uv_timer_start/stop a walk down a 10,000-node heap, curl's one
 * timer included, and that walk was the largest cost of a probe outside the
 * kernel and curl. Here a timer is a node in the list of slot due % SLOTS:
 * adding and removing are O(1), and the caller drives the whole wheel with
 * one uv_timer set to dsp_wheel_next().
 *
 * Pure: no I/O, no clock. Times are the caller's milliseconds (uv_now).
 * A node due more than DSP_WHEEL_SLOTS ms ahead shares a slot with nearer
 * ones and is skipped until its turn; a node added in the past runs at the
 * next expiry.
 */
#ifndef DSP_WHEEL_H
#define DSP_WHEEL_H

#include <stddef.h>
#include <stdint.h>

#define DSP_WHEEL_SLOTS 1024 /* a power of two */

typedef struct dsp_wheel_node {
  struct dsp_wheel_node *prev, *next;
  uint64_t due;
  uint32_t slot;
  int linked;
} dsp_wheel_node;

typedef struct {
  dsp_wheel_node *slot[DSP_WHEEL_SLOTS];
  uint64_t bits[DSP_WHEEL_SLOTS / 64]; /* non-empty slots */
  uint64_t now;                        /* slots before this ms have run */
  size_t count;
} dsp_wheel;

void dsp_wheel_init(dsp_wheel *w, uint64_t now);

/* Link n (not linked) to run at `due`. */
void dsp_wheel_add(dsp_wheel *w, dsp_wheel_node *n, uint64_t due);

/* Unlink n; nothing if it is not linked. */
void dsp_wheel_remove(dsp_wheel *w, dsp_wheel_node *n);

/* When to look next: the time of the first slot that holds a node (which
   may be due later still), or UINT64_MAX when the wheel is empty. */
uint64_t dsp_wheel_next(const dsp_wheel *w);

/* One node due at or before `now`, unlinked, or NULL when none is left.
   Call until NULL. Nodes may be added and removed meanwhile; one added for
   a time at or before `now` is returned in the same round. */
dsp_wheel_node *dsp_wheel_expire(dsp_wheel *w, uint64_t now);

#endif
