/*
 * test_balance.c: the balancer's strategies against their definitions: the
 * exact nginx sequences and per-cycle counts, round robin across table
 * changes, consistent hashing against an independent re-implementation of
 * nginx's ring, key movement and spread, bounded load, least-conn and
 * least-time under scripted outcomes, every error result, and
 * `dispatchctl simulate` run in-process with its stdout captured.
 */
#include <math.h>
#include <stdarg.h>
#include <unistd.h>

#include "balance.h"
#include "simulate.h"
#include "test.h"

/* --- helpers ------------------------------------------------------------- */

/* Bitwise crc32 (IEEE, reflected): independent of the library's table. */
static uint32_t ref_crc_update(uint32_t c, const void *data, size_t len)
{
  const unsigned char *p = data;
  while (len--) {
    c ^= *p++;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return c;
}

static uint32_t ref_crc(const void *data, size_t len)
{
  return ref_crc_update(0xffffffffu, data, len) ^ 0xffffffffu;
}

static dsp_balance *table(const char *const *names, const int *weights, int n)
{
  dsp_balance *b = dsp_balance_new();
  for (int i = 0; i < n; i++) {
    char addr[64];
    snprintf(addr, sizeof(addr), "10.0.%d.%d:8080", i / 250, i % 250 + 1);
    if (dsp_balance_add(b, names[i], addr, weights[i], NULL) != 0) {
      dsp_balance_free(b);
      return NULL;
    }
  }
  return b;
}

/* A table of n workers "w<i>" at "10.0.x.y:8080". */
static dsp_balance *numbered(int n, int (*weight)(int))
{
  dsp_balance *b = dsp_balance_new();
  for (int i = 0; i < n; i++) {
    char name[32], addr[64];
    snprintf(name, sizeof(name), "w%d", i);
    snprintf(addr, sizeof(addr), "10.0.%d.%d:8080", i / 250, i % 250 + 1);
    if (dsp_balance_add(b, name, addr, weight ? weight(i) : 1, NULL) != 0) {
      dsp_balance_free(b);
      return NULL;
    }
  }
  return b;
}

/* Pick and complete at once; returns the worker's name ("" on error). */
static const char *pick1(dsp_balance *b, dsp_strategy s, const char *key)
{
  dsp_worker_id id;
  if (dsp_balance_pick(b, s, key, key ? strlen(key) : 0, &id) != 0) return "";
  dsp_balance_report(b, id, 1, -1);
  return dsp_balance_worker_name(b, id);
}

static int pos_of(dsp_balance *b, dsp_worker_id id)
{
  for (size_t i = 0; i < dsp_balance_count(b); i++) {
    dsp_worker_id x;
    dsp_balance_at(b, i, &x);
    if (x == id) return (int)i;
  }
  return -1;
}

/* --- names and errors ---------------------------------------------------- */

static void test_strategy_names(void)
{
  const char *names[] = {"random", "round-robin", "weighted", "hash",
                         "consistent-hash", "least-time", "least-conn", "p2c"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    int s = dsp_strategy_parse(names[i]);
    CHECK(s > DSP_STRATEGY_DEFAULT && s < DSP_STRATEGY_COUNT);
    CHECK_STR(dsp_strategy_name((dsp_strategy)s), names[i]);
  }
  CHECK_INT(dsp_strategy_parse("least_conn"), ==, DSP_BAL_ESTRATEGY);
  CHECK_INT(dsp_strategy_parse(""), ==, DSP_BAL_ESTRATEGY);
  CHECK_INT(dsp_strategy_parse(NULL), ==, DSP_BAL_ESTRATEGY);
  CHECK(dsp_strategy_name((dsp_strategy)99) == NULL);

  dsp_balance *b = numbered(3, NULL);
  CHECK_INT(dsp_balance_get_default(b), ==, DSP_STRATEGY_WEIGHTED);
  CHECK_INT(dsp_balance_set_default(b, DSP_STRATEGY_DEFAULT), ==,
            DSP_BAL_ESTRATEGY);
  CHECK_INT(dsp_balance_set_default(b, (dsp_strategy)42), ==,
            DSP_BAL_ESTRATEGY);
  CHECK_INT(dsp_balance_set_default(b, DSP_STRATEGY_ROUND_ROBIN), ==, 0);
  CHECK_STR(pick1(b, DSP_STRATEGY_DEFAULT, NULL), "w0");
  CHECK_STR(pick1(b, DSP_STRATEGY_DEFAULT, NULL), "w1");
  dsp_balance_free(b);
}

static void test_errors(void)
{
  dsp_balance *b = dsp_balance_new();
  dsp_worker_id id, a;
  CHECK(b != NULL);
  CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_RANDOM, NULL, 0, &id), ==,
            DSP_BAL_ENOWORKER);
  CHECK_INT(dsp_balance_add(b, "", "h:1", 1, NULL), ==, DSP_BAL_ENAME);
  CHECK_INT(dsp_balance_add(b, NULL, "h:1", 1, NULL), ==, DSP_BAL_ENAME);
  CHECK_INT(dsp_balance_add(b, "a b", "h:1", 1, NULL), ==, DSP_BAL_ENAME);
  CHECK_INT(dsp_balance_add(b, "a/b", "h:1", 1, NULL), ==, DSP_BAL_ENAME);
  char longname[300];
  memset(longname, 'x', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = 0;
  CHECK_INT(dsp_balance_add(b, longname, "h:1", 1, NULL), ==, DSP_BAL_ENAME);
  const char *bad_addrs[] = {"", "host", "host:", ":80", "host:0",
                             "host:65536", "host:8x", "ho st:80", "[::1:80",
                             "[]:80", "host:123456", "a:b:c"};
  for (size_t i = 0; i < sizeof(bad_addrs) / sizeof(bad_addrs[0]); i++)
    CHECK_INT(dsp_balance_add(b, "a", bad_addrs[i], 1, NULL), ==,
              DSP_BAL_EADDR);
  CHECK_INT(dsp_balance_add(b, "a", NULL, 1, NULL), ==, DSP_BAL_EADDR);
  CHECK_INT(dsp_balance_add(b, "a", "h:1", 0, NULL), ==, DSP_BAL_EWEIGHT);
  CHECK_INT(dsp_balance_add(b, "a", "h:1", 1001, NULL), ==, DSP_BAL_EWEIGHT);
  CHECK_INT(dsp_balance_add(b, "a", "h:1", -1, NULL), ==, DSP_BAL_EWEIGHT);
  CHECK_INT(dsp_balance_count(b), ==, 0);
  CHECK_INT(dsp_balance_add(b, "a", "h:1", 1, &a), ==, 0);
  CHECK_INT(dsp_balance_add(b, "v6", "[::1]:80", 1000, NULL), ==, 0);
  CHECK_INT(dsp_balance_add(b, "a", "h:2", 1, NULL), ==, DSP_BAL_EEXIST);
  CHECK_INT(dsp_balance_add(b, "b", "h:1", 1, NULL), ==, DSP_BAL_EADDRINUSE);
  CHECK_INT(dsp_balance_count(b), ==, 2);

  CHECK_INT(dsp_balance_pick(b, (dsp_strategy)77, NULL, 0, &id), ==,
            DSP_BAL_ESTRATEGY);
  CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_HASH, NULL, 0, &id), ==,
            DSP_BAL_ENOKEY);
  CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_CONSISTENT_HASH, NULL, 0, &id),
            ==, DSP_BAL_ENOKEY);
  CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_HASH, "", 0, &id), ==, 0);
  CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_RANDOM, NULL, 0, NULL), ==,
            DSP_BAL_EINVAL);
  CHECK_INT(dsp_balance_set_weight(b, a, 1001), ==, DSP_BAL_EWEIGHT);
  CHECK_INT(dsp_balance_set_weight(b, a, -1), ==, DSP_BAL_EWEIGHT);
  CHECK_INT(dsp_balance_set_hash_balance_factor(b, 99), ==, DSP_BAL_EINVAL);
  CHECK_INT(dsp_balance_set_hash_balance_factor(b, 100001), ==,
            DSP_BAL_EINVAL);
  CHECK_INT(dsp_balance_set_hash_balance_factor(b, 0), ==, 0);

  /* Nothing eligible: weight 0 and down both count. */
  dsp_worker_id v6;
  CHECK_INT(dsp_balance_find(b, "v6", &v6), ==, 0);
  CHECK_INT(dsp_balance_find(b, "nope", &id), ==, DSP_BAL_ENOENT);
  CHECK_INT(dsp_balance_set_weight(b, a, 0), ==, 0);
  CHECK_INT(dsp_balance_set_eligible(b, v6, 0), ==, 0);
  for (int s = DSP_STRATEGY_RANDOM; s < DSP_STRATEGY_COUNT; s++)
    CHECK_INT(dsp_balance_pick(b, (dsp_strategy)s, "k", 1, &id), ==,
              DSP_BAL_ENOWORKER);
  CHECK_INT(dsp_balance_set_eligible(b, v6, 1), ==, 0);
  for (int s = DSP_STRATEGY_RANDOM; s < DSP_STRATEGY_COUNT; s++) {
    CHECK_INT(dsp_balance_pick(b, (dsp_strategy)s, "k", 1, &id), ==, 0);
    CHECK(id == v6);
  }

  /* Stale ids. */
  CHECK_INT(dsp_balance_remove(b, a), ==, 0);
  CHECK_INT(dsp_balance_remove(b, a), ==, DSP_BAL_ENOENT);
  CHECK_INT(dsp_balance_report(b, a, 1, 5), ==, DSP_BAL_ENOENT);
  CHECK_INT(dsp_balance_set_weight(b, a, 3), ==, DSP_BAL_ENOENT);
  CHECK_INT(dsp_balance_set_eligible(b, a, 1), ==, DSP_BAL_ENOENT);
  CHECK(dsp_balance_worker_name(b, a) == NULL);
  CHECK_INT(dsp_balance_worker_weight(b, a), ==, -1);
  CHECK_INT(dsp_balance_report(b, -5, 1, 5), ==, DSP_BAL_ENOENT);
  CHECK_INT(dsp_balance_report(b, 123456, 1, 5), ==, DSP_BAL_ENOENT);
  /* Its slot is reused, but the old id stays stale. */
  dsp_worker_id c;
  CHECK_INT(dsp_balance_add(b, "c", "h:1", 1, &c), ==, 0);
  CHECK(c != a);
  CHECK_INT(dsp_balance_report(b, a, 1, 5), ==, DSP_BAL_ENOENT);
  CHECK_STR(dsp_balance_worker_name(b, c), "c");
  CHECK_INT(dsp_balance_at(b, 2, &id), ==, DSP_BAL_ENOENT);

  /* Every error has its own message. */
  for (int e = DSP_BAL_EINVAL; e <= 0; e++) {
    CHECK(dsp_balance_strerror(e) != NULL);
    CHECK(strcmp(dsp_balance_strerror(e), "unknown error") != 0);
  }
  CHECK_STR(dsp_balance_strerror(-999), "unknown error");
  dsp_balance_free(b);
  dsp_balance_free(NULL);
}

