/*
 * health.h: per-worker health as a pure state machine (no I/O, no clock:
 * every call is given `now`, monotonic milliseconds). The probe glue, the
 * heartbeat RPC and the task forwarder feed it results; it says whether the
 * worker may receive tasks. Tests: tests/unit/test_health.c.
 *
 * Three independent signals; a worker is eligible when all three allow it:
 *  - Active check (settings.check non-empty), HAProxy's fall/rise: a new
 *    worker is PENDING and ineligible until its first passing probe (nginx's
 *    `mandatory`); `fall` consecutive failures take it DOWN, `rise`
 *    consecutive successes bring it back UP.
 *  - Heartbeat (settings.heartbeat_ttl_ms > 0): PENDING until the first
 *    heartbeat, UP while now - last < ttl, DOWN from last + ttl on; the next
 *    heartbeat brings it UP at once.
 *  - Passive, nginx's max_fails/fail_timeout (ngx_http_upstream_round_robin.c):
 *    failed task reports within fail_timeout of each other count up; at
 *    max_fails the worker is ejected for fail_timeout, then gets a trial;
 *    a failure in the trial ejects it again, a success clears the count.
 *
 * Settings come from daemon flags (cluster defaults, dsp_health_settings_set)
 * overridden per worker by keys in the worker znode JSON
 * (dsp_health_settings_member); both validate every value, since flags and
 * znodes written with zkCli are untrusted.
 *
 * The active/heartbeat view is persisted in ZooKeeper as a small JSON record
 * (dsp_health_record_format/_parse) so that a coordinator taking over after
 * failover starts from its predecessor's view instead of from PENDING.
 *
 * Ownership: dsp_health and dsp_health_settings are plain structs the caller
 * embeds; nothing here allocates. Returned strings are static or point into
 * the struct they were read from.
 */
#ifndef DSP_HEALTH_H
#define DSP_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"

#define DSP_HEALTH_URL_MAX 512     /* longest "check" URL, bytes */
#define DSP_HEALTH_BODY_MAX 256    /* longest "expect_body", bytes */
#define DSP_HEALTH_REASON_MAX 160  /* reasons are cut to this, NUL included */
#define DSP_HEALTH_RECORD_MAX 1024 /* dsp_health_record_format never needs more */

typedef struct {
  char check[DSP_HEALTH_URL_MAX + 1]; /* http(s) URL; "" = no active check */
  uint32_t interval_ms;               /* 100..3600000, default 2000 */
  uint32_t timeout_ms;                /* >= 10 and < interval_ms, default 1000 */
  uint32_t fall;                      /* 1..100, default 3 */
  uint32_t rise;                      /* 1..100, default 2 */
  uint32_t jitter_pct;                /* 0..100, default 0 */
  int expect_status_lo;               /* passing statuses: lo..hi, default */
  int expect_status_hi;               /*   200..299; within 100..599 */
  char expect_body[DSP_HEALTH_BODY_MAX + 1]; /* substring; "" = any body */
  uint32_t body_limit;                /* bytes read of a reply, 1..16 MiB */
  uint32_t heartbeat_ttl_ms;          /* 0 = off, else 100..86400000 */
  uint32_t max_fails;                 /* 0 = passive ejection off; 0..1000 */
  uint32_t fail_timeout_ms;           /* 1..3600000, default 10000 */
} dsp_health_settings;

/* The documented defaults (above). Never fails. */
void dsp_health_settings_default(dsp_health_settings *s);

/*
 * Apply one member of a worker znode's JSON object. Returns 0 if m->key is
 * not a health key (s untouched; the caller handles the key), 1 if it was
 * one and its value was stored, -1 if it was one with a bad value: then s is
 * untouched and err[errlen] says why, e.g. `"fall" 0 is out of range 1-100`.
 * Cross-field rules are left to dsp_health_settings_validate().
 */
int dsp_health_settings_member(dsp_health_settings *s, const dsp_json_member *m,
                               char *err, size_t errlen);

/*
 * The same for a textual value (a daemon flag such as --check-interval=2000
 * mapped to key "interval_ms"): returns 0 when stored, -1 with a reason when
 * the key is unknown or the value is bad (s untouched then).
 */
