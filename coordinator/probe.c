/*
 * probe.c: see probe.h.
 *
 * Shards: probes are spread over several multi handles by the host:port of
 * their URL (shard_of), each with its own timer and connection cache.
 * libcurl 7.88 walks its whole connection cache in every
 * curl_multi_remove_handle (looking for the transfer's last connection),
 * and a cache holds one connection per host at least: with one multi
 * handle, 10,000 workers on as many hosts made each probe walk thousands of
 * connections, and the cache's size limit closed and reopened connections
 * on every probe. Shards keep each cache small; all probes to one host:port
 * share a shard, so they share its idle connections. A shard's multi handle
 * is made when its first probe starts: each holds a socketpair (curl's
 * wakeup), so 256 made up front cost 512 file descriptors, which a
 * coordinator probing one host would spend for nothing.
 *
 * curl's multi "socket" interface on libuv (docs/examples/multi-uv.c, with
 * its gaps filled):
 *  - curl says which sockets to watch through CURLMOPT_SOCKETFUNCTION; each
 *    gets one uv_poll_t (a `sock`, attached with curl_multi_assign), which
 *    lives as long as the socket: curl closes its sockets through our
 *    CURLOPT_CLOSESOCKETFUNCTION, which closes the poll first. So a
 *    keep-alive connection keeps its poll between probes: CURL_POLL_REMOVE
 *    (the connection went back to curl's cache) leaves a read poll running,
 *    and the next probe on it asks for the same events, which costs nothing.
 *    (Restarting a uv_poll_t costs two epoll_ctl calls; closing and making
 *    one per probe cost a tenth of the probe.) A poll is restarted only when
 *    curl asks for different events. An event on a socket curl does not
 *    watch (the server closed an idle connection) stops its poll: curl
 *    finds the connection dead when it next looks.
 *  - socket events are not handed to curl from the poll callback but
 *    queued, and handed over from a uv_idle in the next loop turn, before it
 *    polls again. libuv runs poll callbacks in epoll's order, and RPC
 *    replies are written once per turn, after all of them (rpc_server.c):
 *    a Route read in the same turn as a few probe replies would otherwise
 *    wait for curl to finish those probes before its answer went out. The
 *    idle handle keeps the loop from blocking while events wait.
 *  - each shard's single timeout (CURLMOPT_TIMERFUNCTION) is one uv_timer: -1
 *    stops it, 0 fires it on the next loop turn (never a socket_action
 *    from inside curl's callback, which curl forbids).
 *  - after EVERY curl_multi_socket_action, curl_multi_info_read is drained
 *    until empty: the example reads it only after socket events and so
 *    loses a last transfer that ends by timing out.
 * User callbacks run only from that drain, never from inside a curl call,
 * so they may start, cancel (curl_multi_remove_handle also drops a pending
 * DONE message of the removed handle) or close the prober.
 *
 * Probes in flight are found by token in a small chained hash table.
 * Finished probes, with their easy handle, go to a free list; a handle is
 * configured once and keeps the options every probe shares, so taking it
 * again sets only the URL, timeout and size limit. Connections live in the
 * multi handle's cache, so a recycled handle still reuses them.
 *
 * Names are resolved by curl's own resolver (threaded or c-ares, as curl
 * was built); that is curl's business, and IP literals never touch it.
 */
#include "probe.h"

#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fifo.h"
#include "log.h"
#include "util.h"

#define MAX_CONNECTS_DEFAULT 1024
#define SHARDS_DEFAULT 256
#define SHARDS_MAX 4096
#define MAX_IDLE_EASY_DEFAULT 1024
#define HASH_BITS_MIN 6
#define BODY_KEEP_MAX 4096 /* body buffers up to this size stay with the handle */
#define USER_AGENT "dispatcher-probe/1"
#define URL_CACHE 4096 /* power of two */

typedef struct shard shard;

typedef struct probe {
  CURL *easy;
  dsp_prober *p;
  shard *sh;            /* the multi handle it runs in, while in flight */
  struct probe *next; /* hash chain while in flight, free list after */
  uint64_t token;
  dsp_probe_cb cb;
  void *arg;
  unsigned timeout_ms;
  int lo, hi;
  size_t limit;         /* body bytes allowed */
  size_t received;      /* body bytes seen */
  char *expect;         /* NULL when any body will do */
  size_t expect_len;
  char *body;           /* kept only when `expect` is set */
  size_t body_cap;
  unsigned too_large : 1, oom : 1;
  int sock_errno;       /* a socket() ran out of a resource (on_curl_open) */
  int sockets;          /* sockets opened for it (on_curl_open) */
  char errbuf[CURL_ERROR_SIZE];
} probe;