static void test_inflight(void)
{
  dsp_balance *b = numbered(2, NULL);
  dsp_worker_id id, id2;
  CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_ROUND_ROBIN, NULL, 0, &id), ==, 0);
  CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_ROUND_ROBIN, NULL, 0, &id2), ==, 0);
  CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_ROUND_ROBIN, NULL, 0, &id2), ==, 0);
  CHECK(id == id2);
  CHECK_INT(dsp_balance_worker_inflight(b, id), ==, 2);
  CHECK_INT(dsp_balance_report(b, id, 1, 100), ==, 0);
  CHECK_INT(dsp_balance_report(b, id, 0, -1), ==, 0);
  CHECK_INT(dsp_balance_report(b, id, 0, -1), ==, 0);
  CHECK_INT(dsp_balance_worker_inflight(b, id), ==, 0); /* never below 0 */
  CHECK(dsp_balance_worker_latency(b, id) == 100);
  dsp_balance_free(b);
}

/* --- weighted ------------------------------------------------------------ */

static void check_sequence(const int *weights, const char *want, int cycles)
{
  const char *names[] = {"a", "b", "c"};
  dsp_balance *b = table(names, weights, 3);
  CHECK(b != NULL);
  size_t len = strlen(want);
  for (int c = 0; c < cycles; c++)
    for (size_t i = 0; i < len; i++) {
      const char *got = pick1(b, DSP_STRATEGY_WEIGHTED, NULL);
      if (got[0] != want[i] || got[1] != 0) {
        fprintf(stderr, "cycle %d pick %zu: got %s want %c\n", c, i, got,
                want[i]);
        test_failed_flag = 1;
        dsp_balance_free(b);
        return;
      }
    }
  dsp_balance_free(b);
}

static void test_weighted_nginx_sequences(void)
{
  int w1[] = {1, 2, 5}, w2[] = {5, 1, 1}, w3[] = {4, 2, 1};
  check_sequence(w1, "cbcaccbc", 5);
  CHECK(!test_failed_flag);
  check_sequence(w2, "aabacaa", 5);
  CHECK(!test_failed_flag);
  check_sequence(w3, "abacaba", 5);
  CHECK(!test_failed_flag);
}

static void test_weighted_counts(void)
{
  const char *names[] = {"a", "b", "c"};
  int w[] = {1, 2, 5};
  dsp_balance *b = table(names, w, 3);
  int count[3] = {0};
  for (int i = 0; i < 200000; i++) count[pick1(b, DSP_STRATEGY_WEIGHTED, NULL)[0] - 'a']++;
  CHECK_INT(count[0], ==, 25000);
  CHECK_INT(count[1], ==, 50000);
  CHECK_INT(count[2], ==, 125000);
  dsp_balance_free(b);
}

static int weight_mod7(int i) { return i % 7 + 1; }
static int weight_var(int i) { return (i * 37) % 50 + 1; }

/* Above 100 workers: EDF, still exact per cycle of sum(weights) picks. */
static void check_large_cycles(int n, int (*weight)(int), int cycles)
{
  dsp_balance *b = numbered(n, weight);
  CHECK(b != NULL);
  long long W = 0;
  for (int i = 0; i < n; i++) W += weight(i);
  int *count = calloc((size_t)n, sizeof(int));
  for (int c = 0; c < cycles; c++) {
    memset(count, 0, sizeof(int) * (size_t)n);
    for (long long p = 0; p < W; p++) {
      dsp_worker_id id;
      if (dsp_balance_pick(b, DSP_STRATEGY_WEIGHTED, NULL, 0, &id) != 0) break;
      dsp_balance_report(b, id, 1, -1);
      count[atoi(dsp_balance_worker_name(b, id) + 1)]++;
    }
    for (int i = 0; i < n; i++)
      if (count[i] != weight(i)) {
        fprintf(stderr, "n=%d cycle %d: w%d got %d want %d\n", n, c, i,
                count[i], weight(i));
        test_failed_flag = 1;
        break;
      }
    if (test_failed_flag) break;
  }
  free(count);
  dsp_balance_free(b);
}

static void test_weighted_large_exact(void)
{
  check_large_cycles(101, weight_mod7, 4);
  CHECK(!test_failed_flag);
  check_large_cycles(150, weight_mod7, 3);
  CHECK(!test_failed_flag);
  check_large_cycles(1000, weight_var, 2);
  CHECK(!test_failed_flag);
}