int dsp_health_settings_set(dsp_health_settings *s, const char *key, const char *value,
                            char *err, size_t errlen);

/*
 * Check every field and the rules between fields (timeout_ms < interval_ms).
 * Call after the last member/flag. Returns 0, or -1 with a reason in err.
 */
int dsp_health_settings_validate(const dsp_health_settings *s, char *err, size_t errlen);

/*
 * Judge a probe reply against expect_status and expect_body (only the first
 * body_limit bytes of body are searched; body may hold NULs). Returns 1 if it
 * passes, else 0 with a reason such as "status 503, expected 200-299".
 */
int dsp_health_response_ok(const dsp_health_settings *s, long status, const char *body,
                           size_t body_len, char *reason, size_t reasonlen);

/*
 * Delay before the next probe: interval_ms shortened by a random fraction of
 * up to jitter_pct% (HAProxy's spread-checks), exactly
 * interval - (random64 % (interval * jitter_pct / 100 + 1)).
 */
uint64_t dsp_health_next_probe_delay(const dsp_health_settings *s, uint64_t random64);

typedef enum {
  DSP_HEALTH_OFF,     /* signal not configured (never for the overall state) */
  DSP_HEALTH_PENDING, /* waiting for the mandatory first probe/heartbeat */
  DSP_HEALTH_UP,
  DSP_HEALTH_DOWN
} dsp_health_state;

/*
 * One worker's health. Embed it; every field is read-only for callers and
 * changes only through the functions below.
 */
typedef struct {
  dsp_health_settings settings; /* a copy; the probe glue reads check etc. */

  /* active check */
  dsp_health_state active;      /* OFF when settings.check is "" */
  uint32_t consec_ok, consec_fail;
  uint64_t probes, probe_failures;  /* totals since init */
  uint64_t last_latency_us;         /* of the last probe result */
  uint64_t active_changed_ms;       /* last change of `active` */
  char last_error[DSP_HEALTH_REASON_MAX];    /* reason of the last failed or
                                               unmade (inconclusive) probe */
  int last_inconclusive;            /* the last probe could not be made (LOCAL) */
  char active_reason[DSP_HEALTH_REASON_MAX]; /* why `active` last changed */

  /* heartbeat */
  dsp_health_state heartbeat;   /* OFF when settings.heartbeat_ttl_ms is 0 */
  int heartbeat_seen;           /* any heartbeat yet (counted even when OFF) */
  uint64_t last_heartbeat_ms;
  uint64_t heartbeat_changed_ms;
  char heartbeat_reason[64];

  /* passive (names as in nginx) */
  uint32_t fails;               /* failed reports counted towards max_fails */
  uint64_t checked_ms;          /* time of the last failed report */
  int ejected;                  /* passively ejected as of the last call */

  /* combined */
  int eligible;                 /* as of the last call (what it returned about) */
  uint64_t changed_ms;          /* last change of any signal */
  char reason[DSP_HEALTH_REASON_MAX]; /* why the last signal changed */
  uint32_t record_seq;          /* +1 on each active/heartbeat transition:
                                   rewrite the ZooKeeper record when it moves */
} dsp_health;

/*
 * Start a worker's health: active PENDING if a check is set, heartbeat
 * PENDING if a TTL is set, no passive failures. With neither it is eligible
 * at once.
 */
void dsp_health_init(dsp_health *h, const dsp_health_settings *s, uint64_t now);

/*
 * Adopt new settings for a worker whose znode changed, keeping what still
 * applies: a check added starts PENDING, a check removed drops the active
 * signal (OFF); a URL or threshold change keeps the state and counters (the
 * new thresholds apply from the next result). A heartbeat TTL added is UP at
 * once if a heartbeat arrived within the new TTL, else PENDING; removed, the
 * heartbeat drops out. Passive counts are kept. Returns 1 if eligibility
 * changed, else 0.
 */
int dsp_health_reconfigure(dsp_health *h, const dsp_health_settings *s, uint64_t now);

