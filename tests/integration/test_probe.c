/*
 * test_probe.c: the prober against a real HTTP responder on 127.0.0.1, both
 * on one real libuv loop. The responder is a few lines of libuv TCP in this
 * file that answer by path:
 *   /ok, /ok/...  200 "ok"             /hello  200 "hello, prober"
 *   /ua           200, the User-Agent  /fail   500
 *   /redirect     302 to /ok           /big    200, 1 MiB (Content-Length)
 *   /bigchunked   200, 1 MiB chunked   /hang   accepted, never answered
 *   /slow         200 "ok" after 300 ms          anything else 404
 * Every scenario ends with the prober closed and uv_loop_close() returning 0
 * (a leaked handle fails), and under DSP_SANITIZE any leak fails too.
 *
 * `test_bench` measures probes per second with the responder in a child
 * process (its own core): DSP_PROBE_BENCH_N probes (default 20000) to
 * distinct paths, DSP_PROBE_BENCH_WINDOW in flight (default 256); when
 * DSP_PROBE_BENCH_MIN_RATE is set the rate must reach it.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "probe.h"
#include "test.h"
#include "util.h"

/* --- the responder ------------------------------------------------------ */

#define BIG (1 << 20)
static char big[BIG];

typedef struct conn conn;
typedef struct {
  uv_tcp_t listener;
  int port;
  conn *conns;
  unsigned long requests, ok_requests;
} server;

struct conn {
  uv_tcp_t tcp;
  uv_timer_t slow;
  server *s;
  conn *prev, *next;
  char buf[8192];
  size_t len;
  int handles, closing;
};

typedef struct {
  uv_write_t req;
  char head[512];
} wreq;

static void on_conn_closed(uv_handle_t *h) {
  conn *c = h->data;
  if (--c->handles == 0) free(c);
}

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  if (c->prev) c->prev->next = c->next;
  else c->s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
  uv_close((uv_handle_t *)&c->slow, on_conn_closed);
}

static void on_written(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  conn *c = req->handle->data;
  free(w);
  if (status < 0) conn_close(c);
}

static void respond(conn *c, int status, const char *extra, const char *body, size_t blen,
                    int chunked) {
  wreq *w;
  uv_buf_t b[3];
  int n = 1;
  if (c->closing) return;
  w = malloc(sizeof(*w));
  if (w == NULL) abort();
  if (chunked)
    snprintf(w->head, sizeof(w->head),
             "HTTP/1.1 %d X\r\n%sTransfer-Encoding: chunked\r\n\r\n%zx\r\n", status, extra,
             blen);
  else
    snprintf(w->head, sizeof(w->head), "HTTP/1.1 %d X\r\n%sContent-Length: %zu\r\n\r\n", status,
             extra, blen);
  b[0] = uv_buf_init(w->head, (unsigned)strlen(w->head));
  if (blen > 0) b[n++] = uv_buf_init((char *)body, (unsigned)blen);
  if (chunked) b[n++] = uv_buf_init("\r\n0\r\n\r\n", 7);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, b, (unsigned)n, on_written) != 0) {
    free(w);
    conn_close(c);
  }
}

static void on_slow(uv_timer_t *t) {
  respond(t->data, 200, "", "ok", 2, 0);
}

