/*
 * simulate.c: `dispatchctl simulate` (see simulate.h and usage() below).
 *
 * Simulate has no real tasks, so it decides what in-flight means: by
 * default every pick completes at once (reported ok, with the latency given
 * by --latency for that worker, or no latency sample), so in-flight counts
 * stay 0 and least-conn / p2c reduce to their tie-breaks. With --hold every
 * pick stays in flight until the end, which shows how least-conn, p2c and
 * consistent-hash's bounded load spread a growing load.
 */
#include "simulate.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"

#define PROG "dispatchctl simulate"
#define MAX_PICKS 100000000ull

typedef struct {
  char *name;
  double latency; /* < 0: no sample */
} latency_spec;

typedef struct {
  dsp_balance *b;
  dsp_strategy strategy;
  int hold;
  latency_spec *lat;
  size_t nlat;
} sim;

static void usage(FILE *f)
{
  fprintf(f,
    "usage: dispatchctl simulate --strategy S --workers SPEC[,SPEC...]\n"
    "                            (-n N | --keys FILE) [options]\n"
    "\n"
    "Runs the balancer on a table given by flags (no cluster, no ZooKeeper)\n"
    "and prints its decisions.\n"
    "\n"
    "  -s, --strategy S     random, round-robin, weighted (default), hash,\n"
    "                       consistent-hash, least-time, least-conn, p2c\n"
    "  -w, --workers SPECS  NAME=HOST:PORT[:WEIGHT] or HOST:PORT[:WEIGHT]\n"
    "                       (the address is then the name), comma-separated;\n"
    "                       may be repeated. WEIGHT is 1..1000, default 1\n"
    "  -n, --picks N        print N picks, one worker name per line\n"
    "  -c, --counts         print NAME<TAB>COUNT per worker instead\n"
    "  -k, --keys FILE      one key per line ('-' for stdin); prints\n"
    "                       KEY<TAB>WORKER (hash strategies need keys)\n"
    "      --remove NAME    after the first pass, remove worker NAME\n"
    "      --add SPEC       after the first pass, add a worker\n"
    "                       (both may be repeated; with --keys the output is\n"
    "                       KEY<TAB>BEFORE<TAB>AFTER and a last line\n"
    "                       '# moved K of N keys (F)'; with -n, the N picks\n"
    "                       are run again after the change; --counts then\n"
    "                       prints NAME<TAB>BEFORE<TAB>AFTER)\n"
    "      --hold           picks stay in flight; by default each pick\n"
    "                       completes at once, so in-flight counts stay 0\n"
    "      --latency NAME=US[,...]\n"
    "                       latency in microseconds each completed pick of\n"
    "                       NAME reports (feeds least-time); default none\n"
    "      --balance-factor P\n"
    "                       bounded load for consistent-hash, percent >= 100\n"
    "      --seed N         seed for random and p2c (default 1)\n"
    "  -h, --help           this text\n");
}

static int fail_usage(const char *fmt, const char *arg, const char *why)
{
  fprintf(stderr, PROG ": ");
  fprintf(stderr, fmt, arg, why);
  fprintf(stderr, "\nTry 'dispatchctl simulate --help'.\n");
  return 2;
}

static int parse_u64(const char *s, unsigned long long max,
                     unsigned long long *out)
{
  if (s == NULL || *s < '0' || *s > '9') return -1;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v > max) return -1;
  *out = v;
  return 0;
}