typedef struct sock {
  uv_poll_t poll;
  dsp_prober *owner;
  shard *sh;                /* whose multi handle watches it (set by curl's
                               socket callback, before any poll starts) */
  curl_socket_t fd;
  int events;               /* UV_READABLE|UV_WRITABLE being polled; 0: stopped */
  int watched;              /* curl wants events (between its IN/OUT and REMOVE) */
  int owned;                /* opened by on_curl_open: curl closes it through us */
  int pend_flags;           /* CURL_CSELECT_* waiting for curl (see on_later) */
  dsp_fifo_link pend;       /* on the owner's `pend` while events wait */
  dsp_fifo_link open;       /* on the owner's `socks` until closed */
} sock;

/* One multi handle with its timer (see the top of the file). */
struct shard {
  dsp_prober *p;
  CURLM *multi;   /* NULL until its first probe (shard_open) */
  uv_timer_t timer;
};

struct dsp_prober {
  uv_loop_t *loop;
  shard *shards;
  unsigned nshards;
  unsigned max_connects; /* each shard's CURLMOPT_MAXCONNECTS */
  CURLU *url; /* scratch for validating URLs and naming hosts */
  uv_idle_t later;  /* active while socks have events waiting */
  dsp_fifo pend;    /* socks with events waiting (sock.pend) */
  dsp_fifo socks;   /* every sock not yet closed (sock.open) */
  sock **byfd;      /* the sock of each fd curl has open, by number */
  size_t nbyfd;
  uint64_t urls_ok[URL_CACHE]; /* hashes of URLs curl's parser accepted */
  probe **table;
  unsigned hash_bits;
  size_t count; /* probes in flight */
  probe *free_list;
  size_t nfree, max_idle_easy;
  int handles_open; /* shard timers, idle + socks not yet closed */
  int closing;
  void (*done)(void *);
  void *done_arg;
  dsp_probe_stats stats;
};

/* 64-bit FNV-1a of s[0..n). */
static uint64_t fnv1a(const char *s, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
  return h;
}

/* A URL's hash, never 0 (the empty slot of urls_ok). */
static uint64_t url_hash(const char *s) {
  uint64_t h = fnv1a(s, strlen(s));
  return h ? h : 1;
}

/* The shard of a URL: by its host and port (the text between "://" and the
   path), so that every probe to one host:port shares one multi handle and
   so its idle connections. */
static shard *shard_of(dsp_prober *p, const char *url) {
  const char *a = strstr(url, "://");
  uint64_t h;
  a = a ? a + 3 : url;
  h = fnv1a(a, strcspn(a, "/?#"));
  return &p->shards[(h ^ (h >> 32)) % p->nshards];
}

/* --- token table ------------------------------------------------------- */

static size_t slot(const dsp_prober *p, uint64_t token) {
  return (size_t)((token * 0x9E3779B97F4A7C15ull) >> (64 - p->hash_bits));
}

static probe **find(dsp_prober *p, uint64_t token) {
  probe **pp = &p->table[slot(p, token)];
  while (*pp != NULL && (*pp)->token != token) pp = &(*pp)->next;
  return pp;
}

/* Grow to keep chains short; on allocation failure chains just get longer. */
static void grow(dsp_prober *p) {
  unsigned bits = p->hash_bits + 1;
  size_t n = (size_t)1 << p->hash_bits;
  probe **old = p->table, **t = calloc((size_t)1 << bits, sizeof(*t));
  if (t == NULL) return;
  p->table = t;
  p->hash_bits = bits;
  for (size_t i = 0; i < n; i++) {
    probe *pr = old[i], *next;
    for (; pr != NULL; pr = next) {
      size_t s = slot(p, pr->token);
      next = pr->next;
      pr->next = t[s];
      t[s] = pr;
    }
  }
  free(old);
}

/* --- probes and their easy handles ------------------------------------ */

static void probe_destroy(probe *pr) {
  curl_easy_cleanup(pr->easy);
  free(pr->expect);
  free(pr->body);
  free(pr);
}

static int configure_once(dsp_prober *p, probe *pr);
static curl_socket_t on_curl_open(void *clientp, curlsocktype purpose,
                                  struct curl_sockaddr *a);
static int on_curl_close(void *clientp, curl_socket_t fd);

/* A probe with a configured easy handle: recycled if one is idle. NULL on
   OOM. */
static probe *probe_take(dsp_prober *p) {
  probe *pr = p->free_list;
  if (pr != NULL) {
    /* Configured already (configure_once): configure() sets what differs. */
    p->free_list = pr->next;
    p->nfree--;
  } else {
    pr = calloc(1, sizeof(*pr));
    if (pr == NULL) return NULL;
    pr->p = p;
    pr->easy = curl_easy_init();
    if (pr->easy == NULL) {
      free(pr);
      return NULL;
    }
    if (configure_once(p, pr) != 0) {
      curl_easy_cleanup(pr->easy);
      free(pr);
      return NULL;
    }
    p->stats.easy_created++;
  }
  pr->next = NULL;
  pr->received = 0;
  pr->too_large = pr->oom = 0;
  pr->sock_errno = 0;
  pr->sockets = 0;
  pr->errbuf[0] = '\0';
  return pr;
}