/* One request head in c->buf[0..end): answer it (or not). */
static void serve(conn *c, char *head) {
  char path[512], *ua, *sp;
  if (strncmp(head, "GET ", 4) != 0 || (sp = strchr(head + 4, ' ')) == NULL ||
      (size_t)(sp - head - 4) >= sizeof(path)) {
    conn_close(c);
    return;
  }
  memcpy(path, head + 4, (size_t)(sp - head - 4));
  path[sp - head - 4] = '\0';
  c->s->requests++;
  if (strcmp(path, "/ok") == 0 || strncmp(path, "/ok/", 4) == 0) {
    c->s->ok_requests++;
    respond(c, 200, "", "ok", 2, 0);
  } else if (strcmp(path, "/hello") == 0) {
    respond(c, 200, "", "hello, prober", 13, 0);
  } else if (strcmp(path, "/ua") == 0) {
    ua = strstr(head, "\r\nUser-Agent: ");
    if (ua == NULL) {
      respond(c, 200, "", "", 0, 0);
    } else {
      ua += 14;
      respond(c, 200, "", ua, strcspn(ua, "\r"), 0);
    }
  } else if (strcmp(path, "/fail") == 0) {
    respond(c, 500, "", "fail", 4, 0);
  } else if (strcmp(path, "/redirect") == 0) {
    char loc[128];
    snprintf(loc, sizeof(loc), "Location: http://127.0.0.1:%d/ok\r\n", c->s->port);
    respond(c, 302, loc, "", 0, 0);
  } else if (strcmp(path, "/big") == 0) {
    respond(c, 200, "", big, BIG, 0);
  } else if (strcmp(path, "/bigchunked") == 0) {
    respond(c, 200, "", big, BIG, 1);
  } else if (strcmp(path, "/hang") == 0) {
    /* never answered */
  } else if (strcmp(path, "/slow") == 0) {
    uv_timer_start(&c->slow, on_slow, 300, 0);
  } else {
    respond(c, 404, "", "no", 2, 0);
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn *c = h->data;
  (void)hint;
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  conn *c = st->data;
  char *end;
  (void)buf;
  if (n < 0) {
    conn_close(c);
    return;
  }
  c->len += (size_t)n;
  c->buf[c->len] = '\0';
  while (!c->closing && (end = strstr(c->buf, "\r\n\r\n")) != NULL) {
    size_t used = (size_t)(end + 4 - c->buf);
    char head[8192];
    memcpy(head, c->buf, used);
    head[used] = '\0';
    memmove(c->buf, c->buf + used, c->len - used + 1);
    c->len -= used;
    serve(c, head);
  }
  if (!c->closing && c->len >= sizeof(c->buf) - 1) conn_close(c);
}

static void on_connection(uv_stream_t *l, int status) {
  server *s = l->data;
  conn *c;
  if (status < 0) return;
  c = calloc(1, sizeof(*c));
  if (c == NULL) abort();
  c->s = s;
  uv_tcp_init(l->loop, &c->tcp);
  uv_timer_init(l->loop, &c->slow);
  c->tcp.data = c->slow.data = c;
  c->handles = 2;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
    conn_close(c);
}

/* Listens on 127.0.0.1, or with `any` on every address (so 127.a.b.c reach
   it: many hosts for one server). */
static int server_start(uv_loop_t *loop, server *s, int any) {
  struct sockaddr_in a;
  struct sockaddr_storage got;
  int len = sizeof(got);
  memset(s, 0, sizeof(*s));
  if (big[0] == 0) memset(big, 'x', sizeof(big));
  uv_ip4_addr(any ? "0.0.0.0" : "127.0.0.1", 0, &a);
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  if (uv_tcp_bind(&s->listener, (struct sockaddr *)&a, 0) != 0 ||
      uv_listen((uv_stream_t *)&s->listener, 4096, on_connection) != 0 ||
      uv_tcp_getsockname(&s->listener, (struct sockaddr *)&got, &len) != 0)
    return -1;
  s->port = ntohs(((struct sockaddr_in *)&got)->sin_port);
  return 0;
}

static void server_close(server *s) {
  while (s->conns) conn_close(s->conns);
  uv_close((uv_handle_t *)&s->listener, NULL);
}

/* --- fixture ------------------------------------------------------------ */

static uv_loop_t loop;
static server srv;
static dsp_prober *prober;
static uv_timer_t guard;
static int guard_fired, prober_done;
static int seq, ndone; /* callbacks so far; order stamp */

typedef struct {
  int called, order;
  uint64_t token;
  dsp_probe_result r;
} rec;

/* Set by a test whose result may come from a timer with nothing else
   pending: the loop would then block until the guard before returning. */
static int stop_on_result;

static void on_result(void *arg, const dsp_probe_result *r) {
  rec *x = arg;
  x->called++;
  x->order = ++seq;
  x->r = *r;
  ndone++;
  if (stop_on_result) uv_stop(&loop);
}

static void on_guard(uv_timer_t *t) {
  (void)t;
  guard_fired = 1;
}

static void on_prober_done(void *arg) {
  (void)arg;
  prober_done++;
}

static int setup_on(const dsp_prober_limits *limits, int any) {
  seq = ndone = guard_fired = prober_done = 0;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return -1;
  if (uv_loop_init(&loop) != 0) return -1;
  uv_timer_init(&loop, &guard);
  uv_unref((uv_handle_t *)&guard);
  if (server_start(&loop, &srv, any) != 0) return -1;
  prober = dsp_prober_new(&loop, limits);
  return prober ? 0 : -1;
}

static int setup(const dsp_prober_limits *limits) { return setup_on(limits, 0); }

/* Run the loop until *counter reaches target; 0, or -1 after timeout_ms. */
static int run_until(int *counter, int target, int timeout_ms) {
  guard_fired = 0;
  uv_timer_start(&guard, on_guard, (uint64_t)timeout_ms, 0);
  while (*counter < target && !guard_fired) uv_run(&loop, UV_RUN_ONCE);
  uv_timer_stop(&guard);
  if (*counter < target) fprintf(stderr, "timed out: %d of %d\n", *counter, target);
  return *counter >= target ? 0 : -1;
}

/* Run the loop for ms; returns the loop turns it took. */
static int run_for(int ms) {
  int turns = 0;
  guard_fired = 0;
  uv_timer_start(&guard, on_guard, (uint64_t)ms, 0);
  uv_ref((uv_handle_t *)&guard);
  while (!guard_fired) {
    uv_run(&loop, UV_RUN_ONCE);
    turns++;
  }
  uv_unref((uv_handle_t *)&guard);
  return turns;
}

/* Close the prober (if not yet) and the responder; 0 if everything closed
   and the loop closes cleanly. */
static int teardown(int close_prober) {
  int rc;
  if (close_prober) dsp_prober_close(prober, on_prober_done, NULL);
  server_close(&srv);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&loop);
  curl_global_cleanup();
  if (rc != 0) fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
  if (prober_done != 1) fprintf(stderr, "prober done called %d times\n", prober_done);
  return rc == 0 && prober_done == 1 ? 0 : -1;
}

static char urlbuf[256];
static const char *url(const char *path) {
  snprintf(urlbuf, sizeof(urlbuf), "http://127.0.0.1:%d%s", srv.port, path);
  return urlbuf;
}

static dsp_probe_spec spec_for(const char *path, unsigned timeout_ms) {
  dsp_probe_spec s;
  memset(&s, 0, sizeof(s));
  s.url = url(path);
  s.timeout_ms = timeout_ms;
  return s;
}

