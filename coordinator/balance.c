/*
 * balance.c: the node table and its eight strategies (see balance.h for the
 * contract, docs/strategies.md for semantics and costs).
 *
 * Layout. Workers live in slots that never change while a worker exists; an
 * id is its slot plus the slot's generation. A slot is split in two arrays:
 * w[] holds the 24 bytes every pick and report touches, c[] the rest, so
 * the hot data of 10,000 workers fits a core's L2 cache. order[] lists
 * slots in table order (insertion order, ranked by a strictly increasing
 * seq). Two open-addressing indexes map names and addresses to slots.
 *
 * Derived structures carry the table generation they were built for and are
 * rebuilt by the next pick that needs them, with memory reserved when the
 * table changed, so picks never allocate:
 *  - active[]: eligible workers with weight > 0, in table order; used by
 *    round-robin (cursor kept as a seq, so changes neither restart nor skip
 *    the cycle), nginx's smooth weighted round robin and the least-* scans.
 *  - a Vose alias table over active[] (random, p2c): O(1) weighted pick.
 *  - prefix sums of weights over active[] (hash).
 *  - three indexed binary heaps over active[] for tables above
 *    DSP_BAL_SMALL_TABLE: an earliest-deadline-first schedule for `weighted`
 *    (deadlines k/w within a cycle, compared exactly by cross-multiplying,
 *    so every cycle of sum(weights) picks gives each worker its weight), and
 *    least-conn / least-time orders. Their state lives in the workers (a
 *    heap entry holds a snapshot of the key), so a rebuild loses nothing;
 *    a pick or report only queues the worker on a dirty list, and the next
 *    least-* pick re-snapshots and sifts each queued worker.
 *
 * The consistent-hash ring is kept up to date at once by every change:
 * nginx's points (crc32 over host, NUL, port, then the previous point),
 * sorted by (hash, table order), split into 2^bits buckets by the top bits
 * of the hash, each a small sorted array of about 16..64 points. A change
 * inserts or deletes only the points that come or go, each in its bucket;
 * a lookup reads one bucket. The bucket count grows with the ring.
 *
 * Per-worker strategy state (smooth weights, deadlines, latency) survives
 * table changes; the new coordinator after a failover starts from zero.
 */
#include "balance.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define POINTS_PER_WEIGHT 160 /* ngx_http_upstream_init_chash */
#define SLOT_BITS 20
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define GEN_MASK 0x7ffu
#define VSTEP (1ull << 20) /* virtual time of one pick at weight 1 */
#define EWMA_ALPHA 0.05

enum { H_EDF, H_LC, H_LT, H_COUNT };

typedef struct {
  uint32_t hash;
  uint32_t slot;
} point;

/* What every pick and report reads: 24 bytes, so 10,000 workers take
 * 240 KB and stay in a core's L2 cache next to the alias table. */
enum {
  F_ELIGIBLE = 1,
  /* 1 << H_LC, 1 << H_LT: queued on that heap's dirty list */
  F_LIVE = 8 /* 0: free slot */
};

typedef struct {
  uint32_t gen;
  uint32_t inflight;
  double ewma; /* < 0: no sample yet */
  uint16_t weight;
  uint8_t flags;
} worker;

/* The rest, per slot, in a parallel array. */
typedef struct {
  uint64_t seq; /* table order */
  int32_t hpos[H_COUNT];
  char *name;
  char *addr;
  void *data;    /* the caller's (dsp_balance_set_data) */
  uint32_t base; /* crc32 state after host, NUL, port (not finalized) */
  uint32_t edf_k, edf_w;
  uint64_t edf_cycle;  /* next deadline: edf_cycle + edf_k / edf_w */
  int64_t cw[H_COUNT]; /* smooth wrr current_weight: weighted, lc, lt */
  uint64_t vd[H_COUNT]; /* least-* heap tie-break virtual deadlines */
} wcold;

typedef struct {
  point *p;
  uint32_t n, cap;
} bucket;

/* One column of the alias table: keep `self` when the draw is below prob,
 * else take `alias` (both slots), so a pick reads one entry. */
typedef struct {
  uint32_t prob;
  int32_t self, alias;
} alias_ent;

/* A heap entry holds a snapshot of its worker's key: a worker whose key
 * changed is re-snapshotted and sifted alone, one change at a time, which
 * keeps the heap valid (sifting several stale keys at once would not). */
typedef struct {
  uint64_t t; /* EDF: cycle; least-*: virtual deadline */
  uint64_t seq;
  double ewma;
  uint32_t inflight, weight, k; /* EDF: deadline t + k/weight */
  int32_t slot;
} hent;

typedef struct {
  hent *h;
  int32_t *dirty;
  uint32_t n, ndirty;
  uint64_t gen; /* table generation the heap was built for, 0 never */
  uint64_t vnow;
} heap;

struct dsp_balance {
  worker *w;
  wcold *c;
  uint32_t cap, used; /* slots allocated, slots ever used */
  int32_t *freel;
  uint32_t nfree;
  int32_t *order;
  uint32_t n;
  uint64_t next_seq;
  int32_t *name_ix, *addr_ix;
  uint32_t ix_mask;

  dsp_strategy def;
  uint64_t rng;
  unsigned factor;

  uint64_t gen;              /* bumped by every change of the active set */
  uint32_t nactive;          /* eager */
  uint64_t wactive;          /* eager: total weight of active workers */
  uint64_t inflight_active;  /* eager: total in flight on active workers */

  int32_t *active;
  uint32_t active_n;
  uint64_t active_gen;

  alias_ent *alias;
  int32_t *scratch; /* 2*cap: Vose's small and large stacks */
  uint64_t *scaled;
  uint64_t alias_gen;

  uint64_t *prefix;
  uint64_t prefix_gen;

  uint32_t rr_idx;
  uint64_t rr_next_seq;
  uint64_t rr_gen;

  heap hp[H_COUNT];
  int edf_mode; /* weighted: 0 nginx scan, 1 EDF heap */
  uint64_t now_cycle;
  uint32_t now_k, now_w;

  bucket *bk;
  unsigned bits; /* 2^bits buckets; 0 before the first point */
  size_t ring_n;
};

