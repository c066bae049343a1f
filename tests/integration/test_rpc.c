/*
 * test_rpc.c: the RPC of a real member (with a real ZooKeeper), through the
 * client library and through raw sockets that misbehave: garbage bytes, an
 * oversize length, an undecodable message, an unknown body, a half frame
 * left hanging. Each bad client gets its clear outcome while a well-behaved
 * client keeps being served.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "th_rpc.h"
#include "frame.h"
#include "harness.h"
#include "test.h"

static zkh_ensemble *zk;
static pid_t pids[3];
static char addrs[3][32], logs[3][512];
static int ports[3];

static char timeout[16] = "4000";

static int start(int n) {
  zk = zkh_start(1);
  if (zk == NULL) return -1;
  for (int i = 0; i < n; i++) {
    char id[8];
    char *argv[] = {(char *)th_bin("dispatcherd"), "--zk", zk->connect, "--cluster", "rpc",
                    "--id", id, "--listen", addrs[i], "--session-timeout", timeout,
                    "--client-idle-timeout", "300", "--max-frame", "65536", NULL};
    snprintf(id, sizeof(id), "r%d", i + 1);
    ports[i] = th_free_port();
    snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%d", ports[i]);
    snprintf(logs[i], sizeof(logs[i]), "%s/r%d.log", zk->dir, i + 1);
    pids[i] = th_spawn(logs[i], argv);
    /* Serving before the election, and the first one leads. */
    if (!th_wait_log(logs[i], "serving RPC on", 0, 20000)) return -1;
    if (i == 0 && !th_wait_log(logs[0], "coordinator epoch=", 0, 20000)) return -1;
  }
  return 0;
}

static void stop(int n) {
  for (int i = 0; i < n; i++) {
    char name[8];
    if (pids[i] == 0) continue; /* already stopped by the test */
    snprintf(name, sizeof(name), "r%d", i + 1);
    if (!th_stop_clean(pids[i], logs[i], name)) test_failed_flag = 1;
  }
  zkh_free(zk);
  zk = NULL;
}

/* A status call through the client library: 1 if answered by member i. */
static int status_ok(dsp_client *c, const char *want_role) {
  dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
  Dispatcher__V1__StatusRequest sr = DISPATCHER__V1__STATUS_REQUEST__INIT;
  dsp_pb_response *r = NULL;
  char err[256];
  int ok;
  req.body_case = DSP_PB(REQUEST__BODY_STATUS);
  req.status = &sr;
  if (dsp_client_call(c, &req, &r, err, sizeof(err)) != 0) {
    fprintf(stderr, "status: %s\n", err);
    return 0;
  }
  ok = r->body_case == DSP_PB(RESPONSE__BODY_STATUS) &&
       (want_role == NULL || strcmp(r->status->role, want_role) == 0);
  dsp_client_free_response(r);
  return ok;
}

/* Read until EOF or timeout; returns bytes read, -1 on timeout. */
static int read_to_eof(int fd, uint8_t *buf, size_t cap, int timeout_ms) {
  size_t n = 0;
  uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    int left = (int)(end - th_now_ms());
    ssize_t r;
    if (left <= 0 || poll(&p, 1, left) != 1) return -1;
    r = read(fd, buf + n, cap - n);
    if (r == 0) return (int)n;
    if (r < 0) return errno == ECONNRESET ? (int)n : -1;
    n += (size_t)r;
    if (n == cap) return (int)n;
  }
}

/* Send bytes; expect exactly one error response with `code` (and id), then
   the connection closed by the server. */
static int expect_error_then_close(const void *bytes, size_t len, int code, uint64_t id) {
  uint8_t buf[4096];
  int fd = th_connect(ports[0]), n;
  dsp_framer f;
  const uint8_t *p;
  size_t plen;
  dsp_pb_response *r;
  int ok;
  if (fd < 0) return 0;
  if (write(fd, bytes, len) != (ssize_t)len) {
    close(fd);
    return 0;
  }
  n = read_to_eof(fd, buf, sizeof(buf), 10000);
  close(fd);
  if (n <= 0) {
    fprintf(stderr, "no reply or no close (n=%d)\n", n);
    return 0;
  }
  dsp_framer_init(&f, 1 << 20);
  dsp_framer_feed(&f, buf, (size_t)n);
  ok = dsp_framer_next(&f, &p, &plen) == DSP_FRAME_OK;
  r = ok ? dispatcher__v1__response__unpack(NULL, plen, p) : NULL;
  ok = r != NULL && r->body_case == DSP_PB(RESPONSE__BODY_ERROR) && (int)r->error->code == code &&
       r->id == id && dsp_framer_next(&f, &p, &plen) == DSP_FRAME_NEED_MORE;
  if (!ok && r) fprintf(stderr, "got code %d id %llu\n", r ? (int)r->error->code : -1,
                        r ? (unsigned long long)r->id : 0ULL);
  if (r) dispatcher__v1__response__free_unpacked(r, NULL);
  dsp_framer_free(&f);
  return ok;
}

static void bad_input_body(void) {
  char err[256];
  dsp_client *good = dsp_client_new(addrs[0], 10000, err, sizeof(err));
  CHECK(good != NULL);
  CHECK(status_ok(good, "coordinator"));

  /* Garbage: an HTTP request read as a frame length is ~1.2 GB. */
  CHECK(expect_error_then_close("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27,
                                DSP_PB(ERROR_CODE__TOO_LARGE), 0));
  CHECK(status_ok(good, NULL));
  /* An oversize length: over --max-frame 65536. */
  {
    uint8_t h[4];
    dsp_frame_put_header(h, 65537);
    CHECK(expect_error_then_close(h, 4, DSP_PB(ERROR_CODE__TOO_LARGE), 0));
  }
  CHECK(status_ok(good, NULL));
  /* A frame whose body is not a Request. */
  {
    const uint8_t junk[] = {0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff};
    CHECK(expect_error_then_close(junk, sizeof(junk), DSP_PB(ERROR_CODE__BAD_REQUEST), 0));
  }
  CHECK(status_ok(good, NULL));
  /* A Request with an id and a body this server does not know (field 100):
     answered with its id. */
  {
    const uint8_t unk[] = {0, 0, 0, 5, 0x08, 0x07, 0xa0, 0x06, 0x01};
    CHECK(expect_error_then_close(unk, sizeof(unk), DSP_PB(ERROR_CODE__BAD_REQUEST), 7));
  }
  CHECK(status_ok(good, NULL));
  /* Half a frame, then silence: dropped after --client-idle-timeout. */
  {
    uint8_t buf[64];
    const uint8_t half[] = {0, 0, 0, 10, 0x08};
    int fd = th_connect(ports[0]);
    CHECK(fd >= 0);
    CHECK(write(fd, half, sizeof(half)) == (ssize_t)sizeof(half));
    CHECK(status_ok(good, NULL)); /* others are served meanwhile */
    CHECK_INT(read_to_eof(fd, buf, sizeof(buf), 20000), ==, 0);
    close(fd);
    CHECK(th_log_has(logs[0], "unfinished frame", 0));
  }
  /* A client that connects and vanishes mid-frame. */
  {
    const uint8_t half[] = {0, 0, 0, 10, 0x08, 0x01};
    int fd = th_connect(ports[0]);
    CHECK(fd >= 0);
    CHECK(write(fd, half, sizeof(half)) == (ssize_t)sizeof(half));
    close(fd);
  }
  CHECK(status_ok(good, "coordinator"));
  dsp_client_free(good);
}

