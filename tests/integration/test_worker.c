/*
 * test_worker.c: dispatch-worker, the controllable HTTP worker that other
 * tests, scripts/cluster.sh and the probe benchmark stand on. Each scenario
 * starts a real worker on a free port (--listen 127.0.0.1:0; the port comes
 * from its "listening on" line) and talks to it with libcurl and with raw
 * sockets that pipeline, split requests and misbehave. Every worker must
 * exit 0 on SIGTERM (or /control/exit) without a sanitizer report.
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <curl/curl.h>
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

#include "harness.h"
#include "test.h"

static pid_t pid;
static int port;
static char logpath[512];
static CURLcode last_rc;

/* ---- the worker process ---------------------------------------------------- */

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  char *buf;
  long n;
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)n + 1);
  if (buf != NULL) buf[fread(buf, 1, (size_t)n, f)] = '\0';
  fclose(f);
  return buf;
}

static void show_log(void) {
  char *s = slurp(logpath);
  fprintf(stderr, "---- %s\n%s----\n", logpath, s ? s : "(none)");
  free(s);
}

/* Spawn dispatch-worker with `extra` (NULL-terminated) after --listen; its
   port into `port`. Returns 0, or -1 after printing why. */
static int start(const char *const *extra) {
  static int seq;
  char *argv[32];
  int n = 0;
  uint64_t end = th_now_ms() + 20000;
  argv[n++] = (char *)th_bin("dispatch-worker");
  argv[n++] = "--listen";
  argv[n++] = "127.0.0.1:0";
  while (extra != NULL && *extra != NULL && n < 31) argv[n++] = (char *)*extra++;
  argv[n] = NULL;
  snprintf(logpath, sizeof(logpath), "%s/worker-%d.log", th_tmpdir(), seq++);
  pid = th_spawn(logpath, argv);
  port = 0;
  while (pid > 0 && th_now_ms() < end) {
    char *s = slurp(logpath), *p = s ? strstr(s, "listening on 127.0.0.1:") : NULL;
    if (p != NULL && strchr(p, '\n') != NULL)
      port = (int)strtol(p + strlen("listening on 127.0.0.1:"), NULL, 10);
    free(s);
    if (port > 0) return 0;
    if (th_wait_exit(pid, 0) != -1) break;
    th_sleep_ms(10);
  }
  fprintf(stderr, "worker did not start listening\n");
  show_log();
  return -1;
}

/* 1 if the worker exited with status 0 within 10 s and logged no
   sanitizer report. */
static int exited_cleanly(void) {
  int status = th_wait_exit(pid, 10000);
  int ok = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!ok) fprintf(stderr, "worker did not exit 0 (status %d)\n", status);
  if (th_log_has(logpath, "Sanitizer", 0) || th_log_has(logpath, "runtime error:", 0) ||
      th_log_has(logpath, "handles still open", 0)) {
    fprintf(stderr, "sanitizer report or leaked handles\n");
    ok = 0;
  }
  if (!ok) show_log();
  pid = 0;
  return ok;
}

/* SIGTERM; 1 if it exited cleanly. */
static int stop(void) {
  th_signal(pid, SIGTERM);
  return exited_cleanly();
}

/* ---- libcurl --------------------------------------------------------------- */

typedef struct {
  char *p;
  size_t len, cap;
} sink;

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  sink *s = ud;
  size_t k = size * n, room = s->cap - 1 - s->len;
  memcpy(s->p + s->len, p, k < room ? k : room);
  s->len += k < room ? k : room;
  s->p[s->len] = '\0';
  return k;
}

/* One request on handle h (NULL: a fresh connection). Returns the status,
   or -1 with the curl error in last_rc. */
static long request_on(CURL *h, const char *method, const char *path, long timeout_ms, char *body,
                       size_t cap) {
  static int inited;
  char url[256], dummy[64];
  sink s = {body ? body : dummy, 0, body ? cap : sizeof(dummy)};
  CURL *own = NULL;
  long code = -1;
  if (!inited) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    inited = 1;
  }
  if (h == NULL) h = own = curl_easy_init();
  s.p[0] = '\0';
  snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
  /* POSTFIELDS NULL would make a chunked POST; HTTPGET resets that. */
  if (strcmp(method, "POST") == 0) curl_easy_setopt(h, CURLOPT_POSTFIELDS, "x=1");
  else curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") == 0 ? NULL : method);
  last_rc = curl_easy_perform(h);
  if (last_rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  else fprintf(stderr, "curl %s %s: %s\n", method, path, curl_easy_strerror(last_rc));
  if (own) curl_easy_cleanup(own);
  return code;
}

