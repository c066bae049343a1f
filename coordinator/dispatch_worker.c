/*
 * dispatch-worker: a controllable HTTP/1.1 worker for integration tests,
 * scripts/cluster.sh's demo workers and the probe benchmark. One process
 * serves a default identity at / and, with --identities N, N more named
 * NAME-i at /w/i/. Every identity answers health checks and tasks in its
 * mode (ok, fail, hang, slow), which tests switch at run time through
 * /control/... or signals; /stats shows what the worker saw.
 *
 * Cost per request: the benchmark has one process play 10,000 workers probed
 * every second, so the common case allocates nothing. Reads land in one
 * loop-wide buffer (libuv calls on_read right after on_alloc, so it is never
 * shared between two reads); a connection keeps bytes of its own only when a
 * request head is split across reads or requests are pipelined behind one
 * that must wait. Replies go into a per-connection buffer that is reused and
 * are sent with uv_try_write(); uv_write() only when the socket is full.
 *
 * A connection answers its requests in order. A slow request stops reading
 * on its connection until its timer fires; a hung one never answers, so
 * everything after it on that connection is read and dropped until the
 * client closes. Errors that leave the stream unframed (400, 413, 431, 505)
 * are answered with "Connection: close", then the write side is shut and
 * input is drained for a while before closing, so the client reads the
 * answer instead of a reset (nginx's lingering close).
 *
 * Exit status: 0 after SIGTERM/SIGINT or /control/exit, 1 if it cannot
 * listen, 2 on bad flags.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "fifo.h"
#include "log.h"
#include "util.h"

#define HEAD_MAX 8192           /* longest request head, blank line included */
#define BODY_MAX (1 << 20)      /* longest request body we read and drop */
#define OUT_MAX ((size_t)256 * 1024) /* unsent replies before a connection stops reading */
#define READ_SIZE 65536
#define LINGER_MS 2000          /* drain time after an error before closing */
#define IDENTITIES_MAX 100000
#define DELAY_MAX 3600000       /* longest slow-mode delay, ms */
#define DEFAULT_DELAY_MS 2000
#define DEFAULT_NAME "worker"

typedef enum { MODE_OK, MODE_FAIL, MODE_HANG, MODE_SLOW, MODE_EXIT } wmode;
static const char *const mode_names[] = {"ok", "fail", "hang", "slow", "exit"};

typedef struct {
  uint64_t health;    /* health requests seen */
  uint32_t delay_ms;  /* reply delay in slow mode */
  uint8_t mode;       /* wmode, never MODE_EXIT */
} identity;

typedef enum { EP_TASK, EP_HEALTH, EP_STATS, EP_CONTROL } endpoint;

/* What a reply says about the connection: nothing (HTTP/1.1 keep-alive),
   "keep-alive" (HTTP/1.0 that asked for it) or "close". */
typedef enum { CONN_KEEP11, CONN_KEEP10, CONN_CLOSE } conn_hdr;

typedef enum {
  ST_READING,  /* parsing and answering requests */
  ST_SLOW,     /* a slow reply is due when the timer fires; not reading */
  ST_HUNG,     /* a request will never be answered; input is dropped */
  ST_LINGER    /* answered, write side shut; draining input until EOF */
} conn_state;

typedef struct {
  char *p;
  size_t len, cap;
} bytes;

typedef struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;     /* the slow reply, or the end of lingering */
  uv_write_t wreq;
  uv_shutdown_t sreq;
  bytes in;             /* unparsed input kept between reads (usually none) */
  bytes out;            /* replies not yet handed to the kernel */
  bytes writing;        /* the part of them in the uv_write in flight */
  uint64_t skip;        /* request body bytes still to drop */
  conn_state state;
  int handles_open;
  uint32_t slow_id;     /* the slow reply: identity, endpoint, connection */
  uint8_t slow_ep, slow_hdr;
  unsigned closing : 1, reading : 1, write_busy : 1, eof : 1;
  unsigned close_after : 1;  /* answered for the last time; linger when flushed */
  unsigned exit_after : 1;   /* /control/exit: stop the process when flushed */
  dsp_fifo_link open;        /* on srv.conns until closing */
} conn;

static struct {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_signal_t sigs[5];
  const char *name;
  identity *ids;        /* nids + 1 entries; the default identity is last */
  uint32_t nids;
  uint32_t default_delay;
  uint64_t requests, health_requests;
  uint32_t hanging, hanging_peak; /* connections holding a hung request */
  int quiet;
  int stopping;
  dsp_fifo conns; /* open connections (conn.open) */
} srv;

static char readbuf[READ_SIZE];

static void conn_close(conn *c);
static void flush(conn *c);

/* ---- identities ---------------------------------------------------------- */

