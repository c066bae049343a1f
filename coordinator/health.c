/*
 * health.c: see health.h. Each mutating call first brings the time-driven
 * parts up to `now` (heartbeat expiry, end of a passive ejection), then
 * applies its event, then compares eligibility with what the previous call
 * saw: that difference is what every call returns.
 *
 * Passive ejection follows ngx_http_upstream_round_robin.c: a peer is skipped
 * while max_fails && fails >= max_fails && now - checked <= fail_timeout, and
 * a failure sets fails++, checked = now. Where nginx resets `fails` only
 * through a selection after fail_timeout (`accessed < checked`), we have no
 * selections, so as the nginx documentation describes it: failures count only
 * within fail_timeout of the previous one, and any success clears them.
 */
#include "health.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define MS_HOUR 3600000u
#define MS_DAY 86400000u
#define BODY_LIMIT_MAX (16u * 1024 * 1024)

/* ------------------------------------------------------------------------ */
/* small helpers                                                            */

static uint64_t elapsed(uint64_t now, uint64_t then) { return now > then ? now - then : 0; }

/* Drop a UTF-8 sequence left incomplete at the end of s by a cut. */
static void utf8_trim(char *s) {
  size_t n = strlen(s), i = n, need;
  unsigned char lead;
  while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--;
  if (i == 0) return;
  lead = (unsigned char)s[i - 1];
  need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  if (n - (i - 1) < need) s[i - 1] = '\0';
}

/*
 * snprintf into buf[len] that may cut (reasons and error messages are cut
 * on purpose), never in the middle of a UTF-8 sequence. NULL/0 is allowed.
 */
static void fmt_cut(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fmt_cut(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  int n;
  if (buf == NULL || len == 0) return;
  va_start(ap, fmt);
  n = vsnprintf(buf, len, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n >= len) utf8_trim(buf);
}

/*
 * Copy untrusted text into out[outlen]: control bytes become spaces, and a
 * cut never splits a UTF-8 sequence (the text ends up in JSON and logs).
 */
static void copy_text(char *out, size_t outlen, const char *in) {
  size_t n = 0;
  if (outlen == 0) return;
  if (in == NULL) in = "";
  while (in[n] != '\0' && n + 1 < outlen) n++;
  if (in[n] != '\0')
    while (n > 0 && ((unsigned char)in[n] & 0xC0) == 0x80) n--; /* continuation */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)in[i];
    out[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
  }
  out[n] = '\0';
}

static uint32_t inc32(uint32_t v) { return v == UINT32_MAX ? v : v + 1; }

/* ------------------------------------------------------------------------ */
/* settings                                                                 */

void dsp_health_settings_default(dsp_health_settings *s) {
  memset(s, 0, sizeof(*s));
  s->interval_ms = 2000;
  s->timeout_ms = 1000;
  s->fall = 3;
  s->rise = 2;
  s->jitter_pct = 0;
  s->expect_status_lo = 200;
  s->expect_status_hi = 299;
  s->body_limit = 65536;
  s->heartbeat_ttl_ms = 0;
  s->max_fails = 1;
  s->fail_timeout_ms = 10000;
}

typedef enum { K_STR, K_INT, K_STATUS } kind;

typedef struct {
  const char *name;
  kind kind;
  long long min, max; /* K_INT */
  size_t off;         /* uint32_t field (K_INT) or char array (K_STR) */
  size_t size;        /* K_STR: array size */
} key_info;

