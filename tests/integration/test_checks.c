/*
 * test_checks.c: health checking end to end (docs/health.md), with a real
 * ZooKeeper server, three real members and real HTTP workers
 * (dispatch-worker processes, one per worker, so that killing one is a
 * real death).
 *
 * The members run fast checks (--check-interval 200 --check-timeout 100,
 * fall 3, rise 2) so that every transition takes well under a second; the
 * tests wait for states with generous deadlines and assert what routing
 * does, never how fast.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include "client.h"
#include "th_rpc.h"
#include "harness.h"
#include "test.h"

#define NMEM 3
#define NWORK 3

static zkh_ensemble *zk;
static pid_t pids[NMEM], wpids[NWORK];
static char addrs[NMEM][32], logs[NMEM][512], wlogs[NWORK][512], all[128];
static int wports[NWORK];

static int start_member(int i) {
  char id[8];
  char *argv[] = {(char *)th_bin("dispatcherd"), "--zk", zk->connect, "--cluster", "health",
                  "--id", id, "--listen", addrs[i], "--session-timeout", "2000",
                  "--check-interval", "200", "--check-timeout", "100", "--fail-timeout", "600",
                  NULL};
  snprintf(id, sizeof(id), "h%d", i + 1);
  snprintf(logs[i], sizeof(logs[i]), "%s/h%d.log", zk->dir, i + 1);
  pids[i] = th_spawn(logs[i], argv);
  return th_wait_log(logs[i], "serving RPC on", 0, 20000) ? 0 : -1;
}

/* Worker i (a dispatch-worker on its own port), in mode `mode`. */
static int start_worker(int i, const char *mode) {
  char listen[32], name[16];
  char *argv[] = {(char *)th_bin("dispatch-worker"), "--listen", listen, "--name", name,
                  "--mode", (char *)mode, NULL};
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", wports[i]);
  snprintf(name, sizeof(name), "w%d", i);
  snprintf(wlogs[i], sizeof(wlogs[i]), "%s/w%d.log", zk->dir, i);
  wpids[i] = th_spawn(wlogs[i], argv);
  return th_wait_log(wlogs[i], "listening on", 0, 10000) ? 0 : -1;
}

static void stop_worker(int i, int sig) {
  if (wpids[i] == 0) return;
  th_signal(wpids[i], sig);
  th_wait_exit(wpids[i], 10000);
  wpids[i] = 0;
}

static void dump_logs_at_exit(void);

static int start(void) {
  static int registered;
  zk = zkh_start(1);
  if (zk == NULL) return -1;
  if (!registered) atexit(dump_logs_at_exit); /* after the harness's: runs first */
  registered = 1;
  all[0] = '\0';
  for (int i = 0; i < NMEM; i++) {
    snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%d", th_free_port());
    snprintf(all + strlen(all), sizeof(all) - strlen(all), "%s%s", i ? "," : "", addrs[i]);
    if (start_member(i) != 0) return -1;
    if (i == 0 && !th_wait_log(logs[0], "coordinator epoch=", 0, 20000)) return -1;
  }
  for (int i = 0; i < NWORK; i++) {
    wports[i] = th_free_port();
    if (start_worker(i, "ok") != 0) return -1;
  }
  return 0;
}

/* The members' last log lines, for a failed scenario. */
static void dump_logs(void) {
  for (int i = 0; i < NMEM; i++) {
    char cmd[1700];
    fprintf(stderr, "---- %s (last 40 lines)\n", logs[i]);
    snprintf(cmd, sizeof(cmd), "tail -n 40 '%s' >&2", logs[i]);
    if (system(cmd) != 0) fprintf(stderr, "(no log)\n");
  }
}

/* A CHECK that fails returns before stop(): print the logs at exit then
   (before the harness removes them). */
static void dump_logs_at_exit(void) {
  if (test_failed_flag && zk != NULL) dump_logs();
}

static void stop(void) {
  for (int i = 0; i < NWORK; i++) stop_worker(i, SIGTERM);
  for (int i = 0; i < NMEM; i++) {
    char name[8];
    if (pids[i] == 0) continue;
    snprintf(name, sizeof(name), "h%d", i + 1);
    if (!th_stop_clean(pids[i], logs[i], name)) test_failed_flag = 1;
    pids[i] = 0;
  }
  if (test_failed_flag) dump_logs();
  zkh_free(zk);
  zk = NULL;
}

/* ---- HTTP: a dispatch-worker's own counters --------------------------------- */

/* GET /stats from the worker on `port`: the number `field`, or -1. */
static long worker_stat(int port, const char *field) {
  struct sockaddr_in sa;
  char buf[2048], *p;
  const char req[] = "GET /stats HTTP/1.0\r\n\r\n";
  ssize_t n, got = 0;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
    close(fd);
    return -1;
  }
  while (got < (ssize_t)sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
    got += n;
  close(fd);
  buf[got] = '\0';
  {
    char key[64];
    snprintf(key, sizeof(key), "\"%s\":", field);
    p = strstr(buf, key);
    return p ? strtol(p + strlen(key), NULL, 10) : -1;
  }
}

static long health_requests(int port) { return worker_stat(port, "health_requests"); }

/* ---- RPC helpers ----------------------------------------------------------- */

/* Worker `name` at addr, weight 1, checked at `check` ("": not) or in
   heartbeat mode (ttl > 0). Returns 0, the error code, or -1. */