/* The name of identity `id` into out (NAME, or NAME-i). */
static void ident_name(uint32_t id, char *out, size_t len) {
  if (id == srv.nids) snprintf(out, len, "%s", srv.name);
  else snprintf(out, len, "%s-%u", srv.name, (unsigned)id);
}

/* Set one identity (id < nids + 1) or, with id == UINT32_MAX, all of them. */
static void set_mode(uint32_t id, wmode m, uint32_t delay_ms, const char *why) {
  uint32_t lo = id == UINT32_MAX ? 0 : id, hi = id == UINT32_MAX ? srv.nids : id;
  char name[96];
  for (uint32_t i = lo; i <= hi; i++) {
    srv.ids[i].mode = (uint8_t)m;
    if (m == MODE_SLOW) srv.ids[i].delay_ms = delay_ms;
  }
  if (srv.quiet) return;
  if (id == UINT32_MAX) snprintf(name, sizeof(name), "all identities");
  else ident_name(id, name, sizeof(name));
  if (m == MODE_SLOW)
    DSP_INFO("%s: mode slow (%u ms) by %s", name, (unsigned)delay_ms, why);
  else
    DSP_INFO("%s: mode %s by %s", name, mode_names[m], why);
}

static int parse_mode(const char *s, size_t n) {
  for (size_t i = 0; i < DSP_ARRAY_SIZE(mode_names); i++)
    if (strlen(mode_names[i]) == n && memcmp(s, mode_names[i], n) == 0) return (int)i;
  return -1;
}

/* ---- HTTP parsing (pure) --------------------------------------------------- */

typedef struct {
  const char *method, *target;
  size_t method_len, target_len;
  int minor;                 /* HTTP/1.minor */
  int conn_close, conn_keep; /* Connection: close / keep-alive seen */
  long long content_length;  /* -1 when absent */
  int has_te;                /* Transfer-Encoding seen */
} http_req;

/* RFC 9110 tchar. */
static int is_tchar(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int all_tchars(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (!is_tchar((unsigned char)s[i])) return 0;
  return 1;
}

static int name_is(const char *s, size_t n, const char *want) {
  return strlen(want) == n && strncasecmp(s, want, n) == 0;
}

/* Length of the head at p (request line, headers and the blank line that
   ends them; lines end in LF or CRLF), or 0 if it does not end within the
   first min(n, HEAD_MAX) bytes. */
static size_t head_length(const char *p, size_t n) {
  const char *end = p + (n < HEAD_MAX ? n : HEAD_MAX), *q = p;
  while (q < end && (q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
    if ((q - p >= 1 && q[-1] == '\n') || (q - p >= 2 && q[-1] == '\r' && q[-2] == '\n'))
      return (size_t)(q - p) + 1;
    q++;
  }
  return 0;
}

/* The next line of [p, end) without its LF or CRLF; *next is past it. */
static size_t line_at(const char *p, const char *end, const char **next) {
  const char *lf = memchr(p, '\n', (size_t)(end - p));
  size_t n;
  if (lf == NULL) lf = end; /* cannot happen: heads end in a blank line */
  n = (size_t)(lf - p);
  if (n > 0 && p[n - 1] == '\r') n--;
  *next = lf < end ? lf + 1 : end;
  return n;
}

static int parse_content_length(const char *v, size_t n, http_req *r, const char **why) {
  long long x = 0;
  if (n == 0) goto bad;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') goto bad;
    if (x <= BODY_MAX) x = x * 10 + (v[i] - '0');
  }
  if (r->content_length >= 0 && r->content_length != x) {
    *why = "conflicting Content-Length headers";
    return 400;
  }
  r->content_length = x;
  if (x > BODY_MAX) {
    *why = "request body over 1 MiB";
    return 413;
  }
  return 0;
bad:
  *why = "Content-Length is not a number";
  return 400;
}

static void parse_connection(const char *v, size_t n, http_req *r) {
  size_t i = 0;
  while (i < n) {
    size_t s, e;
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
    s = i;
    while (i < n && v[i] != ',') i++;
    e = i;
    while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
    if (name_is(v + s, e - s, "close")) r->conn_close = 1;
    else if (name_is(v + s, e - s, "keep-alive")) r->conn_keep = 1;
  }
}

/* Parse a whole head (as measured by head_length). Returns 0, or the status
   to answer with (the connection is then closed) and *why. */
static int parse_head(const char *p, size_t n, http_req *r, const char **why) {
  const char *end = p + n, *next, *sp1, *sp2, *ver;
  size_t len, vlen;
  memset(r, 0, sizeof(*r));
  r->content_length = -1;
  *why = "malformed request line";

  /* method SP request-target SP HTTP-version */
  len = line_at(p, end, &next);
  sp1 = memchr(p, ' ', len);
  if (sp1 == NULL || !all_tchars(p, (size_t)(sp1 - p)) || sp1 - p > 32) return 400;
  sp2 = memchr(sp1 + 1, ' ', (size_t)(p + len - sp1 - 1));
  if (sp2 == NULL || sp2 == sp1 + 1 || sp1[1] != '/') return 400;
  for (const char *t = sp1 + 1; t < sp2; t++)
    if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f) return 400;
  ver = sp2 + 1;
  vlen = (size_t)(p + len - ver);
  if (vlen != 8 || memcmp(ver, "HTTP/", 5) != 0 || ver[5] < '0' || ver[5] > '9' ||
      ver[6] != '.' || ver[7] < '0' || ver[7] > '9')
    return 400;
  if (ver[5] != '1' || (ver[7] != '0' && ver[7] != '1')) {
    *why = "only HTTP/1.0 and HTTP/1.1 are spoken here";
    return 505;
  }
  r->method = p;
  r->method_len = (size_t)(sp1 - p);
  r->target = sp1 + 1;
  r->target_len = (size_t)(sp2 - sp1 - 1);
  r->minor = ver[7] - '0';

  /* field-name ":" OWS field-value OWS */
  *why = "malformed header line";
  for (p = next; p < end; p = next) {
    const char *colon, *v, *ve;
    int st;
    len = line_at(p, end, &next);
    if (len == 0) break;
    if (p[0] == ' ' || p[0] == '\t') return 400; /* obsolete line folding */
    colon = memchr(p, ':', len);
    if (colon == NULL || !all_tchars(p, (size_t)(colon - p))) return 400;
    v = colon + 1;
    ve = p + len;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    for (const char *t = v; t < ve; t++)
      if (((unsigned char)*t < 0x20 && *t != '\t') || *t == 0x7f) return 400;
    if (name_is(p, (size_t)(colon - p), "content-length")) {
      if ((st = parse_content_length(v, (size_t)(ve - v), r, why)) != 0) return st;
    } else if (name_is(p, (size_t)(colon - p), "transfer-encoding")) {
      r->has_te = 1;
    } else if (name_is(p, (size_t)(colon - p), "connection")) {
      parse_connection(v, (size_t)(ve - v), r);
    }
  }
  if (r->has_te) {
    /* We could not find where the body ends (RFC 9112 6.3 also makes
       Transfer-Encoding win over Content-Length). */
    *why = "Transfer-Encoding request bodies are not supported; send Content-Length";
    return 400;
  }
  return 0;
}

