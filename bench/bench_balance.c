/*
 * bench_balance.c: what a routing decision costs. For every strategy and
 * tables of 8, 100, 1,000 and 10,000 workers it prints nanoseconds per pick,
 * the median of repeated runs, where one "pick" is dsp_balance_pick()
 * immediately followed by dsp_balance_report() of its outcome (so in-flight
 * counts stay bounded and least-* strategies pay their bookkeeping). Next to
 * them, in the same run, nginx's plain O(n) smooth weighted round robin as a
 * straightforward reference loop. Last, the time to apply a weight change at
 * 10,000 workers: the set_weight call plus the first pick of every strategy
 * afterwards, since derived structures are rebuilt lazily by that pick.
 *
 * Built (target bench-balance), never run as a test. Usage:
 *   bench-balance [runs]        (default 7 runs per figure)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "balance.h"

#define NKEYS 4096

static const int sizes[] = {8, 100, 1000, 10000};
#define NSIZES ((int)(sizeof(sizes) / sizeof(sizes[0])))

static char keys[NKEYS][24];
static size_t keylen[NKEYS];

static double now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n)
{
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Weights 1..5 in a fixed pattern: the benchmark tables are weighted. */
static int weight_of(int i) { return i % 5 + 1; }

static dsp_balance *make_table(int n)
{
  dsp_balance *b = dsp_balance_new();
  if (b == NULL) return NULL;
  for (int i = 0; i < n; i++) {
    char name[32], addr[64];
    snprintf(name, sizeof(name), "w%d", i);
    snprintf(addr, sizeof(addr), "10.%d.%d.%d:8080", i / 62500,
             (i / 250) % 250, i % 250 + 1);
    if (dsp_balance_add(b, name, addr, weight_of(i), NULL) != 0) {
      fprintf(stderr, "add failed\n");
      exit(1);
    }
  }
  return b;
}

/* ns per pick+report over `picks` picks. */
static double run(dsp_balance *b, dsp_strategy s, long picks)
{
  double t0 = now_ns();
  unsigned k = 0;
  for (long i = 0; i < picks; i++) {
    dsp_worker_id id;
    if (dsp_balance_pick(b, s, keys[k], keylen[k], &id) != 0) {
      fprintf(stderr, "pick failed\n");
      exit(1);
    }
    /* A latency that differs per worker, for least-time. */
    dsp_balance_report(b, id, 1, (double)(100 + (id & 63)));
    k = (k + 1) & (NKEYS - 1);
  }
  return (now_ns() - t0) / (double)picks;
}

/* The reference: nginx's ngx_http_upstream_get_peer loop, written plainly. */
typedef struct {
  int weight, current_weight;
} ref_peer;

static double run_ref(ref_peer *p, int n, long picks, long *sink)
{
  double t0 = now_ns();
  for (long i = 0; i < picks; i++) {
    int total = 0;
    ref_peer *best = NULL;
    for (int j = 0; j < n; j++) {
      p[j].current_weight += p[j].weight;
      total += p[j].weight;
      if (best == NULL || p[j].current_weight > best->current_weight)
        best = &p[j];
    }
    best->current_weight -= total;
    *sink += best - p;
  }
  return (now_ns() - t0) / (double)picks;
}

static long picks_for(int n)
{
  (void)n;
  return 200000;
}