/* The smooth property holds above 100 too: no worker is picked twice in a
 * row while another worker's share of the cycle is still higher. */
static void test_weighted_large_spread(void)
{
  dsp_balance *b = numbered(200, NULL);
  dsp_worker_id first;
  CHECK_INT(dsp_balance_at(b, 0, &first), ==, 0);
  /* Equal weights: a pure round in table order, like nginx. */
  for (int i = 0; i < 400; i++) {
    char want[16];
    snprintf(want, sizeof(want), "w%d", i % 200);
    CHECK_STR(pick1(b, DSP_STRATEGY_WEIGHTED, NULL), want);
  }
  dsp_balance_free(b);
}

/* A change keeps the others' smooth weights: a weight change goes on from
 * where the sequence was, and a new worker joins without a restart. */
static void test_weighted_changes(void)
{
  const char *names[] = {"a", "b", "c"};
  int w[] = {1, 1, 1};
  dsp_balance *b = table(names, w, 3);
  CHECK_STR(pick1(b, DSP_STRATEGY_WEIGHTED, NULL), "a");
  dsp_worker_id c;
  CHECK_INT(dsp_balance_find(b, "c", &c), ==, 0);
  CHECK_INT(dsp_balance_set_weight(b, c, 5), ==, 0);
  /* From cw a=-2 b=1 c=1 with weights 1,1,5, by nginx's rules. */
  int count[3] = {0};
  for (int i = 0; i < 7 * 100; i++) count[pick1(b, DSP_STRATEGY_WEIGHTED, NULL)[0] - 'a']++;
  /* Over many cycles the shares are exact up to the carried-over state. */
  CHECK(abs(count[0] - 100) <= 2);
  CHECK(abs(count[1] - 100) <= 2);
  CHECK(abs(count[2] - 500) <= 2);
  dsp_balance_free(b);
}

/* --- round robin --------------------------------------------------------- */

static void test_round_robin(void)
{
  const char *names[] = {"a", "b", "c", "d"};
  int w[] = {1, 5, 1, 9};
  dsp_balance *b = table(names, w, 4);
  /* Weights are ignored. */
  const char *want = "abcdabcd";
  for (int i = 0; want[i]; i++) {
    const char *got = pick1(b, DSP_STRATEGY_ROUND_ROBIN, NULL);
    CHECK(got[0] == want[i]);
  }
  dsp_worker_id a, c, e;
  dsp_balance_find(b, "a", &a);
  dsp_balance_find(b, "c", &c);
  CHECK(pick1(b, DSP_STRATEGY_ROUND_ROBIN, NULL)[0] == 'a');
  /* Next is b. Removing c and adding e neither restarts nor skips. */
  CHECK_INT(dsp_balance_remove(b, c), ==, 0);
  CHECK_INT(dsp_balance_add(b, "e", "10.9.9.9:1", 1, &e), ==, 0);
  want = "bdeabdea";
  for (int i = 0; want[i]; i++)
    CHECK(pick1(b, DSP_STRATEGY_ROUND_ROBIN, NULL)[0] == want[i]);
  /* The next-to-pick worker goes down: its successor comes next. */
  dsp_worker_id bb;
  dsp_balance_find(b, "b", &bb);
  CHECK_INT(dsp_balance_set_eligible(b, bb, 0), ==, 0);
  want = "deadea";
  for (int i = 0; want[i]; i++)
    CHECK(pick1(b, DSP_STRATEGY_ROUND_ROBIN, NULL)[0] == want[i]);
  /* Back up while the cursor is past it: its turn comes after a. */
  CHECK_INT(dsp_balance_set_eligible(b, bb, 1), ==, 0);
  want = "deabdea";
  for (int i = 0; want[i]; i++)
    CHECK(pick1(b, DSP_STRATEGY_ROUND_ROBIN, NULL)[0] == want[i]);
  /* Weight 0 drains. */
  CHECK_INT(dsp_balance_set_weight(b, a, 0), ==, 0);
  want = "bdebde";
  for (int i = 0; want[i]; i++)
    CHECK(pick1(b, DSP_STRATEGY_ROUND_ROBIN, NULL)[0] == want[i]);
  dsp_balance_free(b);
}

/* Every eligible worker once per cycle, through random changes of others. */
static void test_round_robin_cycles(void)
{
  dsp_balance *b = numbered(300, weight_mod7);
  for (int round = 0; round < 20; round++) {
    /* Each round: a full cycle over the current eligible set. */
    size_t n = dsp_balance_count(b);
    int eligible = 0;
    for (size_t i = 0; i < n; i++) {
      dsp_worker_id id;
      dsp_balance_at(b, i, &id);
      eligible += dsp_balance_worker_eligible(b, id) == 1;
    }
    /* Start of a cycle: the cursor is at w... whatever; count a window. */
    char *seen = calloc(n, 1);
    for (int i = 0; i < eligible; i++) {
      dsp_worker_id id;
      CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_ROUND_ROBIN, NULL, 0, &id), ==, 0);
      dsp_balance_report(b, id, 1, -1);
      int p = pos_of(b, id);
      CHECK(p >= 0 && !seen[p]);
      seen[p] = 1;
    }
    free(seen);
    /* Change someone else: flip eligibility of one, remove one, add one. */
    dsp_worker_id id;
    dsp_balance_at(b, (size_t)(round * 13) % n, &id);
    dsp_balance_set_eligible(b, id, round % 2);
    dsp_balance_at(b, (size_t)(round * 29 + 5) % n, &id);
    dsp_balance_remove(b, id);
    char name[32], addr[32];
    snprintf(name, sizeof(name), "x%d", round);
    snprintf(addr, sizeof(addr), "10.1.0.%d:9", round + 1);
    CHECK_INT(dsp_balance_add(b, name, addr, 1, NULL), ==, 0);
  }
  dsp_balance_free(b);
}

/* --- random, p2c --------------------------------------------------------- */

static void test_random(void)
{
  dsp_balance *b = numbered(4, NULL);
  dsp_balance_seed(b, 42);
  int count[4] = {0};
  for (int i = 0; i < 400000; i++) count[pick1(b, DSP_STRATEGY_RANDOM, NULL)[1] - '0']++;
  for (int i = 0; i < 4; i++) CHECK(abs(count[i] - 100000) < 2000);
  /* Weighted 1:3, and the same seed gives the same picks. */
  dsp_balance_free(b);
  const char *names[] = {"a", "b"};
  int w[] = {1, 3};
  b = table(names, w, 2);
  dsp_balance *b2 = table(names, w, 2);
  dsp_balance_seed(b, 7);
  dsp_balance_seed(b2, 7);
  int ca = 0;
  for (int i = 0; i < 100000; i++) {
    const char *x = pick1(b, DSP_STRATEGY_RANDOM, NULL);
    CHECK_STR(x, pick1(b2, DSP_STRATEGY_RANDOM, NULL));
    ca += x[0] == 'a';
  }
  CHECK(abs(ca - 25000) < 1000);
  dsp_balance_free(b);
  dsp_balance_free(b2);
}