/* --- crc32, as ngx_crc32_long / ngx_crc32_update ------------------------ */

static uint32_t crc_table[256];

static void crc_init(void)
{
  if (crc_table[1] != 0) return;
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    crc_table[i] = c;
  }
}

static uint32_t crc_update(uint32_t c, const void *data, size_t len)
{
  const unsigned char *p = data;
  while (len--) c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
  return c;
}

uint32_t dsp_balance_crc32(const void *data, size_t len)
{
  crc_init();
  return crc_update(0xffffffffu, data, len) ^ 0xffffffffu;
}

/* --- names, errors ------------------------------------------------------- */

static const char *const strategy_names[DSP_STRATEGY_COUNT] = {
    "default",   "random",          "round-robin", "weighted",
    "hash",      "consistent-hash", "least-time",  "least-conn",
    "p2c"};

int dsp_strategy_parse(const char *name)
{
  if (name == NULL) return DSP_BAL_ESTRATEGY;
  for (int s = 0; s < DSP_STRATEGY_COUNT; s++)
    if (strcmp(name, strategy_names[s]) == 0) return s;
  return DSP_BAL_ESTRATEGY;
}

const char *dsp_strategy_name(dsp_strategy s)
{
  if ((int)s < 0 || s >= DSP_STRATEGY_COUNT) return NULL;
  return strategy_names[s];
}

const char *dsp_balance_strerror(int err)
{
  switch (err) {
  case 0: return "success";
  case DSP_BAL_ENOMEM: return "out of memory";
  case DSP_BAL_ENOWORKER: return "no eligible worker";
  case DSP_BAL_ESTRATEGY: return "unknown strategy";
  case DSP_BAL_ENOKEY: return "strategy needs a key";
  case DSP_BAL_ENAME: return "invalid worker name";
  case DSP_BAL_EADDR: return "invalid address (want host:port)";
  case DSP_BAL_EWEIGHT: return "weight out of range";
  case DSP_BAL_EEXIST: return "duplicate worker name";
  case DSP_BAL_EADDRINUSE: return "duplicate worker address";
  case DSP_BAL_ENOENT: return "no such worker";
  case DSP_BAL_EFULL: return "worker table full";
  case DSP_BAL_EINVAL: return "invalid argument";
  default: return "unknown error";
  }
}

static int name_valid(const char *s)
{
  size_t len = 0;
  for (; s[len]; len++) {
    char c = s[len];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
          c == '-' || c == '[' || c == ']'))
      return 0;
    if (len >= DSP_BAL_NAME_MAX) return 0;
  }
  return len > 0;
}

/* host:port or [v6]:port, port 1..65535 in plain decimal. */
static int addr_valid(const char *s)
{
  size_t len = strlen(s);
  if (len == 0 || len > DSP_BAL_ADDR_MAX) return 0;
  const char *colon = strrchr(s, ':');
  if (colon == NULL) return 0;
  const char *port = colon + 1;
  size_t plen = strlen(port);
  if (plen == 0 || plen > 5) return 0;
  long v = 0;
  for (size_t i = 0; i < plen; i++) {
    if (port[i] < '0' || port[i] > '9') return 0;
    v = v * 10 + (port[i] - '0');
  }
  if (v < 1 || v > 65535) return 0;
  size_t hlen = (size_t)(colon - s);
  if (hlen == 0) return 0;
  if (s[0] == '[') {
    if (hlen < 3 || s[hlen - 1] != ']') return 0;
    for (size_t i = 1; i + 1 < hlen; i++) {
      char c = s[i];
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
            (c >= 'A' && c <= 'Z') || c == ':' || c == '.' || c == '%'))
        return 0;
    }
    return 1;
  }
  for (size_t i = 0; i < hlen; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
          (c >= 'A' && c <= 'Z') || c == '.' || c == '-' || c == '_'))
      return 0;
  }
  return 1;
}

/* nginx's base hash: crc32 state over HOST, a NUL byte, PORT, where PORT is
 * the trailing run of digits after the last ':' (ngx_http_upstream_init_chash). */
static uint32_t addr_base_hash(const char *s)
{
  size_t len = strlen(s), hlen = len, plen = 0;
  for (size_t j = 0; j < len; j++) {
    char c = s[len - j - 1];
    if (c == ':') {
      hlen = len - j - 1;
      plen = j;
      break;
    }
    if (c < '0' || c > '9') break;
  }
  uint32_t c = crc_update(0xffffffffu, s, hlen);
  c = crc_update(c, "", 1);
  return crc_update(c, s + len - plen, plen);
}

/* Point j of a worker: crc32(base, previous point as 4 little-endian bytes),
 * the first point chaining from 0. Returns the hash after `prev`. */
static uint32_t point_next(uint32_t base, uint32_t prev)
{
  unsigned char b[4] = {(unsigned char)prev, (unsigned char)(prev >> 8),
                        (unsigned char)(prev >> 16),
                        (unsigned char)(prev >> 24)};
  return crc_update(base, b, 4) ^ 0xffffffffu;
}

/* --- random source: splitmix64 ------------------------------------------- */