#define F(field) offsetof(dsp_health_settings, field)
static const key_info keys[] = {
    {"check", K_STR, 0, 0, F(check), sizeof(((dsp_health_settings *)0)->check)},
    {"interval_ms", K_INT, 100, MS_HOUR, F(interval_ms), 0},
    {"timeout_ms", K_INT, 10, MS_HOUR - 1, F(timeout_ms), 0},
    {"fall", K_INT, 1, 100, F(fall), 0},
    {"rise", K_INT, 1, 100, F(rise), 0},
    {"jitter_pct", K_INT, 0, 100, F(jitter_pct), 0},
    {"expect_status", K_STATUS, 0, 0, 0, 0},
    {"expect_body", K_STR, 0, 0, F(expect_body), sizeof(((dsp_health_settings *)0)->expect_body)},
    {"body_limit", K_INT, 1, BODY_LIMIT_MAX, F(body_limit), 0},
    {"heartbeat_ttl_ms", K_INT, 0, MS_DAY, F(heartbeat_ttl_ms), 0},
    {"max_fails", K_INT, 0, 1000, F(max_fails), 0},
    {"fail_timeout_ms", K_INT, 1, MS_HOUR, F(fail_timeout_ms), 0},
};
#undef F

static const key_info *find_key(const char *name) {
  for (size_t i = 0; i < DSP_ARRAY_SIZE(keys); i++)
    if (strcmp(keys[i].name, name) == 0) return &keys[i];
  return NULL;
}

/* Host of a URL authority: a DNS name / IPv4 literal, or a bracketed IPv6. */
static int host_ok(const char *h, size_t n) {
  if (n == 0) return 0;
  if (h[0] == '[') {
    if (n < 3 || h[n - 1] != ']') return 0;
    for (size_t i = 1; i + 1 < n; i++)
      if (!isxdigit((unsigned char)h[i]) && h[i] != ':' && h[i] != '.') return 0;
    return 1;
  }
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)h[i]) && h[i] != '.' && h[i] != '-' && h[i] != '_') return 0;
  return 1;
}

/*
 * 1 if url is http(s)://[userinfo@]host[:port][/...|?...|#...] with a
 * non-empty host, a port (if any) in 1..65535, and no space or control byte.
 */
static int url_ok(const char *url) {
  const char *a, *end, *at, *hs, *he, *port = NULL;
  for (const char *c = url; *c; c++)
    if ((unsigned char)*c <= 0x20 || *c == 0x7f) return 0;
  if (strncasecmp(url, "http://", 7) == 0) a = url + 7;
  else if (strncasecmp(url, "https://", 8) == 0) a = url + 8;
  else return 0;
  end = a + strcspn(a, "/?#");
  at = NULL;
  for (const char *c = a; c < end; c++)
    if (*c == '@') at = c;
  hs = at ? at + 1 : a;
  if (hs < end && *hs == '[') {
    he = memchr(hs, ']', (size_t)(end - hs));
    if (he == NULL) return 0;
    he++;
    if (he < end) {
      if (*he != ':') return 0;
      port = he + 1;
    }
  } else {
    he = memchr(hs, ':', (size_t)(end - hs));
    if (he != NULL) port = he + 1;
    else he = end;
  }
  if (!host_ok(hs, (size_t)(he - hs))) return 0;
  if (port != NULL) {
    long p = 0;
    if (port == end) return 0;
    for (const char *c = port; c < end; c++) {
      if (!isdigit((unsigned char)*c)) return 0;
      p = p * 10 + (*c - '0');
      if (p > 65535) return 0;
    }
    if (p < 1) return 0;
  }
  return 1;
}

/* Parse "404", "2xx" or "200-399" into lo..hi within 100..599. */
static int parse_status(const char *s, int *lo, int *hi) {
  long long a, b;
  char buf[16];
  const char *dash;
  size_t n = strlen(s);
  if (n == 3 && s[0] >= '1' && s[0] <= '5' && (s[1] == 'x' || s[1] == 'X') &&
      (s[2] == 'x' || s[2] == 'X')) {
    *lo = (s[0] - '0') * 100;
    *hi = *lo + 99;
    return 0;
  }
  if (n >= sizeof(buf)) return -1;
  for (size_t i = 0; i < n; i++) /* digits and one '-' only: no "+200", " 200" */
    if (!isdigit((unsigned char)s[i]) && s[i] != '-') return -1;
  dash = strchr(s, '-');
  if (dash == NULL) {
    if (dsp_parse_int(s, 100, 599, &a) != 0) return -1;
    *lo = *hi = (int)a;
    return 0;
  }
  memcpy(buf, s, (size_t)(dash - s));
  buf[dash - s] = '\0';
  if (dsp_parse_int(buf, 100, 599, &a) != 0 || dsp_parse_int(dash + 1, 100, 599, &b) != 0 ||
      a > b)
    return -1;
  *lo = (int)a;
  *hi = (int)b;
  return 0;
}