static int start(uint64_t token, const dsp_probe_spec *s, rec *x) {
  x->token = token;
  return dsp_probe_start(prober, token, s, on_result, x);
}

/* --- scenarios ---------------------------------------------------------- */

static void test_ok(void) {
  rec a = {0}, b = {0}, c = {0};
  dsp_probe_spec s;
  dsp_probe_stats st;
  CHECK(setup(NULL) == 0);
  s = spec_for("/ok", 2000);
  CHECK_INT(start(1, &s, &a), ==, 0);
  s = spec_for("/ua", 2000);
  s.expect_body = "dispatcher-probe/1";
  CHECK_INT(start(2, &s, &b), ==, 0);
  s = spec_for("/ok", 2000);
  s.status_lo = s.status_hi = 200;
  CHECK_INT(start(3, &s, &c), ==, 0);
  CHECK_INT(ndone, ==, 0); /* never from inside dsp_probe_start */
  dsp_prober_stats(prober, &st);
  CHECK_INT(st.in_flight, ==, 3);
  CHECK(run_until(&ndone, 3, 10000) == 0);
  CHECK(a.r.ok && a.r.kind == DSP_PROBE_OK && a.r.status == 200);
  CHECK_STR(a.r.reason, "status 200");
  CHECK(a.r.latency_us > 0);
  CHECK_STR(b.r.reason, "status 200");
  CHECK(c.r.ok);
  CHECK(a.called == 1 && b.called == 1 && c.called == 1);
  dsp_prober_stats(prober, &st);
  CHECK_INT(st.started, ==, 3);
  CHECK_INT(st.completed, ==, 3);
  CHECK_INT(st.failed, ==, 0);
  CHECK_INT(st.in_flight, ==, 0);
  /* Again on the same prober: a recycled handle, a reused connection. */
  s = spec_for("/ok", 2000);
  CHECK_INT(start(1, &s, &a), ==, 0);
  CHECK(run_until(&ndone, 4, 10000) == 0);
  CHECK(a.r.ok && a.called == 2);
  dsp_prober_stats(prober, &st);
  CHECK_INT(st.easy_created, ==, 3);
  CHECK_INT(st.connects, <=, 3);
  CHECK_STR(dsp_probe_kind_name(DSP_PROBE_BODY_TOO_LARGE), "body_too_large");
  CHECK_STR(dsp_probe_kind_name(99), "unknown");
  CHECK(teardown(1) == 0);
}

static void test_status(void) {
  rec a = {0}, b = {0}, c = {0};
  dsp_probe_spec s;
  dsp_probe_stats st;
  CHECK(setup(NULL) == 0);
  s = spec_for("/fail", 2000);
  CHECK_INT(start(1, &s, &a), ==, 0);
  s.status_lo = 500;
  s.status_hi = 599;
  CHECK_INT(start(2, &s, &b), ==, 0);
  s = spec_for("/nothere", 2000);
  s.status_lo = s.status_hi = 200;
  CHECK_INT(start(3, &s, &c), ==, 0);
  CHECK(run_until(&ndone, 3, 10000) == 0);
  CHECK(!a.r.ok && a.r.kind == DSP_PROBE_STATUS && a.r.status == 500);
  CHECK_STR(a.r.reason, "status 500 (expected 200-299)");
  CHECK(b.r.ok && b.r.status == 500);
  CHECK_INT(c.r.kind, ==, DSP_PROBE_STATUS);
  CHECK_STR(c.r.reason, "status 404 (expected 200-200)");
  dsp_prober_stats(prober, &st);
  CHECK_INT(st.failed, ==, 2);
  CHECK(teardown(1) == 0);
}

static void test_body(void) {
  rec a = {0}, b = {0}, c = {0}, d = {0};
  dsp_probe_spec s;
  CHECK(setup(NULL) == 0);
  s = spec_for("/hello", 2000);
  s.expect_body = "prober";
  CHECK_INT(start(1, &s, &a), ==, 0);
  s.expect_body = "nope\n";
  CHECK_INT(start(2, &s, &b), ==, 0);
  /* Expected text longer than the body received. */
  s.expect_body = "hello, prober and more";
  CHECK_INT(start(3, &s, &c), ==, 0);
  s.expect_body = "";
  CHECK_INT(start(4, &s, &d), ==, 0);
  CHECK(run_until(&ndone, 4, 10000) == 0);
  CHECK(a.r.ok);
  CHECK(!b.r.ok && b.r.kind == DSP_PROBE_BODY_MISMATCH && b.r.status == 200);
  CHECK_STR(b.r.reason, "body does not contain \"nope?\"");
  CHECK_INT(c.r.kind, ==, DSP_PROBE_BODY_MISMATCH);
  CHECK(d.r.ok);
  CHECK(teardown(1) == 0);
}