static void test_p2c(void)
{
  dsp_balance *b = numbered(3, NULL);
  dsp_worker_id w0, w1, w2, id;
  dsp_balance_find(b, "w0", &w0);
  dsp_balance_find(b, "w1", &w1);
  dsp_balance_find(b, "w2", &w2);
  /* Load w0 with 50 tasks. */
  dsp_balance_set_eligible(b, w1, 0);
  dsp_balance_set_eligible(b, w2, 0);
  for (int i = 0; i < 50; i++) dsp_balance_pick(b, DSP_STRATEGY_P2C, NULL, 0, &id);
  CHECK_INT(dsp_balance_worker_inflight(b, w0), ==, 50);
  dsp_balance_set_eligible(b, w1, 1);
  dsp_balance_set_eligible(b, w2, 1);
  /* w0 now wins only when both candidates are w0: about 1/9. */
  int c0 = 0;
  for (int i = 0; i < 90000; i++) c0 += strcmp(pick1(b, DSP_STRATEGY_P2C, NULL), "w0") == 0;
  CHECK(c0 > 9000 && c0 < 11000);
  dsp_balance_free(b);
}

/* --- hash ---------------------------------------------------------------- */

static void test_hash(void)
{
  dsp_balance *b = numbered(7, NULL);
  for (int i = 0; i < 1000; i++) {
    char key[32], want[16];
    snprintf(key, sizeof(key), "user-%d", i);
    snprintf(want, sizeof(want), "w%u", ref_crc(key, strlen(key)) % 7);
    CHECK_STR(pick1(b, DSP_STRATEGY_HASH, key), want);
  }
  /* Weighted: w0 weight 3 takes residues 0..2 of 9. */
  dsp_worker_id w0;
  dsp_balance_find(b, "w0", &w0);
  dsp_balance_set_weight(b, w0, 3);
  for (int i = 0; i < 1000; i++) {
    char key[32], want[16];
    snprintf(key, sizeof(key), "user-%d", i);
    uint32_t r = ref_crc(key, strlen(key)) % 9;
    snprintf(want, sizeof(want), "w%u", r < 3 ? 0 : r - 2);
    CHECK_STR(pick1(b, DSP_STRATEGY_HASH, key), want);
  }
  dsp_balance_free(b);
}

/* --- consistent hash ----------------------------------------------------- */

typedef struct {
  uint32_t hash;
  int server;
} ref_point;

static int ref_cmp(const void *x, const void *y)
{
  const ref_point *a = x, *c = y;
  if (a->hash != c->hash) return a->hash < c->hash ? -1 : 1;
  return a->server - c->server;
}

/* nginx's ring, built from its documented definition: point j of server
 * "HOST:PORT" is crc32(HOST "\0" PORT LE32(point j-1)), point -1 being 0. */
static size_t ref_ring(const char *const *addrs, const int *weights, int n,
                       ref_point *out)
{
  size_t m = 0;
  for (int s = 0; s < n; s++) {
    const char *colon = strrchr(addrs[s], ':');
    char buf[300];
    size_t hl = (size_t)(colon - addrs[s]), pl = strlen(colon + 1);
    memcpy(buf, addrs[s], hl);
    buf[hl] = 0;
    memcpy(buf + hl + 1, colon + 1, pl);
    uint32_t prev = 0;
    for (int j = 0; j < 160 * weights[s]; j++) {
      unsigned char *le = (unsigned char *)buf + hl + 1 + pl;
      le[0] = (unsigned char)prev;
      le[1] = (unsigned char)(prev >> 8);
      le[2] = (unsigned char)(prev >> 16);
      le[3] = (unsigned char)(prev >> 24);
      prev = ref_crc(buf, hl + 1 + pl + 4);
      out[m].hash = prev;
      out[m].server = s;
      m++;
    }
  }
  qsort(out, m, sizeof(*out), ref_cmp);
  size_t k = 0; /* nginx keeps the first of equal hashes */
  for (size_t j = 1; j < m; j++)
    if (out[j].hash != out[k].hash) out[++k] = out[j];
  return m ? k + 1 : 0;
}

static int ref_find(const ref_point *ring, size_t n, const char *key,
                    const int *up)
{
  uint32_t h = ref_crc(key, strlen(key));
  size_t i = 0;
  while (i < n && ring[i].hash < h) i++;
  for (size_t t = 0; t < n; t++, i++)
    if (up[ring[i % n].server]) return ring[i % n].server;
  return -1;
}

static void test_chash_nginx_known_answer(void)
{
  /* The check value of this crc32 is the standard one. */
  CHECK_INT(ref_crc("123456789", 9), ==, 0xcbf43926u);
  CHECK_INT(dsp_balance_crc32("123456789", 9), ==, 0xcbf43926u);

  const char *names[] = {"a", "b", "c", "d"};
  const char *addrs[] = {"127.0.0.1:8080", "backend.example.com:80",
                         "[::1]:9000", "10.1.2.3:1"};
  int weights[] = {1, 2, 1, 3};
  ref_point *ring = malloc(sizeof(ref_point) * 160 * 7);
  size_t n = ref_ring(addrs, weights, 4, ring);
  CHECK(n > 1000);
  /* A value of the ring computed by hand for the first server: its first
   * point is crc32("127.0.0.1" NUL "8080" 00 00 00 00). */
  unsigned char first[] = "127.0.0.1\0" "8080\0\0\0\0";
  uint32_t p0 = ref_crc(first, sizeof(first) - 1);
  int found = 0;
  for (size_t i = 0; i < n; i++) found |= ring[i].hash == p0 && ring[i].server == 0;
  CHECK(found);

  dsp_balance *b = dsp_balance_new();
  for (int i = 0; i < 4; i++)
    CHECK_INT(dsp_balance_add(b, names[i], addrs[i], weights[i], NULL), ==, 0);
  int up[4] = {1, 1, 1, 1};
  for (int round = 0; round < 3; round++) {
    for (int k = 0; k < 3000; k++) {
      char key[32];
      snprintf(key, sizeof(key), "/path/%d", k);
      int want = ref_find(ring, n, key, up);
      CHECK(want >= 0);
      CHECK_STR(pick1(b, DSP_STRATEGY_CONSISTENT_HASH, key), names[want]);
    }
    /* Then with b down, then b and d down: skipped as nginx does. */
    dsp_worker_id id;
    dsp_balance_find(b, round == 0 ? "b" : "d", &id);
    dsp_balance_set_eligible(b, id, 0);
    up[round == 0 ? 1 : 3] = 0;
  }
  free(ring);
  dsp_balance_free(b);
}

static int count_moved(dsp_balance *b, int nkeys, char (*before)[16])
{
  int moved = 0;
  for (int k = 0; k < nkeys; k++) {
    char key[32];
    snprintf(key, sizeof(key), "key-%d", k);
    const char *w = pick1(b, DSP_STRATEGY_CONSISTENT_HASH, key);
    if (before) {
      moved += strcmp(before[k], w) != 0;
    }
  }
  return moved;
}

static void snapshot(dsp_balance *b, int nkeys, char (*out)[16])
{
  for (int k = 0; k < nkeys; k++) {
    char key[32];
    snprintf(key, sizeof(key), "key-%d", k);
    snprintf(out[k], 16, "%s", pick1(b, DSP_STRATEGY_CONSISTENT_HASH, key));
  }
}