static int range_err(const key_info *k, long long v, char *err, size_t errlen) {
  if (strcmp(k->name, "heartbeat_ttl_ms") == 0)
    fmt_cut(err, errlen, "\"%s\" %lld is out of range: 0 (off) or 100-%lld", k->name, v, k->max);
  else
    fmt_cut(err, errlen, "\"%s\" %lld is out of range %lld-%lld", k->name, v, k->min, k->max);
  return -1;
}

/* Range check of one integer key (heartbeat_ttl_ms has a hole: 1..99). */
static int int_ok(const key_info *k, long long v) {
  if (v < k->min || v > k->max) return 0;
  if (strcmp(k->name, "heartbeat_ttl_ms") == 0 && v > 0 && v < 100) return 0;
  return 1;
}

static int store_int(dsp_health_settings *s, const key_info *k, long long v, char *err,
                     size_t errlen) {
  if (!int_ok(k, v)) return range_err(k, v, err, errlen);
  *(uint32_t *)(void *)((char *)s + k->off) = (uint32_t)v;
  return 0;
}

static int store_str(dsp_health_settings *s, const key_info *k, const char *v, size_t len,
                     char *err, size_t errlen) {
  if (len >= k->size) {
    fmt_cut(err, errlen, "\"%s\" is longer than %zu bytes", k->name, k->size - 1);
    return -1;
  }
  if (strcmp(k->name, "check") == 0 && len > 0 && !url_ok(v)) {
    fmt_cut(err, errlen, "\"check\" is not an http:// or https:// URL");
    return -1;
  }
  memcpy((char *)s + k->off, v, len);
  ((char *)s + k->off)[len] = '\0';
  return 0;
}

static int store_status(dsp_health_settings *s, const char *v, char *err, size_t errlen) {
  int lo, hi;
  if (parse_status(v, &lo, &hi) != 0) {
    char shown[40];
    copy_text(shown, sizeof(shown), v);
    fmt_cut(err, errlen,
           "\"expect_status\" \"%s\" is not a status (200), a class (2xx) or a range "
           "(200-399) within 100-599",
           shown);
    return -1;
  }
  s->expect_status_lo = lo;
  s->expect_status_hi = hi;
  return 0;
}

int dsp_health_settings_member(dsp_health_settings *s, const dsp_json_member *m, char *err,
                               size_t errlen) {
  const key_info *k = find_key(m->key);
  if (k == NULL) return 0;
  switch (k->kind) {
  case K_STR:
    if (m->type != DSP_JSON_STRING) {
      fmt_cut(err, errlen, "\"%s\" must be a string", k->name);
      return -1;
    }
    return store_str(s, k, m->str, m->str_len, err, errlen) == 0 ? 1 : -1;
  case K_INT:
    if (m->type != DSP_JSON_INT) {
      fmt_cut(err, errlen, "\"%s\" must be a number", k->name);
      return -1;
    }
    return store_int(s, k, m->num, err, errlen) == 0 ? 1 : -1;
  case K_STATUS:
    if (m->type == DSP_JSON_INT) {
      if (m->num < 100 || m->num > 599) {
        fmt_cut(err, errlen, "\"expect_status\" %lld is out of range 100-599", m->num);
        return -1;
      }
      s->expect_status_lo = s->expect_status_hi = (int)m->num;
      return 1;
    }
    if (m->type != DSP_JSON_STRING) {
      fmt_cut(err, errlen, "\"expect_status\" must be a number or a string");
      return -1;
    }
    return store_status(s, m->str, err, errlen) == 0 ? 1 : -1;
  }
  return -1; /* not reached */
}

