/*
 * test_health.c: the health state machine and its settings, without sockets
 * or clocks: every rule of health.h driven with hand-picked times, including
 * the exact threshold edges and hostile settings and records.
 */
#include "health.h"
#include "json.h"
#include "test.h"
#include "util.h"

/* ---- helpers ----------------------------------------------------------- */

typedef struct {
  dsp_health_settings *s;
  char err[256];
  int stored, unknown;
} apply_ctx;

static int apply_cb(const dsp_json_member *m, void *vctx) {
  apply_ctx *c = vctx;
  int rc = dsp_health_settings_member(c->s, m, c->err, sizeof(c->err));
  if (rc < 0) return 1;
  if (rc == 1) c->stored++;
  else c->unknown++;
  return 0;
}

/* Apply every member of json to s: returns 0, or -1 with the error in err. */
static int apply(dsp_health_settings *s, const char *json, char *err, size_t errlen,
                 int *stored, int *unknown) {
  apply_ctx c;
  char jerr[128];
  int rc;
  memset(&c, 0, sizeof(c));
  c.s = s;
  rc = dsp_json_parse(json, strlen(json), apply_cb, &c, jerr, sizeof(jerr));
  snprintf(err, errlen, "%s", rc == 1 ? c.err : rc == -1 ? jerr : "");
  if (stored) *stored = c.stored;
  if (unknown) *unknown = c.unknown;
  return rc == 0 ? 0 : -1;
}

static dsp_health_settings checked_settings(void) {
  dsp_health_settings s;
  dsp_health_settings_default(&s);
  snprintf(s.check, sizeof(s.check), "http://127.0.0.1:8080/health");
  s.max_fails = 0; /* active-only unless a test says otherwise */
  return s;
}

/* A worker with an active check that has passed its first probe. */
static void up_worker(dsp_health *h, const dsp_health_settings *s, uint64_t now) {
  dsp_health_init(h, s, now);
  dsp_health_probe_result(h, 1, NULL, 100, now);
}

/* Eligibility must not change strictly between now and next_tick. */
static int steady_until_next_tick(const dsp_health *h, uint64_t now) {
  uint64_t nt = dsp_health_next_tick(h, now);
  uint64_t end = nt == UINT64_MAX ? now + 100000 : nt;
  int e = dsp_health_eligible(h, now);
  for (uint64_t t = now; t < end; t++)
    if (dsp_health_eligible(h, t) != e) return 0;
  return 1;
}

/* ---- settings ---------------------------------------------------------- */

static void test_defaults(void) {
  dsp_health_settings s;
  char err[128];
  memset(&s, 0x5a, sizeof(s));
  dsp_health_settings_default(&s);
  CHECK_STR(s.check, "");
  CHECK_INT(s.interval_ms, ==, 2000);
  CHECK_INT(s.timeout_ms, ==, 1000);
  CHECK_INT(s.fall, ==, 3);
  CHECK_INT(s.rise, ==, 2);
  CHECK_INT(s.jitter_pct, ==, 0);
  CHECK_INT(s.expect_status_lo, ==, 200);
  CHECK_INT(s.expect_status_hi, ==, 299);
  CHECK_STR(s.expect_body, "");
  CHECK_INT(s.body_limit, ==, 65536);
  CHECK_INT(s.heartbeat_ttl_ms, ==, 0);
  CHECK_INT(s.max_fails, ==, 1);
  CHECK_INT(s.fail_timeout_ms, ==, 10000);
  CHECK_INT(dsp_health_settings_validate(&s, err, sizeof(err)), ==, 0);
}

static void test_member_all_keys(void) {
  dsp_health_settings s;
  char err[256];
  int stored, unknown;
  dsp_health_settings_default(&s);
  CHECK_INT(apply(&s,
                  "{\"id\":\"w1\",\"addr\":\"127.0.0.1:7001\",\"weight\":3,"
                  "\"check\":\"https://w1.example.com:8443/hz?deep=1\",\"interval_ms\":5000,"
                  "\"timeout_ms\":4999,\"fall\":5,\"rise\":4,\"jitter_pct\":25,"
                  "\"expect_status\":\"3xx\",\"expect_body\":\"OK\\n\",\"body_limit\":1024,"
                  "\"heartbeat_ttl_ms\":3000,\"max_fails\":7,\"fail_timeout_ms\":30000}",
                  err, sizeof(err), &stored, &unknown),
            ==, 0);
  CHECK_INT(stored, ==, 12);
  CHECK_INT(unknown, ==, 3);
  CHECK_STR(s.check, "https://w1.example.com:8443/hz?deep=1");
  CHECK_INT(s.interval_ms, ==, 5000);
  CHECK_INT(s.timeout_ms, ==, 4999);
  CHECK_INT(s.fall, ==, 5);
  CHECK_INT(s.rise, ==, 4);
  CHECK_INT(s.jitter_pct, ==, 25);
  CHECK_INT(s.expect_status_lo, ==, 300);
  CHECK_INT(s.expect_status_hi, ==, 399);
  CHECK_STR(s.expect_body, "OK\n");
  CHECK_INT(s.body_limit, ==, 1024);
  CHECK_INT(s.heartbeat_ttl_ms, ==, 3000);
  CHECK_INT(s.max_fails, ==, 7);
  CHECK_INT(s.fail_timeout_ms, ==, 30000);
  CHECK_INT(dsp_health_settings_validate(&s, err, sizeof(err)), ==, 0);

  /* range edges are accepted */
  CHECK_INT(apply(&s,
                  "{\"interval_ms\":100,\"timeout_ms\":10,\"fall\":1,\"rise\":100,"
                  "\"jitter_pct\":0,\"body_limit\":16777216,\"heartbeat_ttl_ms\":0,"
                  "\"max_fails\":0,\"fail_timeout_ms\":1,\"check\":\"\",\"expect_body\":\"\"}",
                  err, sizeof(err), NULL, NULL),
            ==, 0);
  CHECK_INT(s.interval_ms, ==, 100);
  CHECK_INT(s.timeout_ms, ==, 10);
  CHECK_INT(s.body_limit, ==, 16777216);
  CHECK_STR(s.check, "");
  CHECK_INT(apply(&s,
                  "{\"interval_ms\":3600000,\"timeout_ms\":3599999,\"fall\":100,\"rise\":1,"
                  "\"jitter_pct\":100,\"body_limit\":1,\"heartbeat_ttl_ms\":86400000,"
                  "\"max_fails\":1000,\"fail_timeout_ms\":3600000}",
                  err, sizeof(err), NULL, NULL),
            ==, 0);
  CHECK_INT(dsp_health_settings_validate(&s, err, sizeof(err)), ==, 0);
  CHECK_INT(apply(&s, "{\"heartbeat_ttl_ms\":100}", err, sizeof(err), NULL, NULL), ==, 0);
  CHECK_INT(s.heartbeat_ttl_ms, ==, 100);
}