/* One worker spec: NAME=HOST:PORT[:WEIGHT] or HOST:PORT[:WEIGHT]. */
static int add_spec(dsp_balance *b, const char *spec)
{
  char buf[DSP_BAL_NAME_MAX + DSP_BAL_ADDR_MAX + 16];
  if (strlen(spec) >= sizeof(buf))
    return fail_usage("bad worker spec '%s': %s", spec, "too long");
  strcpy(buf, spec);
  char *name = NULL, *addr = buf, *eq = strchr(buf, '=');
  if (eq) {
    *eq = 0;
    name = buf;
    addr = eq + 1;
  }
  /* The port follows the host ("[v6]" may hold colons); an optional
   * ":WEIGHT" follows the port. */
  char *after = addr;
  if (*addr == '[') {
    after = strchr(addr, ']');
    if (after == NULL)
      return fail_usage("bad worker spec '%s': %s", spec, "missing ']'");
  }
  char *c1 = strchr(after, ':');
  char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
  long long weight = 1;
  if (c2) {
    unsigned long long w;
    if (parse_u64(c2 + 1, DSP_BAL_WEIGHT_MAX, &w) || w < 1)
      return fail_usage("bad worker spec '%s': %s", spec,
                        "weight must be 1..1000");
    weight = (long long)w;
    *c2 = 0;
  }
  if (name == NULL) name = addr;
  int rc = dsp_balance_add(b, name, addr, (int)weight, NULL);
  if (rc) return fail_usage("bad worker spec '%s': %s", spec,
                            dsp_balance_strerror(rc));
  return 0;
}

static int add_specs(dsp_balance *b, const char *list)
{
  char *copy = strdup(list), *save = NULL;
  if (copy == NULL) return 1;
  int rc = 0, any = 0;
  for (char *t = strtok_r(copy, ",", &save); t && !rc;
       t = strtok_r(NULL, ",", &save)) {
    rc = add_spec(b, t);
    any = 1;
  }
  free(copy);
  if (!rc && !any) rc = fail_usage("empty --workers%s%s", "", "");
  return rc;
}

static int add_latencies(sim *s, const char *list)
{
  char *copy = strdup(list), *save = NULL;
  if (copy == NULL) return 1;
  int rc = 0;
  for (char *t = strtok_r(copy, ",", &save); t && !rc;
       t = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(t, '=');
    unsigned long long us;
    if (eq == NULL || eq == t || parse_u64(eq + 1, 3600000000ull, &us)) {
      rc = fail_usage("bad --latency '%s': %s", t, "want NAME=MICROSECONDS");
      break;
    }
    latency_spec *l = realloc(s->lat, sizeof(*l) * (s->nlat + 1));
    if (l == NULL) {
      rc = 1;
      break;
    }
    s->lat = l;
    l[s->nlat].name = strndup(t, (size_t)(eq - t));
    l[s->nlat].latency = (double)us;
    if (l[s->nlat].name == NULL) {
      rc = 1;
      break;
    }
    s->nlat++;
  }
  free(copy);
  return rc;
}

/* One pick; completes it at once unless --hold. Returns 0 or an error. */
static int pick(sim *s, const char *key, dsp_worker_id *id)
{
  int rc = dsp_balance_pick(s->b, s->strategy, key, key ? strlen(key) : 0, id);
  if (rc) {
    fprintf(stderr, PROG ": pick: %s\n", dsp_balance_strerror(rc));
    return rc;
  }
  if (!s->hold) {
    double lat = -1;
    const char *name = dsp_balance_worker_name(s->b, *id);
    for (size_t i = 0; i < s->nlat; i++)
      if (strcmp(s->lat[i].name, name) == 0) lat = s->lat[i].latency;
    dsp_balance_report(s->b, *id, 1, lat);
  }
  return 0;
}

static int read_keys(const char *path, char ***keys, size_t *nkeys)
{
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (f == NULL) {
    fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
    return 1;
  }
  char *line = NULL;
  size_t cap = 0, n = 0, room = 0;
  ssize_t len;
  char **k = NULL;
  int rc = 0, oom = 0;
  while ((len = getline(&line, &cap, f)) >= 0) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = 0;
    if (n == room) {
      room = room ? room * 2 : 1024;
      char **nk = realloc(k, sizeof(*k) * room);
      if (nk == NULL) {
        rc = oom = 1;
        break;
      }
      k = nk;
    }
    if ((k[n] = strdup(line)) == NULL) {
      rc = oom = 1;
      break;
    }
    n++;
  }
  if (oom) {
    fprintf(stderr, PROG ": out of memory\n");
  } else if (ferror(f)) {
    fprintf(stderr, PROG ": %s: read error\n", path);
    rc = 1;
  }
  free(line);
  if (f != stdin) fclose(f);
  *keys = k;
  *nkeys = n;
  return rc;
}