static void test_bad_input(void) {
  if (start(1) != 0) {
    stop(1);
    CHECK(!"cluster started");
  }
  bad_input_body();
  stop(1);
}

/* Many requests in flight on one connection: every one answered, by id. */
static void pipeline_body(void) {
  char err[256];
  dsp_client *c = dsp_client_new(addrs[0], 10000, err, sizeof(err));
  static char seen[2001];
  int got = 0;
  CHECK(c != NULL);
  for (int i = 1; i <= 2000; i++) {
    dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
    Dispatcher__V1__StatusRequest sr = DISPATCHER__V1__STATUS_REQUEST__INIT;
    req.id = (uint64_t)i;
    req.body_case = DSP_PB(REQUEST__BODY_STATUS);
    req.status = &sr;
    CHECK(dsp_client_send(c, &req) == 0);
  }
  while (got < 2000) {
    dsp_pb_response *r;
    CHECK(dsp_client_recv(c, &r, err, sizeof(err)) == 0);
    CHECK(r->id >= 1 && r->id <= 2000 && !seen[r->id]);
    seen[r->id] = 1;
    got++;
    dsp_client_free_response(r);
  }
  dsp_client_free(c);
}

static void test_pipeline(void) {
  if (start(1) != 0) {
    stop(1);
    CHECK(!"cluster started");
  }
  pipeline_body();
  stop(1);
}

/* Status from each member; Route and Report on the coordinator and on a
   follower; unknown strategy; too many decisions. */
static void operations_body(void) {
  char err[256];
  dsp_client *lead = dsp_client_new(addrs[0], 10000, err, sizeof(err));
  dsp_client *fol = dsp_client_new(addrs[1], 10000, err, sizeof(err));
  dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
  Dispatcher__V1__RouteRequest rr = DISPATCHER__V1__ROUTE_REQUEST__INIT;
  Dispatcher__V1__ReportRequest rp = DISPATCHER__V1__REPORT_REQUEST__INIT;
  dsp_pb_response *r = NULL;
  CHECK(lead != NULL && fol != NULL);
  CHECK(status_ok(lead, "coordinator"));
  {
    uint64_t end = th_now_ms() + 20000;
    while (!status_ok(fol, "follower") && th_now_ms() < end) th_sleep_ms(50);
    CHECK(status_ok(fol, "follower"));
  }
  /* Every member lists the members, in election order (coordinator first). */
  for (int m = 0; m < 2; m++) {
    Dispatcher__V1__StatusRequest sr = DISPATCHER__V1__STATUS_REQUEST__INIT;
    req.body_case = DSP_PB(REQUEST__BODY_STATUS);
    req.status = &sr;
    CHECK(dsp_client_call(m ? fol : lead, &req, &r, err, sizeof(err)) == 0);
    CHECK(r->body_case == DSP_PB(RESPONSE__BODY_STATUS));
    CHECK_INT(r->status->n_members, ==, 2);
    if (r->status->n_members == 2) {
      CHECK_STR(r->status->members[0]->id, "r1");
      CHECK_STR(r->status->members[0]->addr, addrs[0]);
      CHECK(strncmp(r->status->members[0]->znode, "member-r1_", 10) == 0);
      CHECK_STR(r->status->members[1]->id, "r2");
      CHECK_STR(r->status->members[1]->addr, addrs[1]);
    }
    CHECK_STR(r->status->leader_id, "r1");
    CHECK_INT(r->status->n_workers, ==, 0);
    dsp_client_free_response(r);
  }
  req.body_case = DSP_PB(REQUEST__BODY_ROUTE);
  req.route = &rr;
  /* The coordinator's table is empty: a clear error, with its epoch. */
  CHECK(dsp_client_call(lead, &req, &r, err, sizeof(err)) == 0);
  CHECK(r->body_case == DSP_PB(RESPONSE__BODY_ERROR));
  CHECK_INT(r->error->code, ==, DSP_PB(ERROR_CODE__NO_ELIGIBLE_WORKER));
  CHECK(r->epoch > 0);
  dsp_client_free_response(r);
  rr.strategy = "fastest";
  CHECK(dsp_client_call(lead, &req, &r, err, sizeof(err)) == 0);
  CHECK_INT(r->error->code, ==, DSP_PB(ERROR_CODE__UNKNOWN_STRATEGY));
  dsp_client_free_response(r);
  rr.strategy = "";
  rr.count = 1001;
  CHECK(dsp_client_call(lead, &req, &r, err, sizeof(err)) == 0);
  CHECK_INT(r->error->code, ==, DSP_PB(ERROR_CODE__BAD_REQUEST));
  dsp_client_free_response(r);
  rr.count = 1;
  /* A follower does not decide: it forwards, and passes the coordinator's
     answer back, stamped with the coordinator's epoch. */
  {
    int64_t lead_epoch;
    CHECK(dsp_client_call(lead, &req, &r, err, sizeof(err)) == 0);
    lead_epoch = r->epoch;
    dsp_client_free_response(r);
    CHECK(dsp_client_call(fol, &req, &r, err, sizeof(err)) == 0);
    CHECK(r->body_case == DSP_PB(RESPONSE__BODY_ERROR));
    CHECK_INT(r->error->code, ==, DSP_PB(ERROR_CODE__NO_ELIGIBLE_WORKER));
    CHECK_INT(r->epoch, ==, lead_epoch);
    dsp_client_free_response(r);
  }
  /* A request already forwarded once (origin_id set) is never forwarded
     again by a member that does not coordinate: NOT_COORDINATOR, so the
     member that sent it retries once the leader znode settles. */
  req.origin_id = 99;
  CHECK(dsp_client_call(fol, &req, &r, err, sizeof(err)) == 0);
  CHECK_INT(r->error->code, ==, DSP_PB(ERROR_CODE__NOT_COORDINATOR));
  dsp_client_free_response(r);
  req.origin_id = 0;
  /* Report for an unknown worker. */
  rp.worker = "nobody";
  rp.ok = 1;
  req.body_case = DSP_PB(REQUEST__BODY_REPORT);
  req.report = &rp;
  CHECK(dsp_client_call(lead, &req, &r, err, sizeof(err)) == 0);
  CHECK_INT(r->error->code, ==, DSP_PB(ERROR_CODE__UNKNOWN_WORKER));
  dsp_client_free_response(r);
  dsp_client_free(lead);
  dsp_client_free(fol);
}