int main(int argc, char **argv)
{
  int runs = argc > 1 ? atoi(argv[1]) : 7;
  if (runs < 1 || runs > 101) {
    fprintf(stderr, "usage: bench-balance [runs 1..101]\n");
    return 2;
  }
  for (int i = 0; i < NKEYS; i++) {
    snprintf(keys[i], sizeof(keys[i]), "key-%d", i * 7919);
    keylen[i] = strlen(keys[i]);
  }

  double res[DSP_STRATEGY_COUNT][NSIZES], ref[NSIZES];
  double *v = calloc((size_t)runs, sizeof(double));
  for (int z = 0; z < NSIZES; z++) {
    int n = sizes[z];
    dsp_balance *b = make_table(n);
    dsp_balance_seed(b, 12345);
    dsp_balance_set_hash_balance_factor(b, 0);
    for (int s = DSP_STRATEGY_RANDOM; s < DSP_STRATEGY_COUNT; s++) {
      run(b, (dsp_strategy)s, 1000); /* warm-up: builds the structures */
      for (int r = 0; r < runs; r++) v[r] = run(b, (dsp_strategy)s, picks_for(n));
      res[s][z] = median(v, runs);
    }
    dsp_balance_free(b);

    ref_peer *p = calloc((size_t)n, sizeof(*p));
    long sink = 0;
    for (int i = 0; i < n; i++) p[i].weight = weight_of(i);
    long rp = n >= 10000 ? 20000 : n >= 1000 ? 100000 : 200000;
    run_ref(p, n, rp / 10, &sink);
    for (int r = 0; r < runs; r++) v[r] = run_ref(p, n, rp, &sink);
    ref[z] = median(v, runs);
    if (sink == 42) printf(" ");
    free(p);
  }

  printf("ns per pick (pick + its outcome reported), median of %d runs;\n"
         "tables weighted %s, %ld picks per run, keys cycle over %d strings\n\n",
         runs, "1,2,3,4,5,1,2,...", picks_for(0), NKEYS);
  printf("%-24s", "strategy \\ workers");
  for (int z = 0; z < NSIZES; z++) printf("%10d", sizes[z]);
  printf("\n");
  for (int s = DSP_STRATEGY_RANDOM; s < DSP_STRATEGY_COUNT; s++) {
    printf("%-24s", dsp_strategy_name((dsp_strategy)s));
    for (int z = 0; z < NSIZES; z++) printf("%10.1f", res[s][z]);
    printf("\n");
  }
  printf("%-24s", "nginx O(n) swrr (ref)");
  for (int z = 0; z < NSIZES; z++) printf("%10.1f", ref[z]);
  printf("\n   (reference: pick only, no bookkeeping)\n\n");

  /* Weight change at 10,000 workers. */
  int n = 10000, changes = 21;
  dsp_balance *b = make_table(n);
  for (int s = DSP_STRATEGY_RANDOM; s < DSP_STRATEGY_COUNT; s++)
    run(b, (dsp_strategy)s, 1000); /* build everything first */
  double *tset = calloc((size_t)changes, sizeof(double));
  double *tall = calloc((size_t)changes, sizeof(double));
  double *tstrat[DSP_STRATEGY_COUNT];
  for (int s = 0; s < DSP_STRATEGY_COUNT; s++)
    tstrat[s] = calloc((size_t)changes, sizeof(double));
  double worst = 0;
  for (int c = 0; c < changes; c++) {
    dsp_worker_id id;
    int pos = (c * 4513) % n;
    dsp_balance_at(b, (size_t)pos, &id);
    int w = dsp_balance_worker_weight(b, id);
    double t0 = now_ns();
    dsp_balance_set_weight(b, id, w == 5 ? 4 : w + 1);
    double t1 = now_ns();
    for (int s = DSP_STRATEGY_RANDOM; s < DSP_STRATEGY_COUNT; s++) {
      double a = now_ns();
      run(b, (dsp_strategy)s, 1);
      tstrat[s][c] = now_ns() - a;
    }
    double t2 = now_ns();
    tset[c] = t1 - t0;
    tall[c] = t2 - t0;
    if (tall[c] > worst) worst = tall[c];
  }
  printf("weight change at %d workers (%d changes, weight +-1):\n", n, changes);
  printf("  set_weight call:                       median %8.1f us\n",
         median(tset, changes) / 1e3);
  for (int s = DSP_STRATEGY_RANDOM; s < DSP_STRATEGY_COUNT; s++)
    printf("  first %-16s pick (rebuild):  median %8.1f us\n",
           dsp_strategy_name((dsp_strategy)s), median(tstrat[s], changes) / 1e3);
  printf("  applied everywhere (sum of above):     median %8.1f us, worst %8.1f us\n",
         median(tall, changes) / 1e3, worst / 1e3);
  for (int s = 0; s < DSP_STRATEGY_COUNT; s++) free(tstrat[s]);
  free(tset);
  free(tall);
  free(v);
  dsp_balance_free(b);
  return 0;
}