/* ---- writing ------------------------------------------------------------- */

static int reserve(bytes *b, size_t more) {
  size_t cap = b->cap ? b->cap : 512;
  char *p;
  if (b->cap - b->len >= more) return 0;
  while (cap - b->len < more) cap *= 2;
  p = realloc(b->p, cap);
  if (p == NULL) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

static const char *reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

/* Queue one reply; it is sent by flush(). With CONN_CLOSE it is the last
   one on this connection. */
static void reply(conn *c, int status, const char *ctype, const char *body, size_t blen,
                  conn_hdr hdr) {
  static const char *const conn_lines[] = {"", "Connection: keep-alive\r\n",
                                           "Connection: close\r\n"};
  int n;
  if (reserve(&c->out, blen + 256) != 0) {
    DSP_ERROR("out of memory queueing a reply; closing the connection");
    conn_close(c);
    return;
  }
  n = snprintf(c->out.p + c->out.len, c->out.cap - c->out.len,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n", status,
               reason(status), ctype, blen, status == 405 ? "Allow: GET, POST\r\n" : "",
               conn_lines[hdr]);
  /* 256 bytes always hold these headers. */
  c->out.len += (size_t)n;
  memcpy(c->out.p + c->out.len, body, blen);
  c->out.len += blen;
  if (hdr == CONN_CLOSE) c->close_after = 1;
}

static void reply_text(conn *c, int status, conn_hdr hdr, const char *fmt, const char *arg) {
  char body[256];
  int n = snprintf(body, sizeof(body), fmt, arg);
  reply(c, status, "text/plain; charset=utf-8", body,
        n < 0 ? 0 : (size_t)n >= sizeof(body) ? sizeof(body) - 1 : (size_t)n, hdr);
}

/* The answer of a task or health request in mode ok (or slow, when due). */
static void reply_ok(conn *c, endpoint ep, uint32_t id, conn_hdr hdr) {
  char name[96];
  ident_name(id, name, sizeof(name));
  reply_text(c, 200, hdr, ep == EP_HEALTH ? "ok %s\n" : "%s\n", name);
}

static size_t unsent(const conn *c) { return c->out.len + c->writing.len; }

/* ---- connection lifecycle -------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h) {
  conn *c = h->data;
  if (--c->handles_open > 0) return;
  free(c->in.p);
  free(c->out.p);
  free(c->writing.p);
  free(c);
}

static void stop_all(const char *why);

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  if (c->state == ST_HUNG) srv.hanging--;
  dsp_fifo_remove(&srv.conns, &c->open);
  /* Pending write and shutdown requests get UV_ECANCELED before the close
     callbacks run, so `c` outlives them. */
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  /* /control/exit stops the process even if its reply could not be sent. */
  if (c->exit_after) stop_all("/control/exit");
}