static uint64_t rnd(dsp_balance *b)
{
  uint64_t z = (b->rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void dsp_balance_seed(dsp_balance *b, uint64_t seed) { b->rng = seed; }

/* --- name and address indexes (linear probing, backward-shift delete) ---- */

static uint32_t str_hash(const char *s)
{
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

static const char *ix_key(const dsp_balance *b, int which, int32_t slot)
{
  return which ? b->c[slot].addr : b->c[slot].name;
}

static int32_t ix_find(const dsp_balance *b, int which, const char *key)
{
  const int32_t *ix = which ? b->addr_ix : b->name_ix;
  if (ix == NULL) return -1;
  for (uint32_t i = str_hash(key) & b->ix_mask;; i = (i + 1) & b->ix_mask) {
    if (ix[i] < 0) return -1;
    if (strcmp(ix_key(b, which, ix[i]), key) == 0) return ix[i];
  }
}

static void ix_insert(dsp_balance *b, int which, int32_t slot)
{
  int32_t *ix = which ? b->addr_ix : b->name_ix;
  uint32_t i = str_hash(ix_key(b, which, slot)) & b->ix_mask;
  while (ix[i] >= 0) i = (i + 1) & b->ix_mask;
  ix[i] = slot;
}

static void ix_delete(dsp_balance *b, int which, int32_t slot)
{
  int32_t *ix = which ? b->addr_ix : b->name_ix;
  uint32_t i = str_hash(ix_key(b, which, slot)) & b->ix_mask;
  while (ix[i] != slot) {
    assert(ix[i] >= 0);
    i = (i + 1) & b->ix_mask;
  }
  /* Shift back later entries of the cluster that may not stay past the hole. */
  uint32_t hole = i;
  for (uint32_t j = (i + 1) & b->ix_mask; ix[j] >= 0; j = (j + 1) & b->ix_mask) {
    uint32_t home = str_hash(ix_key(b, which, ix[j])) & b->ix_mask;
    if (((j - home) & b->ix_mask) >= ((j - hole) & b->ix_mask)) {
      ix[hole] = ix[j];
      hole = j;
    }
  }
  ix[hole] = -1;
}

/* --- memory -------------------------------------------------------------- */

static int grow(void *pp, size_t elem, size_t n)
{
  void **p = pp;
  void *q = realloc(*p, elem * n);
  if (q == NULL) return -1;
  *p = q;
  return 0;
}

/* Make room for `need` slots in every per-slot array. */
static int reserve_slots(dsp_balance *b, uint32_t need)
{
  if (need <= b->cap) return 0;
  uint32_t cap = b->cap ? b->cap : 16;
  while (cap < need) cap *= 2;
  if (grow(&b->w, sizeof(worker), cap) || grow(&b->c, sizeof(wcold), cap) ||
      grow(&b->freel, sizeof(int32_t), cap) ||
      grow(&b->order, sizeof(int32_t), cap) ||
      grow(&b->active, sizeof(int32_t), cap) ||
      grow(&b->alias, sizeof(alias_ent), cap) ||
      grow(&b->scratch, sizeof(int32_t), 2 * (size_t)cap) ||
      grow(&b->scaled, sizeof(uint64_t), cap) ||
      grow(&b->prefix, sizeof(uint64_t), cap))
    return DSP_BAL_ENOMEM;
  for (int k = 0; k < H_COUNT; k++)
    if (grow(&b->hp[k].h, sizeof(hent), cap) ||
        grow(&b->hp[k].dirty, sizeof(int32_t), cap))
      return DSP_BAL_ENOMEM;

  /* Indexes: at most half full. */
  uint32_t ixn = 1;
  while (ixn < 2 * cap) ixn *= 2;
  int32_t *nix = malloc(sizeof(int32_t) * ixn);
  int32_t *aix = malloc(sizeof(int32_t) * ixn);
  if (nix == NULL || aix == NULL) {
    free(nix);
    free(aix);
    return DSP_BAL_ENOMEM;
  }
  free(b->name_ix);
  free(b->addr_ix);
  b->name_ix = nix;
  b->addr_ix = aix;
  b->ix_mask = ixn - 1;
  memset(nix, 0xff, sizeof(int32_t) * ixn);
  memset(aix, 0xff, sizeof(int32_t) * ixn);
  b->cap = cap;
  for (uint32_t i = 0; i < b->n; i++) {
    ix_insert(b, 0, b->order[i]);
    ix_insert(b, 1, b->order[i]);
  }
  return 0;
}

dsp_balance *dsp_balance_new(void)
{
  crc_init();
  dsp_balance *b = calloc(1, sizeof(*b));
  if (b == NULL) return NULL;
  b->def = DSP_STRATEGY_WEIGHTED;
  b->rng = 1;
  b->gen = 1;
  b->next_seq = 1;
  b->now_w = 1;
  return b;
}

void dsp_balance_free(dsp_balance *b)
{
  if (b == NULL) return;
  for (uint32_t i = 0; i < b->n; i++) {
    free(b->c[b->order[i]].name);
    free(b->c[b->order[i]].addr);
  }
  free(b->w);
  free(b->c);
  free(b->freel);
  free(b->order);
  free(b->name_ix);
  free(b->addr_ix);
  free(b->active);
  free(b->alias);
  free(b->scratch);
  free(b->scaled);
  free(b->prefix);
  for (int k = 0; k < H_COUNT; k++) {
    free(b->hp[k].h);
    free(b->hp[k].dirty);
  }
  for (size_t i = 0; b->bits && i < ((size_t)1 << b->bits); i++)
    free(b->bk[i].p);
  free(b->bk);
  free(b);
}

int dsp_balance_set_default(dsp_balance *b, dsp_strategy s)
{
  if ((int)s <= DSP_STRATEGY_DEFAULT || s >= DSP_STRATEGY_COUNT)
    return DSP_BAL_ESTRATEGY;
  b->def = s;
  return 0;
}

dsp_strategy dsp_balance_get_default(const dsp_balance *b) { return b->def; }

int dsp_balance_set_hash_balance_factor(dsp_balance *b, unsigned percent)
{
  if ((percent > 0 && percent < 100) || percent > 100000) return DSP_BAL_EINVAL;
  b->factor = percent;
  return 0;
}

/* --- ids ----------------------------------------------------------------- */

static worker *lookup(const dsp_balance *b, dsp_worker_id id, int32_t *slot)
{
  if (id < 0) return NULL;
  uint32_t s = (uint32_t)id & SLOT_MASK;
  if (s >= b->used) return NULL;
  worker *w = &b->w[s];
  if (!(w->flags & F_LIVE) || (w->gen & GEN_MASK) != ((uint32_t)id >> SLOT_BITS))
    return NULL;
  if (slot) *slot = (int32_t)s;
  return w;
}

static dsp_worker_id make_id(const dsp_balance *b, int32_t slot)
{
  return (dsp_worker_id)((uint32_t)slot |
                         ((b->w[slot].gen & GEN_MASK) << SLOT_BITS));
}

static int is_active(const worker *w)
{
  return (w->flags & F_ELIGIBLE) && w->weight > 0;
}

/* Eager totals: call leave() before changing a worker, enter() after. */
static void leave(dsp_balance *b, const worker *w)
{
  if (!is_active(w)) return;
  b->nactive--;
  b->wactive -= (uint64_t)w->weight;
  b->inflight_active -= w->inflight;
}

static void enter(dsp_balance *b, const worker *w)
{
  if (!is_active(w)) return;
  b->nactive++;
  b->wactive += (uint64_t)w->weight;
  b->inflight_active += w->inflight;
}

/* Queue a worker whose key changed onto the live least-* heaps. */
static void touch(dsp_balance *b, worker *w, int32_t slot)
{
  for (int k = H_LC; k <= H_LT; k++) {
    heap *h = &b->hp[k];
    /* With the heap current, it holds exactly the active workers. */
    if (h->gen != b->gen || (w->flags & (1u << k)) || !is_active(w)) continue;
    w->flags |= (uint8_t)(1u << k);
    h->dirty[h->ndirty++] = slot;
  }
}

/* EDF: the worker's next deadline is its first k/w strictly after now. */
static void edf_from_now(dsp_balance *b, worker *w)
{
  if (!b->edf_mode || w->weight <= 0) return;
  wcold *c = &b->c[w - b->w];
  uint64_t k = (uint64_t)b->now_k * (uint64_t)w->weight / b->now_w + 1;
  if (k > (uint64_t)w->weight) {
    c->edf_cycle = b->now_cycle + 1;
    c->edf_k = 1;
  } else {
    c->edf_cycle = b->now_cycle;
    c->edf_k = (uint32_t)k;
  }
  c->edf_w = (uint32_t)w->weight;
}

/* --- consistent-hash ring ------------------------------------------------ */

/* Ring order: hash, then table order. nginx sorts with qsort and keeps the
 * first of equal hashes; glibc's qsort has long been a stable merge sort,
 * so that is the server configured first. */
static int point_less(const dsp_balance *b, const point *x, const point *y)
{
  if (x->hash != y->hash) return x->hash < y->hash;
  return b->c[x->slot].seq < b->c[y->slot].seq;
}

static bucket *bucket_of(const dsp_balance *b, uint32_t hash)
{
  return &b->bk[hash >> (32 - b->bits)];
}

static int bucket_insert(dsp_balance *b, bucket *k, point pt)
{
  if (k->n == k->cap) {
    uint32_t cap = k->cap ? k->cap * 2 : 8;
    if (grow(&k->p, sizeof(point), cap)) return DSP_BAL_ENOMEM;
    k->cap = cap;
  }
  uint32_t lo = 0, hi = k->n; /* first point after pt */
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (point_less(b, &pt, &k->p[mid])) hi = mid;
    else lo = mid + 1;
  }
  memmove(k->p + lo + 1, k->p + lo, sizeof(point) * (k->n - lo));
  k->p[lo] = pt;
  k->n++;
  return 0;
}

static void bucket_delete(bucket *k, point pt)
{
  uint32_t lo = 0, hi = k->n; /* first point with hash >= pt.hash */
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (k->p[mid].hash < pt.hash) lo = mid + 1;
    else hi = mid;
  }
  while (lo < k->n && k->p[lo].slot != pt.slot) lo++;
  assert(lo < k->n && k->p[lo].hash == pt.hash);
  memmove(k->p + lo, k->p + lo + 1, sizeof(point) * (k->n - lo - 1));
  k->n--;
}

/* Redistribute the ring into 2^bits buckets. On ENOMEM the old buckets
 * stay (correct, only slower). */
static int rebucket(dsp_balance *b, unsigned bits)
{
  size_t nb = (size_t)1 << bits;
  bucket *nk = calloc(nb, sizeof(bucket));
  if (nk == NULL) return DSP_BAL_ENOMEM;
  size_t ob = b->bits ? (size_t)1 << b->bits : 0;
  /* Sizes first, so every bucket is allocated once. */
  for (size_t i = 0; i < ob; i++)
    for (uint32_t j = 0; j < b->bk[i].n; j++)
      nk[b->bk[i].p[j].hash >> (32 - bits)].cap++;
  for (size_t i = 0; i < nb; i++) {
    if (nk[i].cap == 0) continue;
    nk[i].cap += nk[i].cap / 2;
    nk[i].p = malloc(sizeof(point) * nk[i].cap);
    if (nk[i].p == NULL) {
      for (size_t j = 0; j < i; j++) free(nk[j].p);
      free(nk);
      return DSP_BAL_ENOMEM;
    }
  }
  /* Old buckets in order hold the ring in order: appending keeps it. */
  for (size_t i = 0; i < ob; i++) {
    for (uint32_t j = 0; j < b->bk[i].n; j++) {
      bucket *k = &nk[b->bk[i].p[j].hash >> (32 - bits)];
      k->p[k->n++] = b->bk[i].p[j];
    }
    free(b->bk[i].p);
  }
  free(b->bk);
  b->bk = nk;
  b->bits = bits;
  return 0;
}

/* Delete points [from, to) of a worker's chain. */
static void ring_delete(dsp_balance *b, int32_t slot, uint32_t from,
                        uint32_t to)
{
  uint32_t h = 0, base = b->c[slot].base;
  for (uint32_t j = 0; j < to; j++) {
    h = point_next(base, h);
    if (j >= from) bucket_delete(bucket_of(b, h), (point){h, (uint32_t)slot});
  }
  b->ring_n -= to - from;
}

/* Insert points [from, to) of a worker's chain. Returns 0, or
 * DSP_BAL_ENOMEM with the ring as it was. */
static int ring_insert(dsp_balance *b, int32_t slot, uint32_t from,
                       uint32_t to)
{
  if (b->bits == 0 && rebucket(b, 8)) return DSP_BAL_ENOMEM;
  uint32_t h = 0, base = b->c[slot].base;
  for (uint32_t j = 0; j < to; j++) {
    h = point_next(base, h);
    if (j < from) continue;
    if (bucket_insert(b, bucket_of(b, h), (point){h, (uint32_t)slot})) {
      b->ring_n += j - from;
      ring_delete(b, slot, from, j);
      return DSP_BAL_ENOMEM;
    }
  }
  b->ring_n += to - from;
  /* Keep buckets at 16..64 points on average. */
  unsigned bits = b->bits;
  while (bits < 24 && b->ring_n > ((size_t)64 << bits)) bits += 2;
  if (bits != b->bits) (void)rebucket(b, bits);
  return 0;
}

/* --- table changes ------------------------------------------------------- */

int dsp_balance_add(dsp_balance *b, const char *name, const char *addr,
                    int weight, dsp_worker_id *id)
{
  if (name == NULL || !name_valid(name)) return DSP_BAL_ENAME;
  if (addr == NULL || !addr_valid(addr)) return DSP_BAL_EADDR;
  if (weight < 1 || weight > DSP_BAL_WEIGHT_MAX) return DSP_BAL_EWEIGHT;
  if (ix_find(b, 0, name) >= 0) return DSP_BAL_EEXIST;
  if (ix_find(b, 1, addr) >= 0) return DSP_BAL_EADDRINUSE;
  if (b->n >= DSP_BAL_MAX_WORKERS) return DSP_BAL_EFULL;
  if (reserve_slots(b, b->n + 1)) return DSP_BAL_ENOMEM;

  int reused = b->nfree > 0;
  int32_t slot = reused ? b->freel[b->nfree - 1] : (int32_t)b->used;
  char *n = strdup(name), *a = strdup(addr);
  if (n == NULL || a == NULL) {
    free(n);
    free(a);
    return DSP_BAL_ENOMEM;
  }
  worker *w = &b->w[slot];
  wcold *c = &b->c[slot];
  uint32_t gen = reused ? w->gen : 0; /* bumped by remove */
  memset(w, 0, sizeof(*w));
  memset(c, 0, sizeof(*c));
  w->gen = gen;
  c->seq = b->next_seq; /* ring order needs it */
  c->base = addr_base_hash(a);
  if (ring_insert(b, slot, 0, POINTS_PER_WEIGHT * (uint32_t)weight)) {
    free(n);
    free(a);
    c->seq = 0;
    return DSP_BAL_ENOMEM;
  }
  if (reused) b->nfree--;
  else b->used++;
  c->name = n;
  c->addr = a;
  c->seq = b->next_seq++;
  w->weight = (uint16_t)weight;
  w->flags = F_LIVE | F_ELIGIBLE;
  w->ewma = -1;
  for (int k = 0; k < H_COUNT; k++) c->hpos[k] = -1;
  edf_from_now(b, w);
  b->order[b->n++] = slot;
  ix_insert(b, 0, slot);
  ix_insert(b, 1, slot);
  enter(b, w);
  b->gen++;
  if (id) *id = make_id(b, slot);
  return 0;
}

int dsp_balance_remove(dsp_balance *b, dsp_worker_id id)
{
  int32_t slot;
  worker *w = lookup(b, id, &slot);
  if (w == NULL) return DSP_BAL_ENOENT;
  ring_delete(b, slot, 0, POINTS_PER_WEIGHT * (uint32_t)w->weight);
  leave(b, w);
  ix_delete(b, 0, slot);
  ix_delete(b, 1, slot);
  /* Table order by seq: binary search, then close the gap. */
  uint32_t lo = 0, hi = b->n;
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (b->c[b->order[mid]].seq < b->c[slot].seq) lo = mid + 1;
    else hi = mid;
  }
  assert(lo < b->n && b->order[lo] == slot);
  memmove(b->order + lo, b->order + lo + 1,
          sizeof(int32_t) * (b->n - lo - 1));
  b->n--;
  free(b->c[slot].name);
  free(b->c[slot].addr);
  b->c[slot].name = b->c[slot].addr = NULL;
  w->flags = 0;
  b->c[slot].seq = 0;
  w->gen++;
  b->freel[b->nfree++] = slot;
  b->gen++;
  return 0;
}

