/*
 * bench-health: the health-check benchmark. One coordinator probes N
 * workers (default 10,000) every interval, all played by one
 * `dispatch-worker --identities N` process (worker wI is identity I,
 * checked at http://WORKER/w/I/health). In one run:
 *
 *   A. the N workers added without a check (nothing probes): routing with
 *      dispatch-bench at C connections, depth 1 and 16, and at one
 *      connection, depth 1 (a latency probe that does not saturate the
 *      coordinator), all closed loop; then at C connections open loop at
 *      fixed rates (--rate; by default an eighth, a quarter and half of
 *      what C at depth 1 reached in the first A window), the latency
 *      clients see at loads the coordinator can carry, light to heavy; and
 *      the coordinator's CPU, beside an idle window;
 *   B. the same workers removed and added again with a check; once all are
 *      up, the same windows while the coordinator probes, plus the probes
 *      each identity received over each window, read from the worker
 *      (/w/I/stats) just before and just after it;
 *   C. death to last route: K workers are set to fail (/w/I/control/fail)
 *      at t0 while Route requests (round-robin, 1000 decisions each,
 *      pipelined) go through the coordinator; each figure is the time from
 *      t0 to the last reply naming the worker, against the bound
 *      interval x fall + timeout. The loop stops once every one has been
 *      absent for twice the bound.
 *
 * A and B are repeated in turn, -r rounds (default 3: A B A B A B), and
 * each routing figure compared is the median over the rounds: this machine
 * drifts by 10-15% in throughput and p99 over a minute, more than a single
 * pair of windows can tell from the probing. Probe rates are judged in
 * every B window (the worst is shown).
 *
 * One table at the end holds every figure beside its target. Targets are
 * reported, not asserted: the exit status is 0 when every phase ran, 1 when
 * one could not (the reason is printed), 2 on bad flags.
 *
 * The coordinator's CPU is utime + stime from /proc/PID/stat over each
 * window, as a percentage of one core. The worker addresses are fake and
 * unique (10.a.b.c:80; the registry refuses a second worker at an address);
 * only the check URL is ever contacted.
 *
 * scripts/bench-health.sh starts the ZooKeeper, the worker and the member
 * and calls this. Admin writes are sent without a client token, so they
 * leave no request records behind (20,000 adds would otherwise leave as
 * many znodes in /dispatcher/<cluster>/requests).
 */
#define _GNU_SOURCE /* memmem */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "rpc.h"
#include "util.h"

#define ADMIN_WINDOW 256    /* admin requests in flight */
#define SNAP_BATCH 500      /* /w/I/stats requests pipelined at once */
#define ROUTE_DEPTH 4       /* Route requests in flight in phase C */
#define ROUTE_COUNT 1000    /* decisions per Route in phase C */
#define DEAD_MAX 64
#define RPC_TIMEOUT_MS 60000
#define HTTP_TIMEOUT_S 10

/* ---- settings and results ------------------------------------------------ */

#define NCLOSED 4   /* idle and the closed-loop windows */
#define NOPEN_MAX 4 /* open-loop windows at most */
#define NWIN_MAX (NCLOSED + NOPEN_MAX)
/* The default open-loop rates: these shares of the first closed-loop
   window at depth 1 without checks. */
static const double RATE_SHARES[] = {0.125, 0.25, 0.5};
_Static_assert(sizeof(RATE_SHARES) / sizeof(RATE_SHARES[0]) <= NOPEN_MAX, "too many shares");

static struct {
  const char *server, *worker, *dispatch_bench;
  char whost[DSP_ADDR_MAX];
  int wport;
  int n, seconds, conns, dead, rounds;
  int distinct; /* --distinct-hosts: worker wI checked at 127.x.y.z, not -w's host */
  long rates[NOPEN_MAX]; /* each open-loop window's requests a second */
  int nrates;            /* given by --rate; else set after the first window */
  long interval_ms, timeout_ms, fall, jitter;
  long coord_pid, worker_pid;
} S;

typedef struct {
  int ok;
  double rps, p50, p99, p999;
  unsigned long long requests, errors, late;
} route_result;

/* The windows of phases A and B, in order: idle, then dispatch-bench at
   (conns, depth), closed loop, and last open loop at each --rate, -c
   connections, at most 16 in flight per connection (conns 0 means -c). The
   closed-loop windows at -c connections saturate the coordinator: their
   latency is the queue it keeps, connections x depth / throughput, so
   probing shows in it as lost throughput. The open-loop window asks for a
   fixed rate whatever the replies do: the latency a client sees at that
   load. */
#define WIN_C1 1 /* closed loop, -c connections, depth 1: sets the default --rate */
static const struct {
  int conns, depth;
} SPEC[NCLOSED] = {{0, 0}, {0, 1}, {0, 16}, {1, 1}};
#define OPEN_DEPTH 16
static int nwin; /* NCLOSED + the open-loop rates */

/* One measurement window. */
typedef struct {
  char label[24];
  int conns, depth;        /* depth 0: idle window, no routing */
  long rate;               /* open loop at this many requests a second; 0: closed */
  route_result route;
  double secs;             /* wall time of the window (CPU basis) */
  double coord_cpu, worker_cpu; /* % of one core; < 0 when unknown */
  int probes_known;        /* per-identity counts taken around it */
  double probe_secs;       /* the per-identity window */
  uint64_t probes, pmin, pmax;
} window;

#define ROUNDS_MAX 9
static window WA[ROUNDS_MAX][NWIN_MAX], WB[ROUNDS_MAX][NWIN_MAX];

static struct {
  double add_plain_s, remove_s, add_check_s, all_up_s;
  int add_plain_failed, remove_failed, add_check_failed;
  char first_error[256];
  int b_probe_failures_workers;
  uint64_t b_probe_failures, b_probes_coord;
  int b_not_up;
} ADM;

typedef struct {
  int idx;
  uint64_t t0;       /* ns, just before the fail request was sent */
  uint64_t last;     /* ns, last reply naming it (t0 if none) */
  uint64_t seen_after; /* replies naming it after t0 */
} dead_worker;

static dead_worker DEAD[DEAD_MAX];
static int dead_done, dead_stuck;
static uint64_t route_replies, route_errors;
static char route_error[256]; /* the first */

static char failure[1024]; /* why the run did not complete; "" if it did */

/* Say why a phase could not run; the first reason is kept for the report. */
static void fail_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail_run(const char *fmt, ...) {
  char msg[sizeof(failure)];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (failure[0] == '\0') memcpy(failure, msg, sizeof(msg));
  fprintf(stderr, "bench-health: %s\n", msg);
}

/* "CODE: message" for an error reply, "unexpected reply" for anything
   else that was not wanted. */
