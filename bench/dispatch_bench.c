/*
 * dispatch-bench: load a member with Route requests over C connections,
 * each keeping P requests in flight, for a duration; print requests per
 * second and latency percentiles. Like redis-benchmark (which scripts/
 * bench.sh runs beside it): one thread, one event loop.
 *
 *   dispatch-bench -s HOST:PORT [-c 50] [-P 16] [-d 10] [-R RATE] [--strategy S]
 *
 * Closed loop by default: each connection sends a new request as soon as a
 * reply comes back, so at saturation latency is the queue the server keeps
 * (connections x depth / throughput) and mostly measures throughput. With
 * -R it is open loop, as wrk2 does it: RATE requests a second in all, sent
 * on a fixed schedule (a 0.1 ms tick, round the connections, at most -P in
 * flight on each), whatever the replies do. A request that cannot go when
 * it is due (its server is behind) is timed from when it was due, not from
 * when it could be sent, so the server is charged for its queue (no
 * coordinated omission). That is the latency a client sees at a given
 * load.
 *
 * To keep the client's own cost low, requests are assembled by hand around
 * a pre-encoded RouteRequest (field 1: id varint; field 2: the route
 * body), and replies are read only as far as their id and body tag.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

#include "frame.h"
#include "rpc.h"
#include "util.h"

#define MAX_US 1000000 /* latency histogram: 1 us buckets up to 1 s */
#define RING 1024
#define TICK_US 100 /* -R: the schedule's tick */

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  dsp_framer in;
  uint64_t sent_at[RING];
  uint64_t next_id;
  int inflight;
  int id;
} conn;

static struct {
  uv_loop_t *loop;
  conn *conns;
  int nconns, depth;
  uint8_t body[64];
  /* A batch: -P is at most RING/2, a request at most header, id (1 + 10),
     body tag and length (2) and the body (64, checked when packed). */
  uint8_t out[(RING / 2) * (DSP_FRAME_HEADER + 13 + 64)];
  size_t body_len;
  uint64_t *hist;
  uint64_t done, counted, errors, overflow, started_ns, stop_ns;
  int stopping, connected, failed;
  /* -R: requests a second (0: closed loop); requests due so far are
     rate x elapsed, `issued` of them sent; `next` is the connection the
     next one goes to. */
  double rate;
  uint64_t issued, late, due_before; /* due_before: `due` at the last tick */
  int next, tick_fd, ticking;
  uv_poll_t tick;
} B;

static void on_written(uv_write_t *w, int status) {
  if (status < 0 && !B.stopping) {
    fprintf(stderr, "dispatch-bench: write: %s\n", uv_strerror(status));
    B.failed = 1;
  }
  free(w);
}

/* Send n requests on c in one write: straight away when the socket takes
   it all (no write request, whose completion costs libuv an epoll_ctl),
   else the rest through uv_write. Each is timed from `at` (ns). */
static void send_batch_at(conn *c, int n, uint64_t at) {
  uv_write_t *w;
  uint8_t *buf;
  size_t off = 0;
  uv_buf_t b;
  int rc;
  if (n <= 0) return;
  buf = B.out;
  for (int i = 0; i < n; i++) {
    uint8_t *f = buf + off;
    size_t m = DSP_FRAME_HEADER;
    uint64_t id = ++c->next_id;
    f[m++] = 0x08; /* field 1, varint: id */
    m += dsp_varint_put(f + m, id);
    f[m++] = 0x12; /* field 2, length-delimited: route */
    f[m++] = (uint8_t)B.body_len;
    memcpy(f + m, B.body, B.body_len);
    m += B.body_len;
    dsp_frame_put_header(f, (uint32_t)(m - DSP_FRAME_HEADER));
    c->sent_at[id % RING] = at;
    off += m;
  }
  c->inflight += n;
  b = uv_buf_init((char *)buf, (unsigned)off);
  rc = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (rc == (int)off) return;
  if (rc < 0 && rc != UV_EAGAIN) {
    if (!B.stopping) {
      fprintf(stderr, "dispatch-bench: write: %s\n", uv_strerror(rc));
      B.failed = 1;
    }
    return;
  }
  if (rc < 0) rc = 0;
  w = malloc(sizeof(*w) + off - (size_t)rc);
  if (w == NULL) {
    B.failed = 1;
    return;
  }
  memcpy(w + 1, buf + rc, off - (size_t)rc);
  b = uv_buf_init((char *)(w + 1), (unsigned)(off - (size_t)rc));
  if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
    free(w);
    B.failed = 1;
  }
}

static void send_batch(conn *c, int n) { send_batch_at(c, n, uv_hrtime()); }

/* -R: send every request due by now; request k is due at started_ns +
   k / rate. The schedule is kept by a tick (TICK_US), so a request waits up
   to a tick in the client before it goes: that wait is the client's, and a
   request that became due since the last tick is timed from now. One that
   was due by the last tick and could not go then (all places full: the
   server is behind) is timed from the moment it was due. Requests go round
   the connections in turn; one whose -P places are full is skipped. */