static void test_member_errors(void) {
  static const struct {
    const char *json, *err;
  } bad[] = {
      {"{\"fall\":0}", "\"fall\" 0 is out of range 1-100"},
      {"{\"fall\":101}", "\"fall\" 101 is out of range 1-100"},
      {"{\"rise\":0}", "\"rise\" 0 is out of range 1-100"},
      {"{\"fall\":\"3\"}", "\"fall\" must be a number"},
      {"{\"timeout_ms\":\"1000\"}", "\"timeout_ms\" must be a number"},
      {"{\"timeout_ms\":true}", "\"timeout_ms\" must be a number"},
      {"{\"timeout_ms\":null}", "\"timeout_ms\" must be a number"},
      {"{\"timeout_ms\":9}", "\"timeout_ms\" 9 is out of range 10-3599999"},
      {"{\"interval_ms\":99}", "\"interval_ms\" 99 is out of range 100-3600000"},
      {"{\"interval_ms\":3600001}", "\"interval_ms\" 3600001 is out of range 100-3600000"},
      {"{\"interval_ms\":-2000}", "\"interval_ms\" -2000 is out of range 100-3600000"},
      {"{\"interval_ms\":9223372036854775807}",
       "\"interval_ms\" 9223372036854775807 is out of range 100-3600000"},
      {"{\"jitter_pct\":101}", "\"jitter_pct\" 101 is out of range 0-100"},
      {"{\"jitter_pct\":-1}", "\"jitter_pct\" -1 is out of range 0-100"},
      {"{\"body_limit\":0}", "\"body_limit\" 0 is out of range 1-16777216"},
      {"{\"body_limit\":16777217}", "\"body_limit\" 16777217 is out of range 1-16777216"},
      {"{\"heartbeat_ttl_ms\":50}",
       "\"heartbeat_ttl_ms\" 50 is out of range: 0 (off) or 100-86400000"},
      {"{\"heartbeat_ttl_ms\":86400001}",
       "\"heartbeat_ttl_ms\" 86400001 is out of range: 0 (off) or 100-86400000"},
      {"{\"heartbeat_ttl_ms\":-1}",
       "\"heartbeat_ttl_ms\" -1 is out of range: 0 (off) or 100-86400000"},
      {"{\"max_fails\":1001}", "\"max_fails\" 1001 is out of range 0-1000"},
      {"{\"max_fails\":-1}", "\"max_fails\" -1 is out of range 0-1000"},
      {"{\"fail_timeout_ms\":0}", "\"fail_timeout_ms\" 0 is out of range 1-3600000"},
      {"{\"check\":5}", "\"check\" must be a string"},
      {"{\"check\":null}", "\"check\" must be a string"},
      {"{\"expect_body\":false}", "\"expect_body\" must be a string"},
      {"{\"check\":\"ftp://h/\"}", "\"check\" is not an http:// or https:// URL"},
      {"{\"check\":\"127.0.0.1:8080\"}", "\"check\" is not an http:// or https:// URL"},
      {"{\"expect_status\":600}", "\"expect_status\" 600 is out of range 100-599"},
      {"{\"expect_status\":99}", "\"expect_status\" 99 is out of range 100-599"},
      {"{\"expect_status\":true}", "\"expect_status\" must be a number or a string"},
      {"{\"expect_status\":null}", "\"expect_status\" must be a number or a string"},
      {"{\"expect_status\":\"6xx\"}",
       "\"expect_status\" \"6xx\" is not a status (200), a class (2xx) or a range (200-399) "
       "within 100-599"},
  };
  for (size_t i = 0; i < DSP_ARRAY_SIZE(bad); i++) {
    dsp_health_settings s, before;
    char err[256];
    dsp_health_settings_default(&s);
    before = s;
    if (apply(&s, bad[i].json, err, sizeof(err), NULL, NULL) != -1)
      fprintf(stderr, "accepted: %s\n", bad[i].json);
    CHECK_INT(apply(&s, bad[i].json, err, sizeof(err), NULL, NULL), ==, -1);
    if (strcmp(err, bad[i].err) != 0) fprintf(stderr, "for %s\n", bad[i].json);
    CHECK_STR(err, bad[i].err);
    CHECK(memcmp(&s, &before, sizeof(s)) == 0); /* untouched on error */
  }
}

static void test_check_urls(void) {
  static const char *const good[] = {
      "http://127.0.0.1:8080/health", "https://w1.example.com/hz?x=1", "http://[::1]:9000/",
      "http://h", "HTTPS://H.example/", "http://user:pw@h:1/", "http://h:65535",
      "http://h#frag", "http://[fe80::1]", "http://under_score.local/a/b",
  };
  static const char *const bad[] = {
      "", /* only via validate below: "" means no check, so it is accepted */
      "http://", "https://", "http://:80/", "http:///path", "http://h:0/", "http://h:65536/",
      "http://h:/", "http://h:8x/", "http://a b/", "http://h/a b", "http://h/\t",
      "http://h/\x7f", "https://[::1/", "http://[::1]x/", "http://[]/", "http://[zz]/",
      "http://h@/", "http://h:99999999999999999999/", "http//h/", "mailto:x@h",
      "http://h!/", "http://h:-1/",
  };
  dsp_health_settings s;
  char err[256];
  char url[DSP_HEALTH_URL_MAX + 2];
  for (size_t i = 0; i < DSP_ARRAY_SIZE(good); i++) {
    dsp_health_settings_default(&s);
    if (dsp_health_settings_set(&s, "check", good[i], err, sizeof(err)) != 0)
      fprintf(stderr, "rejected: %s (%s)\n", good[i], err);
    CHECK_INT(dsp_health_settings_set(&s, "check", good[i], err, sizeof(err)), ==, 0);
    CHECK_STR(s.check, good[i]);
    CHECK_INT(dsp_health_settings_validate(&s, err, sizeof(err)), ==, 0);
  }
  dsp_health_settings_default(&s);
  CHECK_INT(dsp_health_settings_set(&s, "check", "", err, sizeof(err)), ==, 0);
  for (size_t i = 1; i < DSP_ARRAY_SIZE(bad); i++) {
    dsp_health_settings_default(&s);
    if (dsp_health_settings_set(&s, "check", bad[i], err, sizeof(err)) != -1)
      fprintf(stderr, "accepted: %s\n", bad[i]);
    CHECK_INT(dsp_health_settings_set(&s, "check", bad[i], err, sizeof(err)), ==, -1);
    CHECK_STR(err, "\"check\" is not an http:// or https:// URL");
    CHECK_STR(s.check, "");
  }
  /* 512 bytes fit, 513 do not */
  memset(url, 'a', sizeof(url));
  memcpy(url, "http://h/", 9);
  url[DSP_HEALTH_URL_MAX] = '\0';
  CHECK_INT(dsp_health_settings_set(&s, "check", url, err, sizeof(err)), ==, 0);
  CHECK_INT(strlen(s.check), ==, 512);
  url[DSP_HEALTH_URL_MAX] = 'a';
  url[DSP_HEALTH_URL_MAX + 1] = '\0';
  CHECK_INT(dsp_health_settings_set(&s, "check", url, err, sizeof(err)), ==, -1);
  CHECK_STR(err, "\"check\" is longer than 512 bytes");
}

static void test_expect_body_limit(void) {
  dsp_health_settings s;
  char err[256], body[DSP_HEALTH_BODY_MAX + 2], json[400];
  dsp_health_settings_default(&s);
  memset(body, 'b', sizeof(body));
  body[DSP_HEALTH_BODY_MAX] = '\0';
  snprintf(json, sizeof(json), "{\"expect_body\":\"%s\"}", body);
  CHECK_INT(apply(&s, json, err, sizeof(err), NULL, NULL), ==, 0);
  CHECK_INT(strlen(s.expect_body), ==, 256);
  body[DSP_HEALTH_BODY_MAX] = 'b';
  body[DSP_HEALTH_BODY_MAX + 1] = '\0';
  snprintf(json, sizeof(json), "{\"expect_body\":\"%s\"}", body);
  CHECK_INT(apply(&s, json, err, sizeof(err), NULL, NULL), ==, -1);
  CHECK_STR(err, "\"expect_body\" is longer than 256 bytes");
}

static void test_expect_status_forms(void) {
  static const struct {
    const char *json;
    int lo, hi;
  } good[] = {
      {"{\"expect_status\":204}", 204, 204},   {"{\"expect_status\":100}", 100, 100},
      {"{\"expect_status\":599}", 599, 599},   {"{\"expect_status\":\"2xx\"}", 200, 299},
      {"{\"expect_status\":\"1xx\"}", 100, 199}, {"{\"expect_status\":\"5XX\"}", 500, 599},
      {"{\"expect_status\":\"200\"}", 200, 200}, {"{\"expect_status\":\"200-399\"}", 200, 399},
      {"{\"expect_status\":\"404-404\"}", 404, 404},
  };
  static const char *const bad[] = {
      "abc", "", "6xx", "0xx", "2x", "2xxx", "x2x", "200-", "-200", "399-200", "200-600",
      "99", "600", " 200", "200 ", "+200", "200--300", "200-300-400", "20a", "99999999999999999",
  };
  char err[256];
  for (size_t i = 0; i < DSP_ARRAY_SIZE(good); i++) {
    dsp_health_settings s;
    dsp_health_settings_default(&s);
    CHECK_INT(apply(&s, good[i].json, err, sizeof(err), NULL, NULL), ==, 0);
    CHECK_INT(s.expect_status_lo, ==, good[i].lo);
    CHECK_INT(s.expect_status_hi, ==, good[i].hi);
  }
  for (size_t i = 0; i < DSP_ARRAY_SIZE(bad); i++) {
    dsp_health_settings s;
    char json[128];
    dsp_health_settings_default(&s);
    snprintf(json, sizeof(json), "{\"expect_status\":\"%s\"}", bad[i]);
    if (apply(&s, json, err, sizeof(err), NULL, NULL) != -1) fprintf(stderr, "accepted: %s\n", json);
    CHECK_INT(apply(&s, json, err, sizeof(err), NULL, NULL), ==, -1);
    CHECK(strncmp(err, "\"expect_status\" \"", 17) == 0);
    CHECK_INT(s.expect_status_lo, ==, 200);
    CHECK_INT(dsp_health_settings_set(&s, "expect_status", bad[i], err, sizeof(err)), ==, -1);
  }
  {
    dsp_health_settings s;
    dsp_health_settings_default(&s);
    CHECK_INT(dsp_health_settings_set(&s, "expect_status", "301-302", err, sizeof(err)), ==, 0);
    CHECK_INT(s.expect_status_lo, ==, 301);
    CHECK_INT(s.expect_status_hi, ==, 302);
  }
}