int dsp_health_settings_set(dsp_health_settings *s, const char *key, const char *value,
                            char *err, size_t errlen) {
  const key_info *k = key ? find_key(key) : NULL;
  long long v;
  if (k == NULL) {
    char shown[40];
    copy_text(shown, sizeof(shown), key);
    fmt_cut(err, errlen, "unknown health setting \"%s\"", shown);
    return -1;
  }
  if (value == NULL) value = "";
  switch (k->kind) {
  case K_STR:
    return store_str(s, k, value, strlen(value), err, errlen);
  case K_INT:
    if (dsp_parse_int(value, -0x7fffffffffffffffLL, 0x7fffffffffffffffLL, &v) != 0) {
      fmt_cut(err, errlen, "\"%s\" must be a number", k->name);
      return -1;
    }
    return store_int(s, k, v, err, errlen);
  case K_STATUS:
    return store_status(s, value, err, errlen);
  }
  return -1; /* not reached */
}

int dsp_health_settings_validate(const dsp_health_settings *s, char *err, size_t errlen) {
  for (size_t i = 0; i < DSP_ARRAY_SIZE(keys); i++) {
    const key_info *k = &keys[i];
    if (k->kind == K_INT) {
      uint32_t v = *(const uint32_t *)(const void *)((const char *)s + k->off);
      if (!int_ok(k, v)) return range_err(k, v, err, errlen);
    } else if (k->kind == K_STR) {
      const char *v = (const char *)s + k->off;
      if (memchr(v, '\0', k->size) == NULL) {
        fmt_cut(err, errlen, "\"%s\" is longer than %zu bytes", k->name, k->size - 1);
        return -1;
      }
    }
  }
  if (s->check[0] != '\0' && !url_ok(s->check)) {
    fmt_cut(err, errlen, "\"check\" is not an http:// or https:// URL");
    return -1;
  }
  if (s->expect_status_lo < 100 || s->expect_status_hi > 599 ||
      s->expect_status_lo > s->expect_status_hi) {
    fmt_cut(err, errlen, "\"expect_status\" %d-%d is not a range within 100-599",
           s->expect_status_lo, s->expect_status_hi);
    return -1;
  }
  if (s->timeout_ms >= s->interval_ms) {
    fmt_cut(err, errlen, "timeout_ms %u must be below interval_ms %u", (unsigned)s->timeout_ms,
           (unsigned)s->interval_ms);
    return -1;
  }
  return 0;
}

/* memmem without relying on _GNU_SOURCE declarations. */
static int contains(const char *hay, size_t hn, const char *needle, size_t nn) {
  if (nn == 0) return 1;
  for (size_t i = 0; i + nn <= hn; i++)
    if (hay[i] == needle[0] && memcmp(hay + i, needle, nn) == 0) return 1;
  return 0;
}

int dsp_health_response_ok(const dsp_health_settings *s, long status, const char *body,
                           size_t body_len, char *reason, size_t reasonlen) {
  if (status < s->expect_status_lo || status > s->expect_status_hi) {
    if (s->expect_status_lo == s->expect_status_hi)
      fmt_cut(reason, reasonlen, "status %ld, expected %d", status, s->expect_status_lo);
    else
      fmt_cut(reason, reasonlen, "status %ld, expected %d-%d", status, s->expect_status_lo,
             s->expect_status_hi);
    return 0;
  }
  if (body == NULL) body_len = 0;
  if (body_len > s->body_limit) body_len = s->body_limit;
  if (!contains(body, body_len, s->expect_body, strlen(s->expect_body))) {
    char shown[64];
    copy_text(shown, sizeof(shown), s->expect_body);
    fmt_cut(reason, reasonlen, "body does not contain \"%s\"", shown);
    return 0;
  }
  return 1;
}

uint64_t dsp_health_next_probe_delay(const dsp_health_settings *s, uint64_t random64) {
  uint64_t interval = s->interval_ms;
  uint64_t spread = interval * s->jitter_pct / 100;
  return interval - random64 % (spread + 1);
}