static void test_operations(void) {
  if (start(2) != 0) {
    stop(2);
    CHECK(!"cluster started");
  }
  operations_body();
  stop(2);
}

/* The client library moves to the next server when one is down. */
static void failover_client_body(void) {
  char list[128], err[256];
  dsp_client *c;
  snprintf(list, sizeof(list), "127.0.0.1:%d,%s", th_free_port(), addrs[0]);
  c = dsp_client_new(list, 5000, err, sizeof(err));
  CHECK(c != NULL);
  CHECK_STR(dsp_client_server(c), addrs[0]);
  CHECK(status_ok(c, NULL));
  dsp_client_free(c);
  CHECK(dsp_client_new("127.0.0.1:1", 2000, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "cannot connect to any server: 127.0.0.1:1") != NULL);
  CHECK(dsp_client_new("not a list", 2000, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "is not a list of HOST:PORT") != NULL);
}

static void test_client_failover(void) {
  if (start(1) != 0) {
    stop(1);
    CHECK(!"cluster started");
  }
  failover_client_body();
  stop(1);
}

/* The listen address is taken: a clear error, exit 1. */
static void test_listen_in_use(void) {
  char log[512], addr[32], id[] = "x1";
  int fd, port = th_free_port(), status;
  struct sockaddr_in a;
  char *argv[] = {(char *)th_bin("dispatcherd"), "--zk", "127.0.0.1:1", "--id", id,
                  "--listen", addr, NULL};
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 1) == 0);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  snprintf(log, sizeof(log), "%s/inuse.log", th_tmpdir());
  status = th_wait_exit(th_spawn(log, argv), 10000);
  close(fd);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
  CHECK(th_log_has(log, "cannot listen on", 0));
  CHECK(th_log_has(log, "address already in use", 0));
}

/* ---- worker registry ------------------------------------------------------ */

/* An admin request; with id != 0, sent with that id and client token (a
   client sending the same request again), else through dsp_client_call().
   Returns 0 on success, the error code, or -1 on a transport error. */
static int admin_as(dsp_client *c, uint64_t id, uint64_t token, const char *verb,
                    const char *name, const char *addr, unsigned weight) {
  dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
  Dispatcher__V1__WorkerAddRequest add = DISPATCHER__V1__WORKER_ADD_REQUEST__INIT;
  Dispatcher__V1__WorkerRemoveRequest rm = DISPATCHER__V1__WORKER_REMOVE_REQUEST__INIT;
  Dispatcher__V1__WorkerSetWeightRequest sw = DISPATCHER__V1__WORKER_SET_WEIGHT_REQUEST__INIT;
  dsp_pb_response *r;
  int code;
  if (strcmp(verb, "add") == 0) {
    add.name = (char *)name;
    add.addr = (char *)addr;
    add.weight = weight;
    req.body_case = DSP_PB(REQUEST__BODY_WORKER_ADD);
    req.worker_add = &add;
  } else if (strcmp(verb, "rm") == 0) {
    rm.name = (char *)name;
    req.body_case = DSP_PB(REQUEST__BODY_WORKER_REMOVE);
    req.worker_remove = &rm;
  } else {
    sw.name = (char *)name;
    sw.weight = weight;
    req.body_case = DSP_PB(REQUEST__BODY_WORKER_SET_WEIGHT);
    req.worker_set_weight = &sw;
  }
  if (id == 0) {
    r = th_call(c, &req);
  } else {
    char err[256];
    req.id = id;
    req.client_token = token;
    r = NULL;
    if (dsp_client_send(c, &req) != 0 || dsp_client_flush(c, err, sizeof(err)) != 0 ||
        dsp_client_recv(c, &r, err, sizeof(err)) != 0 || r->id != id) {
      dsp_client_free_response(r);
      return -1;
    }
  }
  if (r == NULL) return -1;
  code = r->body_case == DSP_PB(RESPONSE__BODY_ERROR) ? (int)r->error->code : 0;
  dsp_client_free_response(r);
  return code;
}

static int admin(dsp_client *c, const char *verb, const char *name, const char *addr,
                 unsigned weight) {
  return admin_as(c, 0, 0, verb, name, addr, weight);
}

static int cmp_strp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The coordinator's table as "name=addr/weight …", sorted by name. */
static void table_of(dsp_client *c, char *out, size_t len) {
  dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
  Dispatcher__V1__WorkerListRequest wl = DISPATCHER__V1__WORKER_LIST_REQUEST__INIT;
  dsp_pb_response *r;
  size_t n = 0;
  out[0] = '\0';
  req.body_case = DSP_PB(REQUEST__BODY_WORKER_LIST);
  req.worker_list = &wl;
  r = th_call(c, &req);
  if (r == NULL) return;
  if (r->body_case == DSP_PB(RESPONSE__BODY_WORKER_LIST)) {
    size_t k = r->worker_list->n_workers;
    char **items = calloc(k ? k : 1, sizeof(*items));
    for (size_t i = 0; i < k && items; i++) {
      const Dispatcher__V1__WorkerInfo *w = r->worker_list->workers[i];
      items[i] = malloc(600);
      if (items[i]) snprintf(items[i], 600, "%s=%s/%u", w->name, w->addr, w->weight);
    }
    if (items) qsort(items, k, sizeof(*items), cmp_strp);
    for (size_t i = 0; i < k && items && n < len; i++) {
      n += (size_t)snprintf(out + n, len - n, "%s%s", i ? " " : "", items[i] ? items[i] : "?");
      free(items[i]);
    }
    free(items);
  }
  dsp_client_free_response(r);
}