static long get(const char *path, char *body, size_t cap) {
  return request_on(NULL, "GET", path, 10000, body, cap);
}

/* 1 if GET path answers `status` with exactly `body`. */
static int says(const char *path, long status, const char *want) {
  char body[1024];
  long code = get(path, body, sizeof(body));
  if (code == status && strcmp(body, want) == 0) return 1;
  fprintf(stderr, "GET %s: %ld '%s', want %ld '%s'\n", path, code, body, status, want);
  return 0;
}

/* ---- raw sockets ------------------------------------------------------------ */

static int send_str(int fd, const char *s) {
  size_t n = strlen(s);
  return write(fd, s, n) == (ssize_t)n ? 0 : -1;
}

/* Complete responses at the start of buf[0, len): statuses and bodies
   (truncated to 63 bytes) into st[]/bodies[] up to max. Returns the count. */
static int parse_responses(const char *buf, size_t len, int *st, char (*bodies)[64], int max) {
  size_t pos = 0;
  int n = 0;
  while (n < max) {
    const char *h = buf + pos, *end = memmem(h, len - pos, "\r\n\r\n", 4), *cl;
    size_t hl, bl;
    if (end == NULL) break;
    hl = (size_t)(end - h) + 4;
    cl = memmem(h, hl, "Content-Length: ", 16);
    if (cl == NULL || sscanf(h, "HTTP/1.1 %d", &st[n]) != 1) break;
    bl = (size_t)strtoul(cl + 16, NULL, 10);
    if (pos + hl + bl > len) break;
    snprintf(bodies[n], 64, "%.*s", (int)(bl < 63 ? bl : 63), h + hl);
    pos += hl + bl;
    n++;
  }
  return n;
}

/* Send req (may be large) while reading, until `want` responses have come;
   statuses and bodies as parse_responses(). Returns the count read (less
   than want on timeout or close). */
static int exchange(int fd, const char *req, size_t reqlen, int want, int *st, char (*bodies)[64],
                    int timeout_ms) {
  size_t cap = 1 << 20, len = 0, sent = 0;
  char *buf = malloc(cap);
  uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
  int got = 0;
  while (buf != NULL && got < want && th_now_ms() < end) {
    struct pollfd p = {fd, (short)(POLLIN | (sent < reqlen ? POLLOUT : 0)), 0};
    if (poll(&p, 1, 100) <= 0) continue;
    if ((p.revents & POLLOUT) && sent < reqlen) {
      ssize_t w = send(fd, req + sent, reqlen - sent, MSG_DONTWAIT);
      if (w > 0) sent += (size_t)w;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r;
      if (len == cap) {
        char *nb = realloc(buf, cap * 2);
        if (nb == NULL) break;
        buf = nb;
        cap *= 2;
      }
      r = recv(fd, buf + len, cap - len, MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN)) break;
      if (r > 0) len += (size_t)r;
      got = parse_responses(buf, len, st, bodies, want);
    }
  }
  free(buf);
  return got;
}

/* One request on its own connection. 1 if it is answered with `status`
   (and `body`, unless NULL) and the connection is then closed by the
   server or not, as `want_close` says (a close is waited for up to 5 s; an
   open connection is watched for 200 ms). */
static int raw_once(const char *req, int status, const char *body, int want_close) {
  int st[1], fd = th_connect(port), got, closed = 0;
  char bodies[1][64];
  uint64_t end;
  if (fd < 0) return 0;
  got = exchange(fd, req, strlen(req), 1, st, bodies, 10000);
  end = th_now_ms() + (want_close ? 5000 : 200);
  while (got == 1 && th_now_ms() < end) {
    struct pollfd p = {fd, POLLIN, 0};
    char tmp[256];
    if (poll(&p, 1, 50) == 1 && recv(fd, tmp, sizeof(tmp), 0) <= 0) {
      closed = 1;
      break;
    }
  }
  close(fd);
  if (got == 1 && st[0] == status && (body == NULL || strcmp(bodies[0], body) == 0) &&
      closed == want_close)
    return 1;
  fprintf(stderr, "request '%.40s': got %d, status %d '%s', closed %d\n", req, got,
          got ? st[0] : 0, got ? bodies[0] : "", closed);
  return 0;
}