static void send_due(void) {
  uint64_t now = uv_hrtime();
  double per = 1e9 / B.rate;
  uint64_t due = (uint64_t)((double)(now - B.started_ns) / per);
  int full = 0;
  while (B.issued < due && full < B.nconns) {
    conn *c = &B.conns[B.next];
    B.next = (B.next + 1) % B.nconns;
    if (c->inflight >= B.depth || uv_is_closing((uv_handle_t *)&c->tcp)) {
      full++;
      continue;
    }
    full = 0;
    send_batch_at(c, 1,
                  B.issued < B.due_before ? B.started_ns + (uint64_t)(per * (double)B.issued)
                                          : now);
    B.issued++;
  }
  B.late = due - B.issued;
  B.due_before = due;
}

static void on_tick(uv_poll_t *h, int status, int events) {
  uint64_t n;
  (void)h, (void)status, (void)events;
  if (read(B.tick_fd, &n, sizeof(n)) < 0 && errno != EAGAIN) B.failed = 1;
  if (!B.stopping) send_due();
}

/* The schedule's tick: a timerfd every TICK_US, polled on the loop (libuv's
   own timers run on a millisecond clock, which would send requests in
   bursts of rate / 1000). */
static int tick_start(void) {
  struct itimerspec its = {{0, TICK_US * 1000}, {0, TICK_US * 1000}};
  B.tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (B.tick_fd < 0 || timerfd_settime(B.tick_fd, 0, &its, NULL) != 0 ||
      uv_poll_init(B.loop, &B.tick, B.tick_fd) != 0 ||
      uv_poll_start(&B.tick, UV_READABLE, on_tick) != 0) {
    fprintf(stderr, "dispatch-bench: timerfd: %s\n", strerror(errno));
    return -1;
  }
  B.ticking = 1;
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf) {
  conn *c = h->data;
  uint8_t *p;
  size_t len;
  (void)sz;
  if (dsp_framer_reserve(&c->in, 65536, &p, &len) != 0) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init((char *)p, (unsigned)len);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn *c = s->data;
  const uint8_t *p;
  size_t len;
  int got = 0;
  uint64_t now = uv_hrtime();
  (void)buf;
  if (n < 0) {
    if (!B.stopping) {
      fprintf(stderr, "dispatch-bench: connection %d: %s\n", c->id, uv_strerror((int)n));
      B.failed = 1;
    }
    uv_close((uv_handle_t *)&c->tcp, NULL);
    return;
  }
  dsp_framer_commit(&c->in, (size_t)n);
  while (dsp_framer_next(&c->in, &p, &len) == DSP_FRAME_OK) {
    size_t off = 0;
    uint64_t id = 0, v, lat;
    int error = 1;
    /* Every top-level field: the id is the last field 1 (a follower
       appends the client's id), the body is field 3 (error) or 4 (route). */
    while (off < len) {
      uint64_t tag;
      if (dsp_varint_get(p, len, &off, &tag) != 0) break;
      if ((tag & 7) == 0) {
        if (dsp_varint_get(p, len, &off, &v) != 0) break;
        if (tag >> 3 == 1) id = v;
      } else if ((tag & 7) == 2) {
        if (dsp_varint_get(p, len, &off, &v) != 0 || v > len - off) break;
        error = (tag >> 3) != 4;
        off += v;
      } else {
        break;
      }
    }
    lat = (now - c->sent_at[id % RING]) / 1000;
    if (lat < MAX_US) B.hist[lat]++;
    else B.overflow++;
    if (error) B.errors++;
    B.done++;
    if (!B.stopping) B.counted++; /* throughput counts replies within the window */
    c->inflight--;
    got++;
  }
  if (B.rate > 0) {
    if (B.stopping && c->inflight == 0) uv_close((uv_handle_t *)&c->tcp, NULL);
  } else if (!B.stopping) send_batch(c, got);
  else if (c->inflight == 0) uv_close((uv_handle_t *)&c->tcp, NULL);
}