/* Counts per worker over one pass, or two (before and after a change):
 * workers in table order, those added by the change at the end. Names are
 * copied, so a --remove does not take them away. */
typedef struct {
  char **names;      /* first-seen order */
  long long *cnt[2]; /* per pass */
  size_t *sorted;    /* indexes into names, sorted by name */
  size_t n, cap;
} tally;

static void tally_free(tally *t)
{
  for (size_t i = 0; i < t->n; i++) free(t->names[i]);
  free(t->names);
  free(t->cnt[0]);
  free(t->cnt[1]);
  free(t->sorted);
}

/* The index of a name, added if new. Returns 0, or 1 when out of memory. */
static int tally_index(tally *t, const char *name, size_t *idx)
{
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(t->names[t->sorted[mid]], name);
    if (c == 0) {
      *idx = t->sorted[mid];
      return 0;
    }
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    char **nn = realloc(t->names, sizeof(char *) * cap);
    if (nn) t->names = nn;
    long long *c0 = realloc(t->cnt[0], sizeof(long long) * cap);
    if (c0) t->cnt[0] = c0;
    long long *c1 = realloc(t->cnt[1], sizeof(long long) * cap);
    if (c1) t->cnt[1] = c1;
    size_t *so = realloc(t->sorted, sizeof(size_t) * cap);
    if (so) t->sorted = so;
    if (!nn || !c0 || !c1 || !so) return 1;
    t->cap = cap;
  }
  if ((t->names[t->n] = strdup(name)) == NULL) return 1;
  t->cnt[0][t->n] = t->cnt[1][t->n] = 0;
  memmove(t->sorted + lo + 1, t->sorted + lo, sizeof(size_t) * (t->n - lo));
  t->sorted[lo] = t->n;
  *idx = t->n++;
  return 0;
}

static int tally_init(tally *t, dsp_balance *b)
{
  memset(t, 0, sizeof(*t));
  for (size_t p = 0; p < dsp_balance_count(b); p++) {
    dsp_worker_id id;
    size_t idx;
    dsp_balance_at(b, p, &id);
    if (tally_index(t, dsp_balance_worker_name(b, id), &idx)) return 1;
  }
  return 0;
}

/* NAME<TAB>COUNT, or NAME<TAB>BEFORE<TAB>AFTER over two passes. */
static void tally_print(const tally *t, int passes)
{
  for (size_t i = 0; i < t->n; i++) {
    if (passes == 1) printf("%s\t%lld\n", t->names[i], t->cnt[0][i]);
    else printf("%s\t%lld\t%lld\n", t->names[i], t->cnt[0][i], t->cnt[1][i]);
  }
}

static int oom(void)
{
  fprintf(stderr, PROG ": out of memory\n");
  return 1;
}

/* -n N: one pass of N picks, printed, or counted into pass `pass`. */
static int run_picks(sim *s, unsigned long long n, int counts_only, tally *t,
                     int pass)
{
  for (unsigned long long i = 0; i < n; i++) {
    dsp_worker_id id;
    size_t idx;
    if (pick(s, NULL, &id)) return 1;
    const char *name = dsp_balance_worker_name(s->b, id);
    if (!counts_only) {
      puts(name);
    } else {
      if (tally_index(t, name, &idx)) return oom();
      t->cnt[pass][idx]++;
    }
  }
  return 0;
}

typedef struct {
  char **remove;
  size_t nremove;
  char **add;
  size_t nadd;
} changes;