/* 1 if nothing arrives on fd within ms (and it is not closed). */
static int silent_for(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, ms) == 0;
}

/* ---- scenarios ------------------------------------------------------------- */

static void test_flags(void) {
  static const struct {
    const char *a, *b, *c, *msg;
  } cases[] = {
      {"--bogus", NULL, NULL, "unknown option"},
      {"--name", "x", NULL, "--listen HOST:PORT is required"},
      {"--listen", "nope", NULL, "--listen:"},
      {"--listen", "127.0.0.1:65536", NULL, "--listen:"},
      {"--listen", "localhost:0", NULL, "numeric"},
      {"--listen", "127.0.0.1:0", "--identities=100001", "--identities:"},
      {"--listen", "127.0.0.1:0", "--mode=exit", "--mode:"},
      {"--listen", "127.0.0.1:0", "--delay-ms=-1", "--delay-ms:"},
      {"--listen", "127.0.0.1:0", "--name=a/b", "--name:"},
      {"--listen", "127.0.0.1:0", "--name", "needs a value"},
  };
  char log[512];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *argv[] = {(char *)th_bin("dispatch-worker"), (char *)cases[i].a, (char *)cases[i].b,
                    (char *)cases[i].c, NULL};
    int status;
    snprintf(log, sizeof(log), "%s/flags-%zu.log", th_tmpdir(), i);
    status = th_wait_exit(th_spawn(log, argv), 10000);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 2 ||
        !th_log_has(log, cases[i].msg, 0)) {
      fprintf(stderr, "case %zu: status %d, want exit 2 and '%s'\n", i, status, cases[i].msg);
      CHECK(0);
    }
  }
  {
    char *argv[] = {(char *)th_bin("dispatch-worker"), "--help", NULL};
    int status;
    snprintf(log, sizeof(log), "%s/help.log", th_tmpdir());
    status = th_wait_exit(th_spawn(log, argv), 10000);
    CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(th_log_has(log, "Usage: dispatch-worker", 0));
  }
}

static void test_health(void) {
  const char *args[] = {"--name", "n1", "--identities", "10", NULL};
  CURL *h;
  long conns = -1;
  CHECK(start(args) == 0);
  CHECK(says("/health", 200, "ok n1\n"));
  CHECK(says("/", 200, "n1\n"));
  CHECK(says("/w/3/health", 200, "ok n1-3\n"));
  CHECK(says("/w/3/", 200, "n1-3\n"));
  CHECK(says("/w/0/health", 200, "ok n1-0\n"));
  CHECK(says("/w/9/health", 200, "ok n1-9\n"));
  CHECK(says("/health?probe=1", 200, "ok n1\n"));
  CHECK_INT(get("/w/10/health", NULL, 0), ==, 404);
  CHECK_INT(get("/w/03/health", NULL, 0), ==, 404);
  CHECK_INT(get("/w/3", NULL, 0), ==, 404);
  CHECK_INT(get("/w//health", NULL, 0), ==, 404);
  CHECK_INT(get("/nope", NULL, 0), ==, 404);
  CHECK_INT(get("/health/", NULL, 0), ==, 404);
  CHECK_INT(request_on(NULL, "DELETE", "/health", 10000, NULL, 0), ==, 405);
  CHECK_INT(request_on(NULL, "PUT", "/w/1/control/ok", 10000, NULL, 0), ==, 405);
  CHECK_INT(request_on(NULL, "DELETE", "/nope", 10000, NULL, 0), ==, 404);
  CHECK_INT(request_on(NULL, "POST", "/health", 10000, NULL, 0), ==, 200);
  /* Keep-alive: the second request reuses the first one's connection. */
  h = curl_easy_init();
  CHECK(h != NULL);
  CHECK_INT(request_on(h, "GET", "/health", 10000, NULL, 0), ==, 200);
  CHECK_INT(request_on(h, "POST", "/w/1/health", 10000, NULL, 0), ==, 200);
  curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &conns);
  curl_easy_cleanup(h);
  CHECK_INT(conns, ==, 0);
  CHECK(stop());
}