int dsp_balance_set_weight(dsp_balance *b, dsp_worker_id id, int weight)
{
  int32_t slot;
  worker *w = lookup(b, id, &slot);
  if (w == NULL) return DSP_BAL_ENOENT;
  if (weight < 0 || weight > DSP_BAL_WEIGHT_MAX) return DSP_BAL_EWEIGHT;
  if (weight == w->weight) return 0;
  uint32_t from = POINTS_PER_WEIGHT * (uint32_t)w->weight;
  uint32_t to = POINTS_PER_WEIGHT * (uint32_t)weight;
  if (to > from && ring_insert(b, slot, from, to)) return DSP_BAL_ENOMEM;
  if (to < from) ring_delete(b, slot, to, from);
  leave(b, w);
  w->weight = (uint16_t)weight;
  edf_from_now(b, w);
  enter(b, w);
  b->gen++;
  return 0;
}

int dsp_balance_set_eligible(dsp_balance *b, dsp_worker_id id, int eligible)
{
  worker *w = lookup(b, id, NULL);
  if (w == NULL) return DSP_BAL_ENOENT;
  eligible = eligible != 0;
  if (eligible == ((w->flags & F_ELIGIBLE) != 0)) return 0;
  leave(b, w);
  w->flags ^= F_ELIGIBLE;
  if (eligible) edf_from_now(b, w);
  enter(b, w);
  b->gen++;
  return 0;
}