static void drop_input(conn *c) {
  free(c->in.p);
  c->in.p = NULL;
  c->in.len = c->in.cap = 0;
  c->skip = 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  conn *c = h->data;
  (void)suggested;
  if (c->state == ST_READING && c->in.p != NULL)
    /* Never empty: a kept partial head is under HEAD_MAX <= cap. Were it
       empty, libuv reports UV_ENOBUFS and we close. */
    *b = uv_buf_init(c->in.p + c->in.len, (unsigned)(c->in.cap - c->in.len));
  else
    *b = uv_buf_init(readbuf, sizeof(readbuf));
}

/* Read unless a slow reply is due, replies pile up unread, or the client
   has finished sending. */
static void update_reading(conn *c) {
  int want = !c->closing && !c->eof && c->state != ST_SLOW &&
             !(c->state == ST_READING && unsent(c) > OUT_MAX);
  if (want && !c->reading) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
      conn_close(c);
      return;
    }
    c->reading = 1;
  } else if (!want && c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn *c = req->data;
  if (!c->closing && status < 0) conn_close(c);
}

static void on_linger_end(uv_timer_t *t) { conn_close(t->data); }

/* The last reply is out: shut our side and drain theirs for a while. */
static void start_linger(conn *c) {
  drop_input(c);
  c->state = ST_LINGER;
  c->sreq.data = c;
  if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_linger_end, LINGER_MS, 0);
  update_reading(c);
}

/* Everything queued has reached the kernel. */
static void flushed(conn *c) {
  if (c->exit_after || c->eof) conn_close(c);
  else if (c->close_after && c->state != ST_LINGER) start_linger(c);
}

static void on_write(uv_write_t *w, int status);

static void flush(conn *c) {
  uv_buf_t b;
  int n;
  if (c->closing || c->write_busy) return;
  if (c->out.len > 0) {
    b = uv_buf_init(c->out.p, (unsigned)c->out.len);
    n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN) {
      conn_close(c);
      return;
    }
    if (n < 0) n = 0;
    if ((size_t)n < c->out.len) {
      bytes t = c->writing;
      c->writing = c->out;
      c->out = t;
      c->out.len = 0;
      b = uv_buf_init(c->writing.p + n, (unsigned)(c->writing.len - (size_t)n));
      c->wreq.data = c;
      if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        conn_close(c);
        return;
      }
      c->write_busy = 1;
      return;
    }
    c->out.len = 0;
  }
  flushed(c);
}

/* ---- requests ------------------------------------------------------------- */

static void on_slow_due(uv_timer_t *t);

/* "/w/<i>/..." -> i and the rest; 0, or -1 if the index is not one we serve. */
static int split_identity(const char *path, size_t n, uint32_t *id, size_t *rest) {
  size_t i = 3;
  uint64_t v = 0;
  if (i >= n || path[i] < '0' || path[i] > '9') return -1;
  if (path[i] == '0' && i + 1 < n && path[i + 1] != '/') return -1; /* no leading zeros */
  while (i < n && path[i] >= '0' && path[i] <= '9' && i < 10) v = v * 10 + (uint64_t)(path[i++] - '0');
  if (i >= n || path[i] != '/' || v >= srv.nids) return -1;
  *id = (uint32_t)v;
  *rest = i;
  return 0;
}

/* The value of ?ms=N in a query: 1 and *ms, 0 if absent, -1 if bad. */
static int query_ms(const char *q, size_t n, uint32_t *ms) {
  size_t i = 0;
  while (i < n) {
    size_t s = i, e;
    while (i < n && q[i] != '&') i++;
    e = i++;
    if (e - s >= 3 && memcmp(q + s, "ms=", 3) == 0) {
      char num[12];
      long long v;
      if (e - s - 3 >= sizeof(num)) return -1;
      memcpy(num, q + s + 3, e - s - 3);
      num[e - s - 3] = '\0';
      if (dsp_parse_int(num, 0, DELAY_MAX, &v) != 0) return -1;
      *ms = (uint32_t)v;
      return 1;
    }
  }
  return 0;
}