static void test_modes(void) {
  const char *args[] = {"--name", "m", "--identities", "4", NULL};
  CHECK(start(args) == 0);
  CHECK(says("/control/fail", 200, "mode fail\n"));
  CHECK(says("/health", 500, "fail m\n"));
  CHECK(says("/", 500, "fail m\n"));
  CHECK(says("/w/1/health", 500, "fail m-1\n"));
  CHECK(says("/control/ok", 200, "mode ok\n"));
  CHECK(says("/health", 200, "ok m\n"));
  CHECK(says("/w/1/health", 200, "ok m-1\n"));
  /* One identity only. */
  CHECK(says("/w/2/control/fail", 200, "mode fail\n"));
  CHECK(says("/w/2/health", 500, "fail m-2\n"));
  CHECK(says("/w/2/", 500, "fail m-2\n"));
  CHECK(says("/w/3/health", 200, "ok m-3\n"));
  CHECK(says("/health", 200, "ok m\n"));
  CHECK_INT(request_on(NULL, "POST", "/w/2/control/ok", 10000, NULL, 0), ==, 200);
  CHECK(says("/w/2/health", 200, "ok m-2\n"));
  /* Bad modes and ms. */
  CHECK_INT(get("/control/bogus", NULL, 0), ==, 400);
  CHECK_INT(get("/control/", NULL, 0), ==, 400);
  CHECK_INT(get("/w/1/control/OK", NULL, 0), ==, 400);
  CHECK_INT(get("/control/slow?ms=abc", NULL, 0), ==, 400);
  CHECK_INT(get("/control/slow?ms=3600001", NULL, 0), ==, 400);
  CHECK_INT(get("/w/9/control/ok", NULL, 0), ==, 404);
  CHECK(says("/health", 200, "ok m\n"));
  CHECK(th_log_has(logpath, "m-2: mode fail", 0));
  CHECK(th_log_has(logpath, "all identities: mode ok", 0));
  CHECK(stop());
}

static void test_hang(void) {
  const char *args[] = {"--name", "h", "--identities", "4", NULL};
  const char *two = "GET /w/1/health HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  int fd;
  CHECK(start(args) == 0);
  CHECK(says("/w/1/control/hang", 200, "mode hang\n"));
  /* A hung request and the one pipelined behind it stay unanswered while
     another connection is served. */
  fd = th_connect(port);
  CHECK(fd >= 0);
  CHECK(send_str(fd, two) == 0);
  CHECK(says("/health", 200, "ok h\n"));
  CHECK(says("/w/2/health", 200, "ok h-2\n"));
  CHECK(request_on(NULL, "GET", "/w/1/health", 300, NULL, 0) == -1);
  CHECK_INT(last_rc, ==, CURLE_OPERATION_TIMEDOUT);
  CHECK(says("/health", 200, "ok h\n"));
  if (!silent_for(fd, 300)) {
    close(fd);
    CHECK(0);
  }
  /* Hanging now: fd's; at most: fd's and the one curl gave up on. */
  {
    char body[512];
    CHECK_INT(get("/stats", body, sizeof(body)), ==, 200);
    if (strstr(body, "\"hanging\":1,\"hanging_peak\":2}") == NULL) {
      fprintf(stderr, "stats: %s", body);
      close(fd);
      CHECK(0);
    }
  }
  /* Control still answers at once; a hung request stays hung. */
  CHECK(says("/control/hang", 200, "mode hang\n"));
  CHECK(request_on(NULL, "GET", "/health", 300, NULL, 0) == -1);
  CHECK_INT(last_rc, ==, CURLE_OPERATION_TIMEDOUT);
  CHECK(request_on(NULL, "GET", "/", 300, NULL, 0) == -1);
  CHECK_INT(get("/stats", NULL, 0), ==, 200); /* stats and control never hang */
  CHECK(says("/control/ok", 200, "mode ok\n"));
  CHECK(says("/w/1/health", 200, "ok h-1\n"));
  if (!silent_for(fd, 100)) {
    close(fd);
    CHECK(0);
  }
  close(fd);
  CHECK(stop());
}