static void check_movement(int n)
{
  const int nkeys = 200000;
  char(*before)[16] = malloc(sizeof(*before) * nkeys);
  dsp_balance *b = numbered(n, NULL);
  snapshot(b, nkeys, before);
  /* Remove one: only its keys move, and they were about 1/N. */
  dsp_worker_id id;
  dsp_balance_find(b, "w3", &id);
  CHECK_INT(dsp_balance_remove(b, id), ==, 0);
  int moved = count_moved(b, nkeys, before);
  for (int k = 0; k < nkeys; k++) {
    char key[32];
    snprintf(key, sizeof(key), "key-%d", k);
    if (strcmp(before[k], "w3") != 0)
      CHECK_STR(pick1(b, DSP_STRATEGY_CONSISTENT_HASH, key), before[k]);
  }
  double f = (double)moved / nkeys;
  fprintf(stderr, "  n=%d remove: moved %.4f (1/N = %.4f)\n", n, f, 1.0 / n);
  CHECK(f >= 0.8 / n && f <= 1.25 / n);
  /* Add one to the N workers: about 1/(N+1) moves, all to the new one. */
  CHECK_INT(dsp_balance_add(b, "w3", "10.0.0.4:8080", 1, NULL), ==, 0);
  snapshot(b, nkeys, before);
  CHECK_INT(dsp_balance_add(b, "new", "192.168.7.7:7000", 1, NULL), ==, 0);
  moved = 0;
  for (int k = 0; k < nkeys; k++) {
    char key[32];
    snprintf(key, sizeof(key), "key-%d", k);
    const char *w = pick1(b, DSP_STRATEGY_CONSISTENT_HASH, key);
    if (strcmp(w, before[k]) != 0) {
      moved++;
      CHECK_STR(w, "new");
    }
  }
  f = (double)moved / nkeys;
  fprintf(stderr, "  n=%d add: moved %.4f (1/N = %.4f)\n", n, f, 1.0 / n);
  CHECK(f >= 0.8 / n && f <= 1.25 / n);
  dsp_balance_free(b);
  free(before);
}

static void test_chash_movement(void)
{
  check_movement(10);
  CHECK(!test_failed_flag);
  check_movement(100);
}

/* The share of the hash space each of 100 equal workers owns on nginx's ring
 * (exact arc lengths, i.e. the expected share of uniformly random keys),
 * and that our picks follow that ring. */
static void test_chash_spread(void)
{
  const char *addrs[100];
  char buf[100][32];
  int weights[100];
  for (int i = 0; i < 100; i++) {
    snprintf(buf[i], sizeof(buf[i]), "10.0.%d.%d:8080", i / 250, i % 250 + 1);
    addrs[i] = buf[i];
    weights[i] = 1;
  }
  ref_point *ring = malloc(sizeof(ref_point) * 160 * 100);
  size_t n = ref_ring(addrs, weights, 100, ring);
  double share[100] = {0};
  for (size_t i = 0; i < n; i++) {
    uint64_t prev = i ? ring[i - 1].hash : ring[n - 1].hash;
    uint64_t len = i ? ring[i].hash - prev : ring[i].hash + (1ull << 32) - prev;
    share[ring[i].server] += (double)len / 4294967296.0 * 100;
  }
  double max = 0, min = 2;
  for (int i = 0; i < 100; i++) {
    max = share[i] > max ? share[i] : max;
    min = share[i] < min ? share[i] : min;
  }
  fprintf(stderr, "  ring shares: largest %.3f, smallest %.3f x average\n",
          max, min);
  CHECK(max <= 1.3);

  dsp_balance *b = numbered(100, NULL);
  int up[100];
  for (int i = 0; i < 100; i++) up[i] = 1;
  for (int k = 0; k < 20000; k++) {
    char key[32], want[16];
    snprintf(key, sizeof(key), "%08x", (unsigned)k * 2654435761u);
    snprintf(want, sizeof(want), "w%d", ref_find(ring, n, key, up));
    CHECK_STR(pick1(b, DSP_STRATEGY_CONSISTENT_HASH, key), want);
  }
  free(ring);
  dsp_balance_free(b);
}

/* The ring after many incremental changes equals a ring built at once. */
static void test_chash_incremental(void)
{
  dsp_balance *b = numbered(300, weight_mod7);
  int live[400] = {0};
  for (int i = 0; i < 300; i++) live[i] = 1;
  int wt[400];
  for (int i = 0; i < 300; i++) wt[i] = weight_mod7(i);
  pick1(b, DSP_STRATEGY_CONSISTENT_HASH, "warm");
  for (int step = 0; step < 200; step++) {
    int i = (step * 7919) % 300;
    char name[32], addr[64];
    snprintf(name, sizeof(name), "w%d", i);
    dsp_worker_id id;
    if (live[i]) {
      dsp_balance_find(b, name, &id);
      if (step % 3 == 0) {
        CHECK_INT(dsp_balance_remove(b, id), ==, 0);
        live[i] = 0;
      } else {
        wt[i] = (step * 13) % 9; /* 0 included */
        CHECK_INT(dsp_balance_set_weight(b, id, wt[i]), ==, 0);
      }
    } else {
      snprintf(addr, sizeof(addr), "10.0.%d.%d:8080", i / 250, i % 250 + 1);
      wt[i] = step % 5 + 1;
      CHECK_INT(dsp_balance_add(b, name, addr, wt[i], NULL), ==, 0);
      live[i] = 1;
    }
    if (step % 10 == 0) pick1(b, DSP_STRATEGY_CONSISTENT_HASH, "between");
  }
  /* Same workers, same table order, built from scratch. */
  dsp_balance *f = dsp_balance_new();
  for (size_t p = 0; p < dsp_balance_count(b); p++) {
    dsp_worker_id id;
    dsp_balance_at(b, p, &id);
    int w = dsp_balance_worker_weight(b, id);
    CHECK_INT(dsp_balance_add(f, dsp_balance_worker_name(b, id),
                              dsp_balance_worker_addr(b, id), w ? w : 1, &id),
              ==, 0);
    if (w == 0) dsp_balance_set_weight(f, id, 0);
  }
  for (int k = 0; k < 20000; k++) {
    char key[32];
    snprintf(key, sizeof(key), "k%d", k);
    CHECK_STR(pick1(b, DSP_STRATEGY_CONSISTENT_HASH, key),
              pick1(f, DSP_STRATEGY_CONSISTENT_HASH, key));
  }
  dsp_balance_free(f);
  dsp_balance_free(b);
}

static void test_chash_bounded_load(void)
{
  dsp_balance *b = numbered(10, weight_mod7);
  CHECK_INT(dsp_balance_set_hash_balance_factor(b, 125), ==, 0);
  long long W = 0;
  for (int i = 0; i < 10; i++) W += weight_mod7(i);
  dsp_worker_id held[3000];
  int nheld = 0;
  long long total = 0;
  for (int i = 0; i < 3000; i++) {
    /* A hot key: without the bound every task would land on one worker. */
    const char *key = i % 4 ? "hot" : "cold";
    dsp_worker_id id;
    CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_CONSISTENT_HASH, key,
                               strlen(key), &id), ==, 0);
    total++;
    long long in = dsp_balance_worker_inflight(b, id);
    long long w = dsp_balance_worker_weight(b, id);
    /* in <= ceil(1.25 * total * w / W) */
    CHECK(in * 100 * W <= 125 * total * w + 100 * W - 1);
    held[nheld++] = id;
    if (i % 3 == 2) { /* some finish */
      dsp_balance_report(b, held[(i * 7) % nheld], 1, -1);
      total = 0;
      for (size_t p = 0; p < 10; p++) {
        dsp_worker_id x;
        dsp_balance_at(b, p, &x);
        total += dsp_balance_worker_inflight(b, x);
      }
    }
  }
  /* Off again: the hot key goes to one worker only. */
  CHECK_INT(dsp_balance_set_hash_balance_factor(b, 0), ==, 0);
  const char *first = pick1(b, DSP_STRATEGY_CONSISTENT_HASH, "hot");
  for (int i = 0; i < 10; i++)
    CHECK_STR(pick1(b, DSP_STRATEGY_CONSISTENT_HASH, "hot"), first);
  dsp_balance_free(b);
}

/* --- least-conn, least-time ---------------------------------------------- */

/* After every pick, the chosen worker had the least in-flight per weight
 * (cross-multiplied) among eligible workers at the time of the pick. */