static void test_body_too_large(void) {
  rec a = {0}, b = {0}, c = {0}, d = {0}, e = {0}, f = {0}, g = {0};
  dsp_probe_spec s;
  CHECK(setup(NULL) == 0);
  s = spec_for("/big", 5000); /* Content-Length over the default limit */
  CHECK_INT(start(1, &s, &a), ==, 0);
  s = spec_for("/bigchunked", 5000); /* no length: cut off while reading */
  CHECK_INT(start(2, &s, &b), ==, 0);
  s.expect_body = "xxxx";
  CHECK_INT(start(3, &s, &c), ==, 0);
  s = spec_for("/big", 5000);
  s.body_limit = 2 << 20;
  CHECK_INT(start(4, &s, &d), ==, 0);
  s = spec_for("/bigchunked", 5000);
  s.body_limit = 2 << 20;
  s.expect_body = "xxxx";
  CHECK_INT(start(5, &s, &e), ==, 0);
  s = spec_for("/hello", 5000);
  s.body_limit = 5;
  CHECK_INT(start(6, &s, &f), ==, 0);
  s = spec_for("/fail", 5000); /* status is judged before size */
  s.body_limit = 1;
  CHECK_INT(start(7, &s, &g), ==, 0);
  CHECK(run_until(&ndone, 7, 20000) == 0);
  CHECK(!a.r.ok && a.r.kind == DSP_PROBE_BODY_TOO_LARGE);
  CHECK_STR(a.r.reason, "body over 65536 bytes");
  CHECK_INT(b.r.kind, ==, DSP_PROBE_BODY_TOO_LARGE);
  CHECK_STR(b.r.reason, "body over 65536 bytes");
  CHECK_INT(c.r.kind, ==, DSP_PROBE_BODY_TOO_LARGE);
  CHECK(d.r.ok && e.r.ok);
  CHECK_INT(f.r.kind, ==, DSP_PROBE_BODY_TOO_LARGE);
  CHECK_STR(f.r.reason, "body over 5 bytes");
  CHECK_INT(g.r.kind, ==, DSP_PROBE_STATUS);
  CHECK(teardown(1) == 0);
}

static void test_redirect(void) {
  rec a = {0}, b = {0};
  dsp_probe_spec s;
  char want[128];
  CHECK(setup(NULL) == 0);
  s = spec_for("/redirect", 2000);
  CHECK_INT(start(1, &s, &a), ==, 0);
  s.status_lo = 200;
  s.status_hi = 399;
  CHECK_INT(start(2, &s, &b), ==, 0);
  CHECK(run_until(&ndone, 2, 10000) == 0);
  CHECK(!a.r.ok && a.r.kind == DSP_PROBE_REDIRECT && a.r.status == 302);
  snprintf(want, sizeof(want), "redirect (302) to http://127.0.0.1:%d/ok not followed", srv.port);
  CHECK_STR(a.r.reason, want);
  CHECK(b.r.ok && b.r.status == 302);
  CHECK_INT(srv.ok_requests, ==, 0); /* the Location was never fetched */
  CHECK(teardown(1) == 0);
}

/* Many hosts, each probed twice: every host keeps its keep-alive
   connection between rounds, even past the per-shard cache size (curl's
   cache is per multi handle: one shared by all hosts would have evicted
   and reconnected, and walked every connection on each probe's removal).
   HOSTS distinct addresses 127.1.a.b reach one server on 0.0.0.0. */
#define HOSTS 1500
static rec hosts_recs[HOSTS];

static void test_many_hosts(void) {
  dsp_prober_limits lim = {.max_connects = 64, .shards = 64};
  dsp_probe_stats st;
  uint64_t first;
  struct rlimit rl;
  /* Each connection holds two fds here: the prober's and the server's. */
  dsp_raise_nofile();
  CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
  CHECK(rl.rlim_cur >= 2 * HOSTS + 256);
  CHECK(setup_on(&lim, 1) == 0);
  for (int round = 0; round < 2; round++) {
    ndone = 0;
    memset(hosts_recs, 0, sizeof(hosts_recs));
    for (int i = 0; i < HOSTS; i++) {
      char u[96];
      dsp_probe_spec s;
      memset(&s, 0, sizeof(s));
      snprintf(u, sizeof(u), "http://127.1.%d.%d:%d/ok", i / 250, i % 250 + 1, srv.port);
      s.url = u;
      s.timeout_ms = 30000;
      CHECK_INT(start((uint64_t)i, &s, &hosts_recs[i]), ==, 0);
    }
    CHECK(run_until(&ndone, HOSTS, 120000) == 0);
    for (int i = 0; i < HOSTS; i++) {
      if (!hosts_recs[i].r.ok) fprintf(stderr, "host %d: %s\n", i, hosts_recs[i].r.reason);
      CHECK(hosts_recs[i].called == 1 && hosts_recs[i].r.ok);
    }
    dsp_prober_stats(prober, &st);
    fprintf(stderr, "many_hosts: round %d, %" PRIu64 " connections made\n", round + 1,
            st.connects);
    if (round == 0) {
      CHECK_INT(st.connects, ==, HOSTS);
      first = st.connects;
    } else {
      CHECK_INT(st.connects, ==, first); /* every connection reused */
    }
  }
  CHECK(teardown(1) == 0);
}

/* A loopback port with nothing listening: bound, then closed. */
static int dead_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0), port;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0)
    port = -1;
  else
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

static void test_refused(void) {
  rec a = {0};
  dsp_probe_spec s;
  char u[64];
  int port = dead_port();
  CHECK(port > 0);
  CHECK(setup(NULL) == 0);
  snprintf(u, sizeof(u), "http://127.0.0.1:%d/ok", port);
  memset(&s, 0, sizeof(s));
  s.url = u;
  s.timeout_ms = 2000;
  CHECK_INT(start(1, &s, &a), ==, 0);
  CHECK(run_until(&ndone, 1, 10000) == 0);
  CHECK(!a.r.ok && a.r.kind == DSP_PROBE_REFUSED && a.r.status == 0);
  CHECK_STR(a.r.reason, "connection refused");
  CHECK(teardown(1) == 0);
}

