/*
 * balance.h: the coordinator's weighted table of workers and the strategies
 * that pick one of them for a task. Pure: no I/O, no clock, no threads; the
 * caller owns time and randomness (dsp_balance_seed) and reports outcomes.
 *
 * A table holds workers (name, "host:port", weight 0..1000, eligibility,
 * in-flight count, latency EWMA). Every routing decision is
 * dsp_balance_pick(), which names a strategy per call (or the table default)
 * and increments the chosen worker's in-flight count; dsp_balance_report()
 * gives the task's outcome and decrements it again. The strategies follow
 * nginx, Envoy and HAProxy; docs/strategies.md gives their exact semantics,
 * costs and behaviour across table changes and coordinator failover.
 *
 * Handles: a worker is named by a dsp_worker_id (a non-negative int) from
 * dsp_balance_add() until dsp_balance_remove(). After removal, calls with the
 * old id fail with DSP_BAL_ENOENT (a generation number in the id guards
 * against reuse of its slot, up to 2048 reuses of one slot). Ids are not
 * stable across coordinators: a new coordinator builds a new table.
 *
 * Cost: picks and reports never allocate. Table changes may allocate (and
 * fail with DSP_BAL_ENOMEM, changing nothing). Structures that need O(n)
 * work after a change (alias table, prefix sums, heaps) are rebuilt by the
 * next pick that uses them, so a burst of changes costs one rebuild, not one
 * per change; the consistent-hash ring is updated by the change itself, in
 * O(points that come or go).
 *
 * Not thread-safe: one table belongs to one thread (the coordinator's loop).
 */
#ifndef DSP_BALANCE_H
#define DSP_BALANCE_H

#include <stddef.h>
#include <stdint.h>

#define DSP_BAL_WEIGHT_MAX 1000
#define DSP_BAL_NAME_MAX 255   /* longest worker name, in bytes */
#define DSP_BAL_ADDR_MAX 255   /* longest "host:port", in bytes */
#define DSP_BAL_MAX_WORKERS (1 << 20)
/* Up to this many workers in the table, `weighted` and the least-* strategies
 * run nginx's exact O(n) algorithms; above it, O(log n) schedulers. */
#define DSP_BAL_SMALL_TABLE 100

/* Results: 0 is success, these are the failures. */
enum {
  DSP_BAL_ENOMEM = -1,     /* out of memory; nothing changed */
  DSP_BAL_ENOWORKER = -2,  /* no eligible worker with weight > 0 */
  DSP_BAL_ESTRATEGY = -3,  /* unknown strategy */
  DSP_BAL_ENOKEY = -4,     /* the strategy needs a key and none was given */
  DSP_BAL_ENAME = -5,      /* invalid worker name */
  DSP_BAL_EADDR = -6,      /* invalid address (want host:port) */
  DSP_BAL_EWEIGHT = -7,    /* weight out of range */
  DSP_BAL_EEXIST = -8,     /* a worker with that name exists */
  DSP_BAL_EADDRINUSE = -9, /* a worker with that address exists */
  DSP_BAL_ENOENT = -10,    /* no such worker (or a stale id) */
  DSP_BAL_EFULL = -11,     /* table holds DSP_BAL_MAX_WORKERS */
  DSP_BAL_EINVAL = -12     /* invalid argument */
};

typedef enum {
  DSP_STRATEGY_DEFAULT = 0, /* the table's default (dsp_balance_set_default) */
  DSP_STRATEGY_RANDOM,
  DSP_STRATEGY_ROUND_ROBIN,
  DSP_STRATEGY_WEIGHTED,
  DSP_STRATEGY_HASH,
  DSP_STRATEGY_CONSISTENT_HASH,
  DSP_STRATEGY_LEAST_TIME,
  DSP_STRATEGY_LEAST_CONN,
  DSP_STRATEGY_P2C,
  DSP_STRATEGY_COUNT
} dsp_strategy;

typedef int dsp_worker_id;
typedef struct dsp_balance dsp_balance;

/* A static English message for a result code; never NULL. */
const char *dsp_balance_strerror(int err);

/*
 * Parse a strategy name ("random", "round-robin", "weighted", "hash",
 * "consistent-hash", "least-time", "least-conn", "p2c"; also "default").
 * Returns the strategy, or DSP_BAL_ESTRATEGY for NULL or anything else.
 */
int dsp_strategy_parse(const char *name);

/* The name of a strategy, or NULL if s is out of range. */
const char *dsp_strategy_name(dsp_strategy s);

/*
 * A new empty table: default strategy `weighted`, random source seeded with
 * 1, bounded load off. Returns NULL when out of memory. The caller frees it
 * with dsp_balance_free(); dsp_balance_free(NULL) does nothing.
 */
dsp_balance *dsp_balance_new(void);
void dsp_balance_free(dsp_balance *b);

/* Reseed the random source (random, p2c). Same seed, same picks. */
void dsp_balance_seed(dsp_balance *b, uint64_t seed);

/* Set the strategy used for DSP_STRATEGY_DEFAULT. Returns 0 or
 * DSP_BAL_ESTRATEGY (s out of range or DSP_STRATEGY_DEFAULT itself). */
int dsp_balance_set_default(dsp_balance *b, dsp_strategy s);
dsp_strategy dsp_balance_get_default(const dsp_balance *b);