/* A probe out of the multi handle and the table goes back to the free list. */
static void probe_recycle(dsp_prober *p, probe *pr) {
  free(pr->expect);
  pr->expect = NULL;
  pr->cb = NULL;
  pr->arg = NULL;
  if (pr->body_cap > BODY_KEEP_MAX) {
    free(pr->body);
    pr->body = NULL;
    pr->body_cap = 0;
  }
  if (p->closing || p->nfree >= p->max_idle_easy) {
    probe_destroy(pr);
    return;
  }
  pr->next = p->free_list;
  p->free_list = pr;
  p->nfree++;
}

/* CURLOPT_WRITEFUNCTION: count every body byte against the limit; keep them
   only when a substring is expected. Returning short fails the transfer
   with CURLE_WRITE_ERROR, told apart afterwards by too_large / oom. */
static size_t on_body(char *data, size_t size, size_t n, void *userp) {
  probe *pr = userp;
  size_t len = size * n;
  if (len > pr->limit - pr->received) {
    pr->too_large = 1;
    return 0;
  }
  if (pr->expect != NULL) {
    if (pr->received + len > pr->body_cap) {
      size_t cap = pr->body_cap ? pr->body_cap : 1024;
      char *b;
      while (cap < pr->received + len) cap *= 2;
      if (cap > pr->limit) cap = pr->limit;
      b = realloc(pr->body, cap);
      if (b == NULL) {
        pr->oom = 1;
        return 0;
      }
      pr->body = b;
      pr->body_cap = cap;
    }
    memcpy(pr->body + pr->received, data, len);
  }
  pr->received += len;
  return len;
}

#define SETOPT(opt, val)                                                \
  do {                                                                  \
    if ((rc = curl_easy_setopt(e, opt, val)) != CURLE_OK) goto failed; \
  } while (0)

/* The options every probe shares, set once per easy handle: a recycled
   handle keeps them (no curl_easy_reset, whose re-initialisation and the
   string copies here were a tenth of a probe's cost). Returns 0 or -1. */
static int configure_once(dsp_prober *p, probe *pr) {
  CURL *e = pr->easy;
  CURLcode rc;
  SETOPT(CURLOPT_HTTPGET, 1L);
  SETOPT(CURLOPT_NOSIGNAL, 1L);  /* no SIGALRM tricks: we own the process */
  SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 deprecated CURLOPT_PROTOCOLS */
  SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  SETOPT(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  SETOPT(CURLOPT_PROXY, ""); /* "" disables proxies, the environment's too */
  SETOPT(CURLOPT_USERAGENT, USER_AGENT);
  SETOPT(CURLOPT_WRITEFUNCTION, on_body);
  SETOPT(CURLOPT_WRITEDATA, pr);
  SETOPT(CURLOPT_PRIVATE, pr);
  SETOPT(CURLOPT_ERRORBUFFER, pr->errbuf);
  SETOPT(CURLOPT_OPENSOCKETFUNCTION, on_curl_open);
  SETOPT(CURLOPT_OPENSOCKETDATA, pr); /* only its own connects call it */
  SETOPT(CURLOPT_CLOSESOCKETFUNCTION, on_curl_close);
  SETOPT(CURLOPT_CLOSESOCKETDATA, p);
  return 0;
failed:
  DSP_WARN("probe: curl_easy_setopt: %s", curl_easy_strerror(rc));
  return -1;
}

/* What differs between probes. Returns 0, UV_ENOMEM (curl copies the URL),
   or UV_EINVAL if this libcurl refuses an option. */
static int configure(probe *pr, const char *url) {
  CURL *e = pr->easy;
  CURLcode rc;
  SETOPT(CURLOPT_URL, url);
  SETOPT(CURLOPT_TIMEOUT_MS, (long)pr->timeout_ms);
  /* Refuse early when Content-Length already says too much (FILESIZE_EXCEEDED);
     on_body enforces the limit for chunked and close-delimited bodies. */
  SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)pr->limit);
  return 0;
failed:
  DSP_WARN("probe: curl_easy_setopt: %s", curl_easy_strerror(rc));
  return rc == CURLE_OUT_OF_MEMORY ? UV_ENOMEM : UV_EINVAL;
}

#undef SETOPT

/* --- judging a finished transfer --------------------------------------- */

/* 1 if needle[0..nlen) occurs in hay[0..hlen) (memmem is a GNU extension). */
static int contains(const char *hay, size_t hlen, const char *needle, size_t nlen) {
  if (nlen == 0) return 1;
  for (size_t i = 0; i + nlen <= hlen; i++) {
    const char *q = memchr(hay + i, needle[0], hlen - nlen + 1 - i);
    if (q == NULL) return 0;
    i = (size_t)(q - hay);
    if (memcmp(q, needle, nlen) == 0) return 1;
  }
  return 0;
}