static void answer_stats(conn *c, uint32_t id, conn_hdr hdr) {
  char body[512], name[96];
  int n;
  if (id == UINT32_MAX) {
    uint32_t lo = srv.nids ? 0 : srv.nids, hi = srv.nids ? srv.nids - 1 : srv.nids;
    uint64_t mn = UINT64_MAX, mx = 0;
    for (uint32_t i = lo; i <= hi; i++) {
      if (srv.ids[i].health < mn) mn = srv.ids[i].health;
      if (srv.ids[i].health > mx) mx = srv.ids[i].health;
    }
    n = snprintf(body, sizeof(body),
                 "{\"name\":\"%s\",\"identities\":%u,\"requests\":%llu,"
                 "\"health_requests\":%llu,\"min_health\":%llu,\"max_health\":%llu,"
                 "\"hanging\":%u,\"hanging_peak\":%u}\n",
                 srv.name, (unsigned)srv.nids, (unsigned long long)srv.requests,
                 (unsigned long long)srv.health_requests, (unsigned long long)mn,
                 (unsigned long long)mx, (unsigned)srv.hanging, (unsigned)srv.hanging_peak);
  } else {
    ident_name(id, name, sizeof(name));
    n = snprintf(body, sizeof(body), "{\"name\":\"%s\",\"health_requests\":%llu,\"mode\":\"%s\"}\n",
                 name, (unsigned long long)srv.ids[id].health, mode_names[srv.ids[id].mode]);
  }
  /* Names are checked at start-up: no JSON escaping needed, and it fits. */
  reply(c, 200, "application/json", body, (size_t)n, hdr);
}

static void answer_control(conn *c, uint32_t id, int all, const char *word, size_t wlen,
                           const char *query, size_t qlen, conn_hdr hdr) {
  int m = parse_mode(word, wlen);
  uint32_t ms = srv.default_delay;
  if (m < 0) {
    reply_text(c, 400, hdr, "%s", "unknown mode; use ok, fail, hang, slow or exit\n");
    return;
  }
  if (m == MODE_SLOW && query_ms(query, qlen, &ms) < 0) {
    reply_text(c, 400, hdr, "%s", "ms must be a number of milliseconds in 0-3600000\n");
    return;
  }
  if (m == MODE_EXIT) {
    if (!srv.quiet) DSP_INFO("exit requested over HTTP");
    reply_text(c, 200, CONN_CLOSE, "mode %s\n", "exit");
    c->exit_after = 1;
    return;
  }
  set_mode(all ? UINT32_MAX : id, (wmode)m, ms, "HTTP");
  reply_text(c, 200, hdr, "mode %s\n", mode_names[m]);
}

/* Answer one parsed request (or start waiting to). */
static void answer(conn *c, const http_req *r) {
  const char *path = r->target, *query = memchr(r->target, '?', r->target_len);
  size_t plen = query ? (size_t)(query - path) : r->target_len, qlen = 0, rest = 0;
  uint32_t id = srv.nids;
  int per_identity = 0;
  const char *sub;
  size_t slen;
  endpoint ep;
  conn_hdr hdr = r->conn_close ? CONN_CLOSE
                 : r->minor == 1 ? CONN_KEEP11
                 : r->conn_keep ? CONN_KEEP10
                 : CONN_CLOSE;
  identity *d;

  srv.requests++;
  if (query) {
    query++;
    qlen = r->target_len - plen - 1;
  }
  if (plen >= 3 && memcmp(path, "/w/", 3) == 0) {
    if (split_identity(path, plen, &id, &rest) != 0) {
      reply_text(c, 404, hdr, "%s", "no such identity\n");
      return;
    }
    per_identity = 1;
  }
  sub = path + rest;
  slen = plen - rest;
  if (slen == 1) ep = EP_TASK;
  else if (slen == 7 && memcmp(sub, "/health", 7) == 0) ep = EP_HEALTH;
  else if (slen == 6 && memcmp(sub, "/stats", 6) == 0) ep = EP_STATS;
  else if (slen >= 9 && memcmp(sub, "/control/", 9) == 0) ep = EP_CONTROL;
  else {
    reply_text(c, 404, hdr, "%s", "not found\n");
    return;
  }
  /* Methods are case-sensitive (RFC 9110 9.1): "get" is not GET. */
  if (!(r->method_len == 3 && memcmp(r->method, "GET", 3) == 0) &&
      !(r->method_len == 4 && memcmp(r->method, "POST", 4) == 0)) {
    reply_text(c, 405, hdr, "%s", "only GET and POST\n");
    return;
  }
  if (ep == EP_STATS) {
    answer_stats(c, per_identity ? id : UINT32_MAX, hdr);
    return;
  }
  if (ep == EP_CONTROL) {
    answer_control(c, id, !per_identity, sub + 9, slen - 9, query, qlen, hdr);
    return;
  }
  d = &srv.ids[id];
  if (ep == EP_HEALTH) {
    d->health++;
    srv.health_requests++;
  }
  switch ((wmode)d->mode) {
    case MODE_OK:
    case MODE_EXIT:
      reply_ok(c, ep, id, hdr);
      break;
    case MODE_FAIL: {
      char name[96];
      ident_name(id, name, sizeof(name));
      reply_text(c, 500, hdr, "fail %s\n", name);
      break;
    }
    case MODE_HANG:
      c->state = ST_HUNG;
      if (++srv.hanging > srv.hanging_peak) srv.hanging_peak = srv.hanging;
      break;
    case MODE_SLOW:
      c->state = ST_SLOW;
      c->slow_id = id;
      c->slow_ep = (uint8_t)ep;
      c->slow_hdr = (uint8_t)hdr;
      uv_timer_start(&c->timer, on_slow_due, d->delay_ms, 0);
      break;
  }
}