/* A probe that cannot get a socket here (EMFILE) is kind LOCAL, with the
   reason: the failure is ours, not the worker's; so is a name lookup that
   fails then (curl's resolver thread needs a socketpair). With the
   descriptors back, the same URL passes. */
static void test_local(void) {
  rec a = {0}, b = {0}, c = {0};
  dsp_probe_spec s;
  struct rlimit saved, rl;
  static int fds[1024];
  int n = 0;
  CHECK(setup(NULL) == 0);
  CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
  rl = saved;
  if (rl.rlim_cur > 1024) rl.rlim_cur = 1024;
  CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
  while (n < (int)DSP_ARRAY_SIZE(fds) && (fds[n] = open("/dev/null", O_RDONLY)) >= 0) n++;
  CHECK(n < (int)DSP_ARRAY_SIZE(fds) && errno == EMFILE); /* stopped by the limit */
  s = spec_for("/ok", 2000);
  CHECK_INT(start(1, &s, &a), ==, 0);
  stop_on_result = 1; /* curl fails it from its timer */
  CHECK(run_until(&ndone, 1, 10000) == 0);
  s.url = "http://dsp-probe-test.invalid:1/ok";
  CHECK_INT(start(3, &s, &c), ==, 0);
  CHECK(run_until(&ndone, 2, 10000) == 0);
  stop_on_result = 0;
  while (n > 0) close(fds[--n]);
  CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
  CHECK(!a.r.ok && a.r.kind == DSP_PROBE_LOCAL && a.r.status == 0);
  CHECK_STR(a.r.reason, "cannot open a socket: Too many open files");
  CHECK(!c.r.ok && c.r.kind == DSP_PROBE_LOCAL);
  CHECK_STR(c.r.reason, "cannot look the host up: Too many open files");
  CHECK_STR(dsp_probe_kind_name(DSP_PROBE_LOCAL), "local");
  s = spec_for("/ok", 2000);
  CHECK_INT(start(2, &s, &b), ==, 0);
  CHECK(run_until(&ndone, 3, 10000) == 0);
  CHECK(b.r.ok && b.r.kind == DSP_PROBE_OK);
  CHECK(teardown(1) == 0);
}

/* A hanging worker costs its own timeout and delays nobody: 50 probes
   started with it all finish first. */
static void test_timeout(void) {
  rec hang = {0}, slow = {0}, oks[50];
  dsp_probe_spec s;
  memset(oks, 0, sizeof(oks));
  CHECK(setup(NULL) == 0);
  s = spec_for("/hang", 300);
  CHECK_INT(start(1000, &s, &hang), ==, 0);
  for (int i = 0; i < 50; i++) {
    s = spec_for("/ok", 5000);
    CHECK_INT(start((uint64_t)i, &s, &oks[i]), ==, 0);
  }
  /* The hang's timeout is the last thing that happens: its result must be
     read right after the timer's socket_action (multi-uv.c loses it). */
  CHECK(run_until(&ndone, 51, 20000) == 0);
  CHECK(!hang.r.ok && hang.r.kind == DSP_PROBE_TIMEOUT && hang.r.status == 0);
  CHECK_STR(hang.r.reason, "timeout after 300 ms");
  CHECK(hang.r.latency_us >= 290000);
  for (int i = 0; i < 50; i++) {
    CHECK(oks[i].called == 1 && oks[i].r.ok);
    CHECK_INT(oks[i].order, <, hang.order);
  }
  /* A slow answer within the timeout is fine. */
  s = spec_for("/slow", 3000);
  CHECK_INT(start(1001, &s, &slow), ==, 0);
  CHECK(run_until(&ndone, 52, 20000) == 0);
  CHECK(slow.r.ok);
  CHECK(teardown(1) == 0);
}

static void test_dns(void) {
  rec a = {0};
  dsp_probe_spec s;
  CHECK(setup(NULL) == 0);
  memset(&s, 0, sizeof(s));
  s.url = "http://nonexistent.invalid/";
  s.timeout_ms = 2000;
  CHECK_INT(start(1, &s, &a), ==, 0);
  CHECK(run_until(&ndone, 1, 15000) == 0);
  fprintf(stderr, "dns: %s: %s\n", dsp_probe_kind_name(a.r.kind), a.r.reason);
  CHECK(!a.r.ok);
  CHECK(a.r.kind == DSP_PROBE_DNS || a.r.kind == DSP_PROBE_TIMEOUT);
  if (a.r.kind == DSP_PROBE_DNS) CHECK_STR(a.r.reason, "could not resolve host 'nonexistent.invalid'");
  CHECK(teardown(1) == 0);
}

/* Cancel from outside, from inside a callback (an in-flight probe, itself,
   an unknown token), and a pair racing: whichever finishes first cancels
   the other, even if the other's result is already waiting in curl. */
static rec cancel_recs[6];

static void on_cancel_others(void *arg, const dsp_probe_result *r) {
  rec *x = arg;
  on_result(arg, r);
  dsp_probe_cancel(prober, 11);        /* /hang, in flight */
  dsp_probe_cancel(prober, x->token);  /* itself: already finished */
  dsp_probe_cancel(prober, 999999);    /* never started */
}