int dsp_balance_find(const dsp_balance *b, const char *name, dsp_worker_id *id)
{
  if (name == NULL) return DSP_BAL_ENOENT;
  int32_t slot = ix_find(b, 0, name);
  if (slot < 0) return DSP_BAL_ENOENT;
  if (id) *id = make_id(b, slot);
  return 0;
}

size_t dsp_balance_count(const dsp_balance *b) { return b->n; }

int dsp_balance_at(const dsp_balance *b, size_t pos, dsp_worker_id *id)
{
  if (pos >= b->n) return DSP_BAL_ENOENT;
  if (id) *id = make_id(b, b->order[pos]);
  return 0;
}

const char *dsp_balance_worker_name(const dsp_balance *b, dsp_worker_id id)
{
  int32_t slot;
  return lookup(b, id, &slot) ? b->c[slot].name : NULL;
}

const char *dsp_balance_worker_addr(const dsp_balance *b, dsp_worker_id id)
{
  int32_t slot;
  return lookup(b, id, &slot) ? b->c[slot].addr : NULL;
}

int dsp_balance_set_data(dsp_balance *b, dsp_worker_id id, void *data)
{
  int32_t slot;
  if (!lookup(b, id, &slot)) return DSP_BAL_ENOENT;
  b->c[slot].data = data;
  return 0;
}