/*
 * Record an active probe result (ok non-zero = passed). reason (NULL allowed)
 * says why a probe failed; it is copied. Ignored (returns 0) when the worker
 * has no check, e.g. a late result after the check was removed. Returns 1 if
 * eligibility changed, else 0.
 */
int dsp_health_probe_result(dsp_health *h, int ok, const char *reason, uint64_t latency_us,
                            uint64_t now);

/*
 * Record a probe that could not be made for a reason of our own (probe
 * kind LOCAL: no file descriptor, no local port, no memory): it tells
 * nothing about the worker, so its state and consecutive counts stay as
 * they are; only last_error takes the reason, so that it shows. Returns 1
 * if eligibility changed (only by time passing), else 0.
 */
int dsp_health_probe_inconclusive(dsp_health *h, const char *reason, uint64_t now);

/* Record a heartbeat from the worker. Returns 1 if eligibility changed. */
int dsp_health_heartbeat(dsp_health *h, uint64_t now);

/*
 * Record the outcome of a task sent to the worker (passive check). Returns 1
 * if eligibility changed, else 0.
 */
int dsp_health_report(dsp_health *h, int ok, uint64_t now);

/*
 * Apply the passing of time: heartbeat expiry and the end of a passive
 * ejection. Call at dsp_health_next_tick(). Returns 1 if eligibility changed.
 */
int dsp_health_tick(dsp_health *h, uint64_t now);

/*
 * The earliest time at which dsp_health_tick() may change something: `now`
 * if that is already due, UINT64_MAX if nothing is time-dependent.
 */
uint64_t dsp_health_next_tick(const dsp_health *h, uint64_t now);

/* 1 if the worker may receive tasks at `now`, else 0. */
int dsp_health_eligible(const dsp_health *h, uint64_t now);

/*
 * The overall state: UP if eligible; PENDING if ineligible only because a
 * mandatory first probe or heartbeat has not arrived; DOWN otherwise.
 * h->reason says why the last signal changed.
 */
dsp_health_state dsp_health_state_of(const dsp_health *h, uint64_t now);

/* "off", "pending", "up" or "down" (static strings). */
const char *dsp_health_state_name(dsp_health_state st);

/* What a new coordinator needs of its predecessor's view of one worker. */
typedef struct {
  dsp_health_state state;  /* PENDING, UP or DOWN */
  uint64_t since_ms;       /* wall clock; 0 if absent */
  int64_t epoch;           /* writer's fencing epoch; 0 if absent */
  char reason[DSP_HEALTH_REASON_MAX]; /* "" if absent */
} dsp_health_record;

/*
 * Format the persisted record: the active/heartbeat state (passive ejection
 * is left out: it is short-lived and each coordinator sees its own traffic)
 * and the reason of the signal that decides it, e.g.
 * {"state":"down","since_ms":1732400000000,"reason":"3 consecutive failures:
 * connection refused","epoch":42}. wall_ms is the wall-clock time of the
 * transition (write the record right after it). Returns 0, or -1 if it does
 * not fit in out[outlen] (DSP_HEALTH_RECORD_MAX always suffices).
 */
int dsp_health_record_format(const dsp_health *h, int64_t epoch, uint64_t wall_ms, char *out,
                             size_t outlen);

/*
 * Parse a record strictly (it may have been written by hand with zkCli):
 * "state" is required and must be "up", "down" or "pending"; "since_ms"
 * (integer >= 0), "epoch" (integer) and "reason" (string, cut to fit) are
 * optional; other keys are ignored. Returns 0, or -1 with a reason in err
 * (out is then unspecified).
 */
int dsp_health_record_parse(const char *data, size_t len, dsp_health_record *out, char *err,
                            size_t errlen);

/*
 * Start a worker from a predecessor's record instead of from PENDING:
 * "up" makes the configured signals UP (eligible now; a heartbeat gets one
 * TTL of grace from `now`), "down" makes them DOWN (active needs `rise`
 * successes, counters start at zero), "pending" is a plain dsp_health_init.
 * The caller should probe at once.
 */
void dsp_health_init_from_record(dsp_health *h, const dsp_health_settings *s,
                                 const dsp_health_record *r, uint64_t now);

#endif