/* ------------------------------------------------------------------------ */
/* state                                                                    */

const char *dsp_health_state_name(dsp_health_state st) {
  switch (st) {
  case DSP_HEALTH_OFF: return "off";
  case DSP_HEALTH_PENDING: return "pending";
  case DSP_HEALTH_UP: return "up";
  case DSP_HEALTH_DOWN: return "down";
  }
  return "?";
}

static int hb_expired(const dsp_health *h, uint64_t now) {
  return h->heartbeat == DSP_HEALTH_UP &&
         elapsed(now, h->last_heartbeat_ms) >= h->settings.heartbeat_ttl_ms;
}

static int passive_ejected(const dsp_health *h, uint64_t now) {
  return h->settings.max_fails != 0 && h->fails >= h->settings.max_fails &&
         elapsed(now, h->checked_ms) <= h->settings.fail_timeout_ms;
}

int dsp_health_eligible(const dsp_health *h, uint64_t now) {
  int active_ok = h->active == DSP_HEALTH_OFF || h->active == DSP_HEALTH_UP;
  int hb_ok = h->heartbeat == DSP_HEALTH_OFF ||
              (h->heartbeat == DSP_HEALTH_UP && !hb_expired(h, now));
  return active_ok && hb_ok && !passive_ejected(h, now);
}

dsp_health_state dsp_health_state_of(const dsp_health *h, uint64_t now) {
  if (dsp_health_eligible(h, now)) return DSP_HEALTH_UP;
  if (h->active == DSP_HEALTH_DOWN || h->heartbeat == DSP_HEALTH_DOWN || hb_expired(h, now) ||
      passive_ejected(h, now))
    return DSP_HEALTH_DOWN;
  return DSP_HEALTH_PENDING;
}

static void set_reason(dsp_health *h, const char *r, uint64_t now) {
  copy_text(h->reason, sizeof(h->reason), r);
  h->changed_ms = now;
}

static void set_active(dsp_health *h, dsp_health_state st, const char *why, uint64_t now) {
  h->active = st;
  h->active_changed_ms = now;
  copy_text(h->active_reason, sizeof(h->active_reason), why);
  set_reason(h, h->active_reason, now);
  h->record_seq++;
}

static void set_heartbeat(dsp_health *h, dsp_health_state st, const char *why, uint64_t now) {
  h->heartbeat = st;
  h->heartbeat_changed_ms = now;
  copy_text(h->heartbeat_reason, sizeof(h->heartbeat_reason), why);
  set_reason(h, h->heartbeat_reason, now);
  h->record_seq++;
}

/* Note a start or end of passive ejection at `now`. */
static void update_passive(dsp_health *h, uint64_t now) {
  int ej = passive_ejected(h, now);
  char why[96];
  if (ej && !h->ejected) {
    snprintf(why, sizeof(why), "passive: %u failure(s) within %u ms", (unsigned)h->fails,
             (unsigned)h->settings.fail_timeout_ms);
    set_reason(h, why, now);
  } else if (!ej && h->ejected) {
    if (h->fails == 0)
      snprintf(why, sizeof(why), "passive: success reported");
    else
      snprintf(why, sizeof(why), "passive: trial after %u ms",
               (unsigned)h->settings.fail_timeout_ms);
    set_reason(h, why, now);
  }
  h->ejected = ej;
}

/* Bring the time-driven parts up to `now`. */
static void advance(dsp_health *h, uint64_t now) {
  if (hb_expired(h, now)) {
    char why[64];
    snprintf(why, sizeof(why), "heartbeat expired after %llu ms",
             (unsigned long long)elapsed(now, h->last_heartbeat_ms));
    set_heartbeat(h, DSP_HEALTH_DOWN, why, now);
  }
  update_passive(h, now);
}

/* Finish a call: 1 if eligibility differs from what the last call saw. */
static int finish(dsp_health *h, uint64_t now) {
  int e = dsp_health_eligible(h, now);
  int changed = e != h->eligible;
  h->eligible = e;
  return changed;
}