/* Reasons may quote bytes from the network or the config: keep them to one
   printable line. */
static void clean_reason(char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f) *s = '?';
}

/* EMFILE or ENFILE if this process cannot open a descriptor now, else 0. */
static int out_of_descriptors(void) {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    close(fd);
    return 0;
  }
  return errno == EMFILE || errno == ENFILE ? errno : 0;
}

static void judge(dsp_prober *p, probe *pr, CURLcode rc, dsp_probe_result *r) {
  long status = 0, os_errno = 0, connects = 0;
  int lerr;
  curl_off_t total = 0;
  int too_large = pr->too_large || rc == CURLE_FILESIZE_EXCEEDED;
  char *s = NULL;

  memset(r, 0, sizeof(*r));
  curl_easy_getinfo(pr->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(pr->easy, CURLINFO_TOTAL_TIME_T, &total);
  curl_easy_getinfo(pr->easy, CURLINFO_NUM_CONNECTS, &connects);
  if (connects > 0) p->stats.connects += (uint64_t)connects;
  r->status = status;
  r->latency_us = total > 0 ? (uint64_t)total : 0;

  /* Failures of our own say nothing about the worker: LOCAL, which health
     does not count against it. Only where nothing of the worker's can be
     the cause: no socket could be made at all (with several addresses, one
     refused is the worker's answer), the one connect found no free local
     port, or a name lookup failed while this process has no descriptor
     left (curl's resolver thread needs a socketpair). Not curl 7.88's
     CURLE_OUT_OF_MEMORY, which also means a response header over curl's
     limit, nor a body buffer that could not grow: a worker can cause
     both. Then other errors; a body over the limit is judged after the
     status. */
  if (rc == CURLE_COULDNT_CONNECT) curl_easy_getinfo(pr->easy, CURLINFO_OS_ERRNO, &os_errno);
  if (rc == CURLE_COULDNT_CONNECT && pr->sock_errno != 0 && pr->sockets == 0) {
    r->kind = DSP_PROBE_LOCAL;
    snprintf(r->reason, sizeof(r->reason), "cannot open a socket: %s", strerror(pr->sock_errno));
  } else if (rc == CURLE_COULDNT_CONNECT && os_errno == EADDRNOTAVAIL && pr->sockets == 1) {
    r->kind = DSP_PROBE_LOCAL;
    snprintf(r->reason, sizeof(r->reason), "no free local port: %s", strerror(EADDRNOTAVAIL));
  } else if (rc == CURLE_COULDNT_RESOLVE_HOST && (lerr = out_of_descriptors()) != 0) {
    r->kind = DSP_PROBE_LOCAL;
    snprintf(r->reason, sizeof(r->reason), "cannot look the host up: %s", strerror(lerr));
  } else if (rc != CURLE_OK && !(too_large && rc == CURLE_WRITE_ERROR) &&
      rc != CURLE_FILESIZE_EXCEEDED) {
    r->kind = DSP_PROBE_OTHER;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      r->kind = DSP_PROBE_TIMEOUT;
      snprintf(r->reason, sizeof(r->reason), "timeout after %u ms", pr->timeout_ms);
      break;
    case CURLE_COULDNT_RESOLVE_HOST:
      r->kind = DSP_PROBE_DNS;
      if (curl_easy_getinfo(pr->easy, CURLINFO_EFFECTIVE_URL, &s) == CURLE_OK && s != NULL &&
          curl_url_set(p->url, CURLUPART_URL, s, 0) == CURLUE_OK &&
          curl_url_get(p->url, CURLUPART_HOST, &s, 0) == CURLUE_OK) {
        snprintf(r->reason, sizeof(r->reason), "could not resolve host '%s'", s);
        curl_free(s);
      } else {
        snprintf(r->reason, sizeof(r->reason), "could not resolve host");
      }
      break;
    case CURLE_COULDNT_CONNECT:
      if (os_errno == ECONNREFUSED) {
        r->kind = DSP_PROBE_REFUSED;
        snprintf(r->reason, sizeof(r->reason), "connection refused");
        break;
      }
      /* fall through */
    default:
      if (pr->oom)
        snprintf(r->reason, sizeof(r->reason), "out of memory for the body");
      else if (pr->errbuf[0] != '\0')
        snprintf(r->reason, sizeof(r->reason), "%.60s: %.130s", curl_easy_strerror(rc),
                 pr->errbuf);
      else
        snprintf(r->reason, sizeof(r->reason), "%s", curl_easy_strerror(rc));
      break;
    }
  } else if (status < pr->lo || status > pr->hi) {
    if (status >= 300 && status <= 399) {
      r->kind = DSP_PROBE_REDIRECT;
      if (curl_easy_getinfo(pr->easy, CURLINFO_REDIRECT_URL, &s) == CURLE_OK && s != NULL)
        snprintf(r->reason, sizeof(r->reason), "redirect (%ld) to %s not followed", status, s);
      else
        snprintf(r->reason, sizeof(r->reason), "redirect (%ld) not followed", status);
    } else {
      r->kind = DSP_PROBE_STATUS;
      snprintf(r->reason, sizeof(r->reason), "status %ld (expected %d-%d)", status, pr->lo,
               pr->hi);
    }
  } else if (too_large) {
    r->kind = DSP_PROBE_BODY_TOO_LARGE;
    snprintf(r->reason, sizeof(r->reason), "body over %zu bytes", pr->limit);
  } else if (pr->expect != NULL &&
             !contains(pr->body, pr->received, pr->expect, pr->expect_len)) {
    r->kind = DSP_PROBE_BODY_MISMATCH;
    snprintf(r->reason, sizeof(r->reason), "body does not contain \"%.100s\"", pr->expect);
  } else {
    r->kind = DSP_PROBE_OK;
    r->ok = 1;
    snprintf(r->reason, sizeof(r->reason), "status %ld", status);
  }
  clean_reason(r->reason);
}