static int add_named(dsp_client *c, const char *name, const char *addr, const char *check,
                     unsigned ttl) {
  dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
  Dispatcher__V1__WorkerAddRequest add = DISPATCHER__V1__WORKER_ADD_REQUEST__INIT;
  dsp_pb_response *r;
  int code;
  add.name = (char *)name;
  add.addr = (char *)addr;
  add.weight = 1;
  add.check = (char *)check;
  add.heartbeat_ttl_ms = ttl;
  req.body_case = DSP_PB(REQUEST__BODY_WORKER_ADD);
  req.worker_add = &add;
  if ((r = th_call(c, &req)) == NULL) return -1;
  code = r->body_case == DSP_PB(RESPONSE__BODY_ERROR) ? (int)r->error->code : 0;
  dsp_client_free_response(r);
  return code;
}

static int add_worker(dsp_client *c, int i, const char *check_path, unsigned ttl) {
  char name[16], addr[32], url[96];
  snprintf(name, sizeof(name), "w%d", i);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", wports[i]);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", wports[i], check_path ? check_path : "");
  return add_named(c, name, addr, check_path ? url : "", ttl);
}

/* Worker `name` as the coordinator sees it: copies state and counters into
   the out parameters (NULL to skip). Returns 1 if found. */
/* The coordinator's table, through c (NULL on an error). Free it with
   dsp_client_free_response(). */
static dsp_pb_response *worker_list(dsp_client *c) {
  dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
  Dispatcher__V1__WorkerListRequest wl = DISPATCHER__V1__WORKER_LIST_REQUEST__INIT;
  dsp_pb_response *r;
  req.body_case = DSP_PB(REQUEST__BODY_WORKER_LIST);
  req.worker_list = &wl;
  if ((r = th_call(c, &req)) != NULL && r->body_case != DSP_PB(RESPONSE__BODY_WORKER_LIST)) {
    dsp_client_free_response(r);
    r = NULL;
  }
  return r;
}

/* Worker `name` in a worker_list() answer, or NULL. */
static const Dispatcher__V1__WorkerInfo *find_worker(const dsp_pb_response *r,
                                                     const char *name) {
  for (size_t i = 0; r != NULL && i < r->worker_list->n_workers; i++)
    if (strcmp(r->worker_list->workers[i]->name, name) == 0) return r->worker_list->workers[i];
  return NULL;
}

/* Worker `name` as the coordinator sees it: its state into state[slen] and
   its numbers into *out (either may be NULL; out's strings and lists are
   left NULL). Returns 1 if found. */
static int worker_info(dsp_client *c, const char *name, char *state, size_t slen,
                       Dispatcher__V1__WorkerInfo *out) {
  dsp_pb_response *r = worker_list(c);
  const Dispatcher__V1__WorkerInfo *w = find_worker(r, name);
  if (w != NULL && state) snprintf(state, slen, "%s", w->state);
  if (w != NULL && out) {
    *out = *w;
    out->name = out->addr = out->state = out->reason = out->check = out->last_error = NULL;
    out->n_failures = 0;
    out->failures = NULL;
  }
  dsp_client_free_response(r);
  return w != NULL;
}

/* Probe failures of worker `name` of one kind ("refused", "status", …). */
static long failures_of(dsp_client *c, const char *name, const char *kind) {
  dsp_pb_response *r = worker_list(c);
  const Dispatcher__V1__WorkerInfo *w = find_worker(r, name);
  long n = r != NULL ? 0 : -1;
  for (size_t k = 0; w != NULL && k < w->n_failures; k++)
    if (strcmp(w->failures[k]->kind, kind) == 0) n = (long)w->failures[k]->count;
  dsp_client_free_response(r);
  return n;
}

static int wait_state(dsp_client *c, const char *name, const char *want, int timeout_ms) {
  uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
  char st[32] = "";
  do {
    if (worker_info(c, name, st, sizeof(st), NULL) && strcmp(st, want) == 0) return 1;
    th_sleep_ms(20);
  } while (th_now_ms() < end);
  fprintf(stderr, "worker %s is '%s', not '%s'\n", name, st, want);
  return 0;
}

/* n round-robin decisions through c; counts per worker index into seen[]
   (NULL to skip). Returns the number of decisions, -1 on any error. */
static int route_n(dsp_client *c, unsigned n, int seen[NWORK + 1], int64_t *epoch) {
  dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
  Dispatcher__V1__RouteRequest rr = DISPATCHER__V1__ROUTE_REQUEST__INIT;
  dsp_pb_response *r;
  int got = -1;
  rr.strategy = "round-robin";
  rr.count = n;
  req.body_case = DSP_PB(REQUEST__BODY_ROUTE);
  req.route = &rr;
  if ((r = th_call(c, &req)) == NULL) return -1;
  if (r->body_case == DSP_PB(RESPONSE__BODY_ROUTE)) {
    got = (int)r->route->n_decisions;
    for (size_t i = 0; seen && i < r->route->n_decisions; i++) {
      const char *w = r->route->decisions[i]->worker;
      int k = (w[0] == 'w' && w[1] >= '0' && w[1] < '0' + NWORK && w[2] == '\0') ? w[1] - '0'
                                                                                   : NWORK;
      seen[k]++;
    }
    if (epoch) *epoch = r->epoch;
  } else if (r->body_case == DSP_PB(RESPONSE__BODY_ERROR)) {
    fprintf(stderr, "route: %s\n", r->error->message);
  }
  dsp_client_free_response(r);
  return got;
}

static void report(dsp_client *c, const char *worker, int ok) {
  dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
  Dispatcher__V1__ReportRequest rp = DISPATCHER__V1__REPORT_REQUEST__INIT;
  dsp_pb_response *r;
  rp.worker = (char *)worker;
  rp.ok = ok;
  req.body_case = DSP_PB(REQUEST__BODY_REPORT);
  req.report = &rp;
  r = th_call(c, &req);
  CHECK(r != NULL && r->body_case == DSP_PB(RESPONSE__BODY_REPORT));
  dsp_client_free_response(r);
}