static void test_response_ok(void) {
  dsp_health_settings s;
  char why[128];
  const char body[] = "status: \0 ready";
  dsp_health_settings_default(&s);
  CHECK_INT(dsp_health_response_ok(&s, 200, "", 0, why, sizeof(why)), ==, 1);
  CHECK_INT(dsp_health_response_ok(&s, 299, NULL, 0, why, sizeof(why)), ==, 1);
  CHECK_INT(dsp_health_response_ok(&s, 300, "", 0, why, sizeof(why)), ==, 0);
  CHECK_STR(why, "status 300, expected 200-299");
  CHECK_INT(dsp_health_response_ok(&s, 199, "", 0, why, sizeof(why)), ==, 0);
  s.expect_status_lo = s.expect_status_hi = 204;
  CHECK_INT(dsp_health_response_ok(&s, 200, "", 0, why, sizeof(why)), ==, 0);
  CHECK_STR(why, "status 200, expected 204");
  CHECK_INT(dsp_health_response_ok(&s, 204, "", 0, why, sizeof(why)), ==, 1);
  dsp_health_settings_default(&s);
  snprintf(s.expect_body, sizeof(s.expect_body), "ready");
  /* the body holds a NUL before the text: it is still found */
  CHECK_INT(dsp_health_response_ok(&s, 200, body, sizeof(body) - 1, why, sizeof(why)), ==, 1);
  CHECK_INT(dsp_health_response_ok(&s, 200, body, sizeof(body) - 2, why, sizeof(why)), ==, 0);
  CHECK_STR(why, "body does not contain \"ready\"");
  CHECK_INT(dsp_health_response_ok(&s, 200, NULL, 5, why, sizeof(why)), ==, 0);
  /* only the first body_limit bytes count */
  s.body_limit = 14;
  CHECK_INT(dsp_health_response_ok(&s, 200, body, sizeof(body) - 1, why, sizeof(why)), ==, 0);
  s.body_limit = 15;
  CHECK_INT(dsp_health_response_ok(&s, 200, body, sizeof(body) - 1, why, sizeof(why)), ==, 1);
}

static void test_validate(void) {
  dsp_health_settings s;
  char err[256];
  dsp_health_settings_default(&s);
  s.timeout_ms = 2000;
  CHECK_INT(dsp_health_settings_validate(&s, err, sizeof(err)), ==, -1);
  CHECK_STR(err, "timeout_ms 2000 must be below interval_ms 2000");
  s.timeout_ms = 1999;
  CHECK_INT(dsp_health_settings_validate(&s, err, sizeof(err)), ==, 0);
  /* members are per key; the cross-field rule waits for validate */
  CHECK_INT(apply(&s, "{\"interval_ms\":500,\"timeout_ms\":800}", err, sizeof(err), NULL, NULL),
            ==, 0);
  CHECK_INT(dsp_health_settings_validate(&s, err, sizeof(err)), ==, -1);
  CHECK_STR(err, "timeout_ms 800 must be below interval_ms 500");

  /* a struct filled by hand is checked field by field too */
  dsp_health_settings_default(&s);
  s.fall = 0;
  CHECK_INT(dsp_health_settings_validate(&s, err, sizeof(err)), ==, -1);
  CHECK_STR(err, "\"fall\" 0 is out of range 1-100");
  dsp_health_settings_default(&s);
  s.heartbeat_ttl_ms = 99;
  CHECK_INT(dsp_health_settings_validate(&s, err, sizeof(err)), ==, -1);
  dsp_health_settings_default(&s);
  s.expect_status_lo = 300;
  s.expect_status_hi = 299;
  CHECK_INT(dsp_health_settings_validate(&s, err, sizeof(err)), ==, -1);
  CHECK_STR(err, "\"expect_status\" 300-299 is not a range within 100-599");
  dsp_health_settings_default(&s);
  snprintf(s.check, sizeof(s.check), "gopher://h/");
  CHECK_INT(dsp_health_settings_validate(&s, err, sizeof(err)), ==, -1);
  CHECK_STR(err, "\"check\" is not an http:// or https:// URL");
  dsp_health_settings_default(&s);
  memset(s.expect_body, 'x', sizeof(s.expect_body)); /* no NUL */
  CHECK_INT(dsp_health_settings_validate(&s, err, sizeof(err)), ==, -1);
  CHECK_STR(err, "\"expect_body\" is longer than 256 bytes");
}

static void test_set_flags(void) {
  dsp_health_settings s, before;
  char err[256];
  dsp_health_settings_default(&s);
  CHECK_INT(dsp_health_settings_set(&s, "interval_ms", "5000", err, sizeof(err)), ==, 0);
  CHECK_INT(s.interval_ms, ==, 5000);
  CHECK_INT(dsp_health_settings_set(&s, "heartbeat_ttl_ms", "0", err, sizeof(err)), ==, 0);
  CHECK_INT(dsp_health_settings_set(&s, "expect_status", "2xx", err, sizeof(err)), ==, 0);
  CHECK_INT(dsp_health_settings_set(&s, "expect_status", "204", err, sizeof(err)), ==, 0);
  CHECK_INT(s.expect_status_lo, ==, 204);
  CHECK_INT(dsp_health_settings_set(&s, "expect_body", "pong", err, sizeof(err)), ==, 0);
  CHECK_STR(s.expect_body, "pong");
  before = s;
  CHECK_INT(dsp_health_settings_set(&s, "fall", "abc", err, sizeof(err)), ==, -1);
  CHECK_STR(err, "\"fall\" must be a number");
  CHECK_INT(dsp_health_settings_set(&s, "fall", "", err, sizeof(err)), ==, -1);
  CHECK_STR(err, "\"fall\" must be a number");
  CHECK_INT(dsp_health_settings_set(&s, "fall", " 3", err, sizeof(err)), ==, -1);
  CHECK_INT(dsp_health_settings_set(&s, "fall", "3 ", err, sizeof(err)), ==, -1);
  CHECK_INT(dsp_health_settings_set(&s, "fall", "3.5", err, sizeof(err)), ==, -1);
  CHECK_INT(dsp_health_settings_set(&s, "fall", NULL, err, sizeof(err)), ==, -1);
  CHECK_INT(dsp_health_settings_set(&s, "fall", "0", err, sizeof(err)), ==, -1);
  CHECK_STR(err, "\"fall\" 0 is out of range 1-100");
  CHECK_INT(dsp_health_settings_set(&s, "timeout_ms", "99999999999999999999", err, sizeof(err)),
            ==, -1);
  CHECK_INT(dsp_health_settings_set(&s, "check", "ftp://h", err, sizeof(err)), ==, -1);
  CHECK_INT(dsp_health_settings_set(&s, "expect_status", "abc", err, sizeof(err)), ==, -1);
  CHECK_INT(dsp_health_settings_set(&s, "falls", "3", err, sizeof(err)), ==, -1);
  CHECK_STR(err, "unknown health setting \"falls\"");
  CHECK_INT(dsp_health_settings_set(&s, NULL, "3", err, sizeof(err)), ==, -1);
  CHECK(memcmp(&s, &before, sizeof(s)) == 0);
  /* a NULL or zero-length err buffer is fine */
  CHECK_INT(dsp_health_settings_set(&s, "fall", "0", NULL, 0), ==, -1);
  CHECK_INT(dsp_health_settings_set(&s, "fall", "0", err, 0), ==, -1);
}

static void test_jitter(void) {
  dsp_health_settings s;
  uint64_t x = 88172645463325252ULL, lo = UINT64_MAX, hi = 0;
  dsp_health_settings_default(&s);
  CHECK_INT(dsp_health_next_probe_delay(&s, 0), ==, 2000);
  CHECK_INT(dsp_health_next_probe_delay(&s, UINT64_MAX), ==, 2000);
  s.jitter_pct = 10; /* up to 200 ms shorter */
  CHECK_INT(dsp_health_next_probe_delay(&s, 0), ==, 2000);
  CHECK_INT(dsp_health_next_probe_delay(&s, 200), ==, 1800);
  CHECK_INT(dsp_health_next_probe_delay(&s, 201), ==, 2000);
  CHECK_INT(dsp_health_next_probe_delay(&s, 150), ==, 1850);
  for (int i = 0; i < 100000; i++) {
    uint64_t d;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    d = dsp_health_next_probe_delay(&s, x);
    if (d < lo) lo = d;
    if (d > hi) hi = d;
  }
  CHECK_INT(lo, ==, 1800);
  CHECK_INT(hi, ==, 2000);
  s.jitter_pct = 100;
  CHECK_INT(dsp_health_next_probe_delay(&s, 2000), ==, 0);
  CHECK_INT(dsp_health_next_probe_delay(&s, 2001), ==, 2000);
  s.interval_ms = 3600000;
  CHECK_INT(dsp_health_next_probe_delay(&s, UINT64_MAX), <=, 3600000);
}