static int apply_changes(sim *s, const changes *c)
{
  for (size_t i = 0; i < c->nremove; i++) {
    dsp_worker_id id;
    if (dsp_balance_find(s->b, c->remove[i], &id) ||
        dsp_balance_remove(s->b, id))
      return fail_usage("--remove %s: %s", c->remove[i], "no such worker");
  }
  for (size_t i = 0; i < c->nadd; i++)
    if (add_spec(s->b, c->add[i])) return 2;
  return 0;
}

/* --keys: KEY<TAB>WORKER, or with a change KEY<TAB>BEFORE<TAB>AFTER and the
 * fraction moved; --counts prints the tally instead of the keys. */
static int run_keys(sim *s, char **keys, size_t nkeys, const changes *c,
                    int counts_only, tally *t)
{
  int changed = c->nremove + c->nadd > 0;
  size_t *before = calloc(nkeys ? nkeys : 1, sizeof(size_t));
  if (before == NULL) return oom();
  int rc = 0;
  for (size_t i = 0; i < nkeys && !rc; i++) {
    dsp_worker_id id;
    if (pick(s, keys[i], &id)) rc = 1;
    else if (tally_index(t, dsp_balance_worker_name(s->b, id), &before[i]))
      rc = oom();
    else t->cnt[0][before[i]]++;
  }
  if (!rc && !changed) {
    if (counts_only) tally_print(t, 1);
    else
      for (size_t i = 0; i < nkeys; i++)
        printf("%s\t%s\n", keys[i], t->names[before[i]]);
  }
  if (!rc && changed) rc = apply_changes(s, c);
  if (!rc && changed) {
    size_t moved = 0;
    for (size_t i = 0; i < nkeys && !rc; i++) {
      dsp_worker_id id;
      size_t after;
      if (pick(s, keys[i], &id)) {
        rc = 1;
      } else if (tally_index(t, dsp_balance_worker_name(s->b, id), &after)) {
        rc = oom();
      } else {
        t->cnt[1][after]++;
        moved += after != before[i];
        if (!counts_only)
          printf("%s\t%s\t%s\n", keys[i], t->names[before[i]], t->names[after]);
      }
    }
    if (!rc) {
      if (counts_only) tally_print(t, 2);
      printf("# moved %zu of %zu keys (%.4f)\n", moved, nkeys,
             nkeys ? (double)moved / (double)nkeys : 0.0);
    }
  }
  free(before);
  return rc;
}

