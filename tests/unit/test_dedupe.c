/*
 * test_dedupe.c: the repeat detector, against a brute-force model.
 */
#include "dedupe.h"
#include "test.h"

static void test_basic(void) {
  dsp_dedupe *d = dsp_dedupe_new(3);
  CHECK(d != NULL);
  CHECK_INT(dsp_dedupe_seen(d, 1, 1), ==, 0);
  CHECK_INT(dsp_dedupe_seen(d, 1, 1), ==, 1);
  CHECK_INT(dsp_dedupe_seen(d, 2, 1), ==, 0); /* another client, same id */
  CHECK_INT(dsp_dedupe_seen(d, 1, 2), ==, 0);
  CHECK_INT(dsp_dedupe_count(d), ==, 3);
  CHECK_INT(dsp_dedupe_seen(d, 1, 3), ==, 0); /* forgets (1,1) */
  CHECK_INT(dsp_dedupe_count(d), ==, 3);
  CHECK_INT(dsp_dedupe_seen(d, 2, 1), ==, 1);
  CHECK_INT(dsp_dedupe_seen(d, 1, 1), ==, 0); /* forgotten, so new again */
  dsp_dedupe_free(d);
  dsp_dedupe_free(NULL);
}

/* Random pairs from a small space (many collisions, many evictions),
   checked against a model that keeps the last N pairs in a plain array. */
static void test_against_model(void) {
  enum { N = 64, STEPS = 200000 };
  uint64_t model_t[N], model_i[N];
  size_t head = 0, count = 0;
  uint64_t x = 88172645463325252ULL;
  dsp_dedupe *d = dsp_dedupe_new(N);
  CHECK(d != NULL);
  for (int step = 0; step < STEPS; step++) {
    uint64_t tok, id;
    int want = 0;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    tok = x % 4;
    id = (x >> 8) % 50;
    for (size_t k = 0; k < count; k++)
      if (model_t[k] == tok && model_i[k] == id) want = 1;
    if (!want) {
      if (count == N) {
        /* evict the oldest: at head */
      } else {
        count++;
      }
      model_t[head] = tok;
      model_i[head] = id;
      head = (head + 1) % N;
    }
    CHECK_INT(dsp_dedupe_seen(d, tok, id), ==, want);
    CHECK_INT(dsp_dedupe_count(d), ==, count);
  }
  dsp_dedupe_free(d);
}

static const test_entry tests[] = {TEST(test_basic), TEST(test_against_model)};

TEST_MAIN(tests)