/* Answer the requests in p[0, n); returns how many bytes were used. Stops
   at a partial request, at one that must wait, after a last reply, or when
   replies pile up unread. */
static size_t process(conn *c, const char *p, size_t n) {
  size_t pos = 0;
  while (pos < n && !c->closing && c->state == ST_READING && !c->close_after &&
         !c->exit_after && unsent(c) <= OUT_MAX) {
    http_req r;
    const char *why;
    size_t hl;
    int st;
    if (c->skip > 0) {
      size_t k = n - pos < c->skip ? n - pos : (size_t)c->skip;
      pos += k;
      c->skip -= k;
      continue;
    }
    if (p[pos] == '\r' || p[pos] == '\n') { /* empty lines between requests */
      pos++;
      continue;
    }
    hl = head_length(p + pos, n - pos);
    if (hl == 0) {
      if (n - pos >= HEAD_MAX) {
        reply_text(c, 431, CONN_CLOSE, "%s", "request head over 8 KiB\n");
        return n;
      }
      break;
    }
    st = parse_head(p + pos, hl, &r, &why);
    pos += hl;
    if (st != 0) {
      reply_text(c, st, CONN_CLOSE, "%s\n", why);
      return n;
    }
    if (r.content_length > 0) c->skip = (uint64_t)r.content_length;
    answer(c, &r);
  }
  return pos;
}

/* After input was used: keep what is still needed, send what was answered,
   read again if we should. `used` bytes of p[0, n) were used; p is either
   readbuf or c->in. */
static void settle(conn *c, const char *p, size_t n, size_t used) {
  if (c->closing) return;
  if (c->state == ST_HUNG || c->close_after || c->exit_after || used == n) {
    drop_input(c);
  } else if (p == c->in.p) {
    memmove(c->in.p, c->in.p + used, n - used);
    c->in.len = n - used;
  } else {
    size_t cap = n - used > HEAD_MAX ? n - used : HEAD_MAX;
    assert(c->in.p == NULL); /* on_alloc reads into c->in while it exists */
    if ((c->in.p = malloc(cap)) == NULL) {
      DSP_ERROR("out of memory keeping a request; closing the connection");
      conn_close(c);
      return;
    }
    memcpy(c->in.p, p + used, n - used);
    c->in.len = n - used;
    c->in.cap = cap;
  }
  flush(c);
  if (!c->closing) update_reading(c);
}

/* Carry on with kept input after a wait (slow reply sent, output drained). */
static void resume(conn *c) {
  size_t n = c->in.len;
  if (c->closing) return;
  settle(c, c->in.p, n, c->in.p ? process(c, c->in.p, n) : 0);
}

static void on_slow_due(uv_timer_t *t) {
  conn *c = t->data;
  c->state = ST_READING;
  reply_ok(c, (endpoint)c->slow_ep, c->slow_id, (conn_hdr)c->slow_hdr);
  resume(c);
}