static void check_least_conn(int n, int steps)
{
  dsp_balance *b = numbered(n, weight_mod7);
  dsp_worker_id *held = malloc(sizeof(*held) * (size_t)steps);
  int nheld = 0;
  unsigned r = 12345;
  for (int i = 0; i < steps; i++) {
    r = r * 1103515245u + 12345u;
    if ((r >> 16) % 3 == 0 && nheld > 0) {
      int k = (int)((r >> 8) % (unsigned)nheld);
      dsp_balance_report(b, held[k], 1, 10);
      held[k] = held[--nheld];
      continue;
    }
    if ((r >> 16) % 17 == 1) { /* flip someone's eligibility */
      dsp_worker_id x;
      dsp_balance_at(b, (r >> 4) % (unsigned)n, &x);
      dsp_balance_set_eligible(b, x, !dsp_balance_worker_eligible(b, x));
    }
    long long best_in = -1, best_w = 1;
    for (int p = 0; p < n; p++) {
      dsp_worker_id x;
      dsp_balance_at(b, (size_t)p, &x);
      if (!dsp_balance_worker_eligible(b, x)) continue;
      long long in = dsp_balance_worker_inflight(b, x), w = dsp_balance_worker_weight(b, x);
      if (best_in < 0 || in * best_w < best_in * w) {
        best_in = in;
        best_w = w;
      }
    }
    dsp_worker_id id;
    if (dsp_balance_pick(b, DSP_STRATEGY_LEAST_CONN, NULL, 0, &id) != 0) continue;
    long long in = dsp_balance_worker_inflight(b, id) - 1;
    CHECK(dsp_balance_worker_eligible(b, id) == 1);
    CHECK_INT(in * best_w, ==, best_in * dsp_balance_worker_weight(b, id));
    held[nheld++] = id;
  }
  free(held);
  dsp_balance_free(b);
}

static void test_least_conn(void)
{
  /* Scripted: weights 1,1 -> a, b; a finishes -> a again. */
  const char *names[] = {"a", "b", "c"};
  int w[] = {1, 1, 2};
  dsp_balance *b = table(names, w, 2);
  dsp_worker_id x, y, z;
  CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_LEAST_CONN, NULL, 0, &x), ==, 0);
  CHECK_STR(dsp_balance_worker_name(b, x), "a");
  CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_LEAST_CONN, NULL, 0, &y), ==, 0);
  CHECK_STR(dsp_balance_worker_name(b, y), "b");
  dsp_balance_report(b, x, 1, -1);
  CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_LEAST_CONN, NULL, 0, &z), ==, 0);
  CHECK_STR(dsp_balance_worker_name(b, z), "a");
  dsp_balance_free(b);
  /* All tied at every pick (each completes at once): ties go to smooth
   * weighted round robin, so the sequence is nginx's. */
  const char *n3[] = {"a", "b", "c"};
  int w3[] = {1, 2, 5};
  b = table(n3, w3, 3);
  const char *want = "cbcaccbccbcaccbc";
  for (int i = 0; want[i]; i++)
    CHECK(pick1(b, DSP_STRATEGY_LEAST_CONN, NULL)[0] == want[i]);
  /* Weight 2 worker holding 1 task ties with an idle weight-1 worker? No:
   * 1/2 > 0/1. Hold one on c (weight 5): 1/5 > 0, a and b still win. */
  dsp_balance_free(b);
  (void)names;
  check_least_conn(10, 5000);
  CHECK(!test_failed_flag);
  check_least_conn(500, 20000);
}

static void test_least_time(void)
{
  const char *names[] = {"a", "b", "c"};
  int w[] = {1, 1, 1};
  dsp_balance *b = table(names, w, 3);
  dsp_worker_id a, bb, c, id;
  dsp_balance_find(b, "a", &a);
  dsp_balance_find(b, "b", &bb);
  dsp_balance_find(b, "c", &c);
  /* Samples for a (100us) and b (200us); c has none and is tried first. */
  dsp_balance_report(b, a, 1, 100);
  dsp_balance_report(b, bb, 1, 200);
  CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_LEAST_TIME, NULL, 0, &id), ==, 0);
  CHECK(id == c);
  dsp_balance_report(b, c, 1, 400);
  /* EWMA with alpha 0.05. */
  dsp_balance_report(b, a, 1, 200);
  CHECK(fabs(dsp_balance_worker_latency(b, a) - 105.0) < 1e-9);
  /* Scores ewma*(1+in): a 105, b 200, c 400 -> a (now 210); b 200 -> b
   * (now 400); a 210 -> a (315); a 315 -> a (420); then b 400 and c 400
   * tie, broken by smooth weighted round robin: b first. */
  const char *want[] = {"a", "b", "a", "a", "b"};
  for (int i = 0; i < 5; i++) {
    CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_LEAST_TIME, NULL, 0, &id), ==, 0);
    CHECK_STR(dsp_balance_worker_name(b, id), want[i]);
  }
  /* A failure never lowers the estimate. */
  dsp_balance_report(b, bb, 0, 1);
  CHECK(dsp_balance_worker_latency(b, bb) == 200);
  dsp_balance_free(b);

  /* Large table: the same definition through the heap. */
  b = numbered(300, NULL);
  for (int i = 0; i < 300; i++) {
    dsp_worker_id x;
    dsp_balance_at(b, (size_t)i, &x);
    if (i != 123) dsp_balance_report(b, x, 1, 1000 + i);
  }
  CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_LEAST_TIME, NULL, 0, &id), ==, 0);
  CHECK_STR(dsp_balance_worker_name(b, id), "w123");
  dsp_balance_report(b, id, 1, 5000);
  /* Now w0 is fastest (1000); holding it, w0 at 2000 loses to w1..; check
   * every pick minimises ewma*(1+in) among all. */
  for (int step = 0; step < 2000; step++) {
    double best = -1;
    for (int i = 0; i < 300; i++) {
      dsp_worker_id x;
      dsp_balance_at(b, (size_t)i, &x);
      double s = dsp_balance_worker_latency(b, x) *
                 (1.0 + (double)dsp_balance_worker_inflight(b, x));
      if (best < 0 || s < best) best = s;
    }
    CHECK_INT(dsp_balance_pick(b, DSP_STRATEGY_LEAST_TIME, NULL, 0, &id), ==, 0);
    double got = dsp_balance_worker_latency(b, id) *
                 (double)dsp_balance_worker_inflight(b, id);
    CHECK(fabs(got - best) < 1e-6);
  }
  dsp_balance_free(b);
}

/* --- everything at once, through churn ------------------------------------ */

static void test_churn_all_strategies(void)
{
  dsp_balance *b = numbered(150, weight_mod7);
  unsigned r = 99;
  int added = 0;
  for (int step = 0; step < 20000; step++) {
    r = r * 1103515245u + 12345u;
    unsigned op = (r >> 16) % 100;
    size_t n = dsp_balance_count(b);
    dsp_worker_id x;
    if (op < 2 && n > 1) {
      dsp_balance_at(b, (r >> 3) % n, &x);
      CHECK_INT(dsp_balance_remove(b, x), ==, 0);
    } else if (op < 4) {
      char name[32], addr[64];
      snprintf(name, sizeof(name), "n%d", added);
      snprintf(addr, sizeof(addr), "10.2.%d.%d:80", added / 250, added % 250);
      added++;
      CHECK_INT(dsp_balance_add(b, name, addr, (int)(r % 9) + 1, NULL), ==, 0);
    } else if (op < 6) {
      dsp_balance_at(b, (r >> 3) % n, &x);
      CHECK_INT(dsp_balance_set_weight(b, x, (int)(r % 5)), ==, 0);
    } else if (op < 8) {
      dsp_balance_at(b, (r >> 3) % n, &x);
      CHECK_INT(dsp_balance_set_eligible(b, x, (r >> 9) & 1), ==, 0);
    } else {
      dsp_strategy s = (dsp_strategy)(1 + (r >> 5) % 8);
      char key[16];
      snprintf(key, sizeof(key), "%u", r % 1000);
      int rc = dsp_balance_pick(b, s, key, strlen(key), &x);
      if (rc == DSP_BAL_ENOWORKER) continue;
      CHECK_INT(rc, ==, 0);
      CHECK(dsp_balance_worker_eligible(b, x) == 1);
      CHECK(dsp_balance_worker_weight(b, x) > 0);
      if ((r >> 7) % 4) dsp_balance_report(b, x, (r >> 11) & 1, (double)(r % 5000));
    }
  }
  dsp_balance_free(b);
}