static dsp_client *client(const char *servers) {
  char err[256];
  dsp_client *c = dsp_client_new(servers, 10000, err, sizeof(err));
  if (c == NULL) fprintf(stderr, "client: %s\n", err);
  return c;
}

/* Every worker added with a check, and up. */
static int add_all_checked(dsp_client *c) {
  for (int i = 0; i < NWORK; i++)
    if (add_worker(c, i, "/health", 0) != 0) return 0;
  for (int i = 0; i < NWORK; i++) {
    char name[8];
    snprintf(name, sizeof(name), "w%d", i);
    if (!wait_state(c, name, "up", 20000)) return 0;
  }
  return 1;
}

/* ---- scenarios ---------------------------------------------------------------- */

/* A worker killed leaves routing after `fall` failed probes, through every
   member; started again, it returns after `rise` passing probes. A new
   worker takes tasks only after its first passing probe. */
static void test_killed_and_recovered(void) {
  dsp_client *lead, *fol[2];
  Dispatcher__V1__WorkerInfo wi;
  if (start() != 0) {
    stop();
    CHECK(!"cluster started");
    return;
  }
  lead = client(addrs[0]);
  fol[0] = client(addrs[1]);
  fol[1] = client(addrs[2]);
  CHECK(lead && fol[0] && fol[1]);
  /* Mandatory first probe: a worker whose check fails never takes a task. */
  stop_worker(2, SIGTERM);
  CHECK_INT(add_worker(lead, 0, "/health", 0), ==, 0);
  CHECK_INT(add_worker(lead, 1, "/health", 0), ==, 0);
  CHECK_INT(add_worker(lead, 2, "/health", 0), ==, 0);
  CHECK(wait_state(lead, "w0", "up", 20000));
  CHECK(wait_state(lead, "w1", "up", 20000));
  {
    char st[32];
    int seen[NWORK + 1] = {0};
    CHECK(worker_info(lead, "w2", st, sizeof(st), &wi));
    CHECK(strcmp(st, "pending") == 0 || strcmp(st, "down") == 0);
    CHECK_INT(wi.consecutive_ok, ==, 0);
    CHECK_INT(route_n(fol[0], 60, seen, NULL), ==, 60);
    CHECK_INT(seen[2], ==, 0);
    CHECK_INT(seen[0], ==, 30);
  }
  CHECK(start_worker(2, "ok") == 0);
  CHECK(wait_state(lead, "w2", "up", 20000));

  /* Killed: down after exactly `fall` failures (the last error says why),
     and routes through any member never name it after that. */
  stop_worker(1, SIGKILL);
  CHECK(wait_state(lead, "w1", "down", 20000));
  CHECK(worker_info(lead, "w1", NULL, 0, &wi));
  CHECK_INT(wi.consecutive_ok, ==, 0);
  CHECK(wi.consecutive_fail >= 3);
  CHECK(th_log_has(logs[0], "worker w1 down: 3 consecutive failures: connection refused", 0));
  /* Every failure counted by its kind: refused, but for the one probe that
     may be in flight on the kept-alive connection as the worker dies,
     which fails on the reset as "other" (seen once in a loaded run). */
  CHECK(failures_of(lead, "w1", "refused") >= 2);
  CHECK(failures_of(lead, "w1", "other") <= 1);
  CHECK(failures_of(lead, "w1", "refused") + failures_of(lead, "w1", "other") >= 3);
  CHECK_INT(failures_of(lead, "w1", "timeout"), ==, 0);
  for (int m = 0; m < NMEM; m++) {
    int seen[NWORK + 1] = {0};
    CHECK_INT(route_n(m == 0 ? lead : fol[m - 1], 90, seen, NULL), ==, 90);
    CHECK_INT(seen[1], ==, 0);
    CHECK_INT(seen[0], ==, 45);
    CHECK_INT(seen[2], ==, 45);
  }
  /* The transition is in ZooKeeper, readable. */
  {
    zkc *z = zkc_connect(zk->connect, 20000);
    char buf[512];
    CHECK(z != NULL);
    CHECK(zkc_get(z, "/dispatcher/health/health/w1", buf, sizeof(buf), NULL) == ZOK);
    CHECK(strstr(buf, "\"state\":\"down\"") != NULL);
    CHECK(strstr(buf, "connection refused") != NULL);
    zkc_close(z);
  }

  /* Back: up again after `rise` passing probes, and routed to. */
  {
    long from = th_log_size(logs[0]);
    int seen[NWORK + 1] = {0};
    CHECK(start_worker(1, "ok") == 0);
    CHECK(wait_state(lead, "w1", "up", 20000));
    CHECK(th_log_has(logs[0], "worker w1 up: 2 consecutive successes", from));
    CHECK_INT(route_n(fol[1], 90, seen, NULL), ==, 90);
    CHECK_INT(seen[1], ==, 30);
  }
  /* A worker answering 500 is down just the same, with its reason. */
  {
    th_signal(wpids[0], SIGUSR1); /* dispatch-worker: every request 500 */
    CHECK(wait_state(lead, "w0", "down", 20000));
    CHECK(th_log_has(logs[0], "worker w0 down: 3 consecutive failures: status 500", 0));
    CHECK(failures_of(lead, "w0", "status") >= 3);
    th_signal(wpids[0], SIGHUP); /* ok again */
    CHECK(wait_state(lead, "w0", "up", 20000));
  }
  dsp_client_free(lead);
  dsp_client_free(fol[0]);
  dsp_client_free(fol[1]);
  stop();
}

/* A worker that accepts and never answers costs only its own probe's
   timeout: the other workers keep being probed and routing goes on. */
