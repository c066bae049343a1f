/*
 * probe.h: active HTTP health probes. A probe is one GET with its own
 * timeout, judged by an accepted status range and, optionally, a substring
 * the body must contain; its outcome is one result with a kind, the status,
 * curl's total time and a one-line reason.
 *
 * All probes of a prober run at once on one libuv loop through libcurl's
 * multi interface (curl's docs/examples/multi-uv.c pattern): no threads of
 * ours, a worker that accepts and never answers costs only its own timeout,
 * keep-alive connections are reused across probes to the same host:port
 * and easy handles are recycled, so tens of thousands of probes per second
 * need no connection or handle churn.
 *
 * The program calls curl_global_init(CURL_GLOBAL_DEFAULT) once at start-up,
 * before any prober exists (curl requires it before other threads start;
 * the prober never calls it), and curl_global_cleanup() after the last
 * prober is closed.
 *
 * Redirects are never followed (a 3xx outside the accepted range fails as
 * REDIRECT), only http:// and https:// are spoken, and proxies named in the
 * environment (http_proxy, ...) are ignored: a probe measures the worker,
 * not a path to it.
 */
#ifndef DSP_PROBE_H
#define DSP_PROBE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct dsp_prober dsp_prober;

typedef enum {
  DSP_PROBE_OK = 0,
  DSP_PROBE_REFUSED,        /* "connection refused" */
  DSP_PROBE_TIMEOUT,        /* "timeout after N ms" */
  DSP_PROBE_DNS,            /* "could not resolve host 'x'" */
  DSP_PROBE_STATUS,         /* "status 500 (expected 200-299)" */
  DSP_PROBE_BODY_MISMATCH,  /* "body does not contain \"x\"" */
  DSP_PROBE_BODY_TOO_LARGE, /* "body over N bytes" */
  DSP_PROBE_REDIRECT,       /* "redirect (302) to http://x/ not followed" */
  DSP_PROBE_OTHER,          /* curl's error text */
  DSP_PROBE_LOCAL           /* the probe could not be made here, and nothing
                               of the worker's can be why: "cannot open a
                               socket: Too many open files", "no free local
                               port: ...", "cannot look the host up: ..." */
} dsp_probe_kind;

#define DSP_PROBE_REASON_MAX 200
#define DSP_PROBE_BODY_LIMIT_DEFAULT 65536
#define DSP_PROBE_BODY_LIMIT_MAX (1u << 30)
#define DSP_PROBE_TIMEOUT_MAX 3600000u /* one hour, in ms */
#define DSP_PROBE_URL_MAX 4096

typedef struct {
  int ok;                            /* 1 iff kind == DSP_PROBE_OK */
  long status;                       /* HTTP status; 0 when none arrived */
  uint64_t latency_us;               /* curl's total time for the probe */
  int kind;                          /* a dsp_probe_kind */
  char reason[DSP_PROBE_REASON_MAX]; /* one line of printable ASCII */
} dsp_probe_result;

/* What to probe. Strings are copied by dsp_probe_start(). */
typedef struct {
  const char *url;          /* http:// or https://, at most DSP_PROBE_URL_MAX */
  unsigned timeout_ms;      /* the whole probe, 1..DSP_PROBE_TIMEOUT_MAX */
  int status_lo, status_hi; /* accepted statuses; both 0 means 200..299 */
  const char *expect_body;  /* substring the body must hold; NULL or "": any */
  size_t body_limit;        /* most body bytes read, up to _MAX; 0: _DEFAULT */
} dsp_probe_spec;

/* Tuning; dsp_prober_new() takes NULL for the defaults, and 0 in a field
   means that field's default. */
typedef struct {
  unsigned max_connects;  /* idle keep-alive connections kept by each shard
                             (curl's CURLMOPT_MAXCONNECTS); default 1024 */
  unsigned max_idle_easy; /* finished easy handles kept for reuse; 1024 */
  unsigned shards;        /* curl multi handles, probes spread over them by
                             host:port; 1..4096, default 256 */
} dsp_prober_limits;

/* Counters since dsp_prober_new(). */
typedef struct {
  uint64_t started;      /* dsp_probe_start() calls that returned 0 */
  uint64_t completed;    /* callbacks delivered, ok or not */
  uint64_t failed;       /* of those, not ok */
  uint64_t cancelled;    /* probes dsp_probe_cancel() removed */
  uint64_t in_flight;    /* started, neither completed nor cancelled */
  uint64_t easy_created; /* curl easy handles ever created (reuse keeps it low) */
  uint64_t connects;     /* new connections made (reuse keeps it low) */
} dsp_probe_stats;

/* Called exactly once per started probe that is not cancelled, always from
   the loop (never from inside dsp_probe_start). `r` is valid only during
   the call. The callback may start, cancel, or close the prober. */
typedef void (*dsp_probe_cb)(void *arg, const dsp_probe_result *r);

/*
 * A prober on `loop`; limits may be NULL. Returns NULL when out of memory or
 * when curl cannot make a multi handle. The caller owns the prober and ends
 * it with dsp_prober_close(). An idle prober (nothing in flight) holds no
 * referenced active handle, so it does not keep uv_run() from returning
 * (idle keep-alive connections stay polled, unreferenced, to notice a
 * server closing them).
 */
dsp_prober *dsp_prober_new(uv_loop_t *loop, const dsp_prober_limits *limits);

/*
 * Cancel every probe in flight (their callbacks never run), close every
 * handle, and once the last one is closed free the prober and call
 * done(arg) (done may be NULL). p must not be used after this call; it may
 * be made from inside a probe callback, then no further callback runs.
 */
void dsp_prober_close(dsp_prober *p, void (*done)(void *arg), void *arg);

/*
 * Start a probe now. `token` names it for dsp_probe_cancel() and must not
 * be in flight already. Returns 0, after which cb(arg, result) runs exactly
 * once later unless the probe is cancelled; or a negative libuv error, after
 * which cb never runs: UV_EINVAL for a spec that cannot be probed (no
 * http(s) URL, a timeout or body limit out of range, lo > hi, an expected
 * body longer than the limit), UV_EEXIST for a token in flight, UV_ENOMEM.
 */
int dsp_probe_start(dsp_prober *p, uint64_t token, const dsp_probe_spec *spec, dsp_probe_cb cb,
                    void *arg);

/* Stop probe `token`; its callback will not run. Unknown tokens (finished,
   cancelled, never started) are ignored. Safe from inside any callback. */
void dsp_probe_cancel(dsp_prober *p, uint64_t token);

/* Copy the counters into *out. */
void dsp_prober_stats(const dsp_prober *p, dsp_probe_stats *out);

/* "ok", "refused", "timeout", "dns", "status", "body_mismatch",
   "body_too_large", "redirect", "other"; "unknown" for anything else. */
const char *dsp_probe_kind_name(int kind);

#endif