void *dsp_balance_worker_data(const dsp_balance *b, dsp_worker_id id)
{
  int32_t slot;
  return lookup(b, id, &slot) ? b->c[slot].data : NULL;
}

int dsp_balance_worker_weight(const dsp_balance *b, dsp_worker_id id)
{
  const worker *w = lookup(b, id, NULL);
  return w ? w->weight : -1;
}

int dsp_balance_worker_eligible(const dsp_balance *b, dsp_worker_id id)
{
  const worker *w = lookup(b, id, NULL);
  return w ? (w->flags & F_ELIGIBLE) != 0 : -1;
}

long long dsp_balance_worker_inflight(const dsp_balance *b, dsp_worker_id id)
{
  const worker *w = lookup(b, id, NULL);
  return w ? (long long)w->inflight : -1;
}

double dsp_balance_worker_latency(const dsp_balance *b, dsp_worker_id id)
{
  const worker *w = lookup(b, id, NULL);
  return w ? w->ewma : -1;
}

/* --- derived structures -------------------------------------------------- */

static void active_update(dsp_balance *b)
{
  if (b->active_gen == b->gen) return;
  uint32_t m = 0;
  for (uint32_t i = 0; i < b->n; i++)
    if (is_active(&b->w[b->order[i]])) b->active[m++] = b->order[i];
  assert(m == b->nactive);
  b->active_n = m;
  b->active_gen = b->gen;
}

/* Vose's alias method in integers: column i keeps itself with probability
 * prob[i]/W and yields alias[i] otherwise. */
static void alias_update(dsp_balance *b)
{
  active_update(b);
  if (b->alias_gen == b->gen) return;
  uint32_t n = b->active_n;
  uint64_t W = b->wactive;
  int32_t *small = b->scratch, *large = b->scratch + b->cap;
  uint32_t ns = 0, nl = 0;
  for (uint32_t i = 0; i < n; i++) {
    b->scaled[i] = (uint64_t)b->w[b->active[i]].weight * n;
    b->alias[i].self = b->alias[i].alias = b->active[i];
    if (b->scaled[i] < W) small[ns++] = (int32_t)i;
    else large[nl++] = (int32_t)i;
  }
  while (ns && nl) {
    int32_t s = small[--ns], l = large[nl - 1];
    b->alias[s].prob = (uint32_t)b->scaled[s];
    b->alias[s].alias = b->active[l];
    b->scaled[l] -= W - b->scaled[s];
    if (b->scaled[l] < W) {
      nl--;
      small[ns++] = l;
    }
  }
  while (nl) b->alias[large[--nl]].prob = (uint32_t)W;
  while (ns) b->alias[small[--ns]].prob = (uint32_t)W; /* leftovers */
  b->alias_gen = b->gen;
}

static int32_t alias_pick(dsp_balance *b)
{
  uint64_t r = rnd(b);
  uint32_t col = (uint32_t)(((r >> 32) * b->active_n) >> 32);
  uint32_t x = (uint32_t)(((r & 0xffffffffu) * b->wactive) >> 32);
  const alias_ent *e = &b->alias[col];
  return x < e->prob ? e->self : e->alias;
}

static void prefix_update(dsp_balance *b)
{
  active_update(b);
  if (b->prefix_gen == b->gen) return;
  uint64_t sum = 0;
  for (uint32_t i = 0; i < b->active_n; i++) {
    sum += (uint64_t)b->w[b->active[i]].weight;
    b->prefix[i] = sum;
  }
  b->prefix_gen = b->gen;
}

/* --- heaps --------------------------------------------------------------- */

/* -1, 0, 1 as a worker with (ewma, inflight, weight) x is better (sooner),
 * as good as, or worse than y, by the least-conn (H_LC) or least-time (H_LT)
 * score alone. Compared by cross-multiplying, never dividing. */
#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE int score_cmp(int k, double ex, uint32_t ix, uint32_t wx,
                                   double ey, uint32_t iy, uint32_t wy)
{
  if (k == H_LT) {
    int xs = ex >= 0, ys = ey >= 0;
    if (xs != ys) return xs ? 1 : -1; /* unsampled first */
    if (xs) {
      double a = ex * (1.0 + ix) * wy, c = ey * (1.0 + iy) * wx;
      return a < c ? -1 : a > c ? 1 : 0;
    }
  }
  uint64_t a = (uint64_t)ix * wy, c = (uint64_t)iy * wx;
  return a < c ? -1 : a > c ? 1 : 0;
}

static ALWAYS_INLINE int wscore_cmp(int k, const worker *x, const worker *y)
{
  return score_cmp(k, x->ewma, x->inflight, (uint32_t)x->weight, y->ewma,
                   y->inflight, (uint32_t)y->weight);
}

static int hless(int k, const hent *x, const hent *y)
{
  if (k == H_EDF) {
    if (x->t != y->t) return x->t < y->t;
    uint64_t a = (uint64_t)x->k * y->weight, c = (uint64_t)y->k * x->weight;
    if (a != c) return a < c;
  } else {
    int r = score_cmp(k, x->ewma, x->inflight, x->weight, y->ewma,
                      y->inflight, y->weight);
    if (r) return r < 0;
    if (x->t != y->t) return x->t < y->t;
  }
  return x->seq < y->seq;
}

static void snap(const dsp_balance *b, int k, int32_t slot, hent *e)
{
  const worker *w = &b->w[slot];
  e->slot = slot;
  e->seq = b->c[slot].seq;
  e->ewma = w->ewma;
  e->inflight = w->inflight;
  if (k == H_EDF) {
    e->t = b->c[slot].edf_cycle;
    e->k = b->c[slot].edf_k;
    e->weight = b->c[slot].edf_w;
  } else {
    e->t = b->c[slot].vd[k];
    e->k = 0;
    e->weight = (uint32_t)w->weight;
  }
}