static void test_hanging_worker(void) {
  dsp_client *lead;
  zkc *z;
  char data[256];
  Dispatcher__V1__WorkerInfo a, b;
  if (start() != 0) {
    stop();
    CHECK(!"cluster started");
    return;
  }
  lead = client(addrs[0]);
  z = zkc_connect(zk->connect, 20000);
  CHECK(lead != NULL && z != NULL);
  CHECK(add_all_checked(lead));
  /* w1 hangs, with a long timeout of its own (a znode override), so one
     of its probes stays in flight for 3 s. */
  snprintf(data, sizeof(data),
           "{\"addr\":\"127.0.0.1:%d\",\"check\":\"http://127.0.0.1:%d/health\","
           "\"interval_ms\":5000,\"timeout_ms\":3000}",
           wports[1], wports[1]);
  CHECK(zkc_set(z, "/dispatcher/health/workers/w1", data) == ZOK);
  th_signal(wpids[1], SIGUSR2); /* dispatch-worker: hang */
  /* Once w1 holds a hanging probe (its /stats counts it on arrival), w0's
     probes must go on until that probe times out. */
  {
    uint64_t end = th_now_ms() + 20000;
    Dispatcher__V1__WorkerInfo h;
    int arrived = 0, timed_out = 0;
    long base = health_requests(wports[1]);
    while (!arrived && th_now_ms() < end) {
      arrived = health_requests(wports[1]) > base;
      if (!arrived) th_sleep_ms(10);
    }
    CHECK(arrived);
    CHECK(worker_info(lead, "w0", NULL, 0, &a));
    while (!timed_out && th_now_ms() < end) {
      int seen[NWORK + 1] = {0};
      /* Routing goes on meanwhile, every decision answered. */
      CHECK_INT(route_n(lead, 30, seen, NULL), ==, 30);
      CHECK(worker_info(lead, "w1", NULL, 0, &h));
      timed_out = h.consecutive_fail >= 1;
      if (!timed_out) th_sleep_ms(50);
    }
    CHECK(timed_out);
    CHECK(worker_info(lead, "w0", NULL, 0, &b));
    /* w1's probe hung for its 3 s timeout; w0 (every 200 ms) was probed
       again and again meanwhile, and passed every time. */
    CHECK(b.probes >= a.probes + 5);
    CHECK_INT(b.probe_failures, ==, a.probe_failures);
  }
  /* And w1's failure is its own timeout. */
  {
    dsp_pb_response *r = worker_list(lead);
    const Dispatcher__V1__WorkerInfo *w = find_worker(r, "w1");
    CHECK(w != NULL);
    CHECK_STR(w->last_error, "timeout after 3000 ms");
    dsp_client_free_response(r);
  }
  CHECK(failures_of(lead, "w1", "timeout") >= 1);
  zkc_close(z);
  dsp_client_free(lead);
  stop();
}

/* Heartbeat mode: a worker is up while heartbeats arrive, down once its TTL
   passes without one, and up again with the next. */