/* ---- active check ------------------------------------------------------ */

static void test_mandatory_first_probe(void) {
  dsp_health_settings s = checked_settings();
  dsp_health h;
  dsp_health_init(&h, &s, 1000);
  CHECK_INT(h.active, ==, DSP_HEALTH_PENDING);
  CHECK_INT(dsp_health_eligible(&h, 1000), ==, 0);
  CHECK_INT(dsp_health_state_of(&h, 1000), ==, DSP_HEALTH_PENDING);
  CHECK_INT(dsp_health_tick(&h, 500000), ==, 0); /* time alone never admits it */
  CHECK_INT(dsp_health_eligible(&h, 500000), ==, 0);
  /* first success: UP at once, regardless of rise */
  CHECK_INT(dsp_health_probe_result(&h, 1, NULL, 250, 2000), ==, 1);
  CHECK_INT(h.active, ==, DSP_HEALTH_UP);
  CHECK_INT(dsp_health_eligible(&h, 2000), ==, 1);
  CHECK_STR(h.reason, "first check passed");
  CHECK_INT(h.active_changed_ms, ==, 2000);

  /* PENDING + fall failures: DOWN, still ineligible, then needs rise */
  dsp_health_init(&h, &s, 0);
  CHECK_INT(dsp_health_probe_result(&h, 0, "connection refused", 0, 10), ==, 0);
  CHECK_INT(dsp_health_probe_result(&h, 0, "connection refused", 0, 20), ==, 0);
  CHECK_INT(h.active, ==, DSP_HEALTH_PENDING);
  CHECK_INT(dsp_health_state_of(&h, 20), ==, DSP_HEALTH_PENDING);
  CHECK_INT(dsp_health_probe_result(&h, 0, "connection refused", 0, 30), ==, 0);
  CHECK_INT(h.active, ==, DSP_HEALTH_DOWN);
  CHECK_INT(dsp_health_state_of(&h, 30), ==, DSP_HEALTH_DOWN);
  CHECK_STR(h.reason, "3 consecutive failures: connection refused");
  CHECK_INT(dsp_health_probe_result(&h, 1, NULL, 0, 40), ==, 0);
  CHECK_INT(h.active, ==, DSP_HEALTH_DOWN);
  CHECK_INT(dsp_health_probe_result(&h, 1, NULL, 0, 50), ==, 1);
  CHECK_INT(h.active, ==, DSP_HEALTH_UP);
  CHECK_STR(h.reason, "2 consecutive successes");
}

static void test_fall_rise_thresholds(void) {
  dsp_health_settings s = checked_settings();
  dsp_health h;
  uint64_t t = 0;
  s.fall = 4;
  s.rise = 3;
  up_worker(&h, &s, t);
  for (int i = 0; i < 3; i++) {
    CHECK_INT(dsp_health_probe_result(&h, 0, "timeout", 0, ++t), ==, 0);
    CHECK_INT(h.active, ==, DSP_HEALTH_UP);
  }
  CHECK_INT(h.consec_fail, ==, 3);
  CHECK_INT(dsp_health_probe_result(&h, 0, "timeout", 0, ++t), ==, 1); /* exactly fall */
  CHECK_INT(h.active, ==, DSP_HEALTH_DOWN);
  CHECK_STR(h.reason, "4 consecutive failures: timeout");
  CHECK_INT(dsp_health_probe_result(&h, 0, "timeout", 0, ++t), ==, 0); /* already down */
  CHECK_INT(h.consec_fail, ==, 5);
  for (int i = 0; i < 2; i++) {
    CHECK_INT(dsp_health_probe_result(&h, 1, NULL, 0, ++t), ==, 0);
    CHECK_INT(h.active, ==, DSP_HEALTH_DOWN);
  }
  CHECK_INT(h.consec_fail, ==, 0);
  CHECK_INT(dsp_health_probe_result(&h, 1, NULL, 0, ++t), ==, 1); /* exactly rise */
  CHECK_INT(h.active, ==, DSP_HEALTH_UP);
  CHECK_STR(h.reason, "3 consecutive successes");
  CHECK_INT(dsp_health_probe_result(&h, 1, NULL, 0, ++t), ==, 0);

  /* fall = rise = 1: every result decides */
  s.fall = s.rise = 1;
  up_worker(&h, &s, 0);
  CHECK_INT(dsp_health_probe_result(&h, 0, "HTTP 503", 0, 1), ==, 1);
  CHECK_STR(h.reason, "1 consecutive failure: HTTP 503");
  CHECK_INT(dsp_health_probe_result(&h, 1, NULL, 0, 2), ==, 1);
  CHECK_STR(h.reason, "1 consecutive success");
  CHECK_INT(dsp_health_probe_result(&h, 0, NULL, 0, 3), ==, 1);
  CHECK_STR(h.reason, "1 consecutive failure: check failed");
}

static void test_alternating_never_transitions(void) {
  dsp_health_settings s = checked_settings();
  dsp_health h;
  s.fall = 2;
  s.rise = 2;
  up_worker(&h, &s, 0);
  for (uint64_t t = 1; t < 200; t++) {
    CHECK_INT(dsp_health_probe_result(&h, !(t & 1), "flap", 0, t), ==, 0);
    CHECK_INT(h.active, ==, DSP_HEALTH_UP);
    CHECK(h.consec_ok <= 1 && h.consec_fail <= 1);
  }
  /* the same from DOWN */
  dsp_health_probe_result(&h, 0, "x", 0, 300);
  dsp_health_probe_result(&h, 0, "x", 0, 301);
  CHECK_INT(h.active, ==, DSP_HEALTH_DOWN);
  for (uint64_t t = 302; t < 500; t++) {
    CHECK_INT(dsp_health_probe_result(&h, (int)(t & 1), "flap", 0, t), ==, 0);
    CHECK_INT(h.active, ==, DSP_HEALTH_DOWN);
  }
  /* and from PENDING with fall 2: alternating never reaches DOWN, and the
     first success admits it */
  dsp_health_init(&h, &s, 0);
  CHECK_INT(dsp_health_probe_result(&h, 0, "x", 0, 1), ==, 0);
  CHECK_INT(dsp_health_probe_result(&h, 1, NULL, 0, 2), ==, 1);
  CHECK_INT(h.active, ==, DSP_HEALTH_UP);
}

static void test_probe_bookkeeping(void) {
  dsp_health_settings s = checked_settings();
  dsp_health h;
  char longr[400];
  dsp_health_init(&h, &s, 0);
  CHECK_INT(h.probes, ==, 0);
  dsp_health_probe_result(&h, 1, NULL, 1234, 5);
  dsp_health_probe_result(&h, 0, "conn\nrefused\x01", 777, 6);
  CHECK_INT(h.probes, ==, 2);
  CHECK_INT(h.probe_failures, ==, 1);
  CHECK_INT(h.last_latency_us, ==, 777);
  CHECK_STR(h.last_error, "conn refused "); /* control bytes blanked */
  dsp_health_probe_result(&h, 1, NULL, 42, 7);
  CHECK_STR(h.last_error, "conn refused "); /* kept: it is the last *error* */
  CHECK_INT(h.last_latency_us, ==, 42);
  /* long reasons are cut, never mid-UTF-8 */
  memset(longr, 'r', sizeof(longr));
  longr[sizeof(longr) - 1] = '\0';
  dsp_health_probe_result(&h, 0, longr, 0, 8);
  CHECK_INT(strlen(h.last_error), ==, DSP_HEALTH_REASON_MAX - 1);
  memset(longr, 'r', DSP_HEALTH_REASON_MAX - 2);
  memcpy(longr + DSP_HEALTH_REASON_MAX - 2, "\xc3\xa9\xc3\xa9", 5); /* é straddles the cut */
  dsp_health_probe_result(&h, 0, longr, 0, 9);
  CHECK_INT(strlen(h.last_error), ==, DSP_HEALTH_REASON_MAX - 2);
  dsp_health_probe_result(&h, 0, "", 0, 10);
  CHECK_STR(h.last_error, "check failed");
  CHECK_INT(h.probes, ==, 6);
  CHECK_INT(h.probe_failures, ==, 4);
}