void dsp_health_init(dsp_health *h, const dsp_health_settings *s, uint64_t now) {
  memset(h, 0, sizeof(*h));
  h->settings = *s;
  h->active = s->check[0] ? DSP_HEALTH_PENDING : DSP_HEALTH_OFF;
  h->heartbeat = s->heartbeat_ttl_ms ? DSP_HEALTH_PENDING : DSP_HEALTH_OFF;
  h->active_changed_ms = h->heartbeat_changed_ms = h->changed_ms = now;
  if (h->active == DSP_HEALTH_PENDING) {
    copy_text(h->active_reason, sizeof(h->active_reason), "waiting for the first check");
    copy_text(h->reason, sizeof(h->reason), h->active_reason);
  }
  if (h->heartbeat == DSP_HEALTH_PENDING) {
    copy_text(h->heartbeat_reason, sizeof(h->heartbeat_reason), "waiting for the first heartbeat");
    if (h->reason[0] == '\0') copy_text(h->reason, sizeof(h->reason), h->heartbeat_reason);
  }
  h->eligible = dsp_health_eligible(h, now);
}

int dsp_health_reconfigure(dsp_health *h, const dsp_health_settings *s, uint64_t now) {
  int had_check = h->settings.check[0] != '\0';
  int has_check = s->check[0] != '\0';
  uint32_t old_ttl = h->settings.heartbeat_ttl_ms;

  advance(h, now); /* expire under the old TTL first */
  h->settings = *s;
  if (!had_check && has_check) {
    h->consec_ok = h->consec_fail = 0;
    set_active(h, DSP_HEALTH_PENDING, "check added: waiting for the first check", now);
  } else if (had_check && !has_check) {
    h->consec_ok = h->consec_fail = 0;
    set_active(h, DSP_HEALTH_OFF, "check removed", now);
  }
  if (old_ttl == 0 && s->heartbeat_ttl_ms != 0) {
    if (h->heartbeat_seen && elapsed(now, h->last_heartbeat_ms) < s->heartbeat_ttl_ms)
      set_heartbeat(h, DSP_HEALTH_UP, "heartbeat enabled: recent heartbeat", now);
    else
      set_heartbeat(h, DSP_HEALTH_PENDING, "heartbeat enabled: waiting for the first heartbeat",
                    now);
  } else if (old_ttl != 0 && s->heartbeat_ttl_ms == 0) {
    set_heartbeat(h, DSP_HEALTH_OFF, "heartbeat removed", now);
  }
  advance(h, now); /* the new TTL or fail_timeout may end something now */
  return finish(h, now);
}

int dsp_health_probe_result(dsp_health *h, int ok, const char *reason, uint64_t latency_us,
                            uint64_t now) {
  char why[DSP_HEALTH_REASON_MAX];
  advance(h, now);
  if (h->active == DSP_HEALTH_OFF) return finish(h, now);
  h->probes++;
  h->last_latency_us = latency_us;
  h->last_inconclusive = 0;
  if (ok) {
    h->consec_ok = inc32(h->consec_ok);
    h->consec_fail = 0;
    if (h->active == DSP_HEALTH_PENDING) {
      set_active(h, DSP_HEALTH_UP, "first check passed", now);
    } else if (h->active == DSP_HEALTH_DOWN && h->consec_ok >= h->settings.rise) {
      snprintf(why, sizeof(why), "%u consecutive success%s", (unsigned)h->consec_ok,
               h->consec_ok == 1 ? "" : "es");
      set_active(h, DSP_HEALTH_UP, why, now);
    }
  } else {
    h->probe_failures++;
    h->consec_fail = inc32(h->consec_fail);
    h->consec_ok = 0;
    copy_text(h->last_error, sizeof(h->last_error),
              reason && reason[0] ? reason : "check failed");
    if (h->active != DSP_HEALTH_DOWN && h->consec_fail >= h->settings.fall) {
      fmt_cut(why, sizeof(why), "%u consecutive failure%s: %s", (unsigned)h->consec_fail,
               h->consec_fail == 1 ? "" : "s", h->last_error);
      set_active(h, DSP_HEALTH_DOWN, why, now);
    }
  }
  return finish(h, now);
}