/* One finished transfer: judge it, put the handle back, then tell the
   caller (last, so the callback may do anything to the prober). */
static void finish(dsp_prober *p, shard *sh, CURL *easy, CURLcode rc) {
  char *priv = NULL;
  probe *pr, **pp;
  dsp_probe_result r;
  dsp_probe_cb cb;
  void *arg;

  curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
  pr = (probe *)priv;
  assert(pr != NULL && pr->easy == easy);
  judge(p, pr, rc, &r);
  cb = pr->cb;
  arg = pr->arg;
  curl_multi_remove_handle(sh->multi, easy);
  pr->sh = NULL;
  pp = find(p, pr->token);
  assert(*pp == pr);
  *pp = pr->next;
  p->count--;
  probe_recycle(p, pr);
  p->stats.completed++;
  if (!r.ok) p->stats.failed++;
  cb(arg, &r);
}

/* Every finished transfer of sh, until curl has none left (or a callback
   closed the prober: then the multi handles are gone). */
static void drain(shard *sh) {
  dsp_prober *p = sh->p;
  CURLMsg *m;
  int left;
  while (!p->closing && (m = curl_multi_info_read(sh->multi, &left)) != NULL)
    if (m->msg == CURLMSG_DONE) finish(p, sh, m->easy_handle, m->data.result);
}

static void socket_action(shard *sh, curl_socket_t fd, int flags) {
  int running;
  CURLMcode mrc = curl_multi_socket_action(sh->multi, fd, flags, &running);
  if (mrc != CURLM_OK) DSP_WARN("probe: curl_multi_socket_action: %s", curl_multi_strerror(mrc));
  drain(sh);
}

/* --- curl's sockets and timer on the loop ------------------------------ */

static void maybe_finish_close(dsp_prober *p) {
  void (*done)(void *) = p->done;
  void *arg = p->done_arg;
  if (!p->closing || p->handles_open > 0) return;
  free(p->shards);
  free(p->byfd);
  free(p);
  if (done != NULL) done(arg);
}

static void on_sock_closed(uv_handle_t *h) {
  sock *s = DSP_CONTAINER_OF((uv_poll_t *)h, sock, poll);
  dsp_prober *p = s->owner;
  free(s);
  p->handles_open--;
  maybe_finish_close(p);
}

static void pend_remove(sock *s) {
  dsp_prober *p = s->owner;
  if (!s->pend.linked) return;
  dsp_fifo_remove(&p->pend, &s->pend);
  s->pend_flags = 0;
  if (p->pend.n == 0) uv_idle_stop(&p->later);
}