/* ---- heartbeat --------------------------------------------------------- */

static void test_heartbeat(void) {
  dsp_health_settings s;
  dsp_health h;
  dsp_health_settings_default(&s);
  s.heartbeat_ttl_ms = 1000;
  s.max_fails = 0;
  dsp_health_init(&h, &s, 0);
  CHECK_INT(h.heartbeat, ==, DSP_HEALTH_PENDING);
  CHECK_INT(dsp_health_eligible(&h, 0), ==, 0);
  CHECK_INT(dsp_health_state_of(&h, 0), ==, DSP_HEALTH_PENDING);
  CHECK_INT(dsp_health_next_tick(&h, 0), ==, UINT64_MAX); /* pending never expires */
  CHECK_INT(dsp_health_tick(&h, 99999), ==, 0);
  CHECK_INT(dsp_health_heartbeat(&h, 100), ==, 1);
  CHECK_INT(h.heartbeat, ==, DSP_HEALTH_UP);
  CHECK_STR(h.reason, "heartbeat received");
  CHECK_INT(dsp_health_next_tick(&h, 100), ==, 1100);
  CHECK_INT(dsp_health_tick(&h, 1099), ==, 0);
  CHECK_INT(dsp_health_eligible(&h, 1099), ==, 1);
  CHECK_INT(dsp_health_eligible(&h, 1100), ==, 0); /* exactly at ttl */
  CHECK_INT(dsp_health_state_of(&h, 1100), ==, DSP_HEALTH_DOWN);
  CHECK_INT(dsp_health_tick(&h, 1100), ==, 1);
  CHECK_INT(h.heartbeat, ==, DSP_HEALTH_DOWN);
  CHECK_STR(h.reason, "heartbeat expired after 1000 ms");
  CHECK_INT(dsp_health_next_tick(&h, 1100), ==, UINT64_MAX);
  CHECK_INT(dsp_health_tick(&h, 1200), ==, 0);
  CHECK_INT(dsp_health_heartbeat(&h, 1500), ==, 1); /* UP at once */
  CHECK_INT(dsp_health_eligible(&h, 1500), ==, 1);
  /* heartbeats keep pushing expiry out */
  CHECK_INT(dsp_health_heartbeat(&h, 2400), ==, 0);
  CHECK_INT(dsp_health_tick(&h, 2499), ==, 0);
  CHECK_INT(dsp_health_next_tick(&h, 2499), ==, 3400);
  /* a late tick reports the real gap */
  CHECK_INT(dsp_health_tick(&h, 5000), ==, 1);
  CHECK_STR(h.reason, "heartbeat expired after 2600 ms");
  /* a heartbeat that arrives after expiry but before any tick: the call
     itself notices expiry first, so eligibility does not change */
  dsp_health_heartbeat(&h, 6000);
  CHECK_INT(dsp_health_heartbeat(&h, 7500), ==, 0);
  CHECK_INT(h.heartbeat, ==, DSP_HEALTH_UP);
  /* a heartbeat stamped earlier than the last one does not move it back */
  dsp_health_heartbeat(&h, 7000);
  CHECK_INT(h.last_heartbeat_ms, ==, 7500);
}

/* ---- passive ----------------------------------------------------------- */

static void test_passive_defaults(void) {
  dsp_health_settings s;
  dsp_health h;
  dsp_health_settings_default(&s); /* max_fails 1, fail_timeout 10 s */
  dsp_health_init(&h, &s, 0);
  CHECK_INT(dsp_health_eligible(&h, 0), ==, 1); /* no check, no heartbeat */
  CHECK_INT(dsp_health_report(&h, 1, 500), ==, 0);
  CHECK_INT(dsp_health_report(&h, 0, 1000), ==, 1);
  CHECK_STR(h.reason, "passive: 1 failure(s) within 10000 ms");
  CHECK_INT(dsp_health_state_of(&h, 1000), ==, DSP_HEALTH_DOWN);
  CHECK_INT(dsp_health_next_tick(&h, 1000), ==, 11001);
  CHECK_INT(dsp_health_eligible(&h, 11000), ==, 0); /* now - checked <= fail_timeout */
  CHECK_INT(dsp_health_tick(&h, 11000), ==, 0);
  CHECK_INT(dsp_health_eligible(&h, 11001), ==, 1);
  CHECK_INT(dsp_health_tick(&h, 11001), ==, 1); /* trial */
  CHECK_STR(h.reason, "passive: trial after 10000 ms");
  CHECK_INT(h.fails, ==, 1); /* still counted: the trial decides */
  CHECK_INT(dsp_health_next_tick(&h, 11001), ==, UINT64_MAX);
  /* a failure in the trial: ejected for another fail_timeout */
  CHECK_INT(dsp_health_report(&h, 0, 12000), ==, 1);
  CHECK_INT(h.fails, ==, 2);
  CHECK_INT(h.checked_ms, ==, 12000);
  CHECK_INT(dsp_health_eligible(&h, 22000), ==, 0);
  CHECK_INT(dsp_health_eligible(&h, 22001), ==, 1);
  /* a success (a task still in flight) clears it at once */
  CHECK_INT(dsp_health_report(&h, 1, 12500), ==, 1);
  CHECK_INT(h.fails, ==, 0);
  CHECK_STR(h.reason, "passive: success reported");
  CHECK_INT(dsp_health_eligible(&h, 12500), ==, 1);
  /* passive changes never touch the persisted record */
  CHECK_INT(h.record_seq, ==, 0);
}

static void test_passive_window(void) {
  dsp_health_settings s;
  dsp_health h;
  dsp_health_settings_default(&s);
  s.max_fails = 3;
  s.fail_timeout_ms = 10000;
  dsp_health_init(&h, &s, 0);
  CHECK_INT(dsp_health_report(&h, 0, 0), ==, 0);
  CHECK_INT(dsp_health_report(&h, 0, 5000), ==, 0);
  CHECK_INT(dsp_health_report(&h, 0, 15000), ==, 1); /* 10000 after the last: within */
  CHECK_INT(h.fails, ==, 3);
  CHECK_STR(h.reason, "passive: 3 failure(s) within 10000 ms");
  CHECK_INT(dsp_health_eligible(&h, 25000), ==, 0);
  CHECK_INT(dsp_health_eligible(&h, 25001), ==, 1);

  /* old failures are forgotten after fail_timeout */
  dsp_health_init(&h, &s, 0);
  dsp_health_report(&h, 0, 0);
  dsp_health_report(&h, 0, 5000);
  CHECK_INT(h.fails, ==, 2);
  CHECK_INT(dsp_health_report(&h, 0, 15001), ==, 0);
  CHECK_INT(h.fails, ==, 1);
  CHECK_INT(dsp_health_eligible(&h, 15001), ==, 1);

  /* a success in between resets the count */
  dsp_health_init(&h, &s, 0);
  dsp_health_report(&h, 0, 0);
  dsp_health_report(&h, 0, 1);
  CHECK_INT(dsp_health_report(&h, 1, 2), ==, 0);
  CHECK_INT(h.fails, ==, 0);
  CHECK_INT(dsp_health_report(&h, 0, 3), ==, 0);
  CHECK_INT(dsp_health_eligible(&h, 3), ==, 1);

  /* max_fails 0: never ejected */
  s.max_fails = 0;
  dsp_health_init(&h, &s, 0);
  for (uint64_t t = 0; t < 100; t++) CHECK_INT(dsp_health_report(&h, 0, t), ==, 0);
  CHECK_INT(dsp_health_eligible(&h, 100), ==, 1);
  CHECK_INT(dsp_health_next_tick(&h, 100), ==, UINT64_MAX);
}

/* ---- combined ---------------------------------------------------------- */

/* A probe we could not make (LOCAL) changes no state and no count: an up
   worker stays up through any number of them, a pending one stays pending,
   a down one keeps its successes towards rise; only last_error shows it. */