int dsp_simulate_main(int argc, char **argv)
{
  enum { OPT_REMOVE = 256, OPT_ADD, OPT_HOLD, OPT_LATENCY, OPT_FACTOR, OPT_SEED };
  static const struct option opts[] = {
      {"strategy", required_argument, NULL, 's'},
      {"workers", required_argument, NULL, 'w'},
      {"picks", required_argument, NULL, 'n'},
      {"counts", no_argument, NULL, 'c'},
      {"keys", required_argument, NULL, 'k'},
      {"remove", required_argument, NULL, OPT_REMOVE},
      {"add", required_argument, NULL, OPT_ADD},
      {"hold", no_argument, NULL, OPT_HOLD},
      {"latency", required_argument, NULL, OPT_LATENCY},
      {"balance-factor", required_argument, NULL, OPT_FACTOR},
      {"seed", required_argument, NULL, OPT_SEED},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  sim s = {0};
  changes ch = {0};
  tally t = {0};
  char **keys = NULL;
  size_t nkeys = 0;
  const char *keyfile = NULL;
  unsigned long long n = 0;
  int have_n = 0, counts_only = 0, rc = 0, opt;

  s.b = dsp_balance_new();
  ch.remove = calloc((size_t)argc + 1, sizeof(char *));
  ch.add = calloc((size_t)argc + 1, sizeof(char *));
  if (s.b == NULL || ch.remove == NULL || ch.add == NULL) {
    fprintf(stderr, PROG ": out of memory\n");
    rc = 1;
    goto done;
  }
  s.strategy = DSP_STRATEGY_WEIGHTED;
  optind = 0; /* full reinit: dispatchctl may have run getopt already */
  opterr = 0;
  while (!rc && (opt = getopt_long(argc, argv, ":s:w:n:ck:h", opts, NULL)) != -1) {
    unsigned long long v;
    int st;
    switch (opt) {
    case 's':
      st = dsp_strategy_parse(optarg);
      if (st <= DSP_STRATEGY_DEFAULT)
        rc = fail_usage("unknown strategy '%s'%s", optarg, "");
      else
        s.strategy = (dsp_strategy)st;
      break;
    case 'w': rc = add_specs(s.b, optarg); break;
    case 'n':
      if (parse_u64(optarg, MAX_PICKS, &n))
        rc = fail_usage("bad -n '%s': %s", optarg, "want 0..100000000");
      have_n = 1;
      break;
    case 'c': counts_only = 1; break;
    case 'k': keyfile = optarg; break;
    case OPT_REMOVE: ch.remove[ch.nremove++] = optarg; break;
    case OPT_ADD: ch.add[ch.nadd++] = optarg; break;
    case OPT_HOLD: s.hold = 1; break;
    case OPT_LATENCY: rc = add_latencies(&s, optarg); break;
    case OPT_FACTOR:
      if (parse_u64(optarg, 100000, &v) ||
          dsp_balance_set_hash_balance_factor(s.b, (unsigned)v))
        rc = fail_usage("bad --balance-factor '%s': %s", optarg,
                        "want 0 (off) or 100..100000 percent");
      break;
    case OPT_SEED:
      if (parse_u64(optarg, UINT64_MAX, &v))
        rc = fail_usage("bad --seed '%s'%s", optarg, "");
      else
        dsp_balance_seed(s.b, v);
      break;
    case 'h':
      usage(stdout);
      goto done;
    case ':':
      rc = fail_usage("option '%s' needs an argument%s", argv[optind - 1], "");
      break;
    default:
      rc = fail_usage("unknown option '%s'%s", argv[optind - 1], "");
      break;
    }
  }
  if (rc) goto done;
  if (optind < argc) {
    rc = fail_usage("unexpected argument '%s'%s", argv[optind], "");
    goto done;
  }
  if (dsp_balance_count(s.b) == 0) {
    rc = fail_usage("no workers: give --workers%s%s", "", "");
    goto done;
  }
  if (have_n == (keyfile != NULL)) {
    rc = fail_usage("give exactly one of -n and --keys%s%s", "", "");
    goto done;
  }
  if (keyfile == NULL && (s.strategy == DSP_STRATEGY_HASH ||
                          s.strategy == DSP_STRATEGY_CONSISTENT_HASH)) {
    rc = fail_usage("strategy %s needs keys: use --keys", dsp_strategy_name(s.strategy), "");
    goto done;
  }

  if (tally_init(&t, s.b)) {
    rc = oom();
  } else if (keyfile) {
    rc = read_keys(keyfile, &keys, &nkeys);
    if (!rc) rc = run_keys(&s, keys, nkeys, &ch, counts_only, &t);
  } else {
    int passes = ch.nremove + ch.nadd > 0 ? 2 : 1;
    rc = run_picks(&s, n, counts_only, &t, 0);
    if (!rc && passes == 2) rc = apply_changes(&s, &ch);
    if (!rc && passes == 2) rc = run_picks(&s, n, counts_only, &t, 1);
    if (!rc && counts_only) tally_print(&t, passes);
  }

done:
  if (fflush(stdout) != 0 && rc == 0) {
    fprintf(stderr, PROG ": write error\n");
    rc = 1;
  }
  for (size_t i = 0; i < nkeys; i++) free(keys[i]);
  free(keys);
  for (size_t i = 0; i < s.nlat; i++) free(s.lat[i].name);
  free(s.lat);
  free(ch.remove);
  free(ch.add);
  tally_free(&t);
  dsp_balance_free(s.b);
  return rc;
}