static void on_write(uv_write_t *w, int status) {
  conn *c = w->data;
  c->write_busy = 0;
  c->writing.len = 0;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  resume(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn *c = s->data;
  if (c->closing || n == 0) return;
  if (n < 0) {
    /* A client that finished sending still gets what it asked for. */
    if (n == UV_EOF && c->state == ST_READING && (unsent(c) > 0 || c->write_busy)) {
      c->eof = 1;
      c->reading = 0; /* libuv stopped reading at EOF */
      return;
    }
    conn_close(c);
    return;
  }
  if (c->state != ST_READING || c->close_after || c->exit_after) return; /* dropped */
  if (b->base == readbuf) {
    settle(c, readbuf, (size_t)n, process(c, readbuf, (size_t)n));
  } else {
    c->in.len += (size_t)n;
    settle(c, c->in.p, c->in.len, process(c, c->in.p, c->in.len));
  }
}

static void on_connection(uv_stream_t *l, int status) {
  conn *c;
  if (status < 0) {
    DSP_WARN("accept: %s", uv_strerror(status));
    return;
  }
  c = calloc(1, sizeof(*c));
  if (c == NULL) {
    DSP_ERROR("out of memory accepting a connection");
    return;
  }
  uv_tcp_init(srv.loop, &c->tcp);
  uv_timer_init(srv.loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->handles_open = 2;
  dsp_fifo_push(&srv.conns, &c->open);
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  update_reading(c);
}

/* ---- process ------------------------------------------------------------- */

static void stop_all(const char *why) {
  if (srv.stopping) return;
  srv.stopping = 1;
  if (!srv.quiet) DSP_INFO("%s; exiting", why);
  uv_close((uv_handle_t *)&srv.listener, NULL);
  for (size_t i = 0; i < DSP_ARRAY_SIZE(srv.sigs); i++)
    uv_close((uv_handle_t *)&srv.sigs[i], NULL);
  while (srv.conns.head != NULL) conn_close(DSP_CONTAINER_OF(srv.conns.head, conn, open));
}

static void on_signal(uv_signal_t *s, int signum) {
  (void)s;
  switch (signum) {
    case SIGUSR1: set_mode(UINT32_MAX, MODE_FAIL, 0, "SIGUSR1"); break;
    case SIGUSR2: set_mode(UINT32_MAX, MODE_HANG, 0, "SIGUSR2"); break;
    case SIGHUP: set_mode(UINT32_MAX, MODE_OK, 0, "SIGHUP"); break;
    default: stop_all(signum == SIGTERM ? "received SIGTERM" : "received SIGINT"); break;
  }
}

static void usage(FILE *out) {
  fprintf(out,
"Usage: dispatch-worker --listen HOST:PORT [OPTIONS]\n"
"\n"
"A controllable HTTP/1.1 worker for tests, demos and benchmarks. It serves a\n"
"default identity and, with --identities N, N more named NAME-i under /w/i/.\n"
"\n"
"Options:\n"
"  --listen HOST:PORT   numeric IPv4 or [IPv6] address; port 0 picks a free one.\n"
"                       Once listening, prints 'listening on HOST:PORT' on stdout.\n"
"  --name NAME          name of the default identity, 1-64 of [A-Za-z0-9._:-]\n"
"                       (default " DEFAULT_NAME ")\n"
"  --identities N       also serve N identities NAME-0..NAME-(N-1), 0-100000\n"
"                       (default 0)\n"
"  --mode MODE          initial mode of every identity: ok, fail, hang, slow\n"
"                       (default ok)\n"
"  --delay-ms MS        delay of mode slow, 0-3600000 (default %d)\n"
"  --quiet              do not log mode changes on stderr\n"
"  -h, --help           show this help and exit\n"
"\n"
"Endpoints (GET or POST; other methods get 405, unknown paths 404). Prefix a\n"
"path with /w/i to address identity i instead of the default one:\n"
"  /health              ok: 200 'ok NAME'; fail: 500 'fail NAME'; hang: never\n"
"                       answered; slow: 200 after the delay\n"
"  /                    a task: 200 'NAME', same modes\n"
"  /control/MODE        MODE is ok, fail, hang, slow[?ms=N] or exit; sets every\n"
"                       identity (with /w/i, only identity i); always answered\n"
"                       at once, 200 'mode MODE'. exit stops the process.\n"
"  /stats               JSON: name, identities, requests (all parsed requests),\n"
"                       health_requests, min_health and max_health over the N\n"
"                       identities (the default one when N is 0), hanging\n"
"                       (requests held unanswered now) and hanging_peak (most\n"
"                       at once);\n"
"                       /w/i/stats: name, health_requests, mode\n"
"\n"
"Signals: SIGUSR1 sets every identity to fail, SIGUSR2 to hang, SIGHUP to ok;\n"
"SIGTERM or SIGINT exits 0. Requests already hanging stay unanswered.\n",
          DEFAULT_DELAY_MS);
}

static int bad(const char *fmt, const char *arg) {
  fprintf(stderr, "dispatch-worker: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'dispatch-worker --help'.\n");
  return 2;
}

/* dsp_parse_hostport() takes ports 1-65535; port 0 is allowed here, so
   ":0" is checked as ":1" and then set back. */
static int parse_listen(const char *s, char *host, size_t hostlen, int *port) {
  char tmp[DSP_ADDR_MAX];
  size_t n = strlen(s);
  if (n >= sizeof(tmp)) return -1;
  memcpy(tmp, s, n + 1);
  if (n >= 2 && strcmp(tmp + n - 2, ":0") == 0) {
    tmp[n - 1] = '1';
    if (dsp_parse_hostport(tmp, host, hostlen, port) != 0) return -1;
    *port = 0;
    return 0;
  }
  return dsp_parse_hostport(tmp, host, hostlen, port);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"listen", required_argument, NULL, 'l'},
      {"name", required_argument, NULL, 'n'},
      {"identities", required_argument, NULL, 'i'},
      {"mode", required_argument, NULL, 'm'},
      {"delay-ms", required_argument, NULL, 'd'},
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  static const int signums[] = {SIGUSR1, SIGUSR2, SIGHUP, SIGTERM, SIGINT};
  struct sockaddr_storage ss;
  char host[DSP_ADDR_MAX];
  const char *listen_arg = NULL;
  int c, port = 0, rc, v6, namelen = sizeof(ss);
  int start_mode = MODE_OK;
  long long v;

  srv.name = DEFAULT_NAME;
  srv.default_delay = DEFAULT_DELAY_MS;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
      case 'l':
        if (parse_listen(optarg, host, sizeof(host), &port) != 0)
          return bad("--listen: '%s' is not HOST:PORT with a port in 0-65535", optarg);
        listen_arg = optarg;
        break;
      case 'n':
        if (!dsp_id_valid(optarg))
          return bad("--name: '%s' must be 1-64 of [A-Za-z0-9._:-]", optarg);
        srv.name = optarg;
        break;
      case 'i':
        if (dsp_parse_int(optarg, 0, IDENTITIES_MAX, &v) != 0)
          return bad("--identities: '%s' is not a number in 0-100000", optarg);
        srv.nids = (uint32_t)v;
        break;
      case 'm':
        start_mode = parse_mode(optarg, strlen(optarg));
        if (start_mode < 0 || start_mode == MODE_EXIT)
          return bad("--mode: '%s' is not one of ok, fail, hang, slow", optarg);
        break;
      case 'd':
        if (dsp_parse_int(optarg, 0, DELAY_MAX, &v) != 0)
          return bad("--delay-ms: '%s' is not a number of milliseconds in 0-3600000", optarg);
        srv.default_delay = (uint32_t)v;
        break;
      case 'q':
        srv.quiet = 1;
        break;
      case 'h':
        usage(stdout);
        return 0;
      case ':':
        return bad("option '%s' needs a value", argv[optind - 1]);
      default:
        return bad("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return bad("unexpected argument '%s'", argv[optind]);
  if (listen_arg == NULL) return bad("%s", "--listen HOST:PORT is required");
  v6 = strchr(host, ':') != NULL;
  if ((v6 ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss)
          : uv_ip4_addr(host, port, (struct sockaddr_in *)&ss)) != 0)
    return bad("--listen: '%s' needs a numeric IPv4 or [IPv6] address", listen_arg);

  dsp_log_init("dispatch-worker", srv.name);
  signal(SIGPIPE, SIG_IGN);
  dsp_raise_nofile(); /* the benchmark holds thousands of connections */
  srv.ids = calloc((size_t)srv.nids + 1, sizeof(*srv.ids));
  if (srv.ids == NULL) {
    DSP_ERROR("out of memory for %u identities", (unsigned)srv.nids);
    return 1;
  }
  for (uint32_t i = 0; i <= srv.nids; i++) {
    srv.ids[i].mode = (uint8_t)start_mode;
    srv.ids[i].delay_ms = srv.default_delay;
  }

  srv.loop = uv_default_loop();
  uv_tcp_init(srv.loop, &srv.listener);
  rc = uv_tcp_bind(&srv.listener, (const struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&srv.listener, 4096, on_connection);
  if (rc == 0) rc = uv_tcp_getsockname(&srv.listener, (struct sockaddr *)&ss, &namelen);
  if (rc != 0) {
    DSP_ERROR("cannot listen on %s: %s", listen_arg, uv_strerror(rc));
    uv_close((uv_handle_t *)&srv.listener, NULL);
    uv_run(srv.loop, UV_RUN_DEFAULT);
    uv_loop_close(srv.loop);
    free(srv.ids);
    return 1;
  }
  port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
  printf(v6 ? "listening on [%s]:%d\n" : "listening on %s:%d\n", host, port);
  fflush(stdout);

  for (size_t i = 0; i < DSP_ARRAY_SIZE(srv.sigs); i++) {
    uv_signal_init(srv.loop, &srv.sigs[i]);
    uv_signal_start(&srv.sigs[i], on_signal, signums[i]);
  }

  uv_run(srv.loop, UV_RUN_DEFAULT);

  if (uv_loop_close(srv.loop) != 0) DSP_WARN("loop closed with handles still open");
  free(srv.ids);
  return 0;
}
