/*
 * test_registry.c: worker znode data as people write it with zkCli.
 */
#include "registry.h"
#include "test.h"

static int parse(const char *s, dsp_worker_spec *w, char *err) {
  return dsp_worker_parse(s, strlen(s), NULL, w, err, 200);
}

static void test_good_data(void) {
  dsp_worker_spec w;
  char err[200];
  CHECK_INT(parse("{\"addr\":\"10.0.0.1:8080\",\"weight\":5}", &w, err), ==, 0);
  CHECK_STR(w.addr, "10.0.0.1:8080");
  CHECK_INT(w.weight, ==, 5);
  CHECK_INT(parse("{\"addr\":\"w1.example:80\"}", &w, err), ==, 0);
  CHECK_INT(w.weight, ==, 1); /* default */
  /* Health settings override the defaults; unknown keys are kept, not
     rejected. */
  CHECK_INT(parse("{\"addr\":\"h:1\",\"weight\":1000,\"check\":\"http://h:1/health\","
                  "\"fall\":5,\"note\":\"rack 3\"}",
                  &w, err),
            ==, 0);
  CHECK_INT(w.weight, ==, 1000);
  CHECK_STR(w.health.check, "http://h:1/health");
  CHECK_INT(w.health.fall, ==, 5);
  CHECK_INT(w.health.rise, ==, 2);
  CHECK_INT(w.health.interval_ms, ==, 2000);
  /* The cluster's defaults are where a znode starts. */
  {
    dsp_health_settings d;
    dsp_health_settings_default(&d);
    d.interval_ms = 500;
    d.timeout_ms = 200;
    const char *a = "{\"addr\":\"h:1\",\"rise\":4}", *b = "{\"addr\":\"h:1\",\"timeout_ms\":300}",
               *c = "{\"addr\":\"h:1\",\"timeout_ms\":600}";
    CHECK_INT(dsp_worker_parse(a, strlen(a), &d, &w, err, 200), ==, 0);
    CHECK_INT(w.health.interval_ms, ==, 500);
    CHECK_INT(w.health.rise, ==, 4);
    /* timeout 300 is fine against the cluster's interval of 500 ... */
    CHECK_INT(dsp_worker_parse(b, strlen(b), &d, &w, err, 200), ==, 0);
    /* ... 600 is not. */
    CHECK_INT(dsp_worker_parse(c, strlen(c), &d, &w, err, 200), ==, -1);
    CHECK(strstr(err, "must be below interval_ms 500") != NULL);
  }
}

/* Every kind of bad data named in the issue, each with a reason. */
static void test_bad_data(void) {
  static const char *const bad[][2] = {
      {"", "no data"},
      {"hello", "not JSON"},
      {"{\"weight\":3}", "missing \"addr\""},
      {"{\"addr\":\"h:1\",\"weight\":0}", "weight 0 is out of range"},
      {"{\"addr\":\"h:1\",\"weight\":-2}", "weight -2 is out of range"},
      {"{\"addr\":\"h:1\",\"weight\":1001}", "weight 1001 is out of range"},
      {"{\"addr\":\"h:1\",\"weight\":\"5\"}", "\"weight\" is not a whole number"},
      {"{\"addr\":\"h:1\",\"weight\":1.5}", "not JSON"},
      {"{\"addr\":\"no-port\"}", "is not host:port"},
      {"{\"addr\":\"h:99999\"}", "is not host:port"},
      {"{\"addr\":5}", "\"addr\" is not a string"},
      {"{\"addr\":\"h:1\",\"addr\":\"h:2\"}", "not JSON"},
      /* Bad check settings (docs/health.md): the worker is left out. */
      {"{\"addr\":\"h:1\",\"check\":\"not a url\"}", "\"check\""},
      {"{\"addr\":\"h:1\",\"check\":\"ftp://h:1/\"}", "\"check\""},
      {"{\"addr\":\"h:1\",\"check\":\"http://h:1/\",\"fall\":0}", "\"fall\" 0 is out of range"},
      {"{\"addr\":\"h:1\",\"check\":\"http://h:1/\",\"timeout_ms\":2000}",
       "timeout_ms 2000 must be below interval_ms 2000"},
      {"{\"addr\":\"h:1\",\"interval_ms\":\"fast\"}", "\"interval_ms\""},
      {"{\"addr\":\"h:1\",\"heartbeat_ttl_ms\":-5}", "\"heartbeat_ttl_ms\""},
  };
  dsp_worker_spec w;
  char err[200];
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = dsp_worker_parse(bad[i][0], strlen(bad[i][0]), NULL, &w, err, sizeof(err));
    if (rc != -1 || strstr(err, bad[i][1]) == NULL)
      fprintf(stderr, "%s -> %d '%s'\n", bad[i][0], rc, err);
    CHECK_INT(rc, ==, -1);
    CHECK(strstr(err, bad[i][1]) != NULL);
  }
}

static void test_set_weight_keeps_other_keys(void) {
  const char *in = "{\"addr\":\"h:1\",\"check\":\"http://h:1/x\",\"weight\":2,\"x\":true}";
  char out[256];
  dsp_worker_spec w;
  char err[200];
  CHECK_INT(dsp_worker_set_weight_json(in, strlen(in), 7, out, sizeof(out)), ==, 0);
  CHECK_STR(out, "{\"addr\":\"h:1\",\"check\":\"http://h:1/x\",\"weight\":7,\"x\":true}");
  CHECK_INT(dsp_worker_parse(out, strlen(out), NULL, &w, err, sizeof(err)), ==, 0);
  CHECK_INT(w.weight, ==, 7);
  /* No weight key yet: one is added. */
  CHECK_INT(dsp_worker_set_weight_json("{\"addr\":\"h:1\"}", 14, 3, out, sizeof(out)), ==, 0);
  CHECK_STR(out, "{\"addr\":\"h:1\",\"weight\":3}");
  /* Bad input or a bad weight changes nothing. */
  CHECK_INT(dsp_worker_set_weight_json("junk", 4, 3, out, sizeof(out)), ==, -1);
  CHECK_INT(dsp_worker_set_weight_json("{\"addr\":\"h:1\"}", 14, 0, out, sizeof(out)), ==, -1);
  CHECK_INT(dsp_worker_set_weight_json("{\"addr\":\"h:1\"}", 14, 3, out, 10), ==, -1);
}

static void test_names(void) {
  CHECK(dsp_worker_name_valid("w1") && dsp_worker_name_valid("api-2.eu:a_b"));
  CHECK(!dsp_worker_name_valid("") && !dsp_worker_name_valid("a/b"));
  CHECK(!dsp_worker_name_valid(".") && !dsp_worker_name_valid(".."));
  CHECK(!dsp_worker_name_valid("sp ace") && !dsp_worker_name_valid(NULL));
}

static const test_entry tests[] = {
    TEST(test_good_data), TEST(test_bad_data), TEST(test_set_weight_keeps_other_keys),
    TEST(test_names),
};

TEST_MAIN(tests)