static void test_slow(void) {
  const char *args[] = {"--name", "s", "--identities", "4", "--delay-ms", "30000", NULL};
  const char *two = "GET /w/2/health HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /w/3/ HTTP/1.1\r\nHost: x\r\n\r\n";
  char bodies[2][64];
  int st[2], fd;
  uint64_t t0;
  CHECK(start(args) == 0);
  CHECK(says("/control/slow?ms=200", 200, "mode slow\n"));
  t0 = th_now_ms();
  CHECK(says("/health", 200, "ok s\n"));
  CHECK_INT(th_now_ms() - t0, >=, 200);
  t0 = th_now_ms();
  CHECK(says("/w/1/", 200, "s-1\n"));
  CHECK_INT(th_now_ms() - t0, >=, 200);
  CHECK(th_log_has(logpath, "all identities: mode slow (200 ms)", 0));
  CHECK(says("/control/ok", 200, "mode ok\n"));
  /* Pipelined behind a slow one: answered after it, in order. */
  CHECK(says("/w/2/control/slow?ms=200", 200, "mode slow\n"));
  fd = th_connect(port);
  CHECK(fd >= 0);
  t0 = th_now_ms();
  CHECK_INT(exchange(fd, two, strlen(two), 2, st, bodies, 10000), ==, 2);
  CHECK_INT(th_now_ms() - t0, >=, 200);
  close(fd);
  CHECK_INT(st[0], ==, 200);
  CHECK_STR(bodies[0], "ok s-2\n");
  CHECK_INT(st[1], ==, 200);
  CHECK_STR(bodies[1], "s-3\n");
  /* A slow request (the --delay-ms default, 30 s) does not hold up another
     connection; it is still pending when that one is answered. */
  CHECK(says("/w/1/control/slow", 200, "mode slow\n"));
  fd = th_connect(port);
  CHECK(fd >= 0);
  CHECK(send_str(fd, "GET /w/1/health HTTP/1.1\r\nHost: x\r\n\r\n") == 0);
  CHECK(says("/health", 200, "ok s\n"));
  CHECK(says("/w/1/stats", 200, "{\"name\":\"s-1\",\"health_requests\":1,\"mode\":\"slow\"}\n"));
  if (!silent_for(fd, 0)) {
    close(fd);
    CHECK(0);
  }
  /* Left pending: SIGTERM must still exit cleanly. */
  CHECK(stop());
  close(fd);
}

static void test_pipeline(void) {
  const char *args[] = {"--name", "p", "--identities", "4", "--quiet", NULL};
  const char *two = "GET /w/1/health HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /w/2/ HTTP/1.1\r\nHost: x\r\n\r\n";
  const char *body = "POST /w/1/health HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                     "\r\nGET /w/3/health HTTP/1.1\r\n\r\n";
  char bodies[2][64];
  int st[2], fd, n = 3000, got;
  char *many, *p;
  int *mst;
  char (*mbodies)[64];
  CHECK(start(args) == 0);
  /* Two requests in one write: two answers in order. */
  fd = th_connect(port);
  CHECK(fd >= 0);
  got = exchange(fd, two, strlen(two), 2, st, bodies, 10000);
  CHECK_INT(got, ==, 2);
  CHECK_INT(st[0], ==, 200);
  CHECK_STR(bodies[0], "ok p-1\n");
  CHECK_INT(st[1], ==, 200);
  CHECK_STR(bodies[1], "p-2\n");
  /* A request split across writes, then one with a body, on the same
     connection. */
  CHECK(send_str(fd, "GET /w/0/hea") == 0);
  th_sleep_ms(50);
  CHECK(send_str(fd, "lth HTTP/1.1\r\nHo") == 0);
  th_sleep_ms(50);
  got = exchange(fd, "st: x\r\n\r\n", 9, 1, st, bodies, 10000);
  CHECK_INT(got, ==, 1);
  CHECK_STR(bodies[0], "ok p-0\n");
  got = exchange(fd, body, strlen(body), 2, st, bodies, 10000);
  CHECK_INT(got, ==, 2);
  CHECK_STR(bodies[0], "ok p-1\n");
  CHECK_STR(bodies[1], "ok p-3\n");
  close(fd);
  /* Thousands pipelined, sent while reading back (replies outgrow what the
     worker queues before it stops reading). */
  many = malloc((size_t)n * 64);
  mst = malloc(sizeof(int) * (size_t)n);
  mbodies = malloc(sizeof(*mbodies) * (size_t)n);
  if (many == NULL || mst == NULL || mbodies == NULL) {
    free(many);
    free(mst);
    free(mbodies);
    CHECK(0);
  }
  p = many;
  for (int i = 0; i < n; i++) p += sprintf(p, "GET /w/%d/health HTTP/1.1\r\n\r\n", i % 4);
  fd = th_connect(port);
  got = fd < 0 ? -1 : exchange(fd, many, (size_t)(p - many), n, mst, mbodies, 60000);
  if (fd >= 0) close(fd);
  for (int i = 0; i < got; i++) {
    char want[64];
    snprintf(want, sizeof(want), "ok p-%d\n", i % 4);
    if (mst[i] != 200 || strcmp(mbodies[i], want) != 0) {
      fprintf(stderr, "reply %d: %d '%s'\n", i, mst[i], mbodies[i]);
      got = -2;
      break;
    }
  }
  free(many);
  free(mst);
  free(mbodies);
  CHECK_INT(got, ==, n);
  CHECK(stop());
}