static void describe_reply(const dsp_pb_response *resp, char *out, size_t len) {
  if (resp->body_case == DSP_PB(RESPONSE__BODY_ERROR))
    snprintf(out, len, "%s: %s", dsp_rpc_code_name(resp->error->code),
             resp->error->message ? resp->error->message : "");
  else
    snprintf(out, len, "unexpected reply");
}

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "bench-health: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
}

/* ---- time and CPU -------------------------------------------------------- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double secs_between(uint64_t a, uint64_t b) { return (double)(b - a) / 1e9; }

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* utime + stime of `pid` in clock ticks, or -1 (no pid, or it is gone).
   Fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends the
   command name (which may itself hold spaces and parentheses). */
static long long cpu_ticks(long pid) {
  char path[64], buf[1024], *p;
  unsigned long long ut, st;
  FILE *f;
  size_t n;
  if (pid <= 0) return -1;
  snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
  if ((f = fopen(path, "r")) == NULL) return -1;
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  if ((p = strrchr(buf, ')')) == NULL) return -1;
  /* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt */
  if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  return (long long)(ut + st);
}

typedef struct {
  uint64_t t;
  long long coord, worker;
} cpu_mark;

static cpu_mark cpu_now(void) {
  cpu_mark m;
  m.coord = cpu_ticks(S.coord_pid);
  m.worker = cpu_ticks(S.worker_pid);
  m.t = now_ns();
  return m;
}

/* CPU between two marks as % of one core; -1 when unknown. */
static void cpu_between(const cpu_mark *a, const cpu_mark *b, window *w) {
  double secs = secs_between(a->t, b->t), tck = (double)sysconf(_SC_CLK_TCK);
  w->secs = secs;
  w->coord_cpu = a->coord < 0 || b->coord < 0 || secs <= 0
                     ? -1
                     : (double)(b->coord - a->coord) / tck / secs * 100.0;
  w->worker_cpu = a->worker < 0 || b->worker < 0 || secs <= 0
                      ? -1
                      : (double)(b->worker - a->worker) / tck / secs * 100.0;
}

/* ---- HTTP to the worker: one keep-alive connection, pipelined GETs --------- */

static struct {
  int fd;
  char in[1 << 16];
  size_t len;
  char *out;
  size_t olen, ocap;
} H = {.fd = -1};

/* Drop the connection and whatever was read from it (queued requests stay:
   the next flush sends them on a new one). */
static void http_close(void) {
  if (H.fd >= 0) close(H.fd);
  H.fd = -1;
  H.len = 0;
}