int dsp_health_probe_inconclusive(dsp_health *h, const char *reason, uint64_t now) {
  advance(h, now);
  if (h->active != DSP_HEALTH_OFF) {
    copy_text(h->last_error, sizeof(h->last_error),
              reason && reason[0] ? reason : "probe not made");
    h->last_inconclusive = 1;
  }
  return finish(h, now);
}

int dsp_health_heartbeat(dsp_health *h, uint64_t now) {
  advance(h, now);
  h->heartbeat_seen = 1;
  if (now > h->last_heartbeat_ms) h->last_heartbeat_ms = now;
  if (h->heartbeat != DSP_HEALTH_OFF && h->heartbeat != DSP_HEALTH_UP)
    set_heartbeat(h, DSP_HEALTH_UP, "heartbeat received", now);
  return finish(h, now);
}

int dsp_health_report(dsp_health *h, int ok, uint64_t now) {
  const dsp_health_settings *s = &h->settings;
  advance(h, now);
  if (ok) {
    h->fails = 0;
  } else {
    /* failures count only within fail_timeout; past max_fails, a failure in
       the trial re-ejects (nginx: fails stays >= max_fails, checked = now) */
    if ((s->max_fails == 0 || h->fails < s->max_fails) &&
        elapsed(now, h->checked_ms) > s->fail_timeout_ms)
      h->fails = 0;
    h->fails = inc32(h->fails);
    h->checked_ms = now;
  }
  update_passive(h, now);
  return finish(h, now);
}

int dsp_health_tick(dsp_health *h, uint64_t now) {
  advance(h, now);
  return finish(h, now);
}

uint64_t dsp_health_next_tick(const dsp_health *h, uint64_t now) {
  uint64_t t = UINT64_MAX;
  if (h->heartbeat == DSP_HEALTH_UP) {
    uint64_t due = h->last_heartbeat_ms + h->settings.heartbeat_ttl_ms;
    if (due < t) t = due;
  }
  if (passive_ejected(h, now)) {
    uint64_t due = h->checked_ms + h->settings.fail_timeout_ms + 1;
    if (due < t) t = due;
  } else if (h->ejected) {
    t = now; /* the end of an ejection is not yet applied */
  }
  return t != UINT64_MAX && t < now ? now : t;
}

/* ------------------------------------------------------------------------ */
/* persisted record                                                         */

/* The active/heartbeat view, passive left out. */
static dsp_health_state record_state(const dsp_health *h, const char **why) {
  if (h->active == DSP_HEALTH_DOWN) { *why = h->active_reason; return DSP_HEALTH_DOWN; }
  if (h->heartbeat == DSP_HEALTH_DOWN) { *why = h->heartbeat_reason; return DSP_HEALTH_DOWN; }
  if (h->active == DSP_HEALTH_PENDING) { *why = h->active_reason; return DSP_HEALTH_PENDING; }
  if (h->heartbeat == DSP_HEALTH_PENDING) {
    *why = h->heartbeat_reason;
    return DSP_HEALTH_PENDING;
  }
  /* up: the more recent of the two transitions */
  if (h->heartbeat != DSP_HEALTH_OFF &&
      (h->active == DSP_HEALTH_OFF || h->heartbeat_changed_ms > h->active_changed_ms))
    *why = h->heartbeat_reason;
  else
    *why = h->active_reason;
  return DSP_HEALTH_UP;
}

int dsp_health_record_format(const dsp_health *h, int64_t epoch, uint64_t wall_ms, char *out,
                             size_t outlen) {
  const char *why;
  dsp_health_state st = record_state(h, &why);
  char q[DSP_HEALTH_REASON_MAX * 6 + 3];
  if (dsp_json_quote(why, q, sizeof(q)) != 0) return -1;
  return dsp_fmt(out, outlen, "{\"state\":\"%s\",\"since_ms\":%llu,\"reason\":%s,\"epoch\":%lld}",
                 dsp_health_state_name(st), (unsigned long long)wall_ms, q, (long long)epoch);
}