/*
 * Bounded load for consistent-hash (HAProxy's hash-balance-factor, after
 * Mirrokni, Thorup and Zadimoghaddam): with percent p (>= 100), a pick skips
 * along the ring past any worker whose in-flight count already reaches
 * ceil(p/100 * (T + 1) * w / W), T being the in-flight total and W the weight
 * total of eligible workers. 0 turns it off (the default). Returns 0 or
 * DSP_BAL_EINVAL (1..99 or above 100000).
 */
int dsp_balance_set_hash_balance_factor(dsp_balance *b, unsigned percent);

/*
 * Add a worker at the end of the table order: name is 1..DSP_BAL_NAME_MAX
 * bytes of [A-Za-z0-9._:[]-], addr is "host:port" or "[v6]:port" with port
 * 1..65535, weight is 1..DSP_BAL_WEIGHT_MAX. It starts eligible with nothing
 * in flight. Both strings are copied. Returns 0 and sets *id (if id is not
 * NULL), or DSP_BAL_ENAME, DSP_BAL_EADDR, DSP_BAL_EWEIGHT, DSP_BAL_EEXIST,
 * DSP_BAL_EADDRINUSE, DSP_BAL_EFULL, DSP_BAL_ENOMEM; on error nothing changes.
 */
int dsp_balance_add(dsp_balance *b, const char *name, const char *addr,
                    int weight, dsp_worker_id *id);

/* Remove a worker; its id becomes stale. Returns 0 or DSP_BAL_ENOENT. */
int dsp_balance_remove(dsp_balance *b, dsp_worker_id id);

/*
 * Change a worker's weight to 0..DSP_BAL_WEIGHT_MAX; weight 0 keeps it in
 * the table but it is never picked (drain). Returns 0, DSP_BAL_ENOENT,
 * DSP_BAL_EWEIGHT or DSP_BAL_ENOMEM (then nothing changed).
 */
int dsp_balance_set_weight(dsp_balance *b, dsp_worker_id id, int weight);

/* Mark a worker eligible (up, nonzero) or not (down). Returns 0 or
 * DSP_BAL_ENOENT. */
int dsp_balance_set_eligible(dsp_balance *b, dsp_worker_id id, int eligible);

/* Attach the caller's pointer to a worker (NULL when added; the table never
 * touches it). Returns 0 or DSP_BAL_ENOENT. */
int dsp_balance_set_data(dsp_balance *b, dsp_worker_id id, void *data);
/* The pointer set last, or NULL (also for a stale id). */
void *dsp_balance_worker_data(const dsp_balance *b, dsp_worker_id id);

/* Find a worker by name. Returns 0 and sets *id, or DSP_BAL_ENOENT. */
int dsp_balance_find(const dsp_balance *b, const char *name,
                     dsp_worker_id *id);

/* Number of workers in the table (eligible or not). */
size_t dsp_balance_count(const dsp_balance *b);

/* The worker at position pos (0-based) in table order (insertion order).
 * Returns 0 and sets *id, or DSP_BAL_ENOENT when pos >= count. */
int dsp_balance_at(const dsp_balance *b, size_t pos, dsp_worker_id *id);

/*
 * Pick a worker for one task and count it in flight. key/keylen are used by
 * hash and consistent-hash (key NULL there is DSP_BAL_ENOKEY; an empty key
 * is a key) and ignored otherwise. Returns 0 and sets *id, or
 * DSP_BAL_ESTRATEGY, DSP_BAL_ENOKEY, DSP_BAL_ENOWORKER (DSP_BAL_EINVAL for
 * id == NULL). Never allocates.
 */
int dsp_balance_pick(dsp_balance *b, dsp_strategy s, const void *key,
                     size_t keylen, dsp_worker_id *id);

/*
 * The outcome of a task picked earlier: the in-flight count drops by one
 * (never below 0). latency_us >= 0 feeds the latency EWMA used by
 * least-time (alpha 0.05); a failed task's latency is counted as at least
 * the current EWMA, so failing fast never makes a worker look faster. Pass a
 * negative latency to skip the sample. Returns 0 or DSP_BAL_ENOENT (e.g. the
 * worker was removed meanwhile; nothing to do then).
 */
int dsp_balance_report(dsp_balance *b, dsp_worker_id id, int ok,
                       double latency_us);

/* Accessors. They return NULL / -1 for a stale id. The strings live until
 * the worker is removed. */
const char *dsp_balance_worker_name(const dsp_balance *b, dsp_worker_id id);
const char *dsp_balance_worker_addr(const dsp_balance *b, dsp_worker_id id);
int dsp_balance_worker_weight(const dsp_balance *b, dsp_worker_id id);
int dsp_balance_worker_eligible(const dsp_balance *b, dsp_worker_id id);
long long dsp_balance_worker_inflight(const dsp_balance *b, dsp_worker_id id);
/* Latency EWMA in microseconds, or -1 with no sample yet (or stale id). */
double dsp_balance_worker_latency(const dsp_balance *b, dsp_worker_id id);

/*
 * nginx's crc32 (IEEE 802.3, reflected, as ngx_crc32_long). Exposed for
 * tools and tests that need to reason about consistent-hash placement.
 */
uint32_t dsp_balance_crc32(const void *data, size_t len);

#endif