/* --- allocation failures ------------------------------------------------- */

/* The test links with -Wl,--wrap for these (tests/tests.cmake): every
 * allocation made by the balancer goes through here, and fail_at > 0 makes
 * the fail_at-th one from now fail. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

static long fail_at, allocs;

static int should_fail(void)
{
  allocs++;
  return fail_at > 0 && allocs == fail_at;
}

void *__wrap_malloc(size_t n) { return should_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m)
{
  return should_fail() ? NULL : __real_calloc(n, m);
}
void *__wrap_realloc(void *p, size_t n)
{
  return should_fail() ? NULL : __real_realloc(p, n);
}
char *__wrap_strdup(const char *s) { return should_fail() ? NULL : __real_strdup(s); }

/* Build a table step by step with the k-th allocation failing, for every k:
 * each step either succeeds or returns DSP_BAL_ENOMEM and changes nothing,
 * and the table stays usable (and, under ASan/valgrind, leak-free). */
static void test_alloc_failures(void)
{
  int clean = 0;
  /* Every k at first, then a sample: a run makes about 2,000 allocations
   * (bucket growth, then a rebucket when the weight change grows the ring
   * past 64 points per bucket). */
  for (long k = 1; k < 100000 && !clean; k += k < 300 ? 1 : 17) {
    allocs = 0;
    fail_at = k;
    dsp_balance *b = dsp_balance_new();
    if (b == NULL) continue;
    int added = 0, failed = 0;
    for (int i = 0; i < 12; i++) {
      char name[16], addr[32];
      snprintf(name, sizeof(name), "w%d", i);
      snprintf(addr, sizeof(addr), "10.0.0.%d:80", i + 1);
      int rc = dsp_balance_add(b, name, addr, i % 3 + 1, NULL);
      CHECK(rc == 0 || rc == DSP_BAL_ENOMEM);
      if (rc == 0) added++;
      else failed = 1;
      dsp_worker_id id;
      CHECK_INT(dsp_balance_find(b, name, &id), ==, rc == 0 ? 0 : DSP_BAL_ENOENT);
    }
    CHECK_INT(dsp_balance_count(b), ==, added);
    dsp_worker_id id;
    if (dsp_balance_at(b, 0, &id) == 0) {
      int w = dsp_balance_worker_weight(b, id);
      int rc = dsp_balance_set_weight(b, id, 80);
      CHECK(rc == 0 || rc == DSP_BAL_ENOMEM);
      CHECK_INT(dsp_balance_worker_weight(b, id), ==, rc == 0 ? 80 : w);
      failed |= rc != 0;
    }
    long used = allocs;
    fail_at = 0;
    /* Whatever was built works, the ring included. */
    if (added) {
      for (int s = DSP_STRATEGY_RANDOM; s < DSP_STRATEGY_COUNT; s++)
        CHECK_INT(dsp_balance_pick(b, (dsp_strategy)s, "k", 1, &id), ==, 0);
      dsp_balance *f = dsp_balance_new();
      for (size_t p = 0; p < dsp_balance_count(b); p++) {
        dsp_balance_at(b, p, &id);
        dsp_balance_add(f, dsp_balance_worker_name(b, id),
                        dsp_balance_worker_addr(b, id),
                        dsp_balance_worker_weight(b, id), NULL);
      }
      for (int i = 0; i < 200; i++) {
        char key[16];
        snprintf(key, sizeof(key), "%d", i);
        CHECK_STR(pick1(b, DSP_STRATEGY_CONSISTENT_HASH, key),
                  pick1(f, DSP_STRATEGY_CONSISTENT_HASH, key));
      }
      dsp_balance_free(f);
    }
    dsp_balance_free(b);
    clean = !failed && used < k; /* no failure left to inject */
    if (clean) fprintf(stderr, "  %ld allocations per run\n", used);
  }
  fail_at = 0;
  CHECK(clean);
}

/* --- dispatchctl simulate ------------------------------------------------- */

static char sim_out[1 << 20];

/* Run dsp_simulate_main("simulate", args..., NULL) with stdout captured in
 * sim_out and, if stdin_text is not NULL, stdin fed from it. */
static int sim(const char *stdin_text, ...)
{
  char *argv[32];
  int argc = 0;
  va_list ap;
  va_start(ap, stdin_text);
  argv[argc++] = (char *)"simulate";
  for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 31;) argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;

  int saved_in = -1;
  if (stdin_text) {
    FILE *in = tmpfile();
    fputs(stdin_text, in);
    rewind(in);
    saved_in = dup(0);
    dup2(fileno(in), 0);
    fclose(in);
  }
  fflush(stdout);
  FILE *out = tmpfile();
  int saved_out = dup(1);
  dup2(fileno(out), 1);
  int rc = dsp_simulate_main(argc, argv);
  fflush(stdout);
  dup2(saved_out, 1);
  close(saved_out);
  if (saved_in >= 0) {
    dup2(saved_in, 0);
    close(saved_in);
    clearerr(stdin);
  }
  rewind(out);
  size_t n = fread(sim_out, 1, sizeof(sim_out) - 1, out);
  sim_out[n] = 0;
  fclose(out);
  return rc;
}

static void test_simulate_picks(void)
{
  CHECK_INT(sim(NULL, "--strategy", "weighted", "--workers",
                "a=h:1:1,b=h:2:2,c=h:3:5", "-n", "8", NULL), ==, 0);
  CHECK_STR(sim_out, "c\nb\nc\na\nc\nc\nb\nc\n");
  CHECK_INT(sim(NULL, "-s", "weighted", "-w", "a=h:1:1,b=h:2:2", "-w",
                "c=h:3:5", "-n", "200000", "--counts", NULL), ==, 0);
  CHECK_STR(sim_out, "a\t25000\nb\t50000\nc\t125000\n");
  /* Address as name; weights ignored by round-robin; default weight 1. */
  CHECK_INT(sim(NULL, "-s", "round-robin", "-w", "10.0.0.1:80:2,[::1]:81",
                "-n", "3", NULL), ==, 0);
  CHECK_STR(sim_out, "10.0.0.1:80\n[::1]:81\n10.0.0.1:80\n");
  /* --hold: least-conn spreads a growing load by weight. */
  CHECK_INT(sim(NULL, "-s", "least-conn", "-w", "a=h:1:1,b=h:2:3", "-n", "8",
                "--hold", "--counts", NULL), ==, 0);
  CHECK_STR(sim_out, "a\t2\nb\t6\n");
  /* A change after the first pass, then the same picks again. */
  CHECK_INT(sim(NULL, "-s", "round-robin", "-w", "a=h:1,b=h:2", "-n", "2",
                "--remove", "a", "--add", "c=h:3", NULL), ==, 0);
  CHECK_STR(sim_out, "a\nb\nb\nc\n");
  CHECK_INT(sim(NULL, "-s", "round-robin", "-w", "a=h:1,b=h:2", "-n", "4",
                "--remove", "a", "--add", "c=h:3", "--counts", NULL), ==, 0);
  CHECK_STR(sim_out, "a\t2\t0\nb\t2\t2\nc\t0\t2\n");
  /* least-time with scripted latencies: the fast worker wins. */
  CHECK_INT(sim(NULL, "-s", "least-time", "-w", "a=h:1,b=h:2", "--latency",
                "a=500,b=100", "-n", "4", NULL), ==, 0);
  CHECK_STR(sim_out, "a\nb\nb\nb\n");
}