typedef struct {
  dsp_health_record *r;
  int have_state;
  char *err;
  size_t errlen;
} record_ctx;

static int record_member(const dsp_json_member *m, void *vctx) {
  record_ctx *c = vctx;
  if (strcmp(m->key, "state") == 0) {
    if (m->type != DSP_JSON_STRING) {
      fmt_cut(c->err, c->errlen, "\"state\" must be a string");
      return -2;
    }
    if (strcmp(m->str, "up") == 0) c->r->state = DSP_HEALTH_UP;
    else if (strcmp(m->str, "down") == 0) c->r->state = DSP_HEALTH_DOWN;
    else if (strcmp(m->str, "pending") == 0) c->r->state = DSP_HEALTH_PENDING;
    else {
      char shown[40];
      copy_text(shown, sizeof(shown), m->str);
      fmt_cut(c->err, c->errlen, "\"state\" \"%s\" is not up, down or pending", shown);
      return -2;
    }
    c->have_state = 1;
  } else if (strcmp(m->key, "since_ms") == 0) {
    if (m->type != DSP_JSON_INT || m->num < 0) {
      fmt_cut(c->err, c->errlen, "\"since_ms\" must be a number >= 0");
      return -2;
    }
    c->r->since_ms = (uint64_t)m->num;
  } else if (strcmp(m->key, "epoch") == 0) {
    if (m->type != DSP_JSON_INT) {
      fmt_cut(c->err, c->errlen, "\"epoch\" must be a number");
      return -2;
    }
    c->r->epoch = m->num;
  } else if (strcmp(m->key, "reason") == 0) {
    if (m->type != DSP_JSON_STRING) {
      fmt_cut(c->err, c->errlen, "\"reason\" must be a string");
      return -2;
    }
    copy_text(c->r->reason, sizeof(c->r->reason), m->str);
  }
  return 0;
}

int dsp_health_record_parse(const char *data, size_t len, dsp_health_record *out, char *err,
                            size_t errlen) {
  record_ctx c = {out, 0, err, errlen};
  char jerr[96];
  int rc;
  memset(out, 0, sizeof(*out));
  if (data == NULL) {
    fmt_cut(err, errlen, "health record: empty");
    return -1;
  }
  rc = dsp_json_parse(data, len, record_member, &c, jerr, sizeof(jerr));
  if (rc == -1) {
    fmt_cut(err, errlen, "health record: %s", jerr);
    return -1;
  }
  if (rc != 0) return -1; /* record_member set err */
  if (!c.have_state) {
    fmt_cut(err, errlen, "health record: \"state\" is missing");
    return -1;
  }
  return 0;
}

void dsp_health_init_from_record(dsp_health *h, const dsp_health_settings *s,
                                 const dsp_health_record *r, uint64_t now) {
  char why[DSP_HEALTH_REASON_MAX];
  dsp_health_init(h, s, now);
  if (r->state != DSP_HEALTH_UP && r->state != DSP_HEALTH_DOWN) return;
  fmt_cut(why, sizeof(why), "from record: %s",
          r->reason[0] ? r->reason : dsp_health_state_name(r->state));
  if (h->active != DSP_HEALTH_OFF) {
    h->active = r->state;
    copy_text(h->active_reason, sizeof(h->active_reason), why);
  }
  if (h->heartbeat != DSP_HEALTH_OFF) {
    h->heartbeat = r->state;
    h->last_heartbeat_ms = now; /* "up": one TTL of grace */
    copy_text(h->heartbeat_reason, sizeof(h->heartbeat_reason), why);
  }
  copy_text(h->reason, sizeof(h->reason), why);
  h->eligible = dsp_health_eligible(h, now);
}