static void on_pair(void *arg, const dsp_probe_result *r) {
  rec *x = arg;
  on_result(arg, r);
  dsp_probe_cancel(prober, x->token == 20 ? 21 : 20);
}

static void count_active(uv_handle_t *h, void *arg) {
  /* The responder's handles are TCP (its slow timers are idle by now); the
     prober's are polls and a timer. What keeps uv_run() going is an active,
     referenced handle (idle keep-alive connections stay polled, unref'd). */
  if (h != (uv_handle_t *)&guard && h->type != UV_TCP && uv_is_active(h) && uv_has_ref(h) &&
      !uv_is_closing(h))
    (*(int *)arg)++;
}

static void test_cancel(void) {
  rec *r = cancel_recs;
  dsp_probe_spec s;
  dsp_probe_stats st;
  int active = -1;
  memset(cancel_recs, 0, sizeof(cancel_recs));
  CHECK(setup(NULL) == 0);
  s = spec_for("/hang", 5000);
  CHECK_INT(start(10, &s, &r[0]), ==, 0);
  dsp_probe_cancel(prober, 10); /* before it even began */
  r[1].token = 11;
  CHECK_INT(dsp_probe_start(prober, 11, &s, on_result, &r[1]), ==, 0);
  s = spec_for("/slow", 5000);
  r[2].token = 12;
  CHECK_INT(dsp_probe_start(prober, 12, &s, on_cancel_others, &r[2]), ==, 0);
  s = spec_for("/ok", 5000);
  r[3].token = 20;
  r[4].token = 21;
  CHECK_INT(dsp_probe_start(prober, 20, &s, on_pair, &r[3]), ==, 0);
  CHECK_INT(dsp_probe_start(prober, 21, &s, on_pair, &r[4]), ==, 0);
  CHECK(run_until(&ndone, 2, 10000) == 0);
  run_for(200); /* nothing else may arrive */
  CHECK_INT(ndone, ==, 2);
  CHECK_INT(r[0].called, ==, 0);
  CHECK_INT(r[1].called, ==, 0);
  CHECK(r[2].called == 1 && r[2].r.ok);
  CHECK_INT(r[3].called + r[4].called, ==, 1);
  dsp_prober_stats(prober, &st);
  CHECK_INT(st.cancelled, ==, 3);
  CHECK_INT(st.in_flight, ==, 0);
  CHECK_INT(st.completed, ==, 2);
  /* An idle prober keeps nothing active: the loop could end right here. */
  active = 0;
  uv_walk(&loop, count_active, &active);
  CHECK_INT(active, ==, 0);
  /* A token is free again once its probe is gone. */
  s = spec_for("/ok", 5000);
  CHECK_INT(start(11, &s, &r[5]), ==, 0);
  CHECK(run_until(&ndone, 3, 10000) == 0);
  CHECK(r[5].r.ok);
  CHECK(teardown(1) == 0);
}

/* 5000 distinct paths, 1000 started at once and each answer starting the
   next: all ok, none lost, few handles and connections. */
#define MANY 5000
#define MANY_WINDOW 1000
static rec many_recs[MANY];
static int many_next;

static void on_many(void *arg, const dsp_probe_result *r) {
  on_result(arg, r);
  if (many_next < MANY) {
    char path[64];
    dsp_probe_spec s;
    int i = many_next++;
    snprintf(path, sizeof(path), "/ok/%d", i);
    s = spec_for(path, 10000);
    many_recs[i].token = (uint64_t)i;
    if (dsp_probe_start(prober, (uint64_t)i, &s, on_many, &many_recs[i]) != 0) abort();
  }
}

/* The server drops an idle keep-alive connection between probes: the
   prober notices (its socket still polled, curl no longer watching it),
   stops polling it without holding the loop, and the next probe makes a
   new connection. */
static void test_idle_closed(void) {
  rec a = {0};
  dsp_probe_spec s;
  dsp_probe_stats st0, st;
  int active;
  CHECK(setup(NULL) == 0);
  s = spec_for("/ok", 2000);
  CHECK_INT(start(1, &s, &a), ==, 0);
  CHECK(run_until(&ndone, 1, 10000) == 0);
  CHECK(a.r.ok);
  dsp_prober_stats(prober, &st0);
  CHECK_INT(st0.connects, ==, 1);
  while (srv.conns) conn_close(srv.conns);
  /* A poll left on the closed socket would wake every turn: the loop would
     spin through thousands of turns instead of sleeping. */
  CHECK_INT(run_for(100), <, 50);
  active = 0;
  uv_walk(&loop, count_active, &active);
  CHECK_INT(active, ==, 0);
  CHECK_INT(start(2, &s, &a), ==, 0);
  CHECK(run_until(&ndone, 2, 10000) == 0);
  CHECK(a.r.ok && a.called == 2);
  dsp_prober_stats(prober, &st);
  CHECK_INT(st.connects, ==, 2);
  /* And once more on that new connection: reused, no connect. */
  CHECK_INT(start(3, &s, &a), ==, 0);
  CHECK(run_until(&ndone, 3, 10000) == 0);
  CHECK(a.r.ok && a.called == 3);
  dsp_prober_stats(prober, &st);
  CHECK_INT(st.connects, ==, 2);
  CHECK(teardown(1) == 0);
}