static void sock_close(sock *s) {
  dsp_prober *p = s->owner;
  pend_remove(s);
  dsp_fifo_remove(&p->socks, &s->open);
  if ((size_t)s->fd < p->nbyfd && p->byfd[s->fd] == s) p->byfd[s->fd] = NULL;
  uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void sock_poll(sock *s, int events);
static void on_later(uv_idle_t *h);

static void on_poll(uv_poll_t *h, int status, int events) {
  sock *s = DSP_CONTAINER_OF(h, sock, poll);
  int flags = 0;
  if (!s->watched) {
    /* An idle keep-alive connection woke (closed by the server, most
       likely): stop polling it; curl checks it before any reuse. */
    sock_poll(s, 0);
    return;
  }
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  dsp_fifo_push(&s->owner->pend, &s->pend);
  uv_idle_start(&s->owner->later, on_later); /* no-op if running */
  s->pend_flags |= flags ? flags : CURL_CSELECT_IN;
}

/* The events queued by on_poll, to curl (see the top of the file). */
static void on_later(uv_idle_t *h) {
  dsp_prober *p = DSP_CONTAINER_OF(h, dsp_prober, later);
  while (!p->closing && p->pend.head != NULL) {
    sock *s = DSP_CONTAINER_OF(p->pend.head, sock, pend);
    int flags = s->pend_flags;
    pend_remove(s);
    /* s may be closed inside (CURLOPT_CLOSESOCKETFUNCTION), and others
       with it (taken off the queue then); its memory lives until the
       close callback, but nothing here touches it again. */
    socket_action(s->sh, s->fd, flags);
  }
}

/* Poll s for `events` (0: stop), unless that is what it does already. */
static void sock_poll(sock *s, int events) {
  int err;
  if (events == s->events) return;
  err = events ? uv_poll_start(&s->poll, events, on_poll) : uv_poll_stop(&s->poll);
  if (err != 0) {
    DSP_WARN("probe: uv_poll_start(%d): %s", (int)s->fd, uv_strerror(err));
    return;
  }
  s->events = events;
}

/* curl watches s (a transfer uses it) or not (an idle connection, whose
   poll must not keep the loop alive). */
static void sock_watched(sock *s, int watched) {
  s->watched = watched;
  if (watched) uv_ref((uv_handle_t *)&s->poll);
  else uv_unref((uv_handle_t *)&s->poll);
}

static void on_timer(uv_timer_t *t) {
  socket_action(DSP_CONTAINER_OF(t, shard, timer), CURL_SOCKET_TIMEOUT, 0);
}

/* The sock for fd, made if there is none. NULL on failure. */
static sock *sock_get(dsp_prober *p, curl_socket_t fd) {
  sock *s;
  int err;
  if (fd < 0) return NULL;
  if ((size_t)fd >= p->nbyfd) {
    size_t n = p->nbyfd ? p->nbyfd : 64;
    sock **t;
    while (n <= (size_t)fd) n *= 2;
    if ((t = realloc(p->byfd, n * sizeof(*t))) == NULL) return NULL;
    memset(t + p->nbyfd, 0, (n - p->nbyfd) * sizeof(*t));
    p->byfd = t;
    p->nbyfd = n;
  }
  if ((s = p->byfd[fd]) != NULL) return s;
  if ((s = calloc(1, sizeof(*s))) == NULL) return NULL;
  err = uv_poll_init_socket(p->loop, &s->poll, fd);
  if (err != 0) {
    DSP_WARN("probe: uv_poll_init_socket(%d): %s", (int)fd, uv_strerror(err));
    free(s);
    return NULL;
  }
  s->owner = p;
  s->fd = fd;
  dsp_fifo_push(&p->socks, &s->open);
  p->handles_open++;
  p->byfd[fd] = s;
  return s;
}

/* CURLMOPT_SOCKETFUNCTION. If a poll cannot be set up the socket goes
   unwatched and its transfer ends by its own timeout: degraded, never stuck. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  shard *sh = userp;
  dsp_prober *p = sh->p;
  sock *s = socketp;
  int events = 0;
  (void)easy;

  if (what == CURL_POLL_REMOVE) {
    /* Done with it for now; it may go back to curl's connection cache.
       A read poll stays (it wakes only if the server closes the idle
       connection); a write poll would fire at once, so it stops. */
    if (s != NULL && !s->owned) {
      /* Not a connection (the threaded resolver's socketpair): closed
         without telling us, so the poll goes now, before the number can
         come back as another socket. */
      sock_close(s);
    } else if (s != NULL) {
      sock_watched(s, 0);
      if (s->events != UV_READABLE) sock_poll(s, 0);
    }
    return 0;
  }
  if (p->closing) return 0;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  if (s == NULL) {
    if ((s = sock_get(p, fd)) == NULL) {
      DSP_WARN("probe: cannot watch socket %d", (int)fd);
      return 0;
    }
    if (curl_multi_assign(sh->multi, fd, s) != CURLM_OK) return 0;
  }
  s->sh = sh;
  sock_watched(s, 1);
  sock_poll(s, events);
  return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION: every connection's socket, so that its
   sock lives until on_curl_close. */
