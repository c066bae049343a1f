/*
 * test_json.c: the znode JSON reader on good and hostile input.
 */
#include "json.h"
#include "test.h"
#include "util.h"

typedef struct {
  char id[64];
  long long num;
  int n;
} seen;

static int collect(const dsp_json_member *m, void *ctx) {
  seen *s = ctx;
  s->n++;
  if (strcmp(m->key, "id") == 0 && m->type == DSP_JSON_STRING)
    snprintf(s->id, sizeof(s->id), "%s", m->str);
  if (m->type == DSP_JSON_INT) s->num = m->num;
  return 0;
}

static int parse(const char *s, seen *out) {
  char err[128];
  memset(out, 0, sizeof(*out));
  return dsp_json_parse(s, strlen(s), collect, out, err, sizeof(err));
}

static void test_good(void) {
  seen s;
  CHECK_INT(parse("{\"id\":\"d1\",\"addr\":\"127.0.0.1:7001\",\"epoch\":42}", &s), ==, 0);
  CHECK_STR(s.id, "d1");
  CHECK_INT(s.num, ==, 42);
  CHECK_INT(s.n, ==, 3);
  CHECK_INT(parse(" { } ", &s), ==, 0);
  CHECK_INT(parse("{\"id\":\"a\\u00e9\\n\\\"\",\"x\":-7,\"b\":true,\"z\":null}", &s), ==, 0);
  CHECK_STR(s.id, "a\xc3\xa9\n\"");
  CHECK_INT(s.num, ==, -7);
  CHECK_INT(parse("{\"id\":\"\\ud83d\\ude00\"}", &s), ==, 0);
  CHECK_STR(s.id, "\xf0\x9f\x98\x80");
}

static void test_bad(void) {
  static const char *const bad[] = {
      "", "   ", "not json", "{", "}", "[1,2]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}",
      "{\"a\":1 \"b\":2}", "{\"a\":1}x", "{\"a\":01}", "{\"a\":1.5}", "{\"a\":1e3}",
      "{\"a\":{\"b\":1}}", "{\"a\":[1]}", "{\"a\":\"unterminated}", "{\"a\":\"\\x\"}",
      "{\"a\":\"\\u12\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\\u0000\"}",
      "{\"a\":99999999999999999999}", "{\"a\":1,\"a\":2}", "{\"a\":tru}", "{a:1}",
      "{\"a\":\"tab\there\"}", "{\"a\":-}",
  };
  char err[128];
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = dsp_json_parse(bad[i], strlen(bad[i]), NULL, NULL, err, sizeof(err));
    if (rc != -1) fprintf(stderr, "accepted: %s\n", bad[i]);
    CHECK_INT(rc, ==, -1);
    CHECK(strncmp(err, "byte ", 5) == 0);
  }
}

/* len bounds the read: bytes past it are never looked at. */
static void test_not_nul_terminated(void) {
  const char buf[] = {'{', '"', 'a', '"', ':', '1', '}', 'X', 'X'};
  CHECK_INT(dsp_json_parse(buf, 7, NULL, NULL, NULL, 0), ==, 0);
  CHECK_INT(dsp_json_parse(buf, 6, NULL, NULL, NULL, 0), ==, -1);
  CHECK_INT(dsp_json_parse(buf, 0, NULL, NULL, NULL, 0), ==, -1);
}

static void test_quote_roundtrip(void) {
  char q[64];
  seen s;
  char doc[128];
  CHECK_INT(dsp_json_quote("a\"b\\c\n\x01", q, sizeof(q)), ==, 0);
  CHECK_STR(q, "\"a\\\"b\\\\c\\n\\u0001\"");
  snprintf(doc, sizeof(doc), "{\"id\":%s}", q);
  CHECK_INT(parse(doc, &s), ==, 0);
  CHECK_STR(s.id, "a\"b\\c\n\x01");
  CHECK_INT(dsp_json_quote("abcdef", q, 5), ==, -1);
}

static void test_util_parsers(void) {
  char host[64];
  int port;
  long long v;
  CHECK_INT(dsp_parse_hostport("127.0.0.1:7001", host, sizeof(host), &port), ==, 0);
  CHECK_STR(host, "127.0.0.1");
  CHECK_INT(port, ==, 7001);
  CHECK_INT(dsp_parse_hostport("[::1]:80", host, sizeof(host), &port), ==, 0);
  CHECK_STR(host, "::1");
  CHECK_INT(dsp_parse_hostport("::1:80", host, sizeof(host), &port), ==, -1);
  CHECK_INT(dsp_parse_hostport("h:0", host, sizeof(host), &port), ==, -1);
  CHECK_INT(dsp_parse_hostport("h:65536", host, sizeof(host), &port), ==, -1);
  CHECK_INT(dsp_parse_hostport(":80", host, sizeof(host), &port), ==, -1);
  CHECK_INT(dsp_parse_hostport("h:8x", host, sizeof(host), &port), ==, -1);
  CHECK_INT(dsp_parse_hostport("h h:80", host, sizeof(host), &port), ==, -1);
  CHECK(dsp_id_valid("d1") && dsp_id_valid("127.0.0.1:7001"));
  CHECK(!dsp_id_valid("") && !dsp_id_valid("a/b") && !dsp_id_valid("a b"));
  CHECK(!dsp_id_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
  CHECK_INT(dsp_parse_int("42", 0, 100, &v), ==, 0);
  CHECK_INT(v, ==, 42);
  CHECK_INT(dsp_parse_int("", 0, 100, &v), ==, -1);
  CHECK_INT(dsp_parse_int(" 4", 0, 100, &v), ==, -1);
  CHECK_INT(dsp_parse_int("4 ", 0, 100, &v), ==, -1);
  CHECK_INT(dsp_parse_int("101", 0, 100, &v), ==, -1);
  CHECK_INT(dsp_parse_int("99999999999999999999", 0, 100, &v), ==, -1);
}

static const test_entry tests[] = {
    TEST(test_good), TEST(test_bad), TEST(test_not_nul_terminated),
    TEST(test_quote_roundtrip), TEST(test_util_parsers),
};

TEST_MAIN(tests)
