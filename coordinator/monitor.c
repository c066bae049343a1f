/*
 * monitor.c: see monitor.h.
 *
 * Per worker: an entry with its dsp_health, a probe timer (a fixed cadence
 * on absolute times, each worker with its own phase: see on_probe_due)
 * and a tick timer for what expires by itself (heartbeats, passive
 * ejection). The probe timers are nodes of one timing wheel (wheel.h)
 * driven by one uv_timer: as 10,000 uv_timers they made every timer
 * operation in the process, curl's included, a walk down a 10,000-node heap.
 *
 * Pacing: a due probe is not started by its timer but queued, and an idle
 * handle starts the queue a few at a time, one batch per loop turn. libuv's
 * timers tick in milliseconds, so at 10,000 probes a second ten fall due
 * together each tick; started at once, they would make every RPC read in
 * that turn wait for all ten (and for curl sending ten requests). While the
 * queue is not empty the loop polls without blocking between batches, so
 * RPC reads come first and a Route waits behind one small batch at most.
 * A batch is 1 + queued / PACE_SHARE: when the loop is busy the queue
 * grows until the batches keep up, never a round behind.
 *
 * At most MAX_INFLIGHT probes run at once; past that, due probes wait in
 * the queue, not yet started (their timeout starts with them). The cap is
 * there for curl: to start a transfer it looks for an idle connection by
 * walking the connections it has to that host:port, busy ones included, so
 * thousands in flight to one host (many identities behind one agent, as in
 * the benchmark) make every start cost thousands of steps. Without the cap
 * a few seconds' stall (SIGSTOP, a swapped-out VM) left thousands in flight,
 * every start slow, probes later and later: a loop at 100% CPU that never
 * recovered.
 *
 * Entries hang off the table through dsp_balance_set_data(), so a Report
 * finds its worker's health without a second lookup.
 *
 * Lifetimes: an entry is referenced by its tick timer handle and by a
 * record write in flight; it is freed when the last of them lets go.
 * ZooKeeper answers carry the follow() generation that asked; older ones
 * are dropped.
 */
#include "monitor.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <zookeeper/zookeeper.h>

#include "fifo.h"
#include "log.h"
#include "probe.h"
#include "util.h"
#include "wheel.h"

#define PATH_LEN 512
/* A worker not known to be up is first probed within this (spread, so a
   takeover with thousands of workers does not open them all at once). */
#define FIRST_PROBE_SPREAD_MS 250
/* Each loop turn starts 1 + (due probes waiting) / PACE_SHARE of them. */
#define PACE_SHARE 8
/* Probes in flight at most (see the top of the file). */
#define MAX_INFLIGHT 1024
/* At most one warning about probes we could not make per this many ms. */
#define LOCAL_WARN_MS 10000

typedef struct entry {
  dsp_fifo_link link;       /* on the monitor's `entries` while live */
  dsp_monitor *m;
  dsp_worker_id id;
  uint64_t token;          /* names its probes */
  dsp_wheel_node probe;     /* its next round, on the monitor's wheel */
  uv_timer_t tick_timer;
  int refs;                /* open handle + record writes in flight */
  int probing;             /* a probe in flight */
  dsp_fifo_link queued;    /* due, waiting in the pacer's queue */
  int rephase;             /* the next round picks a random phase */
  uint64_t due;            /* loop time (uv_now) the next round starts */
  int waiting_record;      /* added before the records were read */
  int writing;             /* a record write in flight */
  int64_t czxid;           /* of the worker znode */
  uint32_t written_seq;    /* h.record_seq last written (or read) */
  uint64_t failures[DSP_MONITOR_KINDS]; /* probe failures by kind */
  uint64_t rec_since_wall;  /* the record's since_ms, while its state holds */
  uint64_t rec_changed_ms;  /* h.changed_ms when it was applied */
  dsp_health h;
  char name[DSP_BAL_NAME_MAX + 1];
} entry;

typedef struct {
  char *name;
  int64_t mzxid;
  int used;                /* applied once: a worker that rejoins starts anew */
  dsp_health_record rec;
} record;