static void test_inconclusive(void) {
  dsp_health_settings s = checked_settings();
  dsp_health h;
  uint64_t changed;
  up_worker(&h, &s, 0);
  changed = h.changed_ms;
  for (int i = 0; i < 10; i++)
    CHECK_INT(dsp_health_probe_inconclusive(&h, "cannot open a socket: Too many open files",
                                            100 + (uint64_t)i),
              ==, 0);
  CHECK_INT(h.active, ==, DSP_HEALTH_UP);
  CHECK(dsp_health_eligible(&h, 200));
  CHECK_INT(h.consec_fail, ==, 0);
  CHECK_INT(h.consec_ok, ==, 1);
  CHECK_INT(h.probes, ==, 1);
  CHECK_INT(h.probe_failures, ==, 0);
  CHECK_INT(h.changed_ms, ==, changed);
  CHECK_STR(h.last_error, "cannot open a socket: Too many open files");
  CHECK(h.last_inconclusive);
  /* Between two failures it neither resets nor adds to consec_fail. */
  dsp_health_probe_result(&h, 0, "connection refused", 0, 300);
  CHECK(!h.last_inconclusive);
  dsp_health_probe_inconclusive(&h, "no free local port", 301);
  dsp_health_probe_result(&h, 0, "connection refused", 0, 302);
  CHECK_INT(h.consec_fail, ==, 2);
  CHECK_INT(h.active, ==, DSP_HEALTH_UP);
  CHECK_INT(dsp_health_probe_result(&h, 0, "connection refused", 0, 303), ==, 1);
  CHECK_INT(h.active, ==, DSP_HEALTH_DOWN);
  /* Down: a pass, then one we could not make, then a pass is rise 2. */
  dsp_health_probe_result(&h, 1, NULL, 10, 400);
  dsp_health_probe_inconclusive(&h, NULL, 401);
  CHECK_STR(h.last_error, "probe not made");
  CHECK_INT(h.active, ==, DSP_HEALTH_DOWN);
  CHECK_INT(dsp_health_probe_result(&h, 1, NULL, 10, 402), ==, 1);
  CHECK_INT(h.active, ==, DSP_HEALTH_UP);
  /* Pending stays pending. */
  dsp_health_init(&h, &s, 1000);
  for (int i = 0; i < 5; i++) dsp_health_probe_inconclusive(&h, "x", 1001 + (uint64_t)i);
  CHECK_INT(h.active, ==, DSP_HEALTH_PENDING);
  CHECK(!dsp_health_eligible(&h, 1010));
  /* No check: ignored, last_error untouched. */
  dsp_health_settings_default(&s);
  dsp_health_init(&h, &s, 0);
  CHECK_INT(dsp_health_probe_inconclusive(&h, "x", 1), ==, 0);
  CHECK_STR(h.last_error, "");
  CHECK(!h.last_inconclusive);
  CHECK(dsp_health_eligible(&h, 1));
}

static void test_combined(void) {
  dsp_health_settings s = checked_settings();
  dsp_health h;
  s.heartbeat_ttl_ms = 1000;
  s.max_fails = 1;
  s.fail_timeout_ms = 500;
  dsp_health_init(&h, &s, 0);
  CHECK_INT(dsp_health_state_of(&h, 0), ==, DSP_HEALTH_PENDING);
  CHECK_INT(dsp_health_probe_result(&h, 1, NULL, 0, 10), ==, 0); /* heartbeat still pending */
  CHECK_INT(dsp_health_state_of(&h, 10), ==, DSP_HEALTH_PENDING);
  CHECK_INT(dsp_health_heartbeat(&h, 20), ==, 1);
  CHECK_INT(dsp_health_state_of(&h, 20), ==, DSP_HEALTH_UP);
  /* each signal alone takes it out */
  CHECK_INT(dsp_health_report(&h, 0, 30), ==, 1);
  CHECK_INT(dsp_health_tick(&h, 531), ==, 1);
  CHECK_INT(dsp_health_tick(&h, 1020), ==, 1); /* heartbeat expired */
  CHECK_INT(dsp_health_heartbeat(&h, 1030), ==, 1);
  s.fall = 1;
  dsp_health_reconfigure(&h, &s, 1030);
  CHECK_INT(dsp_health_probe_result(&h, 0, "refused", 0, 1040), ==, 1);
  CHECK_INT(dsp_health_state_of(&h, 1040), ==, DSP_HEALTH_DOWN);
  /* two signals down: one recovering is not enough */
  CHECK_INT(dsp_health_report(&h, 0, 1050), ==, 0);
  CHECK_INT(dsp_health_probe_result(&h, 1, NULL, 0, 1060), ==, 0);
  CHECK_INT(dsp_health_probe_result(&h, 1, NULL, 0, 1070), ==, 0); /* active up, passive not */
  CHECK_INT(h.active, ==, DSP_HEALTH_UP);
  CHECK_INT(dsp_health_state_of(&h, 1070), ==, DSP_HEALTH_DOWN);
  CHECK_INT(dsp_health_report(&h, 1, 1080), ==, 1);

  /* pending + something down = down, not pending */
  dsp_health_init(&h, &s, 0);
  dsp_health_report(&h, 0, 1);
  CHECK_INT(dsp_health_state_of(&h, 1), ==, DSP_HEALTH_DOWN);
  dsp_health_init(&h, &s, 0);
  dsp_health_heartbeat(&h, 0);
  dsp_health_tick(&h, 1000);
  CHECK_INT(h.active, ==, DSP_HEALTH_PENDING);
  CHECK_INT(dsp_health_state_of(&h, 1000), ==, DSP_HEALTH_DOWN);
  CHECK_STR(dsp_health_state_name(dsp_health_state_of(&h, 1000)), "down");
}

static void test_state_names(void) {
  CHECK_STR(dsp_health_state_name(DSP_HEALTH_UP), "up");
  CHECK_STR(dsp_health_state_name(DSP_HEALTH_DOWN), "down");
  CHECK_STR(dsp_health_state_name(DSP_HEALTH_PENDING), "pending");
  CHECK_STR(dsp_health_state_name(DSP_HEALTH_OFF), "off");
  CHECK_STR(dsp_health_state_name((dsp_health_state)42), "?");
}

static void test_next_tick(void) {
  dsp_health_settings s = checked_settings();
  dsp_health h;
  /* nothing time-dependent */
  up_worker(&h, &s, 0);
  CHECK_INT(dsp_health_next_tick(&h, 0), ==, UINT64_MAX);
  CHECK(steady_until_next_tick(&h, 0));
  /* heartbeat and passive: the earlier wins */
  s.heartbeat_ttl_ms = 1000;
  s.max_fails = 1;
  s.fail_timeout_ms = 300;
  up_worker(&h, &s, 0);
  dsp_health_heartbeat(&h, 100);
  CHECK_INT(dsp_health_next_tick(&h, 100), ==, 1100);
  CHECK(steady_until_next_tick(&h, 100));
  dsp_health_report(&h, 0, 200);
  CHECK_INT(dsp_health_next_tick(&h, 200), ==, 501);
  CHECK(steady_until_next_tick(&h, 200));
  s.fail_timeout_ms = 3000;
  dsp_health_reconfigure(&h, &s, 300);
  CHECK_INT(dsp_health_next_tick(&h, 300), ==, 1100);
  CHECK(steady_until_next_tick(&h, 300));
  /* overdue: now */
  CHECK_INT(dsp_health_next_tick(&h, 5000), ==, 5000);
  /* an ejection ended but not yet ticked: due now */
  s.heartbeat_ttl_ms = 0;
  s.fail_timeout_ms = 300;
  up_worker(&h, &s, 0);
  dsp_health_report(&h, 0, 0);
  CHECK_INT(dsp_health_next_tick(&h, 400), ==, 400);
  CHECK_INT(dsp_health_tick(&h, 400), ==, 1);
  CHECK_INT(dsp_health_next_tick(&h, 400), ==, UINT64_MAX);

  /* drive a whole scenario only by next_tick: the returned 1s match exactly
     the moments eligibility flips */
  {
    uint64_t now = 100, flips = 0;
    s.heartbeat_ttl_ms = 700;
    s.fail_timeout_ms = 250;
    up_worker(&h, &s, 0);
    dsp_health_heartbeat(&h, 0);
    dsp_health_report(&h, 0, 100);
    for (int i = 0; i < 10; i++) {
      uint64_t nt = dsp_health_next_tick(&h, now);
      int before = h.eligible;
      if (nt == UINT64_MAX) break;
      CHECK(steady_until_next_tick(&h, now));
      now = nt;
      if (dsp_health_tick(&h, now)) {
        flips++;
        CHECK_INT(h.eligible, !=, before);
      }
    }
    CHECK_INT(flips, ==, 2); /* trial at 351, heartbeat expiry at 700 */
    CHECK_INT(now, ==, 700);
    CHECK_INT(dsp_health_eligible(&h, now), ==, 0);
  }
}

