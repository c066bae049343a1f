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
#include "frame.h"
#include "harness.h"
#include "test.h"

static zkh_ensemble *zk;
static pid_t pids[3];
static char addrs[3][32], logs[3][512];
static int ports[3];

static int start(int n) {
  char timeout[] = "4000";
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
    int status;
    th_signal(pids[i], SIGTERM);
    status = th_wait_exit(pids[i], 10000);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "r%d did not exit 0 (status %d)\n", i + 1, status);
      test_failed_flag = 1;
    }
    if (th_log_has(logs[i], "Sanitizer", 0) || th_log_has(logs[i], "runtime error:", 0)) {
      fprintf(stderr, "sanitizer report in %s\n", logs[i]);
      test_failed_flag = 1;
    }
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

static int raw_connect(int port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
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
  int fd = raw_connect(ports[0]), n;
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
    int fd = raw_connect(ports[0]);
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
    int fd = raw_connect(ports[0]);
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
  /* A follower does not decide: it names the coordinator. */
  CHECK(dsp_client_call(fol, &req, &r, err, sizeof(err)) == 0);
  CHECK_INT(r->error->code, ==, DSP_PB(ERROR_CODE__NOT_COORDINATOR));
  CHECK(strstr(r->error->message, addrs[0]) != NULL);
  dsp_client_free_response(r);
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

static const test_entry tests[] = {
    TEST(test_bad_input), TEST(test_pipeline), TEST(test_operations),
    TEST(test_client_failover), TEST(test_listen_in_use),
};

TEST_MAIN(tests)