static void on_connect(uv_connect_t *r, int status) {
  conn *c = r->data;
  if (status < 0) {
    fprintf(stderr, "dispatch-bench: connect: %s\n", uv_strerror(status));
    B.failed = 1;
    uv_close((uv_handle_t *)&c->tcp, NULL);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (++B.connected == B.nconns) {
    B.started_ns = uv_hrtime();
    if (B.rate > 0 && tick_start() != 0) B.failed = 1;
  }
  if (B.rate == 0) send_batch(c, B.depth);
}

static void on_stop(uv_timer_t *t) {
  B.stopping = 1;
  B.stop_ns = uv_hrtime();
  if (B.ticking) uv_close((uv_handle_t *)&B.tick, NULL);
  for (int i = 0; i < B.nconns; i++)
    if (B.conns[i].inflight == 0 && !uv_is_closing((uv_handle_t *)&B.conns[i].tcp))
      uv_close((uv_handle_t *)&B.conns[i].tcp, NULL);
  uv_close((uv_handle_t *)t, NULL);
}

static double pct(double q, uint64_t total) {
  uint64_t want = (uint64_t)(q * (double)total), acc = 0;
  for (int i = 0; i < MAX_US; i++) {
    acc += B.hist[i];
    if (acc > want) return i / 1000.0;
  }
  return MAX_US / 1000.0;
}

static void usage(FILE *out) {
  fprintf(out,
          "Usage: dispatch-bench -s HOST:PORT [-c CONNS] [-P DEPTH] [-d SECONDS] [-R RATE]\n"
          "                      [--strategy S]\n"
          "Route requests over CONNS connections (default 50), DEPTH in flight on each\n"
          "(default 1), for SECONDS (default 10). Closed loop: a reply lets the next\n"
          "request go. With -R, open loop: RATE requests a second in all on a fixed\n"
          "schedule kept by a 0.1 ms tick, each timed from its tick; one held back longer\n"
          "is timed from when it was due (-P then caps the requests in flight per connection;\n"
          "raise it so that a slow reply does not hold the schedule back). Prints one\n"
          "line:\n"
          "  rps=… p50_ms=… p99_ms=… p999_ms=… requests=… errors=…\n"
          "and with -R also late=… (requests still unsent at the end: the schedule was\n"
          "not kept).\n");
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"strategy", required_argument, NULL, 'S'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *server = NULL, *strategy = "";
  long long v;
  int c, port, seconds = 10;
  char host[DSP_ADDR_MAX];
  struct sockaddr_in sa;
  uv_timer_t stop;
  Dispatcher__V1__RouteRequest rr = DISPATCHER__V1__ROUTE_REQUEST__INIT;
  double secs;

  B.nconns = 50;
  B.depth = 1;
  while ((c = getopt_long(argc, argv, "s:c:P:d:R:h", opts, NULL)) != -1) {
    switch (c) {
      case 's': server = optarg; break;
      case 'c':
        if (dsp_parse_int(optarg, 1, 10000, &v) != 0) goto bad;
        B.nconns = (int)v;
        break;
      case 'P':
        if (dsp_parse_int(optarg, 1, RING / 2, &v) != 0) goto bad;
        B.depth = (int)v;
        break;
      case 'd':
        if (dsp_parse_int(optarg, 1, 3600, &v) != 0) goto bad;
        seconds = (int)v;
        break;
      case 'R':
        if (dsp_parse_int(optarg, 1, 100000000, &v) != 0) goto bad;
        B.rate = (double)v;
        break;
      case 'S': strategy = optarg; break;
      case 'h': usage(stdout); return 0;
      default: goto bad;
    }
  }
  if (server == NULL || dsp_parse_hostport(server, host, sizeof(host), &port) != 0 ||
      uv_ip4_addr(host, port, &sa) != 0)
    goto bad;
  rr.strategy = (char *)strategy;
  B.body_len = dispatcher__v1__route_request__get_packed_size(&rr);
  if (B.body_len > sizeof(B.body)) goto bad;
  dispatcher__v1__route_request__pack(&rr, B.body);
  B.hist = calloc(MAX_US, sizeof(*B.hist));
  B.conns = calloc((size_t)B.nconns, sizeof(*B.conns));
  B.loop = uv_default_loop();
  for (int i = 0; i < B.nconns; i++) {
    conn *k = &B.conns[i];
    k->id = i;
    dsp_framer_init(&k->in, 1 << 20);
    uv_tcp_init(B.loop, &k->tcp);
    k->tcp.data = k->creq.data = k;
    uv_tcp_connect(&k->creq, &k->tcp, (const struct sockaddr *)&sa, on_connect);
  }
  uv_timer_init(B.loop, &stop);
  uv_timer_start(&stop, on_stop, (uint64_t)seconds * 1000u, 0);
  uv_run(B.loop, UV_RUN_DEFAULT);
  secs = (double)(B.stop_ns - B.started_ns) / 1e9;
  if (B.failed || B.done == 0 || secs <= 0) {
    fprintf(stderr, "dispatch-bench: run failed (%llu replies)\n", (unsigned long long)B.done);
    return 1;
  }
  printf("rps=%.0f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f requests=%llu errors=%llu",
         (double)B.counted / secs, pct(0.50, B.done), pct(0.99, B.done), pct(0.999, B.done),
         (unsigned long long)B.done, (unsigned long long)B.errors);
  if (B.rate > 0) printf(" late=%llu", (unsigned long long)B.late);
  printf("\n");
  return B.errors ? 1 : 0;
bad:
  usage(stderr);
  return 2;
}