static int wait_table(dsp_client *c, const char *want, int timeout_ms) {
  char got[2048];
  uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
  do {
    table_of(c, got, sizeof(got));
    if (strcmp(got, want) == 0) return 1;
    th_sleep_ms(20);
  } while (th_now_ms() < end);
  fprintf(stderr, "table: '%s'\nwant:  '%s'\n", got, want);
  return 0;
}

/* n decisions from the coordinator, names joined by spaces. */
static int route_seq(dsp_client *c, const char *strategy, unsigned n, char *out, size_t len) {
  dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
  Dispatcher__V1__RouteRequest rr = DISPATCHER__V1__ROUTE_REQUEST__INIT;
  dsp_pb_response *r;
  size_t k = 0;
  rr.strategy = (char *)strategy;
  rr.count = n;
  req.body_case = DSP_PB(REQUEST__BODY_ROUTE);
  req.route = &rr;
  out[0] = '\0';
  r = th_call(c, &req);
  if (r == NULL || r->body_case != DSP_PB(RESPONSE__BODY_ROUTE)) {
    dsp_client_free_response(r);
    return 0;
  }
  for (size_t i = 0; i < r->route->n_decisions && k < len; i++)
    k += (size_t)snprintf(out + k, len - k, "%s%s", i ? " " : "", r->route->decisions[i]->worker);
  dsp_client_free_response(r);
  return 1;
}