static int http_open(void) {
  struct addrinfo hints, *res = NULL;
  struct timeval tv = {HTTP_TIMEOUT_S, 0};
  char port[8];
  int one = 1;
  http_close();
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  snprintf(port, sizeof(port), "%d", S.wport);
  if (getaddrinfo(S.whost, port, &hints, &res) != 0) return -1;
  H.fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
  if (H.fd < 0 || connect(H.fd, res->ai_addr, res->ai_addrlen) != 0) {
    freeaddrinfo(res);
    http_close();
    return -1;
  }
  freeaddrinfo(res);
  setsockopt(H.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(H.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(H.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return 0;
}

/* Queue a GET of `path`; written by http_flush(). */
static int http_queue(const char *path) {
  size_t need = strlen(path) + 64;
  if (H.ocap - H.olen < need) {
    size_t cap = H.ocap ? H.ocap * 2 : 65536;
    char *p;
    while (cap - H.olen < need) cap *= 2;
    if ((p = realloc(H.out, cap)) == NULL) return -1;
    H.out = p;
    H.ocap = cap;
  }
  H.olen += (size_t)snprintf(H.out + H.olen, H.ocap - H.olen,
                             "GET %s HTTP/1.1\r\nHost: bench\r\n\r\n", path);
  return 0;
}

static int http_flush(void) {
  size_t off = 0;
  if (H.fd < 0 && http_open() != 0) return -1;
  while (off < H.olen) {
    ssize_t w = send(H.fd, H.out + off, H.olen - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      http_close();
      H.olen = 0;
      return -1;
    }
    off += (size_t)w;
  }
  H.olen = 0;
  return 0;
}

/* The next response: its status and body (NUL-terminated, cut to cap-1).
   Returns 0, or -1 on a lost connection, a timeout or a malformed reply
   (the connection is then closed). */
static int http_response(int *status, char *body, size_t cap) {
  for (;;) {
    char *end = memmem(H.in, H.len, "\r\n\r\n", 4);
    if (end != NULL) {
      size_t head = (size_t)(end - H.in) + 4, clen = 0, total, blen;
      const char *p = H.in;
      if (sscanf(H.in, "HTTP/1.%*d %d", status) != 1) break;
      while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end + 2 - p)); /* the last line's too */
        if (eol == NULL) break;
        if (strncasecmp(p, "content-length:", 15) == 0) clen = strtoul(p + 15, NULL, 10);
        p = eol + 1;
      }
      total = head + clen;
      if (total > sizeof(H.in)) break;
      if (H.len >= total) {
        blen = clen < cap - 1 ? clen : cap - 1;
        memcpy(body, H.in + head, blen);
        body[blen] = '\0';
        memmove(H.in, H.in + total, H.len - total);
        H.len -= total;
        return 0;
      }
    }
    if (H.len == sizeof(H.in)) break;
    ssize_t r = recv(H.fd, H.in + H.len, sizeof(H.in) - H.len, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    H.len += (size_t)r;
  }
  http_close();
  return -1;
}

/* One GET; the body into body[cap]. Returns the status, or -1. */
static int http_get(const char *path, char *body, size_t cap) {
  int status;
  if (http_queue(path) != 0 || http_flush() != 0 || http_response(&status, body, cap) != 0)
    return -1;
  return status;
}

/* The unsigned number after "key": in a flat JSON object, or -1. */
static long long json_num(const char *json, const char *key) {
  char pat[64];
  const char *p;
  snprintf(pat, sizeof(pat), "\"%s\":", key);
  if ((p = strstr(json, pat)) == NULL) return -1;
  p += strlen(pat);
  if (!isdigit((unsigned char)*p)) return -1;
  return strtoll(p, NULL, 10);
}

/* Per-identity health request counts, read in order 0..n-1. */
typedef struct {
  uint64_t *count;
  uint64_t t0, t1; /* ns: first request sent, last answer read */
} snapshot;

static int snapshot_take(snapshot *s) {
  char path[64], body[512];
  s->t0 = now_ns();
  for (int base = 0; base < S.n; base += SNAP_BATCH) {
    int end = base + SNAP_BATCH < S.n ? base + SNAP_BATCH : S.n, status;
    for (int i = base; i < end; i++) {
      snprintf(path, sizeof(path), "/w/%d/stats", i);
      if (http_queue(path) != 0) return -1;
    }
    if (http_flush() != 0) return -1;
    for (int i = base; i < end; i++) {
      long long v;
      if (http_response(&status, body, sizeof(body)) != 0 || status != 200 ||
          (v = json_num(body, "health_requests")) < 0)
        return -1;
      s->count[i] = (uint64_t)v;
    }
  }
  s->t1 = now_ns();
  return 0;
}

/* Fill w's probe figures from two snapshots. Identity i was read at about
   the same offset into each snapshot, so its window is the distance
   between the snapshots' midpoints. */
static void probes_between(const snapshot *a, const snapshot *b, window *w) {
  w->probes_known = 1;
  w->probe_secs = ((double)(b->t0 + b->t1) - (double)(a->t0 + a->t1)) / 2e9;
  w->probes = 0;
  w->pmin = UINT64_MAX;
  w->pmax = 0;
  for (int i = 0; i < S.n; i++) {
    uint64_t d = b->count[i] - a->count[i];
    w->probes += d;
    if (d < w->pmin) w->pmin = d;
    if (d > w->pmax) w->pmax = d;
  }
}

/* ---- the coordinator ---------------------------------------------------- */

static dsp_client *cli;

static void req_init(dsp_pb_request *r) {
  dispatcher__v1__request__init(r);
  r->id = dsp_client_next_id(cli);
}

typedef enum { ADD_PLAIN, ADD_CHECKED, REMOVE } admin_kind;

/* Queue the admin request of `kind` for worker i. */
static int admin_send(admin_kind kind, int i) {
  dsp_pb_request r;
  Dispatcher__V1__WorkerAddRequest add = DISPATCHER__V1__WORKER_ADD_REQUEST__INIT;
  Dispatcher__V1__WorkerRemoveRequest rm = DISPATCHER__V1__WORKER_REMOVE_REQUEST__INIT;
  char name[32], addr[32], check[DSP_ADDR_MAX + 64];
  req_init(&r);
  snprintf(name, sizeof(name), "w%d", i);
  if (kind == REMOVE) {
    rm.name = name;
    r.body_case = DSP_PB(REQUEST__BODY_WORKER_REMOVE);
    r.worker_remove = &rm;
  } else {
    snprintf(addr, sizeof(addr), "10.%d.%d.%d:80", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    add.name = name;
    add.addr = addr;
    add.weight = 1;
    if (kind == ADD_CHECKED) {
      if (S.distinct)
        snprintf(check, sizeof(check), "http://127.%d.%d.%d:%d/w/%d/health", 1 + (i >> 16),
                 (i >> 8) & 255, i & 255, S.wport, i);
      else
        snprintf(check, sizeof(check), "http://%s/w/%d/health", S.worker, i);
      add.check = check;
    }
    r.body_case = DSP_PB(REQUEST__BODY_WORKER_ADD);
    r.worker_add = &add;
  }
  return dsp_client_send(cli, &r);
}

/* The admin request of `kind` for every worker, ADMIN_WINDOW in flight.
   Returns the number refused (the first reason kept in ADM.first_error),
   or -1 when the connection failed. */
static int admin_all(admin_kind kind) {
  int sent = 0, got = 0, refused = 0;
  char err[256];
  while (got < S.n) {
    dsp_pb_response *resp;
    while (sent < S.n && sent - got < ADMIN_WINDOW)
      if (admin_send(kind, sent++) != 0) return -1;
    if (dsp_client_recv(cli, &resp, err, sizeof(err)) != 0) {
      fail_run("admin requests: %s", err);
      return -1;
    }
    if (resp->body_case != DSP_PB(RESPONSE__BODY_WORKER)) {
      refused++;
      if (ADM.first_error[0] == '\0')
        describe_reply(resp, ADM.first_error, sizeof(ADM.first_error));
    }
    dsp_client_free_response(resp);
    got++;
  }
  return refused;
}

typedef struct {
  int total, up, down, pending, with_failures;
  uint64_t probes, probe_failures;
} table_view;

/* The coordinator's table, summed up. Returns 0 or -1 (err set). */
static int table_get(table_view *v, char *err, size_t errlen) {
  dsp_pb_request r;
  Dispatcher__V1__WorkerListRequest wl = DISPATCHER__V1__WORKER_LIST_REQUEST__INIT;
  dsp_pb_response *resp;
  req_init(&r);
  r.body_case = DSP_PB(REQUEST__BODY_WORKER_LIST);
  r.worker_list = &wl;
  memset(v, 0, sizeof(*v));
  if (dsp_client_call(cli, &r, &resp, err, errlen) != 0) return -1;
  if (resp->body_case != DSP_PB(RESPONSE__BODY_WORKER_LIST)) {
    snprintf(err, errlen, "WorkerList: %s",
             resp->body_case == DSP_PB(RESPONSE__BODY_ERROR) && resp->error->message
                 ? resp->error->message
                 : "unexpected reply");
    dsp_client_free_response(resp);
    return -1;
  }
  for (size_t i = 0; i < resp->worker_list->n_workers; i++) {
    const Dispatcher__V1__WorkerInfo *w = resp->worker_list->workers[i];
    const char *st = w->state ? w->state : "";
    v->total++;
    if (strcmp(st, "up") == 0) v->up++;
    else if (strcmp(st, "down") == 0) v->down++;
    else if (strcmp(st, "pending") == 0) v->pending++;
    v->probes += w->probes;
    v->probe_failures += w->probe_failures;
    if (w->probe_failures > 0) v->with_failures++;
  }
  dsp_client_free_response(resp);
  return 0;
}

/* Poll the table until it holds `total` workers, `up` of them up, or
   timeout_s passes. Returns 0, or -1 with the last view in *v. */
static int table_wait(int total, int up, int timeout_s, table_view *v) {
  uint64_t deadline = now_ns() + (uint64_t)timeout_s * 1000000000u;
  char err[256];
  for (;;) {
    if (table_get(v, err, sizeof(err)) != 0) {
      fail_run("%s", err);
      return -1;
    }
    if (v->total == total && v->up >= up) return 0;
    if (now_ns() > deadline) return -1;
    sleep_ms(250);
  }
}

/* ---- routing load: dispatch-bench ---------------------------------------- */

/* Run dispatch-bench with `conns` connections at depth P for S.seconds,
   open loop at `rate` requests a second if not 0, and parse its line. */
static void run_bench(int conns, int depth, long rate, route_result *out) {
  char c[16], p[16], d[16], R[24], line[512];
  int fds[2], status;
  size_t len = 0;
  ssize_t r;
  pid_t pid;
  memset(out, 0, sizeof(*out));
  snprintf(c, sizeof(c), "%d", conns);
  snprintf(p, sizeof(p), "%d", depth);
  snprintf(d, sizeof(d), "%d", S.seconds);
  snprintf(R, sizeof(R), "%ld", rate);
  if (pipe(fds) != 0) {
    fail_run("pipe: %s", strerror(errno));
    return;
  }
  fflush(NULL);
  if ((pid = fork()) < 0) {
    close(fds[0]);
    close(fds[1]);
    fail_run("fork: %s", strerror(errno));
    return;
  }
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    if (rate > 0)
      execl(S.dispatch_bench, S.dispatch_bench, "-s", S.server, "-c", c, "-P", p, "-d", d,
            "-R", R, (char *)NULL);
    else
      execl(S.dispatch_bench, S.dispatch_bench, "-s", S.server, "-c", c, "-P", p, "-d", d,
            (char *)NULL);
    fprintf(stderr, "bench-health: cannot run %s: %s\n", S.dispatch_bench, strerror(errno));
    _exit(127);
  }
  close(fds[1]);
  while (len < sizeof(line) - 1 &&
         ((r = read(fds[0], line + len, sizeof(line) - 1 - len)) > 0 || (r < 0 && errno == EINTR)))
    if (r > 0) len += (size_t)r;
  line[len] = '\0';
  close(fds[0]);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  out->ok = sscanf(line, "rps=%lf p50_ms=%lf p99_ms=%lf p999_ms=%lf requests=%llu errors=%llu",
                   &out->rps, &out->p50, &out->p99, &out->p999, &out->requests,
                   &out->errors) == 6;
  if (out->ok && rate > 0) {
    const char *l = strstr(line, " late=");
    out->ok = l != NULL && sscanf(l, " late=%llu", &out->late) == 1;
  }
  if (!out->ok) fail_run("dispatch-bench -P %s gave no figures: '%s'", p, line);
}

/* One window: idle (depth 0) or routing; per-identity probes around it
   when `count_probes`. */
static void measure(window *w, const char *label, int conns, int depth, long rate,
                    int count_probes) {
  snapshot a = {0}, b = {0};
  cpu_mark c0, c1;
  memset(w, 0, sizeof(*w));
  snprintf(w->label, sizeof(w->label), "%s", label);
  w->conns = conns;
  w->depth = depth;
  w->rate = rate;
  if (count_probes) {
    a.count = calloc((size_t)S.n, sizeof(*a.count));
    b.count = calloc((size_t)S.n, sizeof(*b.count));
    if (a.count == NULL || b.count == NULL || snapshot_take(&a) != 0) {
      fail_run("cannot read per-identity counts from the worker at %s", S.worker);
      count_probes = 0;
    }
  }
  if (depth && rate)
    progress("window: %s, dispatch-bench C=%d P=%d -R %ld", label, conns, depth, rate);
  else if (depth)
    progress("window: %s, dispatch-bench C=%d P=%d", label, conns, depth);
  else progress("window: %s, idle", label);
  c0 = cpu_now();
  if (depth) run_bench(conns, depth, rate, &w->route);
  else sleep_ms((long)S.seconds * 1000);
  c1 = cpu_now();
  cpu_between(&c0, &c1, w);
  if (count_probes) {
    if (snapshot_take(&b) == 0)
      probes_between(&a, &b, w);
    else
      fail_run("cannot read per-identity counts from the worker at %s", S.worker);
  }
  free(a.count);
  free(b.count);
}

/* ---- phase C: death to last route ------------------------------------------ */

static void send_route(void) {
  dsp_pb_request r;
  Dispatcher__V1__RouteRequest rr = DISPATCHER__V1__ROUTE_REQUEST__INIT;
  req_init(&r);
  rr.strategy = "round-robin";
  rr.count = ROUTE_COUNT;
  r.body_case = DSP_PB(REQUEST__BODY_ROUTE);
  r.route = &rr;
  dsp_client_send(cli, &r);
}

static int phase_c(void) {
  int64_t bound_ns = (S.interval_ms * S.fall + S.timeout_ms) * 1000000LL;
  int *slot = malloc((size_t)S.n * sizeof(*slot)), all_gone = 0;
  char path[64], body[256], err[256];
  uint64_t start;
  if (slot == NULL) return -1;
  for (int i = 0; i < S.n; i++) slot[i] = -1;
  progress("phase C: %d workers fail; routing until each is gone for 2 x %ld ms", S.dead,
           bound_ns / 1000000);
  /* Spread over the table: round-robin names them at different moments. */
  for (int k = 0; k < S.dead; k++) {
    DEAD[k].idx = (int)(((long long)(2 * k + 1) * S.n) / (2 * S.dead));
    slot[DEAD[k].idx] = k;
  }
  for (int k = 0; k < S.dead; k++) {
    snprintf(path, sizeof(path), "/w/%d/control/fail", DEAD[k].idx);
    DEAD[k].t0 = DEAD[k].last = now_ns();
    if (http_get(path, body, sizeof(body)) != 200) {
      fail_run("cannot set %s on the worker", path);
      for (int j = 0; j < k; j++) { /* bring back those already failed */
        snprintf(path, sizeof(path), "/w/%d/control/ok", DEAD[j].idx);
        http_get(path, body, sizeof(body));
      }
      free(slot);
      return -1;
    }
  }
  start = DEAD[0].t0;
  for (int k = 0; k < ROUTE_DEPTH; k++) send_route();
  while (!all_gone) {
    dsp_pb_response *resp;
    uint64_t now;
    if (dsp_client_recv(cli, &resp, err, sizeof(err)) != 0) {
      free(slot);
      fail_run("routing in phase C: %s", err);
      return -1;
    }
    now = now_ns();
    route_replies++;
    if (resp->body_case == DSP_PB(RESPONSE__BODY_ROUTE)) {
      for (size_t j = 0; j < resp->route->n_decisions; j++) {
        const char *nm = resp->route->decisions[j]->worker;
        long idx;
        char *endp;
        if (nm == NULL || nm[0] != 'w') continue;
        idx = strtol(nm + 1, &endp, 10);
        if (*endp != '\0' || idx < 0 || idx >= S.n || slot[idx] < 0) continue;
        if (now > DEAD[slot[idx]].t0) {
          DEAD[slot[idx]].last = now;
          DEAD[slot[idx]].seen_after++;
        }
      }
    } else {
      if (route_errors++ == 0)
        describe_reply(resp, route_error, sizeof(route_error));
    }
    dsp_client_free_response(resp);
    all_gone = 1;
    for (int k = 0; k < S.dead; k++)
      if ((int64_t)(now - DEAD[k].last) < 2 * bound_ns) all_gone = 0;
    if (!all_gone && (int64_t)(now - start) > 10 * bound_ns) {
      dead_stuck = 1;
      break;
    }
    send_route();
  }
  /* Drain the pipeline, then bring the workers back. */
  for (int k = 0; k < ROUTE_DEPTH; k++) {
    dsp_pb_response *resp;
    if (dsp_client_recv(cli, &resp, err, sizeof(err)) != 0) break;
    dsp_client_free_response(resp);
  }
  for (int k = 0; k < S.dead; k++) {
    snprintf(path, sizeof(path), "/w/%d/control/ok", DEAD[k].idx);
    http_get(path, body, sizeof(body));
  }
  free(slot);
  dead_done = 1;
  return 0;
}

/* ---- the report ------------------------------------------------------------ */

static void fmt_cpu(char *out, size_t n, double v) {
  if (v < 0) snprintf(out, n, "-");
  else snprintf(out, n, "%.1f%%", v);
}

/* "idle", "C=50 P=16" or, open loop, "C=50 65000/s". */
static const char *load_name(const window *w) {
  static char buf[32];
  if (w->depth == 0) return "idle";
  if (w->rate) snprintf(buf, sizeof(buf), "C=%d %ld/s", w->conns, w->rate);
  else snprintf(buf, sizeof(buf), "C=%d P=%d", w->conns, w->depth);
  return buf;
}

static void print_window(const window *w) {
  char cc[16], wc[16], rps[16], p50[16], p99[16], p999[16], rate[16], per[16], mn[16], mx[16],
      ex[16];
  int routed = w->depth && w->route.ok;
  fmt_cpu(cc, sizeof(cc), w->coord_cpu);
  fmt_cpu(wc, sizeof(wc), w->worker_cpu);
  snprintf(rps, sizeof(rps), routed ? "%.0f" : "-", w->route.rps);
  snprintf(p50, sizeof(p50), routed ? "%.3f" : "-", w->route.p50);
  snprintf(p99, sizeof(p99), routed ? "%.3f" : "-", w->route.p99);
  snprintf(p999, sizeof(p999), routed ? "%.3f" : "-", w->route.p999);
  if (w->probes_known && w->probes > 0) {
    snprintf(rate, sizeof(rate), "%.0f", (double)w->probes / w->probe_secs);
    snprintf(per, sizeof(per), "%.1f", w->probe_secs * 1000.0 * S.n / (double)w->probes);
    snprintf(mn, sizeof(mn), "%" PRIu64, w->pmin);
    snprintf(mx, sizeof(mx), "%" PRIu64, w->pmax);
    snprintf(ex, sizeof(ex), "%.2f", w->probe_secs * 1000.0 / (double)S.interval_ms);
  } else {
    snprintf(rate, sizeof(rate), "%s", w->probes_known ? "0" : "-");
    snprintf(per, sizeof(per), "-");
    snprintf(mn, sizeof(mn), "-");
    snprintf(mx, sizeof(mx), "-");
    snprintf(ex, sizeof(ex), "-");
  }
  printf("%-12s %-13s %9s %8s %8s %9s %7s %7s %9s %7s %6s %6s %7s\n", w->label, load_name(w),
         rps, p50, p99, p999, cc, wc, rate, per, mn, mx, ex);
  if (routed && w->rate && w->route.late)
    printf("%-12s   schedule not kept: %llu requests still unsent at the end\n", "",
           w->route.late);
}

static void target(const char *name, const char *got, const char *want, const char *verdict) {
  printf("%-56s %11s %12s  %s\n", name, got, want, verdict);
}

static const char *verdict(int ok) { return ok ? "ok" : "MISSED"; }

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The median of v[n] (n >= 1; sorts v). */
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(*v), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void report(void) {
  double bound_ms = (double)(S.interval_ms * S.fall + S.timeout_ms);
  double ideal = (double)S.n * 1000.0 / (double)S.interval_ms;
  char name[96], got[32], want[32];

  printf("\nbench-health: %d workers (%s), check interval %ld ms, timeout %ld ms, fall %ld, "
         "jitter %ld%%; windows of %d s; %d rounds of A then B\n",
         S.n, S.distinct ? "each checked at its own 127.x.y.z" : "all checked at -w's address",
         S.interval_ms, S.timeout_ms, S.fall, S.jitter, S.seconds, S.rounds);
  printf("\n%-12s %-13s %9s %8s %8s %9s %7s %7s %9s %7s %6s %6s %7s\n", "phase", "load",
         "req/s", "p50 ms", "p99 ms", "p99.9 ms", "coord", "worker", "probes/s", "period", "min/id",
         "max/id", "want/id");
  for (int r = 0; r < S.rounds; r++) {
    for (int i = 0; i < nwin; i++) print_window(&WA[r][i]);
    for (int i = 0; i < nwin; i++) print_window(&WB[r][i]);
  }
  printf("load: dispatch-bench connections and depth (closed loop: a reply lets the next\n"
         "request go), or connections and a fixed rate (open loop: requests on a schedule,\n"
         "timed from when each was due; at most 16 in flight per connection). coord, worker:\n"
         "CPU (utime+stime) over the window, %% of one core. probes/s, min/id, max/id: health\n"
         "requests the worker saw over the window in all and per identity; period: window x N\n"
         "/ probes, ms; want/id: window / interval.\n");

  printf("\nadmin, %d in flight: %d adds without check %.1f s (%.0f/s); %d removes %.1f s; "
         "%d adds with check %.1f s (%.0f/s), all up %.1f s after the first\n",
         ADMIN_WINDOW, S.n, ADM.add_plain_s, ADM.add_plain_s > 0 ? S.n / ADM.add_plain_s : 0,
         S.n, ADM.remove_s, S.n, ADM.add_check_s,
         ADM.add_check_s > 0 ? S.n / ADM.add_check_s : 0, ADM.all_up_s);
  if (ADM.add_plain_failed || ADM.remove_failed || ADM.add_check_failed)
    printf("admin refusals: %d adds, %d removes, %d checked adds; first: %s\n",
           ADM.add_plain_failed, ADM.remove_failed, ADM.add_check_failed, ADM.first_error);
  printf("coordinator's table after the last phase B: %" PRIu64 " probes, %" PRIu64
         " failed (%d workers with a failure), %d workers not up\n",
         ADM.b_probes_coord, ADM.b_probe_failures, ADM.b_probe_failures_workers, ADM.b_not_up);

  if (dead_done) {
    double worst = 0;
    printf("\ndeath to last route: /w/I/control/fail at t0, then Route round-robin x %d, %d in "
           "flight (%" PRIu64 " replies, %" PRIu64 " errors)\n",
           ROUTE_COUNT, ROUTE_DEPTH, route_replies, route_errors);
    if (route_errors) printf("first error: %s\n", route_error);
    printf("%-8s %18s %15s\n", "worker", "last named (ms)", "named after t0");
    for (int k = 0; k < S.dead; k++) {
      double ms = (double)(DEAD[k].last - DEAD[k].t0) / 1e6;
      if (ms > worst) worst = ms;
      printf("w%-7d %18.0f %15" PRIu64 "\n", DEAD[k].idx, ms, DEAD[k].seen_after);
    }
    printf("%-8s %18.0f   bound interval x fall + timeout = %.0f ms%s\n", "max", worst,
           bound_ms, dead_stuck ? "; STILL ROUTED when the loop gave up" : "");
  }

  printf("\n");
  target("target", "measured", "wanted", "verdict");
  for (int i = 0; i < nwin; i++) {
    /* Each figure from the B window of the rounds where it came closest
       to (or furthest past) its bound. */
    double rate = 0, noise = 0, expect = 0, fastest = 0, secs = 0;
    double rate_m = INFINITY, pmin_m = INFINITY, pmax_m = -INFINITY;
    uint64_t pmin = 0, pmax = 0;
    int known = 0;
    for (int r = 0; r < S.rounds; r++) {
      const window *w = &WB[r][i];
      double wr, we, f, wn, wf;
      if (!w->probes_known) continue;
      known++;
      wr = (double)w->probes / w->probe_secs;
      we = w->probe_secs * 1000.0 / (double)S.interval_ms;
      /* A prober that misses no round gives each identity floor(expect) or
         one more probe in the window, by its phase: the total varies by
         sqrt(n f (1 - f)) probes (f the fraction of expect). The rate must
         reach the ideal less three such deviations of counting noise. */
      f = we - floor(we);
      wn = 3.0 * sqrt((double)S.n * f * (1.0 - f)) / w->probe_secs;
      wf = w->probe_secs * 1000.0 / ((double)S.interval_ms * (1.0 - S.jitter / 100.0));
      if (wr - (ideal - wn) < rate_m) {
        rate_m = wr - (ideal - wn);
        rate = wr;
        noise = wn;
      }
      if ((double)w->pmin - (we - 1) < pmin_m) {
        pmin_m = (double)w->pmin - (we - 1);
        pmin = w->pmin;
        expect = we;
        secs = w->probe_secs;
      }
      if ((double)w->pmax - (wf + 1) > pmax_m) {
        pmax_m = (double)w->pmax - (wf + 1);
        pmax = w->pmax;
        fastest = wf;
      }
    }
    if (!known) continue;
    snprintf(name, sizeof(name), "probe rate, B %s (worst of %d)", load_name(&WB[0][i]), known);
    snprintf(got, sizeof(got), "%.1f/s", rate);
    snprintf(want, sizeof(want), ">= %.0f-%.1f/s", ideal, noise);
    target(name, got, want, verdict(rate_m >= 0));
    snprintf(name, sizeof(name), "  min probes per identity (%.2f s)", secs);
    snprintf(got, sizeof(got), "%" PRIu64, pmin);
    snprintf(want, sizeof(want), ">= %.2f", expect - 1);
    target(name, got, want, verdict(pmin_m >= 0));
    snprintf(name, sizeof(name), "  max probes per identity");
    snprintf(got, sizeof(got), "%" PRIu64, pmax);
    snprintf(want, sizeof(want), "<= %.2f", fastest + 1);
    target(name, got, want, verdict(pmax_m <= 0));
  }
  for (int i = 0; i < nwin; i++) {
    double a[ROUNDS_MAX], b[ROUNDS_MAX], ma, mb, ratio;
    int na = 0, nb = 0;
    if (WA[0][i].depth == 0) continue;
    for (int r = 0; r < S.rounds; r++) {
      if (WA[r][i].route.ok && WA[r][i].route.p99 > 0) a[na++] = WA[r][i].route.p99;
      if (WB[r][i].route.ok && WB[r][i].route.p99 > 0) b[nb++] = WB[r][i].route.p99;
    }
    if (na == 0 || nb == 0) continue;
    ma = median(a, na);
    mb = median(b, nb);
    ratio = mb / ma;
    snprintf(name, sizeof(name), "route p99 probing/not, %s (%.3f/%.3f ms)",
             load_name(&WA[0][i]), mb, ma);
    snprintf(got, sizeof(got), "%.2fx", ratio);
    target(name, got, "<= 1.50x", verdict(ratio <= 1.5));
  }
  if (dead_done) {
    double worst = 0;
    for (int k = 0; k < S.dead; k++) {
      double ms = (double)(DEAD[k].last - DEAD[k].t0) / 1e6;
      if (ms > worst) worst = ms;
    }
    snprintf(got, sizeof(got), "%.0f ms", worst);
    snprintf(want, sizeof(want), "<= %.0f ms", bound_ms);
    target("death to last route, worst", got, want, verdict(!dead_stuck && worst <= bound_ms));
  }
  for (int i = 0; i < nwin; i++) {
    double a[ROUNDS_MAX], b[ROUNDS_MAX];
    int na = 0, nb = 0;
    for (int r = 0; r < S.rounds; r++) {
      if (WA[r][i].coord_cpu >= 0) a[na++] = WA[r][i].coord_cpu;
      if (WB[r][i].coord_cpu >= 0) b[nb++] = WB[r][i].coord_cpu;
    }
    if (na == 0 || nb == 0) continue;
    snprintf(name, sizeof(name), "coordinator CPU, %s: probing (no checks)", load_name(&WA[0][i]));
    snprintf(got, sizeof(got), "%.1f%%", median(b, nb));
    snprintf(want, sizeof(want), "(%.1f%%)", median(a, na));
    target(name, got, want, "reported");
  }
  if (failure[0]) printf("\nrun incomplete: %s\n", failure);
}

/* Window i of a phase (see SPEC): closed loop, or open loop at the
   (i - NCLOSED)th rate. */
static void measure_window(window *w, const char *label, int i, int count_probes) {
  if (i < NCLOSED)
    measure(w, label, SPEC[i].conns ? SPEC[i].conns : S.conns, SPEC[i].depth, 0, count_probes);
  else
    measure(w, label, S.conns, OPEN_DEPTH, S.rates[i - NCLOSED], count_probes);
}

/* ---- main ----------------------------------------------------------------- */

/* Remove every worker and wait until the table is empty; before phase
   `next`. 0, or -1 (the run is over). */
/* admin_all(kind), timed into *secs, its refusals into *failed. 0, or -1
   (the run is over). */
static int admin_timed(admin_kind kind, double *secs, int *failed) {
  uint64_t t = now_ns();
  int rc = admin_all(kind);
  *secs = secs_between(t, now_ns());
  if (rc < 0) return -1;
  *failed = rc;
  return 0;
}

static int remove_all(const char *next) {
  table_view tv;
  progress("phase %s: removing the %d workers", next, S.n);
  if (admin_timed(REMOVE, &ADM.remove_s, &ADM.remove_failed) != 0) return -1;
  if (table_wait(0, 0, 300, &tv) != 0) {
    fail_run("phase %s: workers are still in the table after their removal", next);
    return -1;
  }
  return 0;
}

static void usage(FILE *out) {
  fprintf(out,
"Usage: bench-health -s HOST:PORT -w HOST:PORT [OPTIONS]\n"
"\n"
"The health-check benchmark: the coordinator at -s probes N workers, all\n"
"served by one `dispatch-worker --identities N` at -w, every interval.\n"
"Phase A adds workers w0..w(N-1) without a check and measures routing\n"
"(dispatch-bench: C connections at depth 1 and 16, one at depth 1, all closed\n"
"loop, then C connections open loop at fixed rates, light to heavy) and the\n"
"coordinator's CPU; phase B removes them, adds them again checked at\n"
"http://WORKER/w/I/health, waits until all are up and measures the same\n"
"while it probes, with the probes each identity received per window; phase C\n"
"sets --dead workers to fail and routes (round-robin, 1000 per request) until\n"
"each has been absent for twice interval x fall + timeout, and prints when\n"
"each was last named.\n"
"The cluster must hold no workers. Prints one table with the targets; exit\n"
"0 when every phase ran, 1 when one could not, 2 on bad flags.\n"
"\n"
"  -s, --server HOST:PORT   the coordinator (routing and admin go here)\n"
"  -w, --worker HOST:PORT   the dispatch-worker\n"
"  -n, --workers N          workers, 1-100000, at most the worker's identities\n"
"                           (default 10000)\n"
"  -d, --seconds S          length of each window, 1-3600 (default 10)\n"
"  -c, --conns C            dispatch-bench connections (default 50)\n"
"  -r, --rounds R           phases A and B in turn, R times each, 1-9 (default\n"
"                           3); routing figures are compared by their medians\n"
"  -R, --rate RATE[,RATE…]  the open-loop windows' requests a second, one window\n"
"                           each, at most 4 (default: an eighth, a quarter and\n"
"                           half the first A window's at depth 1, in thousands)\n"
"      --distinct-hosts     check worker wI at its own address, 127.(1+I/65536).\n"
"                           (I/256%%256).(I%%256), on -w's port (the worker must\n"
"                           listen on 0.0.0.0): one host each, as in a real fleet,\n"
"                           instead of all behind -w's address\n"
"      --pid PID            the coordinator's pid, for its CPU (default: none)\n"
"      --worker-pid PID     the worker's pid, for its CPU (default: none)\n"
"      --interval MS        the coordinator's --check-interval (default 1000)\n"
"      --timeout MS         its --check-timeout (default 500)\n"
"      --fall N             its --check-fall (default 3)\n"
"      --jitter PCT         its --check-jitter (default 0): rounds come up to PCT%%\n"
"                           early, so up to window / (interval x (1 - PCT/100)) + 1\n"
"                           probes per identity are expected\n"
"      --dead K             workers failed in phase C, 1-%d (default 5)\n"
"      --dispatch-bench PATH  the load generator (default: next to this program)\n"
"  -h, --help               show this help and exit\n",
          DEAD_MAX);
}

static int bad(const char *what, const char *arg) {
  fprintf(stderr, "bench-health: %s '%s'\n", what, arg ? arg : "");
  usage(stderr);
  return 2;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"server", required_argument, NULL, 's'},   {"worker", required_argument, NULL, 'w'},
      {"workers", required_argument, NULL, 'n'},  {"seconds", required_argument, NULL, 'd'},
      {"conns", required_argument, NULL, 'c'},    {"pid", required_argument, NULL, 1},
      {"worker-pid", required_argument, NULL, 2}, {"interval", required_argument, NULL, 3},
      {"timeout", required_argument, NULL, 4},    {"fall", required_argument, NULL, 5},
      {"dead", required_argument, NULL, 6},       {"dispatch-bench", required_argument, NULL, 7},
      {"jitter", required_argument, NULL, 8},     {"rounds", required_argument, NULL, 'r'},
      {"rate", required_argument, NULL, 'R'},     {"distinct-hosts", no_argument, NULL, 9},
      {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
  static char bench_path[4096];
  char err[512] = "", body[512] = "";
  long long v;
  int c;
  table_view tv;
  uint64_t t;

  S.n = 10000;
  S.seconds = 10;
  S.conns = 50;
  S.dead = 5;
  S.rounds = 3;
  S.interval_ms = 1000;
  S.timeout_ms = 500;
  S.fall = 3;
  while ((c = getopt_long(argc, argv, "s:w:n:d:c:r:R:h", opts, NULL)) != -1) {
    switch (c) {
      case 's': S.server = optarg; break;
      case 'w': S.worker = optarg; break;
      case 'n':
        if (dsp_parse_int(optarg, 1, 100000, &v) != 0) return bad("-n: not 1-100000:", optarg);
        S.n = (int)v;
        break;
      case 'd':
        if (dsp_parse_int(optarg, 1, 3600, &v) != 0) return bad("-d: not 1-3600:", optarg);
        S.seconds = (int)v;
        break;
      case 'c':
        if (dsp_parse_int(optarg, 1, 10000, &v) != 0) return bad("-c: not 1-10000:", optarg);
        S.conns = (int)v;
        break;
      case 'r':
        if (dsp_parse_int(optarg, 1, ROUNDS_MAX, &v) != 0) return bad("-r: not 1-9:", optarg);
        S.rounds = (int)v;
        break;
      case 'R': {
        /* A comma-separated list: each a window. */
        char list[256], *tok, *save = NULL;
        if (snprintf(list, sizeof(list), "%s", optarg) >= (int)sizeof(list))
          return bad("-R: too long:", optarg);
        S.nrates = 0;
        for (tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
          if (S.nrates == NOPEN_MAX) return bad("-R: more than 4 rates:", optarg);
          if (dsp_parse_int(tok, 1, 100000000, &v) != 0)
            return bad("-R: not 1-100000000:", tok);
          S.rates[S.nrates++] = (long)v;
        }
        if (S.nrates == 0) return bad("-R: no rate in", optarg);
        break;
      }
      case 1:
      case 2:
        if (dsp_parse_int(optarg, 1, 1 << 30, &v) != 0) return bad("not a pid:", optarg);
        if (c == 1) S.coord_pid = (long)v;
        else S.worker_pid = (long)v;
        break;
      case 3:
        if (dsp_parse_int(optarg, 100, 3600000, &v) != 0)
          return bad("--interval: not 100-3600000:", optarg);
        S.interval_ms = (long)v;
        break;
      case 4:
        if (dsp_parse_int(optarg, 10, 3600000, &v) != 0)
          return bad("--timeout: not 10-3600000:", optarg);
        S.timeout_ms = (long)v;
        break;
      case 5:
        if (dsp_parse_int(optarg, 1, 100, &v) != 0) return bad("--fall: not 1-100:", optarg);
        S.fall = (long)v;
        break;
      case 6:
        if (dsp_parse_int(optarg, 1, DEAD_MAX, &v) != 0) return bad("--dead: out of range:", optarg);
        S.dead = (int)v;
        break;
      case 7: S.dispatch_bench = optarg; break;
      case 9: S.distinct = 1; break;
      case 8:
        if (dsp_parse_int(optarg, 0, 100, &v) != 0) return bad("--jitter: not 0-100:", optarg);
        S.jitter = (long)v;
        break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
  }
  if (optind < argc) return bad("unexpected argument", argv[optind]);
  if (S.server == NULL) return bad("-s is required", "");
  if (S.worker == NULL || dsp_parse_hostport(S.worker, S.whost, sizeof(S.whost), &S.wport) != 0)
    return bad("-w needs HOST:PORT, not", S.worker);
  if (S.dead > S.n) return bad("--dead is over -n", "");
  nwin = NCLOSED + (S.nrates ? S.nrates : (int)DSP_ARRAY_SIZE(RATE_SHARES));
  if (S.dispatch_bench == NULL) {
    const char *slash = strrchr(argv[0], '/');
    if (slash == NULL) snprintf(bench_path, sizeof(bench_path), "dispatch-bench");
    else snprintf(bench_path, sizeof(bench_path), "%.*s/dispatch-bench",
                  (int)(slash - argv[0]), argv[0]);
    S.dispatch_bench = bench_path;
  }
  if (access(S.dispatch_bench, X_OK) != 0)
    return bad("cannot run dispatch-bench at", S.dispatch_bench);

  /* The worker must serve every identity we are going to name. */
  if (http_get("/stats", body, sizeof(body)) != 200 || json_num(body, "identities") < S.n) {
    fprintf(stderr, "bench-health: %s is not a dispatch-worker with %d identities: %s\n",
            S.worker, S.n, body);
    return 1;
  }
  /* A member just started may not listen or coordinate yet: a while to. */
  t = now_ns();
  for (;;) {
    if (cli == NULL) cli = dsp_client_new(S.server, RPC_TIMEOUT_MS, err, sizeof(err));
    if (cli != NULL && table_get(&tv, err, sizeof(err)) == 0) break;
    if (secs_between(t, now_ns()) > 30) {
      fprintf(stderr, "bench-health: no coordinator at %s after 30 s: %s\n", S.server, err);
      dsp_client_free(cli);
      return 1;
    }
    sleep_ms(200);
  }
  if (tv.total != 0) {
    fprintf(stderr, "bench-health: the cluster at %s holds %d workers; it must hold none\n",
            S.server, tv.total);
    return 1;
  }

  for (int r = 0; r < S.rounds; r++) {
    char la[24], lb[24];
    snprintf(la, sizeof(la), "A%d no checks", r + 1);
    snprintf(lb, sizeof(lb), "B%d probing", r + 1);
    if (r > 0 && remove_all("A") != 0) goto out;
    /* Phase A: no checks. */
    progress("phase A%d: adding %d workers without a check", r + 1, S.n);
    if (admin_timed(ADD_PLAIN, &ADM.add_plain_s, &ADM.add_plain_failed) != 0) goto out;
    if (table_wait(S.n, S.n, 300, &tv) != 0) {
      fprintf(stderr, "bench-health: after 300 s the table holds %d workers, %d up (want %d)\n",
              tv.total, tv.up, S.n);
      fail_run("phase A: the table never held every worker up");
      goto out;
    }
    for (int i = 0; i < nwin; i++) {
      /* The open-loop rates, unless given: shares of what the first
         closed-loop window at depth 1 reached without checks, in
         thousands. */
      if (i == NCLOSED && S.nrates == 0) {
        for (size_t k = 0; k < DSP_ARRAY_SIZE(RATE_SHARES); k++) {
          long rate = (long)(WA[0][WIN_C1].route.rps * RATE_SHARES[k] / 1000) * 1000;
          S.rates[S.nrates++] = rate < 1000 ? 1000 : rate;
        }
      }
      measure_window(&WA[r][i], la, i, 0);
    }

    /* Phase B: the same workers, checked. */
    if (remove_all("B") != 0) goto out;
    if (S.distinct)
      progress("phase B%d: adding %d workers checked at http://127.x.y.z:%d/w/I/health", r + 1,
               S.n, S.wport);
    else
      progress("phase B%d: adding %d workers checked at http://%s/w/I/health", r + 1, S.n,
               S.worker);
    t = now_ns();
    if (admin_timed(ADD_CHECKED, &ADM.add_check_s, &ADM.add_check_failed) != 0) goto out;
    if (table_wait(S.n, S.n, 300, &tv) != 0) {
      fprintf(stderr,
              "bench-health: 300 s after the adds: %d workers, %d up, %d down, %d pending; "
              "%" PRIu64 " probes, %" PRIu64 " failed\n",
              tv.total, tv.up, tv.down, tv.pending, tv.probes, tv.probe_failures);
      fail_run("phase B: not every checked worker came up");
      goto out;
    }
    ADM.all_up_s = secs_between(t, now_ns());
    progress("phase B%d: all %d up after %.1f s; settling for two intervals", r + 1, S.n,
             ADM.all_up_s);
    sleep_ms(2 * S.interval_ms);
    for (int i = 0; i < nwin; i++) measure_window(&WB[r][i], lb, i, 1);
    if (table_get(&tv, err, sizeof(err)) == 0) {
      ADM.b_probes_coord = tv.probes;
      ADM.b_probe_failures = tv.probe_failures;
      ADM.b_probe_failures_workers = tv.with_failures;
      ADM.b_not_up = tv.total - tv.up;
    } else {
      fail_run("%s", err);
    }
  }

  /* Phase C: death to last route. */
  phase_c();

out:
  report();
  dsp_client_free(cli);
  http_close();
  free(H.out);
  return failure[0] ? 1 : 0;
}