struct dsp_monitor {
  uv_loop_t *loop;
  uv_idle_t pacer;         /* active while due probes wait */
  dsp_wheel wheel;         /* every entry's next round */
  uv_timer_t wheel_timer;  /* set for dsp_wheel_next() */
  uint64_t wheel_armed;    /* when it fires; UINT64_MAX: stopped */
  dsp_fifo queue;          /* due probes (entry.queued), oldest first */
  size_t inflight;         /* probes started, not yet done or cancelled */
  uint64_t local_warned_ms; /* last warning about LOCAL probes (0: none yet) */
  uint64_t local_unwarned;  /* LOCAL probes since */
  dsp_member *member;
  dsp_prober *prober;
  dsp_balance *table;      /* while coordinator */
  int64_t epoch;
  unsigned gen;
  dsp_fifo entries;        /* live entries (entry.link) */
  uint64_t next_token;
  uint64_t rng;
  /* Records read at follow(); sorted once all are in. */
  record *recs;
  size_t nrecs, caprecs;
  unsigned loading;
  int loaded;
  int closing;
  char base[PATH_LEN];     /* /dispatcher/<cluster> */
  char folder[PATH_LEN];   /* base/health */
};

/* ---- helpers ----------------------------------------------------------------- */

static uint64_t rand64(dsp_monitor *m) {
  /* xorshift64*: spreads probes, nothing more. */
  m->rng ^= m->rng >> 12;
  m->rng ^= m->rng << 25;
  m->rng ^= m->rng >> 27;
  return m->rng * 2685821657736338717ULL;
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static zhandle_t *zh_of(dsp_monitor *m) {
  return m->member ? (zhandle_t *)dsp_member_zh(m->member) : NULL;
}

static entry *entry_of(const dsp_monitor *m, dsp_worker_id id) {
  return m->table ? dsp_balance_worker_data(m->table, id) : NULL;
}

static int cmp_rec(const void *a, const void *b) {
  return strcmp(((const record *)a)->name, ((const record *)b)->name);
}

/* The record for `name` newer than the worker znode and not applied yet
   in this tenure, or NULL. The caller applies it (it is marked used): a
   worker that leaves the table and comes back while we coordinate starts
   anew, since the record may be older than what we saw meanwhile. */
static record *find_rec(dsp_monitor *m, const char *name, int64_t czxid) {
  record key, *r;
  if (!m->loaded || m->nrecs == 0) return NULL;
  key.name = (char *)name;
  r = bsearch(&key, m->recs, m->nrecs, sizeof(*m->recs), cmp_rec);
  if (r == NULL || r->used || r->mzxid <= czxid) return NULL;
  r->used = 1;
  return r;
}

static void recs_clear(dsp_monitor *m) {
  for (size_t i = 0; i < m->nrecs; i++) free(m->recs[i].name);
  free(m->recs);
  m->recs = NULL;
  m->nrecs = m->caprecs = 0;
}

/* ---- record writes -------------------------------------------------------------- */

typedef struct {
  entry *e;
  unsigned gen;
  uint32_t seq;
  int create;              /* create the record rather than set it */
  int tries;
  zoo_op_t ops[2];
  zoo_op_result_t res[2];
  char fence[PATH_LEN];
  char path[PATH_LEN + DSP_BAL_NAME_MAX + 2];
  char data[DSP_HEALTH_RECORD_MAX];
} wrec;

static void entry_unref(entry *e);
static void write_record(entry *e);
static void write_done(int rc, const void *d);

static int send_write(dsp_monitor *m, wrec *w) {
  zhandle_t *zh = zh_of(m);
  zoo_check_op_init(&w->ops[0], w->fence, -1);
  if (w->create)
    zoo_create_op_init(&w->ops[1], w->path, w->data, (int)strlen(w->data), &ZOO_OPEN_ACL_UNSAFE,
                       0, NULL, 0);
  else
    zoo_set_op_init(&w->ops[1], w->path, w->data, (int)strlen(w->data), -1, NULL);
  memset(w->res, 0, sizeof(w->res));
  w->tries++;
  return zh != NULL && zoo_amulti(zh, 2, w->ops, w->res, write_done, w) == ZOK ? 0 : -1;
}

static void write_done(int rc, const void *d) {
  wrec *w = (wrec *)d;
  entry *e = w->e;
  dsp_monitor *m = e->m;
  int current = w->gen == m->gen && m->table != NULL;
  if (rc != ZOK && current && e->link.linked && w->tries < 3 && w->res[0].err == ZOK &&
      ((!w->create && w->res[1].err == ZNONODE) || (w->create && w->res[1].err == ZNODEEXISTS))) {
    /* The first record of this worker (create it), or created meanwhile
       (set it): once more. */
    w->create = !w->create;
    if (send_write(m, w) == 0) return;
  }
  if (rc == ZOK) {
    e->written_seq = w->seq;
  } else {
    /* A failed fence check is NONODE on op 0; a session or connection
       error is copied into every op. Either way the write is tried again
       after the worker's next probe or heartbeat (apply()). */
    if (w->res[0].err == ZNONODE)
      DSP_WARN("health record %s not written: no longer the coordinator (our election znode "
               "is gone)", w->path);
    else
      DSP_WARN("health record %s not written: %s", w->path, zerror(rc));
  }
  e->writing = 0;
  /* It moved on meanwhile: write the newest state. */
  if (rc == ZOK && current && e->link.linked && e->h.record_seq != e->written_seq)
    write_record(e);
  free(w);
  entry_unref(e);
}

/* Write the entry's state if it changed since the last write; one write
   in flight per worker. Only a coordinator writes, fenced (monitor.h). */
static void write_record(entry *e) {
  dsp_monitor *m = e->m;
  wrec *w;
  if (e->writing || e->h.record_seq == e->written_seq || zh_of(m) == NULL) return;
  if ((w = calloc(1, sizeof(*w))) == NULL) return;
  if (dsp_member_fence_path(m->member, w->fence, sizeof(w->fence)) != 0 ||
      dsp_health_record_format(&e->h, m->epoch, wall_ms(), w->data, sizeof(w->data)) != 0) {
    free(w);
    return;
  }
  w->e = e;
  w->gen = m->gen;
  w->seq = e->h.record_seq;
  snprintf(w->path, sizeof(w->path), "%s/%s", m->folder, e->name);
  if (send_write(m, w) != 0) {
    free(w);
    return;
  }
  e->writing = 1;
  e->refs++;
  dsp_member_kick(m->member);
}

static void delete_done(int rc, const void *d) {
  (void)rc;
  free((void *)d);
}

/* The worker's znode is gone: its record goes too (fenced). */
static void delete_record(dsp_monitor *m, const char *name) {
  wrec *w = calloc(1, sizeof(*w));
  zhandle_t *zh = zh_of(m);
  if (w == NULL) return;
  if (zh == NULL || dsp_member_fence_path(m->member, w->fence, sizeof(w->fence)) != 0) {
    free(w);
    return;
  }
  snprintf(w->path, sizeof(w->path), "%s/%s", m->folder, name);
  zoo_check_op_init(&w->ops[0], w->fence, -1);
  zoo_delete_op_init(&w->ops[1], w->path, -1);
  if (zoo_amulti(zh, 2, w->ops, w->res, delete_done, w) != ZOK) free(w);
  dsp_member_kick(m->member);
}

/* ---- applying a change -------------------------------------------------------- */

static void on_tick(uv_timer_t *t);

/* After any change to e->h: the table's eligibility, the tick timer and the
   record follow. */
static void apply(entry *e, uint64_t now) {
  dsp_monitor *m = e->m;
  int el = dsp_health_eligible(&e->h, now);
  uint64_t next;
  if (el != dsp_balance_worker_eligible(m->table, e->id)) {
    dsp_balance_set_eligible(m->table, e->id, el);
    if (el)
      DSP_INFO("worker %s up: %s", e->name, e->h.reason[0] ? e->h.reason : "eligible");
    else
      DSP_WARN("worker %s %s: %s", e->name,
               dsp_health_state_name(dsp_health_state_of(&e->h, now)), e->h.reason);
  }
  next = dsp_health_next_tick(&e->h, now);
  if (next == UINT64_MAX)
    uv_timer_stop(&e->tick_timer);
  else
    uv_timer_start(&e->tick_timer, on_tick, next > now ? next - now : 0, 0);
  write_record(e);
}

/* What expires by itself, as of now: from e's tick timer, or earlier when
   someone reads e's health (dsp_monitor_health). */
static void tick(entry *e, uint64_t now) {
  dsp_health_tick(&e->h, now);
  apply(e, now);
}

static void on_tick(uv_timer_t *t) {
  tick(DSP_CONTAINER_OF(t, entry, tick_timer), dsp_now_ms());
}

/* ---- probes --------------------------------------------------------------------- */

static void on_probe_due(entry *e);

static void on_pace(uv_idle_t *h);

/* e's probe is over (done or cancelled): its place goes to the queue. */
static void probe_over(entry *e) {
  dsp_monitor *m = e->m;
  if (!e->probing) return;
  e->probing = 0;
  m->inflight--;
  if (m->queue.n > 0 && !m->closing) uv_idle_start(&m->pacer, on_pace); /* no-op if running */
}

/* A probe we could not make (LOCAL): warned about at most once per
   LOCAL_WARN_MS, with how many there were since, so that fd exhaustion
   across thousands of workers is one line every few seconds. */
static void warn_local(dsp_monitor *m, const entry *e, const char *reason, uint64_t now) {
  m->local_unwarned++;
  if (m->local_warned_ms != 0 && now - m->local_warned_ms < LOCAL_WARN_MS) return;
  DSP_WARN("cannot probe worker %s: %s; not counted against it (%" PRIu64
           " such probe%s since the last warning)",
           e->name, reason, m->local_unwarned, m->local_unwarned == 1 ? "" : "s");
  m->local_warned_ms = now;
  m->local_unwarned = 0;
}

static void on_probe_done(void *arg, const dsp_probe_result *r) {
  entry *e = arg;
  uint64_t now = dsp_now_ms();
  probe_over(e);
  if (!r->ok)
    e->failures[r->kind > 0 && r->kind < DSP_MONITOR_KINDS ? r->kind : DSP_PROBE_OTHER]++;
  if (r->kind == DSP_PROBE_LOCAL) {
    warn_local(e->m, e, r->reason, now);
    dsp_health_probe_inconclusive(&e->h, r->reason, now);
  } else {
    dsp_health_probe_result(&e->h, r->ok, r->reason, r->latency_us, now);
  }
  apply(e, now);
}

static void probe_now(entry *e) {
  dsp_monitor *m = e->m;
  const dsp_health_settings *s = &e->h.settings;
  dsp_probe_spec spec;
  int rc;
  memset(&spec, 0, sizeof(spec));
  spec.url = s->check;
  spec.timeout_ms = s->timeout_ms;
  spec.status_lo = s->expect_status_lo;
  spec.status_hi = s->expect_status_hi;
  spec.expect_body = s->expect_body;
  spec.body_limit = s->body_limit;
  e->token = ++m->next_token;
  rc = dsp_probe_start(m->prober, e->token, &spec, on_probe_done, e);
  if (rc == 0) {
    e->probing = 1;
    m->inflight++;
  } else {
    /* Out of memory is our failure, not the worker's (LOCAL); anything
       else (the settings were validated) counts like a failed probe. */
    dsp_probe_result r;
    memset(&r, 0, sizeof(r));
    r.kind = rc == UV_ENOMEM ? DSP_PROBE_LOCAL : DSP_PROBE_OTHER;
    snprintf(r.reason, sizeof(r.reason), "cannot probe: %s", uv_strerror(rc));
    on_probe_done(e, &r);
  }
}

/* ---- pacing (see the top of the file) ---- */

static void unqueue(entry *e) {
  dsp_monitor *m = e->m;
  dsp_fifo_remove(&m->queue, &e->queued);
  if (m->queue.n == 0) uv_idle_stop(&m->pacer);
}

static void on_pace(uv_idle_t *h) {
  dsp_monitor *m = DSP_CONTAINER_OF(h, dsp_monitor, pacer);
  size_t n = 1 + m->queue.n / PACE_SHARE;
  if (m->inflight >= MAX_INFLIGHT) {
    uv_idle_stop(&m->pacer); /* probe_over() starts it again */
    return;
  }
  if (n > MAX_INFLIGHT - m->inflight) n = MAX_INFLIGHT - m->inflight;
  while (n-- > 0 && m->queue.head != NULL) {
    entry *e = DSP_CONTAINER_OF(m->queue.head, entry, queued);
    unqueue(e);
    probe_now(e); /* may not touch the queue: its callback runs later */
  }
}

static void enqueue(entry *e) {
  dsp_monitor *m = e->m;
  dsp_fifo_push(&m->queue, &e->queued);
  uv_idle_start(&m->pacer, on_pace); /* no-op if running */
}

static void on_probe_due(entry *e) {
  dsp_monitor *m = e->m;
  const dsp_health_settings *s = &e->h.settings;
  uint64_t now = uv_now(m->loop), delay;
  if (s->check[0] == '\0') return;
  /* A fixed cadence, kept on absolute times: a timer that fires late does
     not push the rounds after it, and workers keep their own phases
     instead of bunching up in the loop turns where their timers happened
     to fire together. After a quick first probe, the next round takes a
     random phase within the interval, so workers added together spread
     out. */
  delay = e->rephase ? 1 + rand64(m) % s->interval_ms
                     : dsp_health_next_probe_delay(s, rand64(m));
  e->rephase = 0;
  e->due += delay;
  if (now > e->due && now - e->due >= s->interval_ms) {
    /* A whole round behind (the loop stalled): skip, keep the phase. */
    uint64_t rounds = (now - e->due) / s->interval_ms + 1;
    e->due += rounds * s->interval_ms;
  }
  dsp_wheel_add(&m->wheel, &e->probe, e->due);
  /* The last one still runs or waits (a stalled loop): skip this round. */
  if (!e->probing) enqueue(e);
}

static void on_wheel(uv_timer_t *t);

/* Set the wheel's timer for its next slot with a node. */
static void wheel_arm(dsp_monitor *m) {
  uint64_t next = dsp_wheel_next(&m->wheel), now = uv_now(m->loop);
  if (next == m->wheel_armed || m->closing) return;
  m->wheel_armed = next;
  if (next == UINT64_MAX)
    uv_timer_stop(&m->wheel_timer);
  else
    uv_timer_start(&m->wheel_timer, on_wheel, next > now ? next - now : 0, 0);
}

static void on_wheel(uv_timer_t *t) {
  dsp_monitor *m = DSP_CONTAINER_OF(t, dsp_monitor, wheel_timer);
  uint64_t now = uv_now(m->loop);
  dsp_wheel_node *n;
  m->wheel_armed = UINT64_MAX;
  while ((n = dsp_wheel_expire(&m->wheel, now)) != NULL)
    on_probe_due(DSP_CONTAINER_OF(n, entry, probe));
  wheel_arm(m);
}

/* Forget e's probing: off the queue and the wheel, its probe cancelled. */
static void probe_forget(entry *e) {
  dsp_monitor *m = e->m;
  unqueue(e);
  if (e->probing) dsp_probe_cancel(m->prober, e->token);
  probe_over(e);
  dsp_wheel_remove(&m->wheel, &e->probe);
}

/* (Re)start probing: first probe soon if the worker is not known up, within
   one interval otherwise; nothing without a check. */
static void schedule_first_probe(entry *e, uint64_t now) {
  dsp_monitor *m = e->m;
  const dsp_health_settings *s = &e->h.settings;
  uint64_t spread;
  probe_forget(e);
  if (s->check[0] == '\0') return;
  spread = dsp_health_eligible(&e->h, now) ? s->interval_ms
           : s->interval_ms < FIRST_PROBE_SPREAD_MS ? s->interval_ms
                                                     : FIRST_PROBE_SPREAD_MS;
  e->rephase = spread < s->interval_ms;
  e->due = uv_now(m->loop) + rand64(m) % (spread ? spread : 1);
  dsp_wheel_add(&m->wheel, &e->probe, e->due);
  wheel_arm(m);
}

/* ---- entries -------------------------------------------------------------------- */

static void entry_closed(uv_handle_t *h) { entry_unref(h->data); }

static void entry_unref(entry *e) {
  if (--e->refs > 0) return;
  free(e);
}

/* Start from the predecessor's record if there is one, else from scratch. */
static void entry_begin(entry *e, const dsp_health_settings *s, uint64_t now) {
  const record *r = find_rec(e->m, e->name, e->czxid);
  assert(s != &e->h.settings); /* dsp_health_init clears e->h first */
  if (r != NULL) {
    dsp_health_init_from_record(&e->h, s, &r->rec, now);
    e->rec_since_wall = r->rec.since_ms;
    e->rec_changed_ms = e->h.changed_ms;
  } else {
    dsp_health_init(&e->h, s, now);
    e->rec_since_wall = 0;
  }
  e->written_seq = e->h.record_seq; /* what ZooKeeper holds already */
  apply(e, now);
  schedule_first_probe(e, now);
}

static void entry_drop(entry *e) {
  dsp_monitor *m = e->m;
  probe_forget(e);
  dsp_fifo_remove(&m->entries, &e->link);
  if (m->table) dsp_balance_set_data(m->table, e->id, NULL);
  uv_close((uv_handle_t *)&e->tick_timer, entry_closed);
}

void dsp_monitor_added(dsp_monitor *m, dsp_worker_id id, const char *name,
                       const dsp_health_settings *s, int64_t czxid) {
  entry *e;
  if (m->table == NULL) return;
  if ((e = calloc(1, sizeof(*e))) == NULL) {
    /* Without an entry the worker has no checks: keep it out. */
    DSP_ERROR("out of memory watching worker %s; it stays out of routing", name);
    dsp_balance_set_eligible(m->table, id, 0);
    return;
  }
  e->m = m;
  e->id = id;
  e->czxid = czxid;
  snprintf(e->name, sizeof(e->name), "%s", name);
  uv_timer_init(m->loop, &e->tick_timer);
  e->tick_timer.data = e;
  e->refs = 1;
  dsp_fifo_push(&m->entries, &e->link);
  dsp_balance_set_data(m->table, id, e);
  if (!m->loaded) {
    /* Ineligible until the records are in (the coordinator does not
       decide before then anyway). */
    dsp_health_init(&e->h, s, dsp_now_ms());
    e->written_seq = e->h.record_seq;
    e->waiting_record = 1;
    dsp_balance_set_eligible(m->table, id, 0);
    return;
  }
  entry_begin(e, s, dsp_now_ms());
}

void dsp_monitor_changed(dsp_monitor *m, dsp_worker_id id, const dsp_health_settings *s) {
  entry *e = entry_of(m, id);
  uint64_t now = dsp_now_ms();
  int reprobe;
  if (e == NULL) return;
  if (e->waiting_record) {
    dsp_health_init(&e->h, s, now);
    e->written_seq = e->h.record_seq;
    return;
  }
  reprobe = strcmp(e->h.settings.check, s->check) != 0 ||
            e->h.settings.interval_ms != s->interval_ms ||
            e->h.settings.timeout_ms != s->timeout_ms;
  dsp_health_reconfigure(&e->h, s, now);
  apply(e, now);
  if (reprobe) schedule_first_probe(e, now);
}

void dsp_monitor_removed(dsp_monitor *m, dsp_worker_id id, int deleted) {
  entry *e = entry_of(m, id);
  if (e == NULL) return;
  if (deleted) delete_record(m, e->name);
  entry_drop(e);
}

int dsp_monitor_heartbeat(dsp_monitor *m, dsp_worker_id id) {
  entry *e = entry_of(m, id);
  uint64_t now = dsp_now_ms();
  if (e == NULL || e->h.settings.heartbeat_ttl_ms == 0) return -1;
  dsp_health_heartbeat(&e->h, now);
  if (!e->waiting_record) apply(e, now);
  return 0;
}

void dsp_monitor_report(dsp_monitor *m, dsp_worker_id id, int ok) {
  entry *e = entry_of(m, id);
  uint64_t now;
  if (e == NULL || e->waiting_record || e->h.settings.max_fails == 0) return;
  /* The common case, a success with nothing counted, changes nothing. */
  if (ok && e->h.fails == 0) return;
  now = dsp_now_ms();
  if (dsp_health_report(&e->h, ok, now) ||
      dsp_health_next_tick(&e->h, now) != UINT64_MAX)
    apply(e, now);
}

const dsp_health *dsp_monitor_health(dsp_monitor *m, dsp_worker_id id, uint64_t now) {
  entry *e = entry_of(m, id);
  if (e == NULL) return NULL;
  /* An expiry due by now whose timer has not fired yet (timers run once a
     loop turn, in whole milliseconds): apply it first. */
  if (dsp_health_next_tick(&e->h, now) <= now) tick(e, now);
  return &e->h;
}


uint64_t dsp_monitor_state_age(const dsp_monitor *m, dsp_worker_id id, uint64_t now) {
  const entry *e = entry_of(m, id);
  if (e == NULL) return 0;
  if (e->rec_since_wall != 0 && e->h.changed_ms == e->rec_changed_ms) {
    /* Still in the state the record gave: age it from the record's wall
       time, so a failover does not reset it. */
    uint64_t wall = wall_ms();
    return wall > e->rec_since_wall ? wall - e->rec_since_wall : 0;
  }
  return now > e->h.changed_ms ? now - e->h.changed_ms : 0;
}

int dsp_monitor_failures(const dsp_monitor *m, dsp_worker_id id,
                         uint64_t out[DSP_MONITOR_KINDS]) {
  const entry *e = entry_of(m, id);
  if (e == NULL) return -1;
  memcpy(out, e->failures, sizeof(e->failures));
  return 0;
}

/* ---- loading the records ------------------------------------------------------ */

typedef struct {
  dsp_monitor *m;
  unsigned gen;
  char name[DSP_BAL_NAME_MAX + 1];
} rctx;

static void load_end(dsp_monitor *m) {
  uint64_t now = dsp_now_ms();
  if (m->loaded || m->loading == 0 || --m->loading > 0) return;
  if (m->nrecs > 1) qsort(m->recs, m->nrecs, sizeof(*m->recs), cmp_rec);
  m->loaded = 1;
  DSP_INFO("health records loaded: %zu", m->nrecs);
  for (dsp_fifo_link *l = m->entries.head; l != NULL; l = l->next) {
    entry *e = DSP_CONTAINER_OF(l, entry, link);
    dsp_health_settings st;
    if (!e->waiting_record) continue;
    e->waiting_record = 0;
    st = e->h.settings; /* a copy: entry_begin re-initialises e->h */
    entry_begin(e, &st, now);
  }
}

static void rec_done(int rc, const char *value, int len, const struct Stat *st, const void *d) {
  rctx *c = (rctx *)d;
  dsp_monitor *m = c->m;
  dsp_health_record rec;
  char err[160];
  if (c->gen != m->gen || m->table == NULL) {
    free(c);
    return;
  }
  if (rc == ZOK && st != NULL) {
    if (dsp_health_record_parse(value, len > 0 ? (size_t)len : 0, &rec, err, sizeof(err)) != 0) {
      DSP_WARN("%s/%s: %s; record ignored (the worker starts unchecked)", m->folder, c->name,
               err);
    } else {
      if (m->nrecs == m->caprecs) {
        size_t cap = m->caprecs ? m->caprecs * 2 : 64;
        record *nr = realloc(m->recs, cap * sizeof(*nr));
        if (nr != NULL) {
          m->recs = nr;
          m->caprecs = cap;
        }
      }
      /* Out of memory: the worker starts unchecked (pending), the safe way. */
      if (m->nrecs < m->caprecs && (m->recs[m->nrecs].name = strdup(c->name)) != NULL) {
        m->recs[m->nrecs].mzxid = st->mzxid;
        m->recs[m->nrecs].used = 0;
        m->recs[m->nrecs].rec = rec;
        m->nrecs++;
      }
    }
  }
  free(c);
  load_end(m);
}

static void recs_listed(int rc, const struct String_vector *sv, const void *d) {
  rctx *lc = (rctx *)d;
  dsp_monitor *m = lc->m;
  zhandle_t *zh = zh_of(m);
  char path[PATH_LEN + DSP_BAL_NAME_MAX + 2];
  unsigned gen = lc->gen;
  free(lc);
  if (gen != m->gen || m->table == NULL) return; /* for an earlier follow() */
  if (rc == ZOK && sv != NULL && zh != NULL) {
    for (int i = 0; i < sv->count; i++) {
      rctx *c = malloc(sizeof(*c));
      if (c == NULL || strlen(sv->data[i]) > DSP_BAL_NAME_MAX) {
        free(c);
        continue;
      }
      c->m = m;
      c->gen = gen;
      snprintf(c->name, sizeof(c->name), "%s", sv->data[i]);
      snprintf(path, sizeof(path), "%s/%s", m->folder, sv->data[i]);
      m->loading++;
      if (zoo_aget(zh, path, 0, rec_done, c) != ZOK) {
        m->loading--;
        free(c);
      }
    }
  } else if (rc != ZOK && rc != ZNONODE) {
    DSP_WARN("listing %s: %s; starting without health records", m->folder, zerror(rc));
  }
  load_end(m); /* the listing's own count */
}

static void parent_done(int rc, const char *value, const void *d) {
  (void)rc;
  (void)value;
  (void)d;
}

/* ---- the monitor ---------------------------------------------------------------- */

dsp_monitor *dsp_monitor_new(uv_loop_t *loop, const char *cluster) {
  dsp_monitor *m = calloc(1, sizeof(*m));
  if (m == NULL) return NULL;
  m->loop = loop;
  m->prober = dsp_prober_new(loop, NULL);
  if (m->prober == NULL) {
    free(m);
    return NULL;
  }
  uv_idle_init(loop, &m->pacer);
  uv_timer_init(loop, &m->wheel_timer);
  dsp_wheel_init(&m->wheel, uv_now(loop));
  m->wheel_armed = UINT64_MAX;
  if (getrandom(&m->rng, sizeof(m->rng), GRND_NONBLOCK) != (ssize_t)sizeof(m->rng) || !m->rng)
    m->rng = dsp_now_ms() | 1;
  snprintf(m->base, sizeof(m->base), "/dispatcher/%.128s", cluster);
  snprintf(m->folder, sizeof(m->folder), "/dispatcher/%.128s/health", cluster);
  return m;
}

void dsp_monitor_set_member(dsp_monitor *m, dsp_member *member) { m->member = member; }

int dsp_monitor_loaded(const dsp_monitor *m) { return m->table != NULL && m->loaded; }

void dsp_monitor_follow(dsp_monitor *m, dsp_balance *table, int64_t epoch) {
  zhandle_t *zh;
  if (m->closing) table = NULL;
  m->gen++;
  while (m->entries.head != NULL) entry_drop(DSP_CONTAINER_OF(m->entries.head, entry, link));
  recs_clear(m);
  m->table = table;
  m->epoch = epoch;
  m->loaded = 0;
  m->loading = 0;
  if (table == NULL) return;
  zh = zh_of(m);
  m->loading = 1; /* the listing */
  if (zh == NULL) {
    load_end(m);
    return;
  }
  zoo_acreate(zh, "/dispatcher", "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, parent_done, NULL);
  zoo_acreate(zh, m->base, "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, parent_done, NULL);
  zoo_acreate(zh, m->folder, "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, parent_done, NULL);
  {
    rctx *lc = calloc(1, sizeof(*lc));
    if (lc == NULL) {
      load_end(m);
      return;
    }
    lc->m = m;
    lc->gen = m->gen;
    if (zoo_aget_children(zh, m->folder, 0, recs_listed, lc) != ZOK) {
      free(lc);
      load_end(m);
    }
  }
  dsp_member_kick(m->member);
}

static void prober_closed(void *arg) {
  dsp_monitor *m = arg;
  m->prober = NULL;
}

void dsp_monitor_close(dsp_monitor *m) {
  if (m == NULL || m->closing) return;
  m->closing = 1;
  dsp_monitor_follow(m, NULL, 0);
  uv_close((uv_handle_t *)&m->pacer, NULL); /* freed with m, after the loop ran out */
  uv_close((uv_handle_t *)&m->wheel_timer, NULL);
  dsp_prober_close(m->prober, prober_closed, m);
}

void dsp_monitor_free(dsp_monitor *m) {
  if (m == NULL) return;
  recs_clear(m);
  free(m);
}
