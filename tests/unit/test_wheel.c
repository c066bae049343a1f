/*
 * test_wheel.c: the timing wheel against a plain list of timers, with
 * adds in the past, far ahead (several laps), removals, and stalls longer
 * than the wheel.
 */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "wheel.h"

#define N 300

static dsp_wheel w;
static dsp_wheel_node nodes[N];

/* Everything due by `now` comes out, once, and nothing else. */
static int expire_matches(uint64_t now) {
  char out[N] = {0};
  dsp_wheel_node *n;
  while ((n = dsp_wheel_expire(&w, now)) != NULL) {
    int i = (int)(n - nodes);
    if (i < 0 || i >= N || out[i] || n->linked || n->due > now) return 0;
    out[i] = 1;
  }
  for (int i = 0; i < N; i++) {
    if (out[i]) continue;
    if (nodes[i].linked && nodes[i].due <= now) return 0; /* left behind */
  }
  return 1;
}

/* dsp_wheel_next() is never later than the earliest due node. */
static int next_in_time(void) {
  uint64_t earliest = UINT64_MAX, next = dsp_wheel_next(&w);
  size_t linked = 0;
  for (int i = 0; i < N; i++)
    if (nodes[i].linked) {
      linked++;
      if (nodes[i].due < earliest) earliest = nodes[i].due;
    }
  if (linked != w.count) return 0;
  if (linked == 0) return next == UINT64_MAX;
  return next <= (earliest > w.now ? earliest : w.now);
}

static void test_basic(void) {
  memset(nodes, 0, sizeof(nodes));
  dsp_wheel_init(&w, 1000);
  CHECK(dsp_wheel_next(&w) == UINT64_MAX);
  CHECK(dsp_wheel_expire(&w, 5000) == NULL);
  dsp_wheel_init(&w, 1000);
  dsp_wheel_add(&w, &nodes[0], 1010);
  dsp_wheel_add(&w, &nodes[1], 1005);
  dsp_wheel_add(&w, &nodes[2], 1005 + DSP_WHEEL_SLOTS); /* same slot, a lap later */
  dsp_wheel_add(&w, &nodes[3], 900);                    /* in the past */
  CHECK(dsp_wheel_next(&w) == 1000);
  CHECK(dsp_wheel_expire(&w, 1000) == &nodes[3]);
  CHECK(dsp_wheel_expire(&w, 1000) == NULL);
  CHECK(dsp_wheel_next(&w) == 1005);
  CHECK(dsp_wheel_expire(&w, 1007) == &nodes[1]);
  CHECK(dsp_wheel_expire(&w, 1007) == NULL);
  CHECK(dsp_wheel_next(&w) == 1010);
  dsp_wheel_remove(&w, &nodes[0]);
  dsp_wheel_remove(&w, &nodes[0]); /* not linked: nothing */
  CHECK(!nodes[0].linked);
  CHECK_INT(w.count, ==, 1);
  /* Only the lap-later node is left: its slot comes round once before it
     is due, and nothing comes out then. */
  CHECK(dsp_wheel_next(&w) == 1005 + DSP_WHEEL_SLOTS);
  CHECK(dsp_wheel_expire(&w, 1005 + DSP_WHEEL_SLOTS - 1) == NULL);
  CHECK(dsp_wheel_expire(&w, 1005 + DSP_WHEEL_SLOTS) == &nodes[2]);
  CHECK_INT(w.count, ==, 0);
  /* Re-added during a round at or before `now`: out in the same round. */
  dsp_wheel_add(&w, &nodes[4], 3000);
  CHECK(dsp_wheel_expire(&w, 3000) == &nodes[4]);
  dsp_wheel_add(&w, &nodes[4], 2999);
  CHECK(dsp_wheel_expire(&w, 3000) == &nodes[4]);
  dsp_wheel_add(&w, &nodes[4], 3001);
  CHECK(dsp_wheel_expire(&w, 3000) == NULL);
  CHECK(nodes[4].linked);
}

/* A stall of several laps: everything due comes out, later laps stay. */
static void test_stall(void) {
  memset(nodes, 0, sizeof(nodes));
  dsp_wheel_init(&w, 0);
  for (int i = 0; i < N; i++) dsp_wheel_add(&w, &nodes[i], (uint64_t)i * 37);
  CHECK(expire_matches(5 * DSP_WHEEL_SLOTS + 3));
  CHECK(next_in_time());
  CHECK(expire_matches((uint64_t)N * 37));
  CHECK_INT(w.count, ==, 0);
}

/* Random adds, removes and expiries against the plain list. */
static void test_random(void) {
  uint64_t now = 12345;
  unsigned seed = 7;
  memset(nodes, 0, sizeof(nodes));
  dsp_wheel_init(&w, now);
  for (int step = 0; step < 200000; step++) {
    int i = rand_r(&seed) % N, op = rand_r(&seed) % 10;
    if (op < 5) {
      /* From 50 ms ago to three laps ahead. */
      uint64_t due = now - 50 + (uint64_t)(rand_r(&seed) % (3 * DSP_WHEEL_SLOTS + 50));
      dsp_wheel_remove(&w, &nodes[i]);
      dsp_wheel_add(&w, &nodes[i], due);
    } else if (op < 7) {
      dsp_wheel_remove(&w, &nodes[i]);
    } else {
      /* Mostly a few ms; now and then a stall of up to two laps. */
      now += rand_r(&seed) % 50 == 0 ? (uint64_t)(rand_r(&seed) % (2 * DSP_WHEEL_SLOTS))
                                     : (uint64_t)(rand_r(&seed) % 8);
      if (!expire_matches(now)) {
        fprintf(stderr, "step %d, now %llu\n", step, (unsigned long long)now);
        CHECK(!"expiry as the plain list says");
      }
    }
    if (!next_in_time()) {
      fprintf(stderr, "step %d\n", step);
      CHECK(!"next no later than the earliest");
    }
  }
}

static const test_entry tests[] = {
    TEST(test_basic),
    TEST(test_stall),
    TEST(test_random),
};

TEST_MAIN(tests)