static void hset(dsp_balance *b, int k, uint32_t i, const hent *e)
{
  b->hp[k].h[i] = *e;
  b->c[e->slot].hpos[k] = (int32_t)i;
}

static uint32_t sift_up(dsp_balance *b, int k, uint32_t i)
{
  hent *h = b->hp[k].h, e = h[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (!hless(k, &e, &h[p])) break;
    hset(b, k, i, &h[p]);
    i = p;
  }
  hset(b, k, i, &e);
  return i;
}

static void sift_down(dsp_balance *b, int k, uint32_t i)
{
  hent *h = b->hp[k].h, e = h[i];
  uint32_t n = b->hp[k].n;
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && hless(k, &h[c + 1], &h[c])) c++;
    if (!hless(k, &h[c], &e)) break;
    hset(b, k, i, &h[c]);
    i = c;
  }
  hset(b, k, i, &e);
}

/* Bring heap k up to date: rebuilt from active[] after a table change,
 * otherwise the workers queued by touch() are re-snapshotted one by one. */
static void heap_update(dsp_balance *b, int k)
{
  heap *h = &b->hp[k];
  if (h->gen != b->gen) {
    active_update(b);
    for (uint32_t i = 0; i < b->n; i++) {
      b->c[b->order[i]].hpos[k] = -1;
      if (k != H_EDF) b->w[b->order[i]].flags &= (uint8_t)~(1u << k);
    }
    h->ndirty = 0;
    h->n = b->active_n;
    for (uint32_t i = 0; i < h->n; i++) {
      hent e;
      snap(b, k, b->active[i], &e);
      hset(b, k, i, &e);
    }
    for (uint32_t i = h->n / 2; i-- > 0;) sift_down(b, k, i);
    h->gen = b->gen;
    return;
  }
  assert(k != H_EDF || h->ndirty == 0); /* EDF keys change only in picks */
  for (uint32_t i = 0; i < h->ndirty; i++) {
    int32_t slot = h->dirty[i];
    b->w[slot].flags &= (uint8_t)~(1u << k);
    if (b->c[slot].hpos[k] < 0) continue;
    uint32_t pos = (uint32_t)b->c[slot].hpos[k];
    snap(b, k, slot, &h->h[pos]);
    sift_down(b, k, sift_up(b, k, pos));
  }
  h->ndirty = 0;
}

/* Bounded load: may worker w take one more task? (see balance.h) */
static int under_cap(const dsp_balance *b, const worker *w)
{
  if (b->factor == 0) return 1;
  unsigned __int128 lhs = (unsigned __int128)100 * b->wactive * w->inflight;
  unsigned __int128 rhs = (unsigned __int128)b->factor *
                          (b->inflight_active + 1) * (uint64_t)w->weight;
  return lhs < rhs;
}

static int32_t chash_pick(dsp_balance *b, const void *key, size_t keylen)
{
  size_t n = b->ring_n;
  if (n == 0) return -1;
  uint32_t hash = dsp_balance_crc32(key, keylen);
  uint32_t mask = (1u << b->bits) - 1, bi = hash >> (32 - b->bits);
  const bucket *k = &b->bk[bi];
  uint32_t lo = 0, hi = k->n; /* first point >= hash, wrapping around */
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (k->p[mid].hash < hash) lo = mid + 1;
    else hi = mid;
  }
  uint32_t i = lo;
  while (i == k->n) {
    bi = (bi + 1) & mask;
    k = &b->bk[bi];
    i = 0;
  }
  for (size_t tries = 0; tries < n;) {
    const point *p = &k->p[i];
    const worker *w = &b->w[p->slot];
    if (is_active(w) && under_cap(b, w)) return (int32_t)p->slot;
    /* nginx keeps one point per hash value: skip the whole run. */
    uint32_t h = p->hash;
    do {
      i++;
      while (i == k->n) {
        bi = (bi + 1) & mask;
        k = &b->bk[bi];
        i = 0;
      }
      tries++;
    } while (tries < n && k->p[i].hash == h);
  }
  return -1;
}

/* --- strategies ---------------------------------------------------------- */

static int32_t rr_pick(dsp_balance *b)
{
  active_update(b);
  if (b->rr_gen != b->gen) {
    uint32_t lo = 0, hi = b->active_n;
    while (lo < hi) {
      uint32_t mid = (lo + hi) / 2;
      if (b->c[b->active[mid]].seq < b->rr_next_seq) lo = mid + 1;
      else hi = mid;
    }
    b->rr_idx = lo == b->active_n ? 0 : lo;
    b->rr_gen = b->gen;
  }
  int32_t s = b->active[b->rr_idx];
  b->rr_idx = b->rr_idx + 1 == b->active_n ? 0 : b->rr_idx + 1;
  b->rr_next_seq = b->c[b->active[b->rr_idx]].seq;
  return s;
}

/* nginx's smooth weighted round robin over active[] (table order). */
static int32_t swrr_pick(dsp_balance *b)
{
  active_update(b);
  int64_t total = 0;
  wcold *best = NULL;
  int32_t bs = -1;
  for (uint32_t i = 0; i < b->active_n; i++) {
    int32_t s = b->active[i];
    wcold *c = &b->c[s];
    c->cw[H_EDF] += b->w[s].weight;
    total += b->w[s].weight;
    if (best == NULL || c->cw[H_EDF] > best->cw[H_EDF]) {
      best = c;
      bs = s;
    }
  }
  best->cw[H_EDF] -= total;
  return bs;
}

static int32_t weighted_pick(dsp_balance *b)
{
  int edf = b->n > DSP_BAL_SMALL_TABLE;
  if (edf != b->edf_mode) {
    /* Crossing the threshold restarts the cycle. */
    b->edf_mode = edf;
    b->now_cycle = 0;
    b->now_k = 0;
    b->now_w = 1;
    for (uint32_t i = 0; i < b->n; i++) {
      const worker *w = &b->w[b->order[i]];
      wcold *c = &b->c[b->order[i]];
      c->cw[H_EDF] = 0;
      c->edf_cycle = 0;
      c->edf_k = 1;
      c->edf_w = w->weight > 0 ? (uint32_t)w->weight : 1;
    }
    b->hp[H_EDF].gen = 0;
  }
  if (!edf) return swrr_pick(b);
  heap_update(b, H_EDF);
  int32_t s = b->hp[H_EDF].h[0].slot;
  wcold *c = &b->c[s];
  b->now_cycle = c->edf_cycle;
  b->now_k = c->edf_k;
  b->now_w = c->edf_w;
  if (c->edf_k < c->edf_w) {
    c->edf_k++;
  } else {
    c->edf_cycle++;
    c->edf_k = 1;
  }
  snap(b, H_EDF, s, &b->hp[H_EDF].h[0]);
  sift_down(b, H_EDF, 0);
  return s;
}