static void test_many(void) {
  dsp_probe_stats st;
  memset(many_recs, 0, sizeof(many_recs));
  CHECK(setup(NULL) == 0);
  for (many_next = 0; many_next < MANY_WINDOW;) {
    char path[64];
    dsp_probe_spec s;
    int i = many_next++;
    snprintf(path, sizeof(path), "/ok/%d", i);
    s = spec_for(path, 10000);
    many_recs[i].token = (uint64_t)i;
    CHECK_INT(dsp_probe_start(prober, (uint64_t)i, &s, on_many, &many_recs[i]), ==, 0);
  }
  CHECK(run_until(&ndone, MANY, 120000) == 0);
  for (int i = 0; i < MANY; i++) {
    if (many_recs[i].called != 1 || !many_recs[i].r.ok)
      fprintf(stderr, "probe %d: called %d: %s\n", i, many_recs[i].called, many_recs[i].r.reason);
    CHECK_INT(many_recs[i].called, ==, 1);
    CHECK(many_recs[i].r.ok);
  }
  CHECK_INT(srv.ok_requests, ==, MANY);
  dsp_prober_stats(prober, &st);
  fprintf(stderr, "many: %" PRIu64 " easy handles, %" PRIu64 " connections\n", st.easy_created,
          st.connects);
  CHECK_INT(st.completed, ==, MANY);
  CHECK_INT(st.easy_created, <=, MANY_WINDOW + 16);
  CHECK_INT(st.connects, <=, 2 * MANY_WINDOW);
  CHECK(teardown(1) == 0);
}

/* Closing with probes in flight: no callback, every handle closed, every
   byte freed (ASan), the loop closes. */
static void test_close(void) {
  rec r[70];
  dsp_probe_spec s;
  char u[64];
  int port = dead_port();
  memset(r, 0, sizeof(r));
  CHECK(setup(NULL) == 0);
  for (int i = 0; i < 20; i++) {
    s = spec_for("/ok", 5000);
    CHECK_INT(start((uint64_t)i, &s, &r[i]), ==, 0);
  }
  CHECK(run_until(&ndone, 20, 10000) == 0);
  for (int i = 20; i < 70; i++) {
    s = spec_for(i < 40 ? "/hang" : i < 60 ? "/slow" : "/bigchunked", 5000);
    if (i >= 65) {
      snprintf(u, sizeof(u), "http://127.0.0.1:%d/", port);
      s.url = u;
    }
    CHECK_INT(start((uint64_t)i, &s, &r[i]), ==, 0);
  }
  run_for(50); /* connected, requests sent */
  CHECK_INT(ndone, <, 70);
  {
    int before = ndone;
    dsp_prober_close(prober, on_prober_done, NULL);
    CHECK(teardown(0) == 0);
    CHECK_INT(ndone, ==, before);
  }
}

/* Closing from inside a callback: the rest of the batch is never told. */
static void on_close_now(void *arg, const dsp_probe_result *r) {
  on_result(arg, r);
  dsp_prober_close(prober, on_prober_done, NULL);
}

static void test_close_in_callback(void) {
  rec r[20];
  dsp_probe_spec s;
  memset(r, 0, sizeof(r));
  CHECK(setup(NULL) == 0);
  for (int i = 0; i < 20; i++) {
    s = spec_for(i < 10 ? "/ok" : "/hang", 5000);
    r[i].token = (uint64_t)i;
    CHECK_INT(dsp_probe_start(prober, (uint64_t)i, &s, on_close_now, &r[i]), ==, 0);
  }
  CHECK(run_until(&prober_done, 1, 10000) == 0);
  CHECK_INT(ndone, ==, 1);
  CHECK(teardown(0) == 0);
  CHECK_INT(ndone, ==, 1);
}

static void test_bad_args(void) {
  rec a = {0}, x = {0};
  dsp_probe_spec s;
  dsp_probe_stats st;
  char longurl[DSP_PROBE_URL_MAX + 64];
  CHECK(setup(NULL) == 0);
  s = spec_for("/ok", 2000);
  CHECK_INT(start(1, &s, &a), ==, 0);
  CHECK_INT(start(1, &s, &x), ==, UV_EEXIST);
  CHECK_INT(dsp_probe_start(prober, 2, NULL, on_result, &x), ==, UV_EINVAL);
  CHECK_INT(dsp_probe_start(prober, 2, &s, NULL, &x), ==, UV_EINVAL);
  s.timeout_ms = 0;
  CHECK_INT(start(2, &s, &x), ==, UV_EINVAL);
  s.timeout_ms = DSP_PROBE_TIMEOUT_MAX + 1;
  CHECK_INT(start(2, &s, &x), ==, UV_EINVAL);
  s = spec_for("/ok", 2000);
  s.status_lo = 300;
  s.status_hi = 200;
  CHECK_INT(start(2, &s, &x), ==, UV_EINVAL);
  s.status_lo = 0;
  s.status_hi = 700;
  CHECK_INT(start(2, &s, &x), ==, UV_EINVAL);
  s = spec_for("/ok", 2000);
  s.body_limit = 3;
  s.expect_body = "four";
  CHECK_INT(start(2, &s, &x), ==, UV_EINVAL);
  s.body_limit = (size_t)DSP_PROBE_BODY_LIMIT_MAX + 1;
  s.expect_body = NULL;
  CHECK_INT(start(2, &s, &x), ==, UV_EINVAL);
  s = spec_for("/ok", 2000);
  s.url = NULL;
  CHECK_INT(start(2, &s, &x), ==, UV_EINVAL);
  s.url = "ftp://127.0.0.1/x";
  CHECK_INT(start(2, &s, &x), ==, UV_EINVAL);
  s.url = "127.0.0.1/ok";
  CHECK_INT(start(2, &s, &x), ==, UV_EINVAL);
  s.url = "http://127.0.0.1/a b";
  CHECK_INT(start(2, &s, &x), ==, UV_EINVAL);
  s.url = "http://";
  CHECK_INT(start(2, &s, &x), ==, UV_EINVAL);
  memset(longurl, 'a', sizeof(longurl) - 1);
  longurl[sizeof(longurl) - 1] = '\0';
  memcpy(longurl, "http://x/", 9);
  s.url = longurl;
  CHECK_INT(start(2, &s, &x), ==, UV_EINVAL);
  s.url = "HTTP://127.0.0.1:1/"; /* scheme is case-insensitive */
  CHECK_INT(start(3, &s, &x), ==, 0);
  dsp_probe_cancel(prober, 3);
  dsp_prober_stats(prober, &st);
  CHECK_INT(st.started, ==, 2);
  CHECK_INT(st.in_flight, ==, 1);
  CHECK(run_until(&ndone, 1, 10000) == 0);
  CHECK(a.r.ok && x.called == 0);
  CHECK(teardown(1) == 0);
}