static void test_reconfigure(void) {
  dsp_health_settings s, plain;
  dsp_health h;
  dsp_health_settings_default(&plain);
  plain.max_fails = 0;
  s = checked_settings();

  /* check added: PENDING, ineligible */
  dsp_health_init(&h, &plain, 0);
  CHECK_INT(dsp_health_eligible(&h, 0), ==, 1);
  CHECK_INT(dsp_health_reconfigure(&h, &s, 10), ==, 1);
  CHECK_INT(h.active, ==, DSP_HEALTH_PENDING);
  CHECK_INT(dsp_health_state_of(&h, 10), ==, DSP_HEALTH_PENDING);
  CHECK_INT(h.record_seq, ==, 1);
  /* check removed while DOWN: eligible again, late results ignored */
  s.fall = 1;
  dsp_health_reconfigure(&h, &s, 11);
  dsp_health_probe_result(&h, 0, "x", 0, 12);
  CHECK_INT(h.active, ==, DSP_HEALTH_DOWN);
  CHECK_INT(dsp_health_reconfigure(&h, &plain, 20), ==, 1);
  CHECK_INT(h.active, ==, DSP_HEALTH_OFF);
  CHECK_STR(h.reason, "check removed");
  CHECK_INT(dsp_health_probe_result(&h, 0, "late", 0, 21), ==, 0);
  CHECK_INT(h.probes, ==, 1);
  CHECK_INT(dsp_health_eligible(&h, 21), ==, 1);

  /* URL and threshold changes keep state and counters */
  s = checked_settings();
  s.fall = 3;
  up_worker(&h, &s, 0);
  dsp_health_probe_result(&h, 0, "x", 0, 1);
  dsp_health_probe_result(&h, 0, "x", 0, 2);
  snprintf(s.check, sizeof(s.check), "http://127.0.0.1:9090/other");
  s.fall = 2;
  CHECK_INT(dsp_health_reconfigure(&h, &s, 3), ==, 0);
  CHECK_INT(h.active, ==, DSP_HEALTH_UP);
  CHECK_INT(h.consec_fail, ==, 2);
  CHECK_STR(h.settings.check, "http://127.0.0.1:9090/other");
  CHECK_INT(dsp_health_probe_result(&h, 0, "x", 0, 4), ==, 1); /* new fall applies */

  /* heartbeat added: UP if a recent heartbeat was seen, else PENDING */
  dsp_health_init(&h, &plain, 0);
  dsp_health_heartbeat(&h, 100); /* counted even while off */
  CHECK_INT(h.heartbeat, ==, DSP_HEALTH_OFF);
  s = plain;
  s.heartbeat_ttl_ms = 1000;
  CHECK_INT(dsp_health_reconfigure(&h, &s, 500), ==, 0);
  CHECK_INT(h.heartbeat, ==, DSP_HEALTH_UP);
  CHECK_INT(dsp_health_next_tick(&h, 500), ==, 1100);
  dsp_health_init(&h, &plain, 0);
  dsp_health_heartbeat(&h, 100);
  CHECK_INT(dsp_health_reconfigure(&h, &s, 1100), ==, 1); /* exactly ttl old: too old */
  CHECK_INT(h.heartbeat, ==, DSP_HEALTH_PENDING);
  /* heartbeat removed: drops out */
  CHECK_INT(dsp_health_reconfigure(&h, &plain, 1200), ==, 1);
  CHECK_INT(h.heartbeat, ==, DSP_HEALTH_OFF);
  /* a shorter TTL can expire at once */
  dsp_health_init(&h, &s, 0);
  dsp_health_heartbeat(&h, 0);
  s.heartbeat_ttl_ms = 200;
  CHECK_INT(dsp_health_reconfigure(&h, &s, 300), ==, 1);
  CHECK_INT(h.heartbeat, ==, DSP_HEALTH_DOWN);

  /* max_fails 0 lifts a passive ejection; raising it back restores it */
  s = plain;
  s.max_fails = 1;
  dsp_health_init(&h, &s, 0);
  dsp_health_report(&h, 0, 0);
  CHECK_INT(dsp_health_eligible(&h, 0), ==, 0);
  s.max_fails = 0;
  CHECK_INT(dsp_health_reconfigure(&h, &s, 10), ==, 1);
  CHECK_INT(h.fails, ==, 1);
  s.max_fails = 1;
  CHECK_INT(dsp_health_reconfigure(&h, &s, 20), ==, 1);
  CHECK_INT(dsp_health_eligible(&h, 20), ==, 0);
}

/* ---- persisted record -------------------------------------------------- */

static void test_record_roundtrip(void) {
  dsp_health_settings s = checked_settings();
  dsp_health h, h2;
  dsp_health_record r;
  char buf[DSP_HEALTH_RECORD_MAX], err[256];

  up_worker(&h, &s, 0);
  CHECK_INT(h.record_seq, ==, 1);
  for (int i = 0; i < 3; i++) dsp_health_probe_result(&h, 0, "connection refused", 0, 10);
  CHECK_INT(h.record_seq, ==, 2);
  CHECK_INT(dsp_health_record_format(&h, 42, 1732400000000ULL, buf, sizeof(buf)), ==, 0);
  CHECK_STR(buf, "{\"state\":\"down\",\"since_ms\":1732400000000,"
                 "\"reason\":\"3 consecutive failures: connection refused\",\"epoch\":42}");
  CHECK_INT(dsp_health_record_format(&h, 42, 1732400000000ULL, buf, 20), ==, -1);
  CHECK_INT(dsp_health_record_format(&h, 42, 1732400000000ULL, buf, sizeof(buf)), ==, 0);
  CHECK_INT(dsp_health_record_parse(buf, strlen(buf), &r, err, sizeof(err)), ==, 0);
  CHECK_INT(r.state, ==, DSP_HEALTH_DOWN);
  CHECK_INT(r.since_ms, ==, 1732400000000ULL);
  CHECK_INT(r.epoch, ==, 42);
  CHECK_STR(r.reason, "3 consecutive failures: connection refused");

  /* "down": starts DOWN, counters zero, needs rise successes */
  dsp_health_init_from_record(&h2, &s, &r, 5000);
  CHECK_INT(h2.active, ==, DSP_HEALTH_DOWN);
  CHECK_INT(h2.consec_ok, ==, 0);
  CHECK_INT(h2.consec_fail, ==, 0);
  CHECK_INT(dsp_health_eligible(&h2, 5000), ==, 0);
  CHECK_INT(dsp_health_state_of(&h2, 5000), ==, DSP_HEALTH_DOWN);
  CHECK_STR(h2.reason, "from record: 3 consecutive failures: connection refused");
  CHECK_INT(dsp_health_probe_result(&h2, 1, NULL, 0, 5001), ==, 0);
  CHECK_INT(dsp_health_probe_result(&h2, 1, NULL, 0, 5002), ==, 1);

  /* "up": eligible at once, no probe round */
  CHECK_INT(dsp_health_record_format(&h2, 43, 1, buf, sizeof(buf)), ==, 0);
  CHECK_STR(buf, "{\"state\":\"up\",\"since_ms\":1,\"reason\":\"2 consecutive successes\","
                 "\"epoch\":43}");
  CHECK_INT(dsp_health_record_parse(buf, strlen(buf), &r, err, sizeof(err)), ==, 0);
  dsp_health_init_from_record(&h2, &s, &r, 9000);
  CHECK_INT(h2.active, ==, DSP_HEALTH_UP);
  CHECK_INT(dsp_health_eligible(&h2, 9000), ==, 1);
  CHECK_INT(h2.record_seq, ==, 0); /* nothing to rewrite yet */
  CHECK_INT(dsp_health_probe_result(&h2, 0, "x", 0, 9001), ==, 0); /* fall applies as usual */

  /* "pending": a fresh start */
  CHECK_INT(dsp_health_record_parse("{\"state\":\"pending\"}", 19, &r, err, sizeof(err)), ==, 0);
  CHECK_INT(r.since_ms, ==, 0);
  CHECK_INT(r.epoch, ==, 0);
  CHECK_STR(r.reason, "");
  dsp_health_init_from_record(&h2, &s, &r, 0);
  CHECK_INT(h2.active, ==, DSP_HEALTH_PENDING);
  dsp_health_init(&h2, &s, 0);
  CHECK_INT(dsp_health_record_format(&h2, 1, 2, buf, sizeof(buf)), ==, 0);
  CHECK_STR(buf, "{\"state\":\"pending\",\"since_ms\":2,\"reason\":\"waiting for the first check\","
                 "\"epoch\":1}");

  /* a reason with quotes and backslashes survives the trip */
  dsp_health_init(&h, &s, 0);
  s.fall = 1;
  dsp_health_reconfigure(&h, &s, 0);
  dsp_health_probe_result(&h, 0, "said \"no\" \\ bye", 0, 1);
  CHECK_INT(dsp_health_record_format(&h, -1, 0, buf, sizeof(buf)), ==, 0);
  CHECK_INT(dsp_health_record_parse(buf, strlen(buf), &r, err, sizeof(err)), ==, 0);
  CHECK_STR(r.reason, "1 consecutive failure: said \"no\" \\ bye");
  CHECK_INT(r.epoch, ==, -1);

  /* the longest reason, all quotes, fits DSP_HEALTH_RECORD_MAX and comes back */
  {
    char worst[400];
    memset(worst, '"', sizeof(worst));
    worst[sizeof(worst) - 1] = '\0';
    dsp_health_init(&h, &s, 0); /* fall 1 */
    dsp_health_probe_result(&h, 0, worst, 0, 2);
    CHECK_INT(strlen(h.active_reason), ==, DSP_HEALTH_REASON_MAX - 1);
    CHECK_INT(dsp_health_record_format(&h, INT64_MAX, 1732400000000ULL, buf, sizeof(buf)), ==, 0);
    CHECK_INT(dsp_health_record_parse(buf, strlen(buf), &r, err, sizeof(err)), ==, 0);
    CHECK_STR(r.reason, h.active_reason);
    CHECK_INT(r.epoch, ==, INT64_MAX);
  }
}

