/*
 * test.h: the smallest test framework that does the job.
 *
 * A test file defines `static void test_x(void)` functions and lists them in a
 * TEST_LIST. main() comes from TEST_MAIN(list): with no argument it runs every
 * test; with names it runs just those (ctest registers integration scenarios
 * one by one this way). A failed CHECK prints file:line and the expression,
 * marks the test failed and returns from it. The run ends with the plain
 * "N passed, M failed" line and exits non-zero if anything failed.
 */
#ifndef DSP_TEST_H
#define DSP_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int test_failed_flag;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      test_failed_flag = 1;                                                  \
      return;                                                                \
    }                                                                        \
  } while (0)

#define CHECK_INT(a, op, b)                                                  \
  do {                                                                       \
    long long a_ = (long long)(a), b_ = (long long)(b);                      \
    if (!(a_ op b_)) {                                                       \
      fprintf(stderr, "%s:%d: CHECK failed: %s %s %s (%lld vs %lld)\n",     \
              __FILE__, __LINE__, #a, #op, #b, a_, b_);                      \
      test_failed_flag = 1;                                                  \
      return;                                                                \
    }                                                                        \
  } while (0)

#define CHECK_STR(a, b)                                                      \
  do {                                                                       \
    const char *a_ = (a), *b_ = (b);                                         \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" vs \"%s\")\n", \
              __FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)",               \
              b_ ? b_ : "(null)");                                           \
      test_failed_flag = 1;                                                  \
      return;                                                                \
    }                                                                        \
  } while (0)

typedef struct {
  const char *name;
  void (*fn)(void);
} test_entry;

#define TEST(fn) {#fn, fn}

#define TEST_MAIN(list)                                                      \
  int test_failed_flag;                                                      \
  int main(int argc, char **argv) {                                          \
    int passed = 0, failed = 0;                                              \
    size_t n = sizeof(list) / sizeof(list[0]);                               \
    for (size_t i = 0; i < n; i++) {                                         \
      int want = argc < 2;                                                   \
      for (int a = 1; a < argc; a++)                                         \
        if (strcmp(argv[a], list[i].name) == 0) want = 1;                    \
      if (!want) continue;                                                   \
      test_failed_flag = 0;                                                  \
      fprintf(stderr, "-- %s\n", list[i].name);                              \
      list[i].fn();                                                          \
      fprintf(stderr, "%s %s\n", test_failed_flag ? "FAIL" : "ok",          \
              list[i].name);                                                 \
      if (test_failed_flag) failed++; else passed++;                         \
    }                                                                        \
    if (passed + failed == 0) {                                              \
      fprintf(stderr, "no test matched\n");                                  \
      return 2;                                                              \
    }                                                                        \
    printf("%d passed, %d failed\n", passed, failed);                        \
    return failed ? 1 : 0;                                                   \
  }

#endif