static void registry_body(void) {
  char err[256], seq[512], path[256];
  dsp_client *lead = dsp_client_new(addrs[0], 10000, err, sizeof(err));
  dsp_client *fol = dsp_client_new(addrs[1], 10000, err, sizeof(err));
  zkc *z = zkc_connect(zk->connect, 20000);
  CHECK(lead != NULL && fol != NULL && z != NULL);
  /* Admin on a follower writes ZooKeeper; the coordinator follows. */
  CHECK_INT(admin(fol, "add", "w1", "127.0.0.1:9001", 1), ==, 0);
  CHECK_INT(admin(fol, "add", "w2", "127.0.0.1:9002", 2), ==, 0);
  CHECK_INT(admin(lead, "add", "w3", "127.0.0.1:9003", 5), ==, 0);
  CHECK_INT(admin(fol, "add", "w1", "127.0.0.1:9009", 1), ==, DSP_PB(ERROR_CODE__WORKER_EXISTS));
  CHECK_INT(admin(fol, "add", "a/b", "127.0.0.1:9009", 1), ==, DSP_PB(ERROR_CODE__BAD_REQUEST));
  CHECK_INT(admin(fol, "add", "w9", "nohost", 1), ==, DSP_PB(ERROR_CODE__BAD_REQUEST));
  CHECK_INT(admin(fol, "add", "w9", "127.0.0.1:9", 1001), ==, DSP_PB(ERROR_CODE__BAD_REQUEST));
  CHECK(wait_table(lead, "w1=127.0.0.1:9001/1 w2=127.0.0.1:9002/2 w3=127.0.0.1:9003/5", 10000));
  /* znodes hold readable JSON. */
  {
    char buf[256];
    CHECK(zkc_get(z, "/dispatcher/rpc/workers/w2", buf, sizeof(buf), NULL) == ZOK);
    CHECK_STR(buf, "{\"addr\":\"127.0.0.1:9002\",\"weight\":2}");
  }
  /* One sequence for the cluster: nginx's smooth weighted round robin. */
  CHECK(route_seq(lead, "weighted", 8, seq, sizeof(seq)));
  CHECK_STR(seq, "w3 w2 w3 w1 w3 w3 w2 w3");

  /* Bad data written by hand: each logged with its path and left out. */
  {
    static const char *const bad[][3] = {
        {"bad1", "hello", "bad1: not JSON"},
        {"bad2", "{\"weight\":3}", "bad2: missing \"addr\""},
        {"bad3", "{\"addr\":\"127.0.0.1:9103\",\"weight\":0}", "bad3: weight 0"},
        {"bad4", "{\"addr\":\"127.0.0.1:9104\",\"weight\":-1}", "bad4: weight -1"},
        {"bad5", "{\"addr\":\"127.0.0.1:9105\",\"weight\":1001}", "bad5: weight 1001"},
        {"bad6", "{\"addr\":\"127.0.0.1:9106\",\"weight\":\"x\"}", "bad6: \"weight\" is not"},
        {"dup", "{\"addr\":\"127.0.0.1:9001\"}", "dup: address 127.0.0.1:9001 is already used"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
      snprintf(path, sizeof(path), "/dispatcher/rpc/workers/%s", bad[i][0]);
      CHECK(zkc_create(z, path, bad[i][1]) == ZOK);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
      char needle[128];
      snprintf(needle, sizeof(needle), "/dispatcher/rpc/workers/%s", bad[i][2]);
      CHECK(th_wait_log(logs[0], needle, 0, 10000));
    }
  }
  CHECK(wait_table(lead, "w1=127.0.0.1:9001/1 w2=127.0.0.1:9002/2 w3=127.0.0.1:9003/5", 10000));
  CHECK(route_seq(lead, "round-robin", 6, seq, sizeof(seq)));
  CHECK(strstr(seq, "bad") == NULL && strstr(seq, "dup") == NULL);

  /* Fixed by hand: it joins. Reweighed and removed by hand: applied. */
  CHECK(zkc_set(z, "/dispatcher/rpc/workers/bad3",
                "{\"addr\":\"127.0.0.1:9103\",\"weight\":3}") == ZOK);
  CHECK(zkc_set(z, "/dispatcher/rpc/workers/w3", "{\"addr\":\"127.0.0.1:9003\",\"weight\":4}") ==
        ZOK);
  CHECK(zkc_delete_all(z, "/dispatcher/rpc/workers/w1") == ZOK);
  /* w1 gone, dup's address is free: it joins. */
  CHECK(wait_table(lead,
                   "bad3=127.0.0.1:9103/3 dup=127.0.0.1:9001/1 w2=127.0.0.1:9002/2 "
                   "w3=127.0.0.1:9003/4",
                   10000));
  /* Through the admin requests too. */
  CHECK_INT(admin(fol, "weight", "w2", NULL, 7), ==, 0);
  CHECK_INT(admin(fol, "weight", "nosuch", NULL, 7), ==, DSP_PB(ERROR_CODE__UNKNOWN_WORKER));
  CHECK_INT(admin(fol, "weight", "w2", NULL, 0), ==, DSP_PB(ERROR_CODE__BAD_REQUEST));
  CHECK_INT(admin(fol, "weight", "bad1", NULL, 2), ==, DSP_PB(ERROR_CODE__BAD_REQUEST));
  CHECK_INT(admin(fol, "rm", "bad3", NULL, 0), ==, 0);
  CHECK_INT(admin(fol, "rm", "bad3", NULL, 0), ==, DSP_PB(ERROR_CODE__UNKNOWN_WORKER));
  CHECK_INT(admin(fol, "rm", "dup", NULL, 0), ==, 0);
  CHECK(wait_table(lead, "w2=127.0.0.1:9002/7 w3=127.0.0.1:9003/4", 10000));

  /* Exactly once: a request sent again with the same client token and id,
     to the same member or another (a client failing over), is answered
     with success and not applied again; another id is a new request. */
  {
    const uint64_t tok = 0x5eed5eed12345678ULL;
    CHECK_INT(admin_as(fol, 900, tok, "add", "once", "127.0.0.1:9200", 1), ==, 0);
    CHECK_INT(admin_as(lead, 900, tok, "add", "once", "127.0.0.1:9200", 1), ==, 0);
    CHECK_INT(admin_as(fol, 900, tok, "add", "once", "127.0.0.1:9200", 1), ==, 0);
    CHECK_INT(admin_as(fol, 901, tok, "add", "once", "127.0.0.1:9200", 1), ==,
              DSP_PB(ERROR_CODE__WORKER_EXISTS));
    CHECK(zkc_get(z, "/dispatcher/rpc/requests/5eed5eed12345678-0000000000000384", seq,
                  sizeof(seq), NULL) == ZOK);
    CHECK_STR(seq, "{\"op\":\"add\",\"worker\":\"once\"}");
    /* Removed, then added by someone else: the repeated rm removes nothing. */
    CHECK_INT(admin_as(lead, 902, tok, "rm", "once", NULL, 0), ==, 0);
    CHECK_INT(admin(fol, "add", "once", "127.0.0.1:9201", 2), ==, 0);
    CHECK_INT(admin_as(fol, 902, tok, "rm", "once", NULL, 0), ==, 0);
    CHECK(wait_table(lead, "once=127.0.0.1:9201/2 w2=127.0.0.1:9002/7 w3=127.0.0.1:9003/4",
                     10000));
    CHECK_INT(admin_as(fol, 903, tok, "rm", "once", NULL, 0), ==, 0);
    CHECK_INT(admin_as(lead, 903, tok, "rm", "once", NULL, 0), ==, 0);
    CHECK_INT(admin_as(fol, 904, tok, "rm", "once", NULL, 0), ==,
              DSP_PB(ERROR_CODE__UNKNOWN_WORKER));
    /* A failed request leaves no record: sent again, it fails again. */
    CHECK_INT(admin_as(fol, 905, tok, "weight", "nosuch", NULL, 3), ==,
              DSP_PB(ERROR_CODE__UNKNOWN_WORKER));
    CHECK_INT(admin_as(lead, 905, tok, "weight", "nosuch", NULL, 3), ==,
              DSP_PB(ERROR_CODE__UNKNOWN_WORKER));
    CHECK_INT(admin_as(fol, 906, tok, "weight", "w2", NULL, 6), ==, 0);
    CHECK(zkc_set(z, "/dispatcher/rpc/workers/w2", "{\"addr\":\"127.0.0.1:9002\",\"weight\":9}") ==
          ZOK);
    CHECK_INT(admin_as(lead, 906, tok, "weight", "w2", NULL, 6), ==, 0);
    CHECK(wait_table(lead, "w2=127.0.0.1:9002/9 w3=127.0.0.1:9003/4", 10000));
    CHECK_INT(admin(fol, "weight", "w2", NULL, 7), ==, 0);
    CHECK(wait_table(lead, "w2=127.0.0.1:9002/7 w3=127.0.0.1:9003/4", 10000));
    /* A weight change applied, then the worker removed: its repeat is
       still answered with success; a new request is not. */
    CHECK_INT(admin(fol, "add", "tmpw", "127.0.0.1:9300", 1), ==, 0);
    CHECK_INT(admin_as(fol, 910, tok, "weight", "tmpw", NULL, 4), ==, 0);
    CHECK_INT(admin(fol, "rm", "tmpw", NULL, 0), ==, 0);
    CHECK_INT(admin_as(lead, 910, tok, "weight", "tmpw", NULL, 4), ==, 0);
    CHECK_INT(admin_as(lead, 911, tok, "weight", "tmpw", NULL, 4), ==,
              DSP_PB(ERROR_CODE__UNKNOWN_WORKER));
    CHECK(wait_table(lead, "w2=127.0.0.1:9002/7 w3=127.0.0.1:9003/4", 10000));
  }

  /* A new coordinator reads the whole registry when it takes over. */
  dsp_client_free(lead);
  lead = NULL;
  th_signal(pids[0], SIGTERM);
  CHECK(th_wait_exit(pids[0], 10000) != -1);
  pids[0] = 0;
  {
    uint64_t end = th_now_ms() + 20000;
    while (!status_ok(fol, "coordinator") && th_now_ms() < end) th_sleep_ms(20);
  }
  CHECK(status_ok(fol, "coordinator"));
  CHECK(wait_table(fol, "w2=127.0.0.1:9002/7 w3=127.0.0.1:9003/4", 10000));
  CHECK(route_seq(fol, "weighted", 11, seq, sizeof(seq)));
  {
    int n2 = 0, n3 = 0;
    for (char *p = seq; (p = strstr(p, "w")) != NULL; p += 2) {
      if (p[1] == '2') n2++;
      if (p[1] == '3') n3++;
    }
    CHECK_INT(n2, ==, 7);
    CHECK_INT(n3, ==, 4);
  }
  dsp_client_free(fol);
  zkc_close(z);
}

static void test_registry(void) {
  if (start(2) != 0) {
    stop(2);
    CHECK(!"cluster started");
  }
  registry_body();
  stop(2);
}

/* ---- forwarding and failover ---------------------------------------------- */

static int start_with_workers(int n, const char *session_timeout) {
  char err[256];
  dsp_client *c;
  int ok;
  snprintf(timeout, sizeof(timeout), "%s", session_timeout);
  if (start(n) != 0) return -1;
  c = dsp_client_new(addrs[0], 10000, err, sizeof(err));
  if (c == NULL) return -1;
  ok = admin(c, "add", "w1", "127.0.0.1:9001", 1) == 0 &&
       admin(c, "add", "w2", "127.0.0.1:9002", 2) == 0 &&
       admin(c, "add", "w3", "127.0.0.1:9003", 5) == 0 &&
       wait_table(c, "w1=127.0.0.1:9001/1 w2=127.0.0.1:9002/2 w3=127.0.0.1:9003/5", 10000);
  dsp_client_free(c);
  /* Followers must know the leader before they can forward. */
  for (int i = 1; ok && i < n; i++) ok = th_wait_log(logs[i], "leader is r1", 0, 20000);
  return ok ? 0 : -1;
}

/* One route through client c: its worker name and epoch; 0 on any error. */
static int route_one(dsp_client *c, const char *strategy, char *worker, size_t wlen,
                     int64_t *epoch, char *why, size_t whylen) {
  dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
  Dispatcher__V1__RouteRequest rr = DISPATCHER__V1__ROUTE_REQUEST__INIT;
  dsp_pb_response *r = NULL;
  int ok;
  rr.strategy = (char *)strategy;
  req.body_case = DSP_PB(REQUEST__BODY_ROUTE);
  req.route = &rr;
  if (dsp_client_call(c, &req, &r, why, whylen) != 0) return 0;
  ok = r->body_case == DSP_PB(RESPONSE__BODY_ROUTE) && r->route->n_decisions == 1;
  if (ok) {
    snprintf(worker, wlen, "%s", r->route->decisions[0]->worker);
    *epoch = r->epoch;
  } else if (r->body_case == DSP_PB(RESPONSE__BODY_ERROR)) {
    snprintf(why, whylen, "%s: %s", dsp_rpc_code_name(r->error->code), r->error->message);
  }
  dsp_client_free_response(r);
  return ok;
}

/*
 * A burst of pipelined routes through one client, written at once: n
 * Routes, where every 7th asks round-robin, every 11th asks weighted with
 * count 3 and every 13th asks hash with key "k" (the rest: weighted, one
 * decision). A follower gathers the alike ones of a loop turn into one
 * Route (forwarder.c) and hands the decisions out again. Checks: every id
 * answered once, with the decisions it asked for; weighted 1:2:5 decisions
 * (all of them, in whichever order) keep exact proportions; every key
 * lands on one worker. *lowest: the lowest epoch seen (0 on a failure);
 * *weighted_total: the weighted decisions.
 */
static void route_burst(dsp_client *c, int n, int64_t *lowest, int *weighted_total) {
  static int kind[4001];
  static char seen[4001];
  char err[256], hash_worker[64] = "";
  int counts[4] = {0}, rr[4] = {0}, got = 0;
  uint64_t first = 0;
  int64_t low = 0;
  *lowest = 0;
  *weighted_total = 0;
  CHECK(n <= 4000);
  memset(seen, 0, sizeof(seen));
  for (int i = 1; i <= n; i++) {
    dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
    Dispatcher__V1__RouteRequest rq = DISPATCHER__V1__ROUTE_REQUEST__INIT;
    uint64_t id = dsp_client_next_id(c);
    if (first == 0) first = id;
    kind[i] = i % 13 == 0 ? 3 : i % 11 == 0 ? 2 : i % 7 == 0 ? 1 : 0;
    rq.strategy = kind[i] == 1 ? "round-robin" : kind[i] == 3 ? "hash" : "weighted";
    if (kind[i] == 2) rq.count = 3;
    if (kind[i] == 3) {
      rq.key.data = (uint8_t *)"k";
      rq.key.len = 1;
    }
    req.id = id;
    req.body_case = DSP_PB(REQUEST__BODY_ROUTE);
    req.route = &rq;
    CHECK(id == first + (uint64_t)(i - 1));
    CHECK(dsp_client_send(c, &req) == 0);
  }
  CHECK(dsp_client_flush(c, err, sizeof(err)) == 0);
  while (got < n) {
    dsp_pb_response *r;
    int i;
    if (dsp_client_recv(c, &r, err, sizeof(err)) != 0) {
      fprintf(stderr, "burst: %s\n", err);
      CHECK(!"every burst route answered");
    }
    i = (int)(r->id - first) + 1;
    got++;
    CHECK(r->id >= first && i <= n && !seen[i]); /* one reply to each */
    if (r->body_case != DSP_PB(RESPONSE__BODY_ROUTE)) {
      fprintf(stderr, "burst route %d: %s\n", i,
              r->body_case == DSP_PB(RESPONSE__BODY_ERROR) ? r->error->message : "?");
      CHECK(!"a route reply");
    } else {
      size_t want = kind[i] == 2 ? 3 : 1;
      seen[i] = 1;
      CHECK_INT(r->route->n_decisions, ==, want);
      for (size_t d = 0; d < r->route->n_decisions; d++) {
        const char *w = r->route->decisions[d]->worker;
        int wi = w[0] == 'w' && w[1] >= '1' && w[1] <= '3' ? w[1] - '0' : 0;
        CHECK(wi != 0);
        if (kind[i] == 1) rr[wi]++;
        else if (kind[i] == 3) {
          if (hash_worker[0] == '\0') snprintf(hash_worker, sizeof(hash_worker), "%s", w);
          CHECK_STR(w, hash_worker);
        } else counts[wi]++;
      }
      if (low == 0 || r->epoch < low) low = r->epoch;
    }
    dsp_client_free_response(r);
  }
  /* Proportions over whole cycles; the caller makes the totals whole. */
  *weighted_total = counts[1] + counts[2] + counts[3];
  if (*weighted_total % 8 == 0) {
    CHECK_INT(counts[1], ==, *weighted_total / 8);
    CHECK_INT(counts[2], ==, *weighted_total / 4);
  }
  if ((rr[1] + rr[2] + rr[3]) % 3 == 0) {
    CHECK_INT(rr[1], ==, rr[2]);
    CHECK_INT(rr[2], ==, rr[3]);
  }
  *lowest = low;
}

/* Two clients on two followers, interleaving: one global sequence. */
static void global_sequence_body(void) {
  char err[256], w[64];
  dsp_client *a = dsp_client_new(addrs[1], 10000, err, sizeof(err));
  dsp_client *b = dsp_client_new(addrs[2], 10000, err, sizeof(err));
  int64_t epoch;
  int counts[4] = {0};
  CHECK(a != NULL && b != NULL);
  /* round-robin: every worker once per cycle of three, across both. */
  for (int cycle = 0; cycle < 4; cycle++) {
    int seen[4] = {0};
    for (int k = 0; k < 3; k++) {
      CHECK(route_one((k % 2) ? b : a, "round-robin", w, sizeof(w), &epoch, err, sizeof(err)));
      CHECK(w[0] == 'w' && w[1] >= '1' && w[1] <= '3');
      seen[w[1] - '0']++;
    }
    CHECK(seen[1] == 1 && seen[2] == 1 && seen[3] == 1);
  }
  /* weighted 1:2:5 over 8 cycles, alternating clients: exact counts. */
  for (int k = 0; k < 64; k++) {
    CHECK(route_one((k % 2) ? b : a, "weighted", w, sizeof(w), &epoch, err, sizeof(err)));
    counts[w[1] - '0']++;
  }
  CHECK_INT(counts[1], ==, 8);
  CHECK_INT(counts[2], ==, 16);
  CHECK_INT(counts[3], ==, 40);
  /* Report through a follower: the coordinator's in-flight count for the
     worker drops by one (it counted every pick above). */
  {
    dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
    Dispatcher__V1__ReportRequest rp = DISPATCHER__V1__REPORT_REQUEST__INIT;
    Dispatcher__V1__WorkerListRequest wl = DISPATCHER__V1__WORKER_LIST_REQUEST__INIT;
    dsp_pb_response *r;
    uint64_t before = 0, after = 0;
    req.body_case = DSP_PB(REQUEST__BODY_WORKER_LIST);
    req.worker_list = &wl;
    CHECK((r = th_call(a, &req)) != NULL && r->body_case == DSP_PB(RESPONSE__BODY_WORKER_LIST));
    for (size_t i = 0; i < r->worker_list->n_workers; i++)
      if (strcmp(r->worker_list->workers[i]->name, "w1") == 0)
        before = r->worker_list->workers[i]->inflight;
    dsp_client_free_response(r);
    CHECK_INT(before, ==, 8 + 4); /* 8 weighted picks, 4 round-robin */
    rp.worker = "w1";
    rp.ok = 1;
    rp.latency_us = 1500;
    req.body_case = DSP_PB(REQUEST__BODY_REPORT);
    req.report = &rp;
    CHECK((r = th_call(b, &req)) != NULL && r->body_case == DSP_PB(RESPONSE__BODY_REPORT));
    CHECK(r->epoch > 0);
    dsp_client_free_response(r);
    uint64_t report_id = req.id; /* th_call() set it; the list below reuses req */
    req.body_case = DSP_PB(REQUEST__BODY_WORKER_LIST);
    req.worker_list = &wl;
    CHECK((r = th_call(a, &req)) != NULL && r->body_case == DSP_PB(RESPONSE__BODY_WORKER_LIST));
    for (size_t i = 0; i < r->worker_list->n_workers; i++)
      if (strcmp(r->worker_list->workers[i]->name, "w1") == 0) {
        after = r->worker_list->workers[i]->inflight;
        CHECK(r->worker_list->workers[i]->latency_ms > 1.4);
      }
    dsp_client_free_response(r);
    CHECK_INT(after, ==, before - 1);
    /* The same Report again (same client token and id), through the other
       follower, as a client would after losing the reply: not applied
       twice. A new id is a new report. */
    {
      uint64_t again = 0;
      dsp_pb_response *rr2;
      char e2[256];
      req.body_case = DSP_PB(REQUEST__BODY_REPORT);
      req.report = &rp;
      req.id = report_id;
      CHECK(req.client_token != 0);
      CHECK(dsp_client_send(a, &req) == 0);
      CHECK(dsp_client_recv(a, &rr2, e2, sizeof(e2)) == 0);
      CHECK(rr2->body_case == DSP_PB(RESPONSE__BODY_REPORT));
      dsp_client_free_response(rr2);
      req.body_case = DSP_PB(REQUEST__BODY_WORKER_LIST);
      req.worker_list = &wl;
      CHECK((r = th_call(a, &req)) != NULL);
      for (size_t i = 0; i < r->worker_list->n_workers; i++)
        if (strcmp(r->worker_list->workers[i]->name, "w1") == 0)
          again = r->worker_list->workers[i]->inflight;
      dsp_client_free_response(r);
      CHECK_INT(again, ==, after);
      req.body_case = DSP_PB(REQUEST__BODY_REPORT);
      req.report = &rp;
      CHECK((r = th_call(b, &req)) != NULL && r->body_case == DSP_PB(RESPONSE__BODY_REPORT));
      dsp_client_free_response(r);
      req.body_case = DSP_PB(REQUEST__BODY_WORKER_LIST);
      req.worker_list = &wl;
      CHECK((r = th_call(a, &req)) != NULL);
      for (size_t i = 0; i < r->worker_list->n_workers; i++)
        if (strcmp(r->worker_list->workers[i]->name, "w1") == 0)
          again = r->worker_list->workers[i]->inflight;
      dsp_client_free_response(r);
      CHECK_INT(again, ==, after - 1);
    }
  }
  /* Pipelined through a follower, 996 mixed routes in one write: their
     weighted decisions come to 968 (121 whole cycles of 1:2:5), their
     round-robin ones to 120 (40 of 3). */
  {
    int total;
    int64_t low;
    route_burst(a, 996, &low, &total);
    CHECK(low > 0);
    CHECK_INT(total, ==, 968);
  }
  dsp_client_free(a);
  dsp_client_free(b);
}

static void test_global_sequence(void) {
  if (start_with_workers(3, "4000") != 0) {
    stop(3);
    CHECK(!"cluster started");
  }
  global_sequence_body();
  stop(3);
}

/*
 * Route in a loop through the followers while the coordinator is taken
 * away by `sig` (SIGKILL, or SIGSTOP then SIGCONT once replaced): no route
 * fails, epochs never go down, and once a decision of the new coordinator
 * has been seen, none of the old one follows.
 */
static void loop_through_failover(int sig) {
  char err[256], w[64];
  dsp_client *c[2];
  int64_t first = 0, highest = 0, old = 0;
  int routes = 0, failures = 0, after = 0, stale = 0;
  uint64_t end;
  c[0] = dsp_client_new(addrs[1], 30000, err, sizeof(err));
  c[1] = dsp_client_new(addrs[2], 30000, err, sizeof(err));
  CHECK(c[0] != NULL && c[1] != NULL);
  for (int i = 0; i < 200; i++) {
    int64_t e;
    CHECK(route_one(c[i % 2], "round-robin", w, sizeof(w), &e, err, sizeof(err)));
    old = e;
  }
  th_signal(pids[0], sig);
  /* A pipelined burst while the coordinator is gone: held by the follower
     (gathered into batches), then decided by the new coordinator, which
     may be that very member. */
  {
    int total;
    int64_t low;
    route_burst(c[0], 996, &low, &total);
    CHECK(low > old);
    CHECK_INT(total, ==, 968);
  }
  end = th_now_ms() + 60000;
  /* Until 300 decisions of the new coordinator have come back. */
  while (after < 300 && th_now_ms() < end) {
    int64_t e = 0;
    if (!route_one(c[routes % 2], "round-robin", w, sizeof(w), &e, err, sizeof(err))) {
      fprintf(stderr, "route failed: %s\n", err);
      failures++;
      continue;
    }
    routes++;
    if (e < highest) stale++;
    if (e > highest) highest = e;
    if (e > old) {
      if (first == 0) first = e;
      after++;
      if (sig == SIGSTOP && after == 1) th_signal(pids[0], SIGCONT); /* wake the stale one */
    }
  }
  printf("%d routes during failover, %d failed, epoch %lld -> %lld\n", routes, failures,
         (long long)old, (long long)highest);
  CHECK_INT(failures, ==, 0);
  CHECK_INT(after, ==, 300);
  CHECK_INT(stale, ==, 0);
  CHECK(first > old);
  dsp_client_free(c[0]);
  dsp_client_free(c[1]);
}

static void test_leader_killed_under_load(void) {
  if (start_with_workers(3, "2000") != 0) {
    stop(3);
    CHECK(!"cluster started");
  }
  loop_through_failover(SIGKILL);
  th_wait_exit(pids[0], 10000);
  pids[0] = 0;
  stop(3);
}

static void test_frozen_coordinator(void) {
  if (start_with_workers(3, "2000") != 0) {
    stop(3);
    CHECK(!"cluster started");
  }
  loop_through_failover(SIGSTOP);
  /* The woken one rejoins as a follower. */
  CHECK(th_wait_log(logs[0], "joined the election as member-r1_", 0, 20000));
  stop(3);
}

/* The benchmark's load generator against a real member: closed loop and
   open loop each run and report clean figures, open loop never sends more
   than its schedule, and bad flags (its own, and bench-health's) are usage
   errors. */
static long bench_field(const char *log, long from, const char *key) {
  char buf[4096];
  const char *at;
  FILE *f = fopen(log, "r");
  size_t n;
  if (f == NULL) return -1;
  fseek(f, from, SEEK_SET);
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  at = strstr(buf, key);
  return at ? strtol(at + strlen(key), NULL, 10) : -1;
}

static int run_bench(const char *log, char *const argv[]) {
  pid_t pid = th_spawn(log, argv);
  int st = th_wait_exit(pid, 60000);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_bench_tool(void) {
  char log[512];
  long from;
  if (start_with_workers(1, "10000") != 0) {
    stop(1);
    CHECK(!"cluster started");
  }
  snprintf(log, sizeof(log), "%s/bench.log", zk->dir);
  {
    char *argv[] = {(char *)th_bin("dispatch-bench"), "-s", addrs[0], "-c", "4", "-P", "2",
                    "-d", "1", NULL};
    from = th_log_size(log);
    CHECK_INT(run_bench(log, argv), ==, 0);
    CHECK(bench_field(log, from, "requests=") > 0);
    CHECK_INT(bench_field(log, from, "errors="), ==, 0);
    CHECK_INT(bench_field(log, from, "late="), ==, -1); /* closed loop has no schedule */
  }
  {
    /* 300 a second for at most one second: never more than 300 (+1 for
       the request due at the very end). */
    char *argv[] = {(char *)th_bin("dispatch-bench"), "-s", addrs[0], "-c", "4", "-P", "8",
                    "-R", "300", "-d", "1", NULL};
    long n;
    from = th_log_size(log);
    CHECK_INT(run_bench(log, argv), ==, 0);
    n = bench_field(log, from, "requests=");
    CHECK(n > 0 && n <= 301);
    CHECK_INT(bench_field(log, from, "errors="), ==, 0);
    CHECK(bench_field(log, from, "late=") >= 0);
  }
  {
    static const char *const bad[][2] = {{"-R", "0"}, {"-R", "fast"}, {"-P", "0"}, {"-c", "x"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
      char *argv[] = {(char *)th_bin("dispatch-bench"), "-s", addrs[0], (char *)bad[i][0],
                      (char *)bad[i][1], "-d", "1", NULL};
      from = th_log_size(log);
      CHECK_INT(run_bench(log, argv), ==, 2);
      CHECK(th_log_has(log, "Usage: dispatch-bench", from));
    }
  }
  {
    /* bench-health's flags for the open-loop windows and distinct hosts:
       refused before it touches the member. */
    static const char *const bad[][3] = {{"-R", "0", "-R: not 1-100000000: '0'"},
                                         {"--rate", "fast", "-R: not 1-100000000: 'fast'"},
                                         {"-R", "1000,x", "-R: not 1-100000000: 'x'"},
                                         {"-R", "1,2,3,4,5", "-R: more than 4 rates"},
                                         {"-R", ",", "-R: no rate in"},
                                         {"--distinct-hosts=1", NULL, "--distinct-hosts"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
      char *argv[] = {(char *)th_bin("bench-health"), "-s", addrs[0], "-w", "127.0.0.1:9",
                      (char *)bad[i][0], (char *)bad[i][1], NULL};
      from = th_log_size(log);
      CHECK_INT(run_bench(log, argv), ==, 2);
      CHECK(th_log_has(log, bad[i][2], from));
    }
  }
  stop(1);
}

static const test_entry tests[] = {
    TEST(test_bad_input),       TEST(test_pipeline),
    TEST(test_operations),      TEST(test_client_failover),
    TEST(test_listen_in_use),   TEST(test_registry),
    TEST(test_global_sequence), TEST(test_leader_killed_under_load),
    TEST(test_frozen_coordinator), TEST(test_bench_tool),
};

TEST_MAIN(tests)