/* --- benchmark ---------------------------------------------------------- */

static int bench_n, bench_window, bench_started, bench_ok;
static char bench_base[64];

static void on_bench(void *arg, const dsp_probe_result *r);

static int bench_start_one(void) {
  char u[128];
  dsp_probe_spec s;
  int i = bench_started++;
  memset(&s, 0, sizeof(s));
  snprintf(u, sizeof(u), "%s/ok/%d", bench_base, i);
  s.url = u;
  s.timeout_ms = 10000;
  return dsp_probe_start(prober, (uint64_t)i, &s, on_bench, NULL);
}

static void on_bench(void *arg, const dsp_probe_result *r) {
  (void)arg;
  ndone++;
  if (r->ok) bench_ok++;
  else if (bench_ok == 0 || ndone - bench_ok < 5) fprintf(stderr, "bench: %s\n", r->reason);
  if (bench_started < bench_n && bench_start_one() != 0) abort();
}

static int env_int(const char *name, int dflt) {
  const char *v = getenv(name);
  long long x;
  return v && dsp_parse_int(v, 1, 100000000, &x) == 0 ? (int)x : dflt;
}

static void test_bench(void) {
  int pfd[2], port = 0;
  pid_t pid;
  uint64_t t0, t1;
  struct timespec ts;
  double rate;
  dsp_probe_stats st;
  const char *min = getenv("DSP_PROBE_BENCH_MIN_RATE");
  bench_n = env_int("DSP_PROBE_BENCH_N", 20000);
  bench_window = env_int("DSP_PROBE_BENCH_WINDOW", 256);
  bench_started = bench_ok = 0;
  CHECK(pipe(pfd) == 0);
  pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) { /* the responder, on its own core */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(pfd[0]);
    if (uv_loop_init(&loop) != 0 || server_start(&loop, &srv, 0) != 0) _exit(1);
    if (write(pfd[1], &srv.port, sizeof(srv.port)) != (ssize_t)sizeof(srv.port)) _exit(1);
    uv_run(&loop, UV_RUN_DEFAULT);
    _exit(0);
  }
  close(pfd[1]);
  CHECK(read(pfd[0], &port, sizeof(port)) == (ssize_t)sizeof(port));
  close(pfd[0]);
  snprintf(bench_base, sizeof(bench_base), "http://127.0.0.1:%d", port);
  CHECK(setup(NULL) == 0); /* its own responder stays idle */
  clock_gettime(CLOCK_MONOTONIC, &ts);
  t0 = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
  while (bench_started < bench_window && bench_started < bench_n) CHECK(bench_start_one() == 0);
  CHECK(run_until(&ndone, bench_n, 300000) == 0);
  clock_gettime(CLOCK_MONOTONIC, &ts);
  t1 = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
  rate = (double)bench_n * 1e6 / (double)(t1 - t0);
  dsp_prober_stats(prober, &st);
  printf("bench: %d probes, %d in flight, %.0f probes/s, %" PRIu64 " easy handles, %" PRIu64
         " connections\n",
         bench_n, bench_window, rate, st.easy_created, st.connects);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  CHECK_INT(bench_ok, ==, bench_n);
  CHECK_INT(st.easy_created, <=, bench_window + 16);
  CHECK_INT(st.connects, <=, 2 * bench_window);
  if (min != NULL) CHECK(rate >= atof(min));
  CHECK(teardown(1) == 0);
}

static const test_entry tests[] = {
    TEST(test_ok),      TEST(test_status),  TEST(test_body),   TEST(test_body_too_large),
    TEST(test_redirect), TEST(test_refused), TEST(test_local), TEST(test_timeout), TEST(test_dns),
    TEST(test_cancel),  TEST(test_idle_closed), TEST(test_many),    TEST(test_close),  TEST(test_close_in_callback),
    TEST(test_bad_args), TEST(test_bench), TEST(test_many_hosts),
};

TEST_MAIN(tests)