static void test_simulate_keys(void)
{
  char text[20000] = "";
  size_t len = 0;
  for (int i = 0; i < 1000; i++)
    len += (size_t)snprintf(text + len, sizeof(text) - len, "key%d\n", i);
  const char *w = "a=10.0.0.1:80,b=10.0.0.2:80,c=10.0.0.3:80,d=10.0.0.4:80";
  CHECK_INT(sim(text, "-s", "consistent-hash", "-w", w, "--keys", "-", NULL),
            ==, 0);
  /* The same keys through the library directly. */
  dsp_balance *b = dsp_balance_new();
  dsp_balance_add(b, "a", "10.0.0.1:80", 1, NULL);
  dsp_balance_add(b, "b", "10.0.0.2:80", 1, NULL);
  dsp_balance_add(b, "c", "10.0.0.3:80", 1, NULL);
  dsp_balance_add(b, "d", "10.0.0.4:80", 1, NULL);
  char *line = sim_out;
  for (int i = 0; i < 1000; i++) {
    char want[64], key[16];
    snprintf(key, sizeof(key), "key%d", i);
    snprintf(want, sizeof(want), "%s\t%s\n", key,
             pick1(b, DSP_STRATEGY_CONSISTENT_HASH, key));
    CHECK(strncmp(line, want, strlen(want)) == 0);
    line += strlen(want);
  }
  CHECK(*line == 0);
  dsp_balance_free(b);

  /* --remove: only b's keys move; the fraction is reported. */
  char path[] = "/tmp/test_balance_keysXXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  CHECK(write(fd, text, len) == (ssize_t)len);
  close(fd);
  CHECK_INT(sim(NULL, "-s", "consistent-hash", "-w", w, "--keys", path,
                "--remove", "b", NULL), ==, 0);
  int moved = 0, lines = 0;
  line = sim_out;
  for (char *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
    if (line[0] == '#') break;
    char k[32], before[32], after[32];
    CHECK_INT(sscanf(line, "%31s\t%31s\t%31s", k, before, after), ==, 3);
    lines++;
    if (strcmp(before, after) != 0) {
      moved++;
      CHECK_STR(before, "b");
    }
    CHECK(strcmp(after, "b") != 0);
  }
  CHECK_INT(lines, ==, 1000);
  char want[64];
  snprintf(want, sizeof(want), "# moved %d of 1000 keys (%.4f)\n", moved,
           moved / 1000.0);
  CHECK_STR(line, want);
  CHECK(moved > 150 && moved < 350);
  /* --counts with keys. */
  CHECK_INT(sim(NULL, "-s", "hash", "-w", "a=h:1,b=h:2", "--keys", path,
                "--counts", NULL), ==, 0);
  int ca = -1, cb = -1;
  CHECK_INT(sscanf(sim_out, "a\t%d\nb\t%d\n", &ca, &cb), ==, 2);
  CHECK_INT(ca + cb, ==, 1000);
  /* --counts with a change: before and after per worker, then the moves. */
  CHECK_INT(sim(NULL, "-s", "consistent-hash", "-w", w, "--keys", path,
                "--remove", "b", "--counts", NULL), ==, 0);
  int c[4][2], m = -1;
  CHECK_INT(sscanf(sim_out, "a\t%d\t%d\nb\t%d\t%d\nc\t%d\t%d\nd\t%d\t%d\n"
                   "# moved %d of 1000", &c[0][0], &c[0][1], &c[1][0], &c[1][1],
                   &c[2][0], &c[2][1], &c[3][0], &c[3][1], &m), ==, 9);
  CHECK_INT(c[1][1], ==, 0);
  CHECK_INT(m, ==, c[1][0]);
  CHECK_INT(c[0][0] + c[1][0] + c[2][0] + c[3][0], ==, 1000);
  CHECK_INT(c[0][1] + c[2][1] + c[3][1], ==, 1000);
  unlink(path);
}

static void test_simulate_errors(void)
{
  CHECK_INT(sim(NULL, "--help", NULL), ==, 0);
  CHECK(strncmp(sim_out, "usage: dispatchctl simulate", 27) == 0);
  CHECK_INT(sim(NULL, "-w", "a=h:1", "-n", "1", "--bogus", NULL), ==, 2);
  CHECK_INT(sim(NULL, "-w", "a=h:1", "-n", NULL), ==, 2);
  CHECK_INT(sim(NULL, "-s", "fastest", "-w", "a=h:1", "-n", "1", NULL), ==, 2);
  CHECK_INT(sim(NULL, "-w", "a=h:1:0", "-n", "1", NULL), ==, 2);
  CHECK_INT(sim(NULL, "-w", "a=h:1:1001", "-n", "1", NULL), ==, 2);
  CHECK_INT(sim(NULL, "-w", "a=h", "-n", "1", NULL), ==, 2);
  CHECK_INT(sim(NULL, "-w", "a=h:1,a=h:2", "-n", "1", NULL), ==, 2);
  CHECK_INT(sim(NULL, "-w", "a=h:1,b=h:1", "-n", "1", NULL), ==, 2);
  CHECK_INT(sim(NULL, "-w", "bad name=h:1", "-n", "1", NULL), ==, 2);
  CHECK_INT(sim(NULL, "-n", "1", NULL), ==, 2);                 /* no workers */
  CHECK_INT(sim(NULL, "-w", "a=h:1", NULL), ==, 2);             /* no -n */
  CHECK_INT(sim(NULL, "-w", "a=h:1", "-n", "-3", NULL), ==, 2);
  CHECK_INT(sim(NULL, "-w", "a=h:1", "-n", "x", NULL), ==, 2);
  CHECK_INT(sim(NULL, "-s", "hash", "-w", "a=h:1", "-n", "1", NULL), ==, 2);
  CHECK_INT(sim(NULL, "-w", "a=h:1", "-n", "1", "--remove", "zz", NULL), ==, 2);
  CHECK_INT(sim(NULL, "-w", "a=h:1", "-n", "1", "extra", NULL), ==, 2);
  CHECK_INT(sim(NULL, "-w", "a=h:1", "-n", "1", "--balance-factor", "50",
                NULL), ==, 2);
  CHECK_INT(sim(NULL, "-w", "a=h:1", "--keys", "/nonexistent/keys", NULL),
            ==, 1);
  CHECK_STR(sim_out, "");
}

static const test_entry tests[] = {
    TEST(test_strategy_names),
    TEST(test_errors),
    TEST(test_inflight),
    TEST(test_weighted_nginx_sequences),
    TEST(test_weighted_counts),
    TEST(test_weighted_large_exact),
    TEST(test_weighted_large_spread),
    TEST(test_weighted_changes),
    TEST(test_round_robin),
    TEST(test_round_robin_cycles),
    TEST(test_random),
    TEST(test_p2c),
    TEST(test_hash),
    TEST(test_chash_nginx_known_answer),
    TEST(test_chash_movement),
    TEST(test_chash_spread),
    TEST(test_chash_incremental),
    TEST(test_chash_bounded_load),
    TEST(test_least_conn),
    TEST(test_least_time),
    TEST(test_churn_all_strategies),
    TEST(test_alloc_failures),
    TEST(test_simulate_picks),
    TEST(test_simulate_keys),
    TEST(test_simulate_errors),
};

TEST_MAIN(tests)