static void test_heartbeat(void) {
  dsp_client *lead, *fol;
  pid_t hb;
  char ctl_log[600];
  if (start() != 0) {
    stop();
    CHECK(!"cluster started");
    return;
  }
  lead = client(addrs[0]);
  fol = client(addrs[1]);
  CHECK(lead != NULL && fol != NULL);
  CHECK_INT(add_worker(lead, 0, NULL, 600), ==, 0);
  CHECK_INT(add_worker(lead, 1, NULL, 0), ==, 0);
  CHECK(wait_state(lead, "w1", "up", 20000));
  CHECK(wait_state(lead, "w0", "pending", 20000));
  {
    int seen[NWORK + 1] = {0};
    CHECK_INT(route_n(fol, 10, seen, NULL), ==, 10);
    CHECK_INT(seen[0], ==, 0);
  }
  /* dispatchctl heartbeat --every, through a follower (forwarded). */
  snprintf(ctl_log, sizeof(ctl_log), "%s/hb.log", zk->dir);
  {
    char *argv[] = {(char *)th_bin("dispatchctl"), "-s", addrs[1], "heartbeat", "w0",
                    "--every", "100", NULL};
    hb = th_spawn(ctl_log, argv);
  }
  CHECK(wait_state(lead, "w0", "up", 20000));
  {
    int seen[NWORK + 1] = {0};
    CHECK_INT(route_n(fol, 10, seen, NULL), ==, 10);
    CHECK_INT(seen[0], ==, 5);
  }
  /* The heartbeats stop: down after the TTL. */
  th_signal(hb, SIGTERM);
  CHECK_INT(th_wait_exit(hb, 10000), ==, 0);
  CHECK(wait_state(lead, "w0", "down", 20000));
  CHECK(th_log_has(logs[0], "worker w0 down: heartbeat expired", 0));
  {
    int seen[NWORK + 1] = {0};
    CHECK_INT(route_n(fol, 10, seen, NULL), ==, 10);
    CHECK_INT(seen[0], ==, 0);
  }
  /* One heartbeat (dispatchctl without --every) brings it back at once. */
  {
    char *argv[] = {(char *)th_bin("dispatchctl"), "-s", all, "heartbeat", "w0", NULL};
    hb = th_spawn(ctl_log, argv);
    CHECK_INT(th_wait_exit(hb, 10000), ==, 0);
  }
  CHECK(wait_state(lead, "w0", "up", 20000));
  /* Heartbeats for a worker not in heartbeat mode, or unknown: errors
     (exit 1); bad usage of the new flags: exit 2, naming the flag. */
  {
    static const char *const cases[][6] = {
        {"heartbeat", "w1", NULL, NULL, "1", "not in heartbeat mode"},
        {"heartbeat", "nosuch", NULL, NULL, "1", "UNKNOWN_WORKER"},
        {"heartbeat", NULL, NULL, NULL, "2", "needs the worker's NAME"},
        {"heartbeat", "w0", "--every", "5", "2", "--every: '5'"},
        {"worker", "add", "w9", NULL, "2", "add needs NAME and HOST:PORT"},
        {"worker", "rm", "w1", "--check=http://h/", "2", "go with add"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
      char *argv[8] = {(char *)th_bin("dispatchctl"), "-s", all};
      int st, k = 3;
      long from = th_log_size(ctl_log);
      for (int j = 0; j < 4 && cases[i][j] != NULL; j++) argv[k++] = (char *)cases[i][j];
      argv[k] = NULL;
      hb = th_spawn(ctl_log, argv);
      st = th_wait_exit(hb, 10000);
      CHECK(WIFEXITED(st) && WEXITSTATUS(st) == atoi(cases[i][4]));
      CHECK(th_log_has(ctl_log, cases[i][5], from));
    }
  }
  {
    static const char *const bad[][2] = {
        {"--check", "ftp://h/health"},
        {"--heartbeat-ttl", "5"},
        {"--weight", "0"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
      char *argv[] = {(char *)th_bin("dispatchctl"), "-s", all, "worker", "add", "w9",
                      "127.0.0.1:9", (char *)bad[i][0], (char *)bad[i][1], NULL};
      int st;
      long from = th_log_size(ctl_log);
      hb = th_spawn(ctl_log, argv);
      st = th_wait_exit(hb, 10000);
      CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
      CHECK(th_log_has(ctl_log, bad[i][0], from));
    }
    CHECK(!worker_info(lead, "w9", NULL, 0, NULL));
  }
  dsp_client_free(lead);
  dsp_client_free(fol);
  stop();
}

/* Passive ejection (nginx's max_fails=1 fail_timeout): a failed report
   takes the worker out for --fail-timeout (600 ms here), then it gets a
   trial; a success clears it. */
static void test_passive(void) {
  dsp_client *lead;
  if (start() != 0) {
    stop();
    CHECK(!"cluster started");
    return;
  }
  lead = client(all);
  CHECK(lead != NULL);
  CHECK_INT(add_worker(lead, 0, NULL, 0), ==, 0);
  CHECK_INT(add_worker(lead, 1, NULL, 0), ==, 0);
  CHECK(wait_state(lead, "w1", "up", 20000));
  report(lead, "w0", 0);
  {
    Dispatcher__V1__WorkerInfo wi;
    int seen[NWORK + 1] = {0};
    CHECK(worker_info(lead, "w0", NULL, 0, &wi));
    CHECK(wi.ejected);
    CHECK_INT(route_n(lead, 10, seen, NULL), ==, 10);
    CHECK_INT(seen[0], ==, 0);
  }
  /* The trial comes after fail_timeout; a success ends the ejection. */
  CHECK(wait_state(lead, "w0", "up", 20000));
  report(lead, "w0", 1);
  {
    Dispatcher__V1__WorkerInfo wi;
    int seen[NWORK + 1] = {0};
    CHECK(worker_info(lead, "w0", NULL, 0, &wi));
    CHECK(!wi.ejected);
    CHECK_INT(route_n(lead, 10, seen, NULL), ==, 10);
    CHECK_INT(seen[0], ==, 5);
  }
  dsp_client_free(lead);
  stop();
}

/* A worker found dead, then the coordinator killed with -9: the new
   coordinator starts from the record and never names the dead worker;
   clients of a follower see no error meanwhile. */
static void test_dead_then_failover(void) {
  dsp_client *fol, *lead;
  int errors = 0, total = 0;
  int64_t first_epoch = 0, last_epoch = 0;
  uint64_t end, t_kill;
  if (start() != 0) {
    stop();
    CHECK(!"cluster started");
    return;
  }
  lead = client(addrs[0]);
  fol = client(addrs[2]);
  CHECK(lead != NULL && fol != NULL);
  CHECK(add_all_checked(lead));
  stop_worker(1, SIGKILL);
  CHECK(wait_state(lead, "w1", "down", 20000));
  {
    int seen[NWORK + 1] = {0};
    CHECK_INT(route_n(fol, 10, seen, &first_epoch), ==, 10);
    CHECK_INT(seen[1], ==, 0);
  }
  dsp_client_free(lead);
  t_kill = th_now_ms();
  th_signal(pids[0], SIGKILL);
  th_wait_exit(pids[0], 10000);
  pids[0] = 0;
  /* Route through the follower until a new coordinator has answered for
     a while. */
  end = th_now_ms() + 30000;
  while (th_now_ms() < end) {
    int seen[NWORK + 1] = {0};
    int64_t epoch = 0;
    int n = route_n(fol, 6, seen, &epoch);
    if (n != 6) {
      errors++;
      continue;
    }
    total += n;
    CHECK_INT(seen[1], ==, 0);
    if (epoch > first_epoch && last_epoch == 0) end = th_now_ms() + 1000;
    if (epoch > last_epoch) last_epoch = epoch;
  }
  CHECK_INT(errors, ==, 0);
  CHECK(last_epoch > first_epoch);
  CHECK(total > 0);
  /* The new coordinator's view came from the records: the dead worker
     down, the others up without waiting for a probe. */
  {
    dsp_pb_response *r = worker_list(fol);
    int n = 0;
    CHECK(r != NULL);
    for (size_t i = 0; r != NULL && i < r->worker_list->n_workers; i++) {
      const Dispatcher__V1__WorkerInfo *w = r->worker_list->workers[i];
      CHECK_STR(w->state, strcmp(w->name, "w1") == 0 ? "down" : "up");
      CHECK(strncmp(w->reason, "from record: ", 13) == 0);
      /* In that state since before the old coordinator died: the age
         comes from the record, not from the takeover (100 ms of slack
         for the wall and monotonic clocks). */
      CHECK(w->state_ms + 100 >= th_now_ms() - t_kill);
      n++;
    }
    CHECK_INT(n, ==, NWORK);
    dsp_client_free_response(r);
  }
  dsp_client_free(fol);
  stop();
}

/* Bad check settings in a znode are logged with their reason and the
   worker is left out of the table (docs/health.md). */
static void test_bad_settings(void) {
  dsp_client *lead;
  zkc *z;
  static const char *const bad[][2] = {
      {"b1", "{\"addr\":\"127.0.0.1:9101\",\"check\":\"localhost/health\"}"},
      {"b2", "{\"addr\":\"127.0.0.1:9102\",\"check\":\"http://h/\",\"timeout_ms\":2000}"},
      {"b3", "{\"addr\":\"127.0.0.1:9103\",\"check\":\"http://h/\",\"fall\":0}"},
      {"b4", "{\"addr\":\"127.0.0.1:9104\",\"heartbeat_ttl_ms\":\"soon\"}"},
      {"b5", "{\"addr\":\"127.0.0.1:9105\",\"expect_status\":\"9xx\"}"},
  };
  static const char *const why[] = {
      "b1: \"check\"", "b2: timeout_ms 2000 must be below interval_ms", "b3: \"fall\" 0",
      "b4: \"heartbeat_ttl_ms\"", "b5: \"expect_status\""};
  if (start() != 0) {
    stop();
    CHECK(!"cluster started");
    return;
  }
  lead = client(addrs[0]);
  z = zkc_connect(zk->connect, 20000);
  CHECK(lead != NULL && z != NULL);
  CHECK_INT(add_worker(lead, 0, "/health", 0), ==, 0);
  CHECK(wait_state(lead, "w0", "up", 20000));
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char path[128];
    snprintf(path, sizeof(path), "/dispatcher/health/workers/%s", bad[i][0]);
    CHECK(zkc_create(z, path, bad[i][1]) == ZOK);
  }
  for (size_t i = 0; i < sizeof(why) / sizeof(why[0]); i++) {
    char needle[160];
    snprintf(needle, sizeof(needle), "/dispatcher/health/workers/%s", why[i]);
    CHECK(th_wait_log(logs[0], needle, 0, 10000));
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    CHECK(!worker_info(lead, bad[i][0], NULL, 0, NULL));
  /* The admin request refuses them before writing. */
  {
    dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
    Dispatcher__V1__WorkerAddRequest add = DISPATCHER__V1__WORKER_ADD_REQUEST__INIT;
    dsp_pb_response *r;
    add.name = "b6";
    add.addr = "127.0.0.1:9106";
    add.check = "gopher://h/";
    req.body_case = DSP_PB(REQUEST__BODY_WORKER_ADD);
    req.worker_add = &add;
    r = th_call(lead, &req);
    CHECK(r != NULL && r->body_case == DSP_PB(RESPONSE__BODY_ERROR) &&
          r->error->code == DSP_PB(ERROR_CODE__BAD_REQUEST));
    dsp_client_free_response(r);
  }
  /* A health record written by hand as junk is ignored with a reason. */
  CHECK(zkc_create(z, "/dispatcher/health/health/junk", "not json") == ZOK);
  th_signal(pids[0], SIGTERM);
  th_wait_exit(pids[0], 10000);
  pids[0] = 0;
  CHECK(th_wait_log(logs[1], "coordinator epoch=", 0, 20000) ||
        th_wait_log(logs[2], "coordinator epoch=", 0, 20000));
  {
    const char *needle = "/dispatcher/health/health/junk: health record:";
    uint64_t end = th_now_ms() + 10000;
    int seen = 0;
    while (!seen && th_now_ms() < end) {
      seen = th_log_has(logs[1], needle, 0) || th_log_has(logs[2], needle, 0);
      if (!seen) th_sleep_ms(20);
    }
    CHECK(seen);
  }
  zkc_close(z);
  dsp_client_free(lead);
  stop();
}

/* A worker that leaves the table and comes back while the same member
   coordinates starts anew (pending), not from the record read at takeover:
   that record may say "up" for a worker found dead since. */
static void test_rejoin_after_failover(void) {
  dsp_client *lead, *c;
  zkc *z;
  char orig[1024], state[32] = "";
  int ever_up = 0, named = 0;
  if (start() != 0) {
    stop();
    CHECK(!"cluster started");
    return;
  }
  lead = client(addrs[0]);
  CHECK(lead != NULL);
  CHECK(add_all_checked(lead));
  dsp_client_free(lead);
  th_signal(pids[0], SIGKILL);
  th_wait_exit(pids[0], 10000);
  pids[0] = 0;
  c = client(all);
  CHECK(c != NULL);
  {
    uint64_t end = th_now_ms() + 20000;
    while (!(worker_info(c, "w0", state, sizeof(state), NULL) && strcmp(state, "up") == 0) &&
           th_now_ms() < end)
      th_sleep_ms(20);
  }
  CHECK_STR(state, "up"); /* from the record */
  stop_worker(0, SIGKILL);
  CHECK(wait_state(c, "w0", "down", 20000));
  z = zkc_connect(zk->connect, 20000);
  CHECK(z != NULL);
  CHECK(zkc_get(z, "/dispatcher/health/workers/w0", orig, sizeof(orig), NULL) == ZOK);
  CHECK(zkc_set(z, "/dispatcher/health/workers/w0", "junk") == ZOK);
  {
    uint64_t end = th_now_ms() + 10000;
    while (worker_info(c, "w0", NULL, 0, NULL) && th_now_ms() < end) th_sleep_ms(20);
  }
  CHECK(!worker_info(c, "w0", NULL, 0, NULL));
  CHECK(zkc_set(z, "/dispatcher/health/workers/w0", orig) == ZOK);
  {
    uint64_t end = th_now_ms() + 3000;
    while (th_now_ms() < end) {
      int seen[NWORK + 1] = {0};
      if (worker_info(c, "w0", state, sizeof(state), NULL) && strcmp(state, "up") == 0)
        ever_up = 1;
      if (route_n(c, 6, seen, NULL) == 6) named += seen[0];
      th_sleep_ms(10);
    }
  }
  CHECK(!ever_up);
  CHECK_INT(named, ==, 0);
  zkc_close(z);
  dsp_client_free(c);
  stop();
}

/* A request that fits the follower's frame limit but would not once the
   follower adds its two fields is answered TOO_LARGE by the follower; the
   link to the coordinator, shared by every forwarded request, stays up. */
static void test_big_forward(void) {
  dsp_client *lead, *fol;
  dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
  Dispatcher__V1__RouteRequest rr = DISPATCHER__V1__ROUTE_REQUEST__INIT;
  dsp_pb_response *r = NULL;
  uint8_t *key;
  size_t keylen = (1u << 20) - 16;
  char err[256];
  if (start() != 0) {
    stop();
    CHECK(!"cluster started");
    return;
  }
  lead = client(addrs[0]);
  fol = client(addrs[2]);
  CHECK(lead != NULL && fol != NULL);
  CHECK_INT(add_worker(lead, 0, NULL, 0), ==, 0);
  CHECK(wait_state(lead, "w0", "up", 20000));
  key = calloc(1, keylen);
  CHECK(key != NULL);
  rr.key.data = key;
  rr.key.len = keylen;
  rr.strategy = "hash";
  req.body_case = DSP_PB(REQUEST__BODY_ROUTE);
  req.route = &rr;
  req.id = 1000;
  req.client_token = 1;
  /* Exactly at the 1 MiB limit. */
  while (dispatcher__v1__request__get_packed_size(&req) > (1u << 20))
    rr.key.len -= dispatcher__v1__request__get_packed_size(&req) - (1u << 20);
  CHECK(dsp_client_call(fol, &req, &r, err, sizeof(err)) == 0);
  CHECK(r != NULL && r->body_case == DSP_PB(RESPONSE__BODY_ERROR) &&
        r->error->code == DSP_PB(ERROR_CODE__TOO_LARGE));
  dsp_client_free_response(r);
  CHECK(!th_log_has(logs[0], "over the limit", 0));
  /* The link is fine: a normal route through the same follower. */
  {
    int seen[NWORK + 1] = {0};
    CHECK_INT(route_n(fol, 4, seen, NULL), ==, 4);
    CHECK_INT(seen[0], ==, 4);
  }
  free(key);
  dsp_client_free(fol);
  dsp_client_free(lead);
  stop();
}

/*
 * More hanging workers than probes may run at once (MAX_INFLIGHT in
 * monitor.c: 1024), all behind one host:port as identities of one
 * dispatch-worker: the worker never holds more than about that many probes
 * at a time, and every identity still gets its probes (the rest wait their
 * turn in the queue). Without the cap all of them would hang at once.
 */
/* A dispatch-worker playing n workers on distinct paths (/w/I/...), on
   host and a free port, in `mode`: its port into *port, its log into
   log[512]. Returns its pid, or 0 if it did not start listening. */
static pid_t start_identities(const char *host, int n, const char *mode, const char *tag,
                              int *port, char *log) {
  char listen[64], ids[16];
  char *argv[] = {(char *)th_bin("dispatch-worker"), "--listen", listen, "--identities", ids,
                  "--mode", (char *)mode, "--quiet", NULL};
  pid_t pid;
  *port = th_free_port();
  snprintf(listen, sizeof(listen), "%s:%d", host, *port);
  snprintf(ids, sizeof(ids), "%d", n);
  snprintf(log, 512, "%s/%s-worker.log", zk->dir, tag);
  pid = th_spawn(log, argv);
  return th_wait_log(log, "listening on", 0, 10000) ? pid : 0;
}

#define CAP_WORKERS 1200
#define CAP 1024
static void test_inflight_cap(void) {
  char wlog[512], path[128], data[256];
  int port;
  pid_t wpid;
  zkc *z;
  long peak;
  uint64_t end;
  if (start() != 0) {
    stop();
    CHECK(!"cluster started");
    return;
  }
  wpid = start_identities("127.0.0.1", CAP_WORKERS, "hang", "cap", &port, wlog);
  CHECK(wpid != 0);
  z = zkc_connect(zk->connect, 20000);
  CHECK(z != NULL);
  /* Written as a person would with zkCli: long timeouts, so that hung
     probes pile up. */
  {
    int rc = zkc_create(z, "/dispatcher/health/workers", "");
    CHECK(rc == ZOK || rc == ZNODEEXISTS);
  }
  for (int i = 0; i < CAP_WORKERS; i++) {
    snprintf(path, sizeof(path), "/dispatcher/health/workers/cap%d", i);
    snprintf(data, sizeof(data),
             "{\"addr\":\"10.77.%d.%d:80\",\"weight\":1,"
             "\"check\":\"http://127.0.0.1:%d/w/%d/health\",\"interval_ms\":3000,"
             "\"timeout_ms\":2000}",
             i / 250, i % 250 + 1, port, i);
    CHECK_INT(zkc_create(z, path, data), ==, ZOK);
  }
  zkc_close(z);
  /* Every identity probed twice: those over the cap got their turn too. */
  end = th_now_ms() + 60000;
  while (worker_stat(port, "min_health") < 2 && th_now_ms() < end) th_sleep_ms(200);
  CHECK(worker_stat(port, "min_health") >= 2);
  peak = worker_stat(port, "hanging_peak");
  printf("%d hanging workers: at most %ld probes hung at once\n", CAP_WORKERS, peak);
  /* The cap, give or take the closes of timed-out probes that the worker
     has not read yet when their successors arrive. */
  CHECK(peak >= CAP - 24);
  CHECK(peak <= CAP + 24);
  th_signal(wpid, SIGTERM);
  th_wait_exit(wpid, 10000);
  stop();
}

/* A coordinator out of file descriptors: the probes it cannot make are
   kind "local" and count against nobody. dispatcherd runs under
   prlimit --nofile=LOCAL_NOFILE with LOCAL_WORKERS workers, each checked at
   its own 127.0.1.x so that each needs a connection of its own: those that
   got one are up and stay up; the rest stay pending (not down, as counting
   the failures would make them after `fall`), last_error says why, and
   the log warns about it without a line per probe. */
#define LOCAL_WORKERS 120
#define LOCAL_NOFILE "64"

/* prog's path on $PATH (util-linux's prlimit is essential in Debian). */
static const char *on_path(const char *prog) {
  static char buf[512];
  const char *p = getenv("PATH");
  while (p != NULL && *p != '\0') {
    size_t n = strcspn(p, ":");
    snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, prog);
    if (n > 0 && access(buf, X_OK) == 0) return buf;
    p += n + (p[n] == ':');
  }
  return NULL;
}

static void test_local_failures(void) {
  char wlog[512], mlog[512], addr[32], maddr[32];
  char *margv[] = {NULL, "--nofile=" LOCAL_NOFILE ":" LOCAL_NOFILE, "--",
                   (char *)th_bin("dispatcherd"), "--zk", NULL, "--cluster", "local",
                   "--id", "l1", "--listen", maddr, "--session-timeout", "4000",
                   "--check-interval", "500", "--check-timeout", "400", NULL};
  int port, up = 0, pending = 0, other = 0, settled = 0;
  pid_t wpid, mpid;
  dsp_client *c;
  uint64_t end;
  margv[0] = (char *)on_path("prlimit");
  CHECK(margv[0] != NULL);
  zk = zkh_start(1);
  CHECK(zk != NULL);
  margv[5] = zk->connect;
  wpid = start_identities("0.0.0.0", LOCAL_WORKERS, "ok", "local", &port, wlog);
  CHECK(wpid != 0);
  snprintf(maddr, sizeof(maddr), "127.0.0.1:%d", th_free_port());
  snprintf(mlog, sizeof(mlog), "%s/l1.log", zk->dir);
  mpid = th_spawn(mlog, margv);
  CHECK(th_wait_log(mlog, "coordinator epoch=", 0, 20000));
  /* One connection, kept: a new one might find no descriptor left. */
  c = client(maddr);
  CHECK(c != NULL);
  for (int i = 0; i < LOCAL_WORKERS; i++) {
    char name[16], url[96];
    snprintf(name, sizeof(name), "l%d", i);
    snprintf(addr, sizeof(addr), "10.9.0.%d:80", i + 1);
    snprintf(url, sizeof(url), "http://127.0.1.%d:%d/w/%d/health", i + 1, port, i);
    CHECK_INT(add_named(c, name, addr, url, 0), ==, 0);
  }
  /* Settled: every worker up, or pending with more local failures than
     `fall` (3) would allow a worker's own. */
  end = th_now_ms() + 30000;
  do {
    dsp_pb_response *r = worker_list(c);
    up = pending = other = settled = 0;
    for (size_t i = 0; r != NULL && i < r->worker_list->n_workers; i++) {
      const Dispatcher__V1__WorkerInfo *w = r->worker_list->workers[i];
      uint64_t local = 0, others = 0;
      for (size_t k = 0; k < w->n_failures; k++) {
        if (strcmp(w->failures[k]->kind, "local") == 0) local = w->failures[k]->count;
        else others += w->failures[k]->count;
      }
      if (strcmp(w->state, "up") == 0) {
        up++;
      } else if (strcmp(w->state, "pending") == 0 && local + others == 0 &&
                 w->last_error[0] == '\0') {
        continue; /* not probed yet */
      } else if (strcmp(w->state, "pending") == 0 && others == 0 && w->last_probe_local &&
                 strcmp(w->last_error, "cannot open a socket: Too many open files") == 0) {
        pending++;
        if (local > 3) settled++;
      } else {
        other++;
        fprintf(stderr, "%s: %s, last error '%s'\n", w->name, w->state, w->last_error);
      }
    }
    dsp_client_free_response(r);
    if (other > 0 || (up + settled == LOCAL_WORKERS && up > 0 && settled > 0)) break;
    th_sleep_ms(100);
  } while (th_now_ms() < end);
  printf("under %s descriptors: %d of %d workers up, %d pending on local failures\n",
         LOCAL_NOFILE, up, LOCAL_WORKERS, pending);
  CHECK_INT(other, ==, 0);
  CHECK(up > 0);
  CHECK(pending > 0);
  CHECK_INT(up + settled, ==, LOCAL_WORKERS);
  CHECK(th_log_has(mlog, "not counted against it", 0));
  CHECK(th_log_count(mlog, "cannot probe worker") <= 4); /* one per 10 s */
  CHECK(!th_log_has(mlog, " down: ", 0));
  dsp_client_free(c);
  th_signal(wpid, SIGTERM);
  th_wait_exit(wpid, 10000);
  CHECK(th_stop_clean(mpid, mlog, "l1"));
  zkh_free(zk);
  zk = NULL;
}

static const test_entry tests[] = {
    TEST(test_killed_and_recovered), TEST(test_hanging_worker), TEST(test_heartbeat),
    TEST(test_passive),              TEST(test_dead_then_failover), TEST(test_bad_settings),
    TEST(test_rejoin_after_failover), TEST(test_big_forward),  TEST(test_inflight_cap),
    TEST(test_local_failures),
};

TEST_MAIN(tests)