static void test_record_heartbeat(void) {
  dsp_health_settings s;
  dsp_health h;
  dsp_health_record r;
  char buf[DSP_HEALTH_RECORD_MAX], err[256];
  dsp_health_settings_default(&s);
  s.heartbeat_ttl_ms = 1000;
  s.max_fails = 0;
  dsp_health_init(&h, &s, 0);
  dsp_health_heartbeat(&h, 0);
  dsp_health_tick(&h, 1000);
  CHECK_INT(dsp_health_record_format(&h, 7, 99, buf, sizeof(buf)), ==, 0);
  CHECK_STR(buf, "{\"state\":\"down\",\"since_ms\":99,\"reason\":\"heartbeat expired after 1000 ms\","
                 "\"epoch\":7}");
  CHECK_INT(h.record_seq, ==, 2);
  /* "up" with a heartbeat: one TTL of grace from takeover */
  CHECK_INT(dsp_health_record_parse("{\"state\":\"up\"}", 14, &r, err, sizeof(err)), ==, 0);
  dsp_health_init_from_record(&h, &s, &r, 50000);
  CHECK_INT(h.heartbeat, ==, DSP_HEALTH_UP);
  CHECK_INT(dsp_health_eligible(&h, 50000), ==, 1);
  CHECK_INT(dsp_health_eligible(&h, 50999), ==, 1);
  CHECK_INT(dsp_health_next_tick(&h, 50000), ==, 51000);
  CHECK_INT(dsp_health_tick(&h, 51000), ==, 1);
  /* "down" with a heartbeat: the next heartbeat brings it up */
  CHECK_INT(dsp_health_record_parse("{\"state\":\"down\"}", 16, &r, err, sizeof(err)), ==, 0);
  dsp_health_init_from_record(&h, &s, &r, 0);
  CHECK_INT(h.heartbeat, ==, DSP_HEALTH_DOWN);
  CHECK_INT(dsp_health_eligible(&h, 0), ==, 0);
  CHECK_INT(dsp_health_heartbeat(&h, 1), ==, 1);
  /* passive ejection is not part of the record */
  s.max_fails = 1;
  dsp_health_init(&h, &s, 0);
  dsp_health_heartbeat(&h, 0);
  dsp_health_report(&h, 0, 1);
  CHECK_INT(dsp_health_eligible(&h, 1), ==, 0);
  CHECK_INT(dsp_health_record_format(&h, 7, 99, buf, sizeof(buf)), ==, 0);
  CHECK(strncmp(buf, "{\"state\":\"up\",", 14) == 0);
  CHECK_INT(h.record_seq, ==, 1);
}

static void test_record_bad(void) {
  static const struct {
    const char *data, *err; /* err: exact, or a prefix ending in '*' */
  } bad[] = {
      {"", "health record: byte *"},
      {"not json", "health record: byte *"},
      {"up", "health record: byte *"},
      {"{\"state\":\"up\"", "health record: byte *"},
      {"{\"state\":\"up\",\"x\":{\"y\":1}}", "health record: byte *"},
      {"{\"state\":\"up\",\"state\":\"down\"}", "health record: byte *"},
      {"{}", "health record: \"state\" is missing"},
      {"{\"since_ms\":1,\"epoch\":2}", "health record: \"state\" is missing"},
      {"{\"state\":\"sideways\"}", "\"state\" \"sideways\" is not up, down or pending"},
      {"{\"state\":\"UP\"}", "\"state\" \"UP\" is not up, down or pending"},
      {"{\"state\":\"\"}", "\"state\" \"\" is not up, down or pending"},
      {"{\"state\":\"off\"}", "\"state\" \"off\" is not up, down or pending"},
      {"{\"state\":1}", "\"state\" must be a string"},
      {"{\"state\":null}", "\"state\" must be a string"},
      {"{\"state\":\"up\",\"since_ms\":-1}", "\"since_ms\" must be a number >= 0"},
      {"{\"state\":\"up\",\"since_ms\":\"now\"}", "\"since_ms\" must be a number >= 0"},
      {"{\"state\":\"up\",\"epoch\":\"42\"}", "\"epoch\" must be a number"},
      {"{\"state\":\"up\",\"reason\":5}", "\"reason\" must be a string"},
  };
  dsp_health_record r;
  char err[256];
  for (size_t i = 0; i < DSP_ARRAY_SIZE(bad); i++) {
    size_t n = strlen(bad[i].err);
    int rc = dsp_health_record_parse(bad[i].data, strlen(bad[i].data), &r, err, sizeof(err));
    if (rc != -1) fprintf(stderr, "accepted: %s\n", bad[i].data);
    CHECK_INT(rc, ==, -1);
    if (bad[i].err[n - 1] == '*') {
      if (strncmp(err, bad[i].err, n - 1) != 0) fprintf(stderr, "got: %s\n", err);
      CHECK(strncmp(err, bad[i].err, n - 1) == 0);
    } else {
      CHECK_STR(err, bad[i].err);
    }
  }
  CHECK_INT(dsp_health_record_parse(NULL, 0, &r, err, sizeof(err)), ==, -1);
  /* unknown keys are ignored; a hand-written reason is cleaned and cut */
  {
    char doc[600];
    char longr[300];
    memset(longr, 'z', sizeof(longr));
    longr[sizeof(longr) - 1] = '\0';
    const char *extra = "{\"who\":\"zkCli\",\"state\":\"up\",\"n\":1,\"b\":true,\"z\":null}";
    const char *ctl = "{\"state\":\"up\",\"reason\":\"a\\nb\"}";
    CHECK_INT(dsp_health_record_parse(extra, strlen(extra), &r, err, sizeof(err)), ==, 0);
    CHECK_INT(r.state, ==, DSP_HEALTH_UP);
    CHECK_INT(dsp_health_record_parse(ctl, strlen(ctl), &r, err, sizeof(err)), ==, 0);
    CHECK_STR(r.reason, "a b");
    snprintf(doc, sizeof(doc), "{\"state\":\"down\",\"reason\":\"%s\"}", longr);
    CHECK_INT(dsp_health_record_parse(doc, strlen(doc), &r, err, sizeof(err)), ==, 0);
    CHECK_INT(strlen(r.reason), ==, DSP_HEALTH_REASON_MAX - 1);
  }
  /* len bounds the read */
  CHECK_INT(dsp_health_record_parse("{\"state\":\"up\"}XX", 14, &r, err, sizeof(err)), ==, 0);
  CHECK_INT(dsp_health_record_parse("{\"state\":\"up\"}XX", 13, &r, err, sizeof(err)), ==, -1);
}

static const test_entry tests[] = {
    TEST(test_defaults),
    TEST(test_member_all_keys),
    TEST(test_member_errors),
    TEST(test_check_urls),
    TEST(test_expect_body_limit),
    TEST(test_expect_status_forms),
    TEST(test_response_ok),
    TEST(test_validate),
    TEST(test_set_flags),
    TEST(test_jitter),
    TEST(test_mandatory_first_probe),
    TEST(test_fall_rise_thresholds),
    TEST(test_alternating_never_transitions),
    TEST(test_probe_bookkeeping),
    TEST(test_heartbeat),
    TEST(test_passive_defaults),
    TEST(test_passive_window),
    TEST(test_inconclusive),
    TEST(test_combined),
    TEST(test_state_names),
    TEST(test_next_tick),
    TEST(test_reconfigure),
    TEST(test_record_roundtrip),
    TEST(test_record_heartbeat),
    TEST(test_record_bad),
};

TEST_MAIN(tests)