static curl_socket_t on_curl_open(void *clientp, curlsocktype purpose,
                                  struct curl_sockaddr *a) {
  probe *pr = clientp;
  dsp_prober *p = pr->p;
  curl_socket_t fd;
  sock *s;
  (void)purpose;
  fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
  if (fd < 0) {
    /* Out of a resource: judge() calls the probe LOCAL. Not any errno:
       EAFNOSUPPORT for a name's IPv6 address on a host without IPv6 must
       not hide that its IPv4 address refused. */
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
      pr->sock_errno = errno;
    return CURL_SOCKET_BAD;
  }
  pr->sockets++;
  /* A sock already under this number is stale (its socket was closed
     without a word, which only the resolver's may be): a fresh one. */
  if ((size_t)fd < p->nbyfd && p->byfd[fd] != NULL) sock_close(p->byfd[fd]);
  if (!p->closing && (s = sock_get(p, fd)) != NULL) s->owned = 1;
  return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: every socket curl closes. Its poll goes
   first (uv_close stops it at once), then the fd, so the number can come
   back for another socket with no stale poll on it. */
static int on_curl_close(void *clientp, curl_socket_t fd) {
  dsp_prober *p = clientp;
  if (fd >= 0 && (size_t)fd < p->nbyfd && p->byfd[fd] != NULL) sock_close(p->byfd[fd]);
  return close(fd);
}

/* CURLMOPT_TIMERFUNCTION: -1 stop, 0 soon (next loop turn), else in ms. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
  shard *sh = userp;
  (void)multi;
  if (sh->p->closing) return 0;
  if (timeout_ms < 0)
    uv_timer_stop(&sh->timer);
  else
    uv_timer_start(&sh->timer, on_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

/* --- public ------------------------------------------------------------ */

/* Cleans up every shard's multi handle that exists (the timers and the
   array stay). curl may still report CURL_POLL_REMOVE for sockets it closes. */
static void shards_cleanup(dsp_prober *p) {
  for (unsigned i = 0; i < p->nshards; i++) {
    if (p->shards[i].multi != NULL) curl_multi_cleanup(p->shards[i].multi);
    p->shards[i].multi = NULL;
  }
}

/* sh's multi handle, made on its first probe (see the top of the file).
   Returns 0, UV_ENOMEM (curl makes it without its wakeup socketpair when
   no descriptor is left, which we never use), or UV_EINVAL if this libcurl
   refuses an option. */
static int shard_open(shard *sh) {
  CURLM *m = curl_multi_init();
  if (m == NULL) return UV_ENOMEM;
  if (curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
      curl_multi_setopt(m, CURLMOPT_SOCKETDATA, sh) != CURLM_OK ||
      curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
      curl_multi_setopt(m, CURLMOPT_TIMERDATA, sh) != CURLM_OK ||
      curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)sh->p->max_connects) != CURLM_OK) {
    curl_multi_cleanup(m);
    return UV_EINVAL;
  }
  sh->multi = m;
  return 0;
}

dsp_prober *dsp_prober_new(uv_loop_t *loop, const dsp_prober_limits *limits) {
  unsigned max_connects = limits && limits->max_connects ? limits->max_connects
                                                         : MAX_CONNECTS_DEFAULT;
  unsigned nshards = limits && limits->shards ? limits->shards : SHARDS_DEFAULT;
  dsp_prober *p;
  if (nshards > SHARDS_MAX) return NULL;
  p = calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  p->loop = loop;
  p->max_idle_easy = limits && limits->max_idle_easy ? limits->max_idle_easy
                                                     : MAX_IDLE_EASY_DEFAULT;
  p->hash_bits = HASH_BITS_MIN;
  p->table = calloc((size_t)1 << p->hash_bits, sizeof(*p->table));
  if (p->table == NULL) goto fail;
  p->url = curl_url();
  if (p->url == NULL) goto fail;
  p->shards = calloc(nshards, sizeof(*p->shards));
  if (p->shards == NULL) goto fail;
  p->nshards = nshards;
  p->max_connects = max_connects;
  for (unsigned i = 0; i < nshards; i++) {
    p->shards[i].p = p;
    uv_timer_init(loop, &p->shards[i].timer); /* cannot fail */
    p->shards[i].timer.data = p;
  }
  uv_idle_init(loop, &p->later);
  uv_unref((uv_handle_t *)&p->later); /* the socks it serves keep the loop */
  p->handles_open = 1 + (int)nshards;
  return p;
fail:
  free(p->shards);
  curl_url_cleanup(p->url);
  free(p->table);
  free(p);
  return NULL;
}

/* A shard timer's or the idle handle's close (data: the prober). */
static void on_own_handle_closed(uv_handle_t *h) {
  dsp_prober *p = h->data;
  p->handles_open--;
  maybe_finish_close(p);
}

void dsp_prober_close(dsp_prober *p, void (*done)(void *arg), void *arg) {
  size_t n = (size_t)1 << p->hash_bits;
  assert(!p->closing);
  p->closing = 1;
  p->done = done;
  p->done_arg = arg;
  for (size_t i = 0; i < n; i++) {
    while (p->table[i] != NULL) {
      probe *pr = p->table[i];
      p->table[i] = pr->next;
      curl_multi_remove_handle(pr->sh->multi, pr->easy);
      probe_destroy(pr);
    }
  }
  p->count = 0;
  while (p->free_list != NULL) {
    probe *pr = p->free_list;
    p->free_list = pr->next;
    probe_destroy(pr);
  }
  p->nfree = 0;
  shards_cleanup(p);
  curl_url_cleanup(p->url);
  p->url = NULL;
  free(p->table);
  p->table = NULL;
  while (p->socks.head != NULL) sock_close(DSP_CONTAINER_OF(p->socks.head, sock, open));
  for (unsigned i = 0; i < p->nshards; i++)
    uv_close((uv_handle_t *)&p->shards[i].timer, on_own_handle_closed);
  p->later.data = p;
  uv_close((uv_handle_t *)&p->later, on_own_handle_closed);
}