/* nginx's least_conn: the best score wins; a tie among several goes to
 * smooth weighted round robin over the tied workers only. */
static ALWAYS_INLINE int32_t least_scan(dsp_balance *b, int k)
{
  active_update(b);
  uint32_t bi = 0;
  int many = 0;
  for (uint32_t i = 1; i < b->active_n; i++) {
    int r = wscore_cmp(k, &b->w[b->active[i]], &b->w[b->active[bi]]);
    if (r < 0) {
      bi = i;
      many = 0;
    } else if (r == 0) {
      many = 1;
    }
  }
  if (!many) return b->active[bi];
  const worker *ref = &b->w[b->active[bi]];
  wcold *best = NULL;
  int32_t bs = -1;
  int64_t total = 0;
  for (uint32_t i = bi; i < b->active_n; i++) {
    int32_t s = b->active[i];
    const worker *w = &b->w[s];
    if (wscore_cmp(k, w, ref) != 0) continue;
    wcold *c = &b->c[s];
    c->cw[k] += w->weight;
    total += w->weight;
    if (best == NULL || c->cw[k] > best->cw[k]) {
      best = c;
      bs = s;
    }
  }
  best->cw[k] -= total;
  return bs;
}

/* Above DSP_BAL_SMALL_TABLE: the heap's top; ties in score go to the
 * earliest virtual deadline, which advances by 1/weight per pick. */
static int32_t least_heap(dsp_balance *b, int k)
{
  heap_update(b, k);
  heap *h = &b->hp[k];
  int32_t s = h->h[0].slot;
  wcold *c = &b->c[s];
  uint64_t base = c->vd[k] > h->vnow ? c->vd[k] : h->vnow;
  h->vnow = base;
  c->vd[k] = base + VSTEP / (uint64_t)b->w[s].weight;
  /* The caller bumps in-flight and queues the worker on the dirty list;
   * the next pick re-snapshots and sifts it. */
  return s;
}

static int32_t least_pick(dsp_balance *b, int k)
{
  if (b->n > DSP_BAL_SMALL_TABLE) return least_heap(b, k);
  /* Constant k: the scan is compiled once per score. */
  return k == H_LC ? least_scan(b, H_LC) : least_scan(b, H_LT);
}

static int32_t p2c_pick(dsp_balance *b)
{
  alias_update(b);
  int32_t x = alias_pick(b), y = alias_pick(b);
  const worker *a = &b->w[x], *c = &b->w[y];
  if ((uint64_t)c->inflight * (uint64_t)a->weight <
      (uint64_t)a->inflight * (uint64_t)c->weight)
    return y;
  return x;
}

static int32_t hash_pick(dsp_balance *b, const void *key, size_t keylen)
{
  prefix_update(b);
  uint64_t h = dsp_balance_crc32(key, keylen) % b->wactive;
  uint32_t lo = 0, hi = b->active_n - 1; /* first prefix > h */
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (b->prefix[mid] > h) hi = mid;
    else lo = mid + 1;
  }
  return b->active[lo];
}

int dsp_balance_pick(dsp_balance *b, dsp_strategy s, const void *key,
                     size_t keylen, dsp_worker_id *id)
{
  if (id == NULL) return DSP_BAL_EINVAL;
  if (s == DSP_STRATEGY_DEFAULT) s = b->def;
  if ((int)s <= DSP_STRATEGY_DEFAULT || s >= DSP_STRATEGY_COUNT)
    return DSP_BAL_ESTRATEGY;
  if ((s == DSP_STRATEGY_HASH || s == DSP_STRATEGY_CONSISTENT_HASH) &&
      key == NULL)
    return DSP_BAL_ENOKEY;
  if (b->nactive == 0) return DSP_BAL_ENOWORKER;

  int32_t slot;
  switch (s) {
  case DSP_STRATEGY_RANDOM:
    alias_update(b);
    slot = alias_pick(b);
    break;
  case DSP_STRATEGY_ROUND_ROBIN: slot = rr_pick(b); break;
  case DSP_STRATEGY_WEIGHTED: slot = weighted_pick(b); break;
  case DSP_STRATEGY_HASH: slot = hash_pick(b, key, keylen); break;
  case DSP_STRATEGY_CONSISTENT_HASH:
    slot = chash_pick(b, key, keylen);
    if (slot < 0) return DSP_BAL_ENOWORKER;
    break;
  case DSP_STRATEGY_LEAST_TIME: slot = least_pick(b, H_LT); break;
  case DSP_STRATEGY_LEAST_CONN: slot = least_pick(b, H_LC); break;
  case DSP_STRATEGY_P2C: slot = p2c_pick(b); break;
  default: return DSP_BAL_ESTRATEGY;
  }
  worker *w = &b->w[slot];
  assert(is_active(w));
  w->inflight++;
  b->inflight_active++;
  touch(b, w, slot);
  *id = make_id(b, slot);
  return 0;
}

int dsp_balance_report(dsp_balance *b, dsp_worker_id id, int ok,
                       double latency_us)
{
  int32_t slot;
  worker *w = lookup(b, id, &slot);
  if (w == NULL) return DSP_BAL_ENOENT;
  if (w->inflight > 0) {
    w->inflight--;
    if (is_active(w)) b->inflight_active--;
  }
  if (latency_us >= 0) {
    if (!ok && w->ewma > latency_us) latency_us = w->ewma;
    if (w->ewma < 0) w->ewma = latency_us;
    else w->ewma += EWMA_ALPHA * (latency_us - w->ewma);
  }
  touch(b, w, slot);
  return 0;
}