static void test_bad_requests(void) {
  static const struct {
    const char *req;
    int status, closed;
  } cases[] = {
      {"GARBAGE\r\n\r\n", 400, 1},
      {"GET health HTTP/1.1\r\n\r\n", 400, 1},
      {"GET /health HTTP/1.1\r\nBad Header: x\r\n\r\n", 400, 1},
      {"GET /health HTTP/1.1\r\n folded: x\r\n\r\n", 400, 1},
      {"GET /health HTTP/2.0\r\n\r\n", 505, 1},
      {"GET /health HTTP/1.1 extra\r\n\r\n", 400, 1},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, 1},
      {"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 413, 1},
      {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, 1},
      {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, 1},
      /* Connection handling: 1.0 closes unless keep-alive; 1.1 honours
         close; bare LF line ends are read; methods are case-sensitive. */
      {"GET /health HTTP/1.0\r\n\r\n", 200, 1},
      {"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n", 200, 1},
      {"GET /health HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", 200, 0},
      {"GET /health HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 200, 0},
      {"GET /health HTTP/1.1\n\n", 200, 0},
      {"\r\nGET /health HTTP/1.1\r\n\r\n", 200, 0},
      {"get /health HTTP/1.1\r\n\r\n", 405, 0},
  };
  const char *args[] = {"--name", "b", NULL};
  const char *prefix = "GET /health HTTP/1.1\r\nX-Big: ";
  char *big;
  int ok;
  CHECK(start(args) == 0);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    CHECK(raw_once(cases[i].req, cases[i].status, NULL, cases[i].closed));
  CHECK(raw_once("GET /health HTTP/1.0\r\n\r\n", 200, "ok b\n", 1));
  /* A head over 8 KiB, and one just under. */
  big = malloc(10000);
  CHECK(big != NULL);
  strcpy(big, prefix);
  memset(big + strlen(prefix), 'a', 9000);
  strcpy(big + strlen(prefix) + 9000, "\r\n\r\n");
  ok = raw_once(big, 431, "request head over 8 KiB\n", 1);
  strcpy(big, prefix);
  memset(big + strlen(prefix), 'a', 8000);
  strcpy(big + strlen(prefix) + 8000, "\r\n\r\n");
  ok = ok && raw_once(big, 200, "ok b\n", 0);
  free(big);
  CHECK(ok);
  /* Clients that vanish mid-request or mid-body. */
  {
    int fd = th_connect(port);
    CHECK(fd >= 0);
    CHECK(send_str(fd, "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc") == 0);
    close(fd);
    fd = th_connect(port);
    CHECK(fd >= 0);
    CHECK(send_str(fd, "GET /hea") == 0);
    close(fd);
  }
  CHECK(says("/health", 200, "ok b\n"));
  CHECK(stop());
}

static void test_stats(void) {
  const char *args[] = {"--name", "st", "--identities", "4", NULL};
  const char *none[] = {"--name", "solo", NULL};
  CHECK(start(args) == 0);
  CHECK(says("/health", 200, "ok st\n"));
  CHECK(says("/health", 200, "ok st\n"));
  for (int i = 0; i < 3; i++) CHECK(says("/w/0/health", 200, "ok st-0\n"));
  CHECK(says("/w/1/health", 200, "ok st-1\n"));
  CHECK(says("/w/0/", 200, "st-0\n"));
  /* 7 before, and this one. */
  CHECK(says("/stats", 200,
             "{\"name\":\"st\",\"identities\":4,\"requests\":8,\"health_requests\":6,"
             "\"min_health\":0,\"max_health\":3,\"hanging\":0,\"hanging_peak\":0}\n"));
  CHECK(says("/w/0/stats", 200, "{\"name\":\"st-0\",\"health_requests\":3,\"mode\":\"ok\"}\n"));
  CHECK(says("/w/3/control/fail", 200, "mode fail\n"));
  CHECK(says("/w/3/stats", 200, "{\"name\":\"st-3\",\"health_requests\":0,\"mode\":\"fail\"}\n"));
  CHECK(says("/w/3/health", 500, "fail st-3\n"));
  CHECK(says("/w/2/health", 200, "ok st-2\n"));
  CHECK(says("/stats", 200,
             "{\"name\":\"st\",\"identities\":4,\"requests\":14,\"health_requests\":8,"
             "\"min_health\":1,\"max_health\":3,\"hanging\":0,\"hanging_peak\":0}\n"));
  CHECK(stop());
  /* Without --identities, min and max are the default identity's. */
  CHECK(start(none) == 0);
  CHECK(says("/health", 200, "ok solo\n"));
  CHECK(says("/health", 200, "ok solo\n"));
  CHECK(says("/stats", 200,
             "{\"name\":\"solo\",\"identities\":0,\"requests\":3,\"health_requests\":2,"
             "\"min_health\":2,\"max_health\":2,\"hanging\":0,\"hanging_peak\":0}\n"));
  CHECK_INT(get("/w/0/health", NULL, 0), ==, 404);
  CHECK(stop());
}

static void test_signals(void) {
  const char *args[] = {"--name", "sg", "--identities", "2", NULL};
  CHECK(start(args) == 0);
  th_signal(pid, SIGUSR1);
  CHECK(th_wait_log(logpath, "all identities: mode fail by SIGUSR1", 0, 10000));
  CHECK(says("/health", 500, "fail sg\n"));
  CHECK(says("/w/1/health", 500, "fail sg-1\n"));
  th_signal(pid, SIGUSR2);
  CHECK(th_wait_log(logpath, "all identities: mode hang by SIGUSR2", 0, 10000));
  CHECK(request_on(NULL, "GET", "/health", 300, NULL, 0) == -1);
  CHECK_INT(last_rc, ==, CURLE_OPERATION_TIMEDOUT);
  th_signal(pid, SIGHUP);
  CHECK(th_wait_log(logpath, "all identities: mode ok by SIGHUP", 0, 10000));
  CHECK(says("/health", 200, "ok sg\n"));
  CHECK(says("/w/0/health", 200, "ok sg-0\n"));
  CHECK(stop());
}

static void test_exit(void) {
  const char *args[] = {"--name", "e", "--identities", "2", NULL};
  int fd;
  CHECK(start(args) == 0);
  /* Other connections (one hung) do not keep it alive. */
  CHECK(says("/w/1/control/hang", 200, "mode hang\n"));
  fd = th_connect(port);
  CHECK(fd >= 0);
  CHECK(send_str(fd, "GET /w/1/health HTTP/1.1\r\n\r\n") == 0);
  CHECK(says("/health", 200, "ok e\n"));
  CHECK(says("/control/exit", 200, "mode exit\n"));
  CHECK(exited_cleanly());
  close(fd);
  CHECK(th_log_has(logpath, "exit requested", 0));
}

static void test_sigterm(void) {
  const char *args[] = {"--name", "t", "--identities", "3", NULL};
  int fds[4];
  CHECK(start(args) == 0);
  CHECK(says("/w/1/control/hang", 200, "mode hang\n"));
  CHECK(says("/w/2/control/slow?ms=60000", 200, "mode slow\n"));
  for (int i = 0; i < 4; i++) CHECK((fds[i] = th_connect(port)) >= 0);
  CHECK(send_str(fds[0], "GET /w/1/health HTTP/1.1\r\n\r\n") == 0);     /* hung */
  CHECK(send_str(fds[1], "GET /w/2/health HTTP/1.1\r\n\r\nGET /") == 0); /* slow + kept */
  CHECK(send_str(fds[2], "GET /health HTTP/1.1\r\nHost:") == 0);      /* partial */
  CHECK(says("/health", 200, "ok t\n"));                              /* fds[3] idle */
  CHECK(stop());
  for (int i = 0; i < 4; i++) close(fds[i]);
  CHECK(th_log_has(logpath, "received SIGTERM; exiting", 0));
}

/* One process, many identities and connections: what the probe benchmark
   does, in small. */
static void test_many(void) {
  const char *args[] = {"--name", "big", "--identities", "10000", "--quiet", NULL};
  int n = 10000, nconn = 200, got, fds[200];
  char *reqs, *p, body[512];
  int *st;
  char (*bodies)[64];
  CHECK(start(args) == 0);
  reqs = malloc((size_t)n * 48);
  st = malloc(sizeof(int) * (size_t)n);
  bodies = malloc(sizeof(*bodies) * (size_t)n);
  if (reqs == NULL || st == NULL || bodies == NULL) {
    free(reqs);
    free(st);
    free(bodies);
    CHECK(0);
  }
  p = reqs;
  for (int i = 0; i < n; i++) p += sprintf(p, "GET /w/%d/health HTTP/1.1\r\n\r\n", i);
  {
    int fd = th_connect(port);
    got = fd < 0 ? -1 : exchange(fd, reqs, (size_t)(p - reqs), n, st, bodies, 60000);
    if (fd >= 0) close(fd);
  }
  for (int i = 0; i < got; i++) {
    char want[64];
    snprintf(want, sizeof(want), "ok big-%d\n", i);
    if (st[i] != 200 || strcmp(bodies[i], want) != 0) {
      got = -2;
      break;
    }
  }
  free(reqs);
  free(st);
  free(bodies);
  CHECK_INT(got, ==, n);
  CHECK_INT(get("/w/10000/health", NULL, 0), ==, 404);
  /* Many connections at once, each with one request in flight. */
  for (int i = 0; i < nconn; i++) fds[i] = th_connect(port);
  got = 0;
  for (int i = 0; i < nconn; i++) {
    char req[64];
    if (fds[i] < 0) continue;
    snprintf(req, sizeof(req), "GET /w/%d/health HTTP/1.1\r\n\r\n", i);
    if (send_str(fds[i], req) != 0) continue;
  }
  for (int i = 0; i < nconn; i++) {
    int s1[1];
    char b1[1][64], want[64];
    snprintf(want, sizeof(want), "ok big-%d\n", i);
    if (fds[i] >= 0 && exchange(fds[i], "", 0, 1, s1, b1, 10000) == 1 && s1[0] == 200 &&
        strcmp(b1[0], want) == 0)
      got++;
    if (fds[i] >= 0) close(fds[i]);
  }
  CHECK_INT(got, ==, nconn);
  CHECK_INT(get("/stats", body, sizeof(body)), ==, 200);
  if (strstr(body, "\"identities\":10000,") == NULL || strstr(body, "\"min_health\":1,") == NULL ||
      strstr(body, "\"max_health\":2,") == NULL || strstr(body, "\"health_requests\":10200,") == NULL) {
    fprintf(stderr, "stats: %s", body);
    CHECK(0);
  }
  CHECK(stop());
}

static const test_entry tests[] = {
    TEST(test_flags),        TEST(test_health),  TEST(test_modes),   TEST(test_hang),
    TEST(test_slow),         TEST(test_pipeline), TEST(test_bad_requests),
    TEST(test_stats),        TEST(test_signals), TEST(test_exit),    TEST(test_sigterm),
    TEST(test_many),
};

TEST_MAIN(tests)