int dsp_probe_start(dsp_prober *p, uint64_t token, const dsp_probe_spec *spec, dsp_probe_cb cb,
                    void *arg) {
  int lo, hi, err;
  size_t limit, expect_len;
  probe *pr, **pp;

  if (p->closing || spec == NULL || cb == NULL || spec->url == NULL) return UV_EINVAL;
  if (spec->timeout_ms == 0 || spec->timeout_ms > DSP_PROBE_TIMEOUT_MAX) return UV_EINVAL;
  lo = spec->status_lo;
  hi = spec->status_hi;
  if (lo == 0 && hi == 0) {
    lo = 200;
    hi = 299;
  }
  if (lo < 100 || hi > 599 || lo > hi) return UV_EINVAL;
  limit = spec->body_limit ? spec->body_limit : DSP_PROBE_BODY_LIMIT_DEFAULT;
  if (limit > DSP_PROBE_BODY_LIMIT_MAX) return UV_EINVAL;
  expect_len = spec->expect_body ? strlen(spec->expect_body) : 0;
  if (expect_len > limit) return UV_EINVAL;
  /* A whole URL with an http(s) scheme; curl's parser also rejects spaces
     and control bytes. */
  if (strnlen(spec->url, DSP_PROBE_URL_MAX + 1) > DSP_PROBE_URL_MAX ||
      (strncasecmp(spec->url, "http://", 7) != 0 && strncasecmp(spec->url, "https://", 8) != 0))
    return UV_EINVAL;
  {
    /* curl's parser is a twentieth of a probe: a URL it accepted lately
       (the same worker's, a round ago) is not parsed again. */
    uint64_t h = url_hash(spec->url);
    uint64_t *seen = &p->urls_ok[h & (URL_CACHE - 1)];
    if (*seen != h) {
      switch (curl_url_set(p->url, CURLUPART_URL, spec->url, 0)) {
      case CURLUE_OK: break;
      case CURLUE_OUT_OF_MEMORY: return UV_ENOMEM;
      default: return UV_EINVAL;
      }
      *seen = h;
    }
  }
  pp = find(p, token);
  if (*pp != NULL) return UV_EEXIST;

  pr = probe_take(p);
  if (pr == NULL) return UV_ENOMEM;
  pr->token = token;
  pr->cb = cb;
  pr->arg = arg;
  pr->timeout_ms = spec->timeout_ms;
  pr->lo = lo;
  pr->hi = hi;
  pr->limit = limit;
  pr->expect_len = expect_len;
  if (expect_len > 0) {
    pr->expect = strdup(spec->expect_body);
    if (pr->expect == NULL) {
      err = UV_ENOMEM;
      goto fail;
    }
  }
  err = configure(pr, spec->url);
  if (err != 0) goto fail;
  /* Calls on_curl_timer (0: start on the next loop turn), never a transfer
     callback, so nothing completes inside dsp_probe_start. */
  pr->sh = shard_of(p, spec->url);
  if (pr->sh->multi == NULL && (err = shard_open(pr->sh)) != 0) {
    pr->sh = NULL;
    goto fail;
  }
  switch (curl_multi_add_handle(pr->sh->multi, pr->easy)) {
  case CURLM_OK: break;
  case CURLM_OUT_OF_MEMORY: err = UV_ENOMEM; break;
  default: err = UV_EINVAL; break;
  }
  if (err != 0) {
    pr->sh = NULL;
    goto fail;
  }
  pr->next = *pp;
  *pp = pr;
  p->count++;
  p->stats.started++;
  if (p->count > ((size_t)1 << p->hash_bits)) grow(p);
  return 0;
fail:
  probe_recycle(p, pr);
  return err;
}

void dsp_probe_cancel(dsp_prober *p, uint64_t token) {
  probe **pp, *pr;
  if (p->closing) return;
  pp = find(p, token);
  pr = *pp;
  if (pr == NULL) return;
  *pp = pr->next;
  p->count--;
  /* Also drops a DONE message not yet read (curl's multi.c). */
  curl_multi_remove_handle(pr->sh->multi, pr->easy);
  pr->sh = NULL;
  probe_recycle(p, pr);
  p->stats.cancelled++;
}

void dsp_prober_stats(const dsp_prober *p, dsp_probe_stats *out) {
  *out = p->stats;
  out->in_flight = p->count;
}

const char *dsp_probe_kind_name(int kind) {
  static const char *const names[] = {
      "ok",     "refused",       "timeout",        "dns",      "status",
      "body_mismatch", "body_too_large", "redirect", "other",  "local"};
  if (kind < 0 || (size_t)kind >= DSP_ARRAY_SIZE(names)) return "unknown";
  return names[kind];
}
