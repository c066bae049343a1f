/*
 * fifo.h: an intrusive FIFO. A member holds a dsp_fifo_link and is found
 * again from it with DSP_CONTAINER_OF (util.h); the list is doubly linked,
 * so any member leaves in O(1), not only the head. Nothing allocates.
 *
 * Used for work that waits for a later loop turn (the monitor's due probes,
 * the prober's sockets with events for curl) and as the plain list of what
 * is open: the monitor's entries, the prober's sockets, the RPC server's
 * and the test worker's connections. Closing everything is
 *   while (q.head) close(DSP_CONTAINER_OF(q.head, type, link));
 * with close() taking the member out.
 */
#ifndef DSP_FIFO_H
#define DSP_FIFO_H

#include <stddef.h>

typedef struct dsp_fifo_link {
  struct dsp_fifo_link *prev, *next;
  int linked;
} dsp_fifo_link;

typedef struct {
  dsp_fifo_link *head, *tail;
  size_t n;
} dsp_fifo;

/* Append l at the tail; nothing if it is in already. */
static inline void dsp_fifo_push(dsp_fifo *q, dsp_fifo_link *l) {
  if (l->linked) return;
  l->prev = q->tail;
  l->next = NULL;
  if (q->tail) q->tail->next = l;
  else q->head = l;
  q->tail = l;
  l->linked = 1;
  q->n++;
}

/* Take l out; nothing if it is not in. */
static inline void dsp_fifo_remove(dsp_fifo *q, dsp_fifo_link *l) {
  if (!l->linked) return;
  if (l->prev) l->prev->next = l->next;
  else q->head = l->next;
  if (l->next) l->next->prev = l->prev;
  else q->tail = l->prev;
  l->prev = l->next = NULL;
  l->linked = 0;
  q->n--;
}

#endif
