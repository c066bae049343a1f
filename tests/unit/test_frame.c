/*
 * test_frame.c: the frame decoder on whole, split, concatenated, empty and
 * hostile input.
 */
#include "frame.h"
#include "test.h"

static void put(dsp_framer *f, uint32_t len, const char *body) {
  uint8_t h[4];
  dsp_frame_put_header(h, len);
  dsp_framer_feed(f, h, 4);
  dsp_framer_feed(f, body, len);
}

static void test_header_big_endian(void) {
  uint8_t h[4];
  dsp_frame_put_header(h, 0x01020304u);
  CHECK(h[0] == 1 && h[1] == 2 && h[2] == 3 && h[3] == 4);
}

static void test_whole_and_concatenated(void) {
  dsp_framer f;
  const uint8_t *p;
  size_t n;
  dsp_framer_init(&f, 100);
  put(&f, 5, "hello");
  put(&f, 0, "");
  put(&f, 3, "abc");
  CHECK_INT(dsp_framer_next(&f, &p, &n), ==, DSP_FRAME_OK);
  CHECK(n == 5 && memcmp(p, "hello", 5) == 0);
  CHECK_INT(dsp_framer_next(&f, &p, &n), ==, DSP_FRAME_OK);
  CHECK_INT(n, ==, 0);
  CHECK_INT(dsp_framer_next(&f, &p, &n), ==, DSP_FRAME_OK);
  CHECK(n == 3 && memcmp(p, "abc", 3) == 0);
  CHECK_INT(dsp_framer_next(&f, &p, &n), ==, DSP_FRAME_NEED_MORE);
  CHECK_INT(dsp_framer_buffered(&f), ==, 0);
  dsp_framer_free(&f);
}

/* One byte at a time, through reserve/commit as the server reads. */
static void test_byte_by_byte(void) {
  dsp_framer f, src;
  const uint8_t *p;
  size_t n, got = 0;
  dsp_framer_init(&f, 1 << 20);
  dsp_framer_init(&src, 1 << 20);
  for (int i = 0; i < 50; i++) {
    char body[64];
    snprintf(body, sizeof(body), "message %d", i);
    put(&src, (uint32_t)strlen(body), body);
  }
  for (size_t i = src.start; i < src.end; i++) {
    uint8_t *w;
    size_t avail;
    CHECK_INT(dsp_framer_reserve(&f, 1, &w, &avail), ==, 0);
    CHECK(avail >= 1);
    *w = src.buf[i];
    dsp_framer_commit(&f, 1);
    while (dsp_framer_next(&f, &p, &n) == DSP_FRAME_OK) {
      char want[64];
      snprintf(want, sizeof(want), "message %zu", got);
      CHECK(n == strlen(want) && memcmp(p, want, n) == 0);
      got++;
    }
  }
  CHECK_INT(got, ==, 50);
  dsp_framer_free(&f);
  dsp_framer_free(&src);
}

static void test_limit_boundary(void) {
  dsp_framer f;
  const uint8_t *p;
  size_t n;
  char big[101];
  memset(big, 'x', sizeof(big));
  dsp_framer_init(&f, 100);
  put(&f, 100, big); /* exactly the limit: fine */
  CHECK_INT(dsp_framer_next(&f, &p, &n), ==, DSP_FRAME_OK);
  CHECK_INT(n, ==, 100);
  put(&f, 101, big); /* one over */
  CHECK_INT(dsp_framer_next(&f, &p, &n), ==, DSP_FRAME_TOO_LARGE);
  CHECK_INT(f.bad_len, ==, 101);
  /* Sticky: the stream cannot be resynchronised. */
  put(&f, 1, "a");
  CHECK_INT(dsp_framer_next(&f, &p, &n), ==, DSP_FRAME_TOO_LARGE);
  dsp_framer_free(&f);
}

/* The length is checked before the body is buffered: a hostile 4 GiB
   length costs nothing. */
static void test_huge_length_rejected_early(void) {
  dsp_framer f;
  const uint8_t *p;
  size_t n;
  const uint8_t hdr[4] = {0xff, 0xff, 0xff, 0xff};
  uint8_t *w;
  size_t avail;
  dsp_framer_init(&f, DSP_FRAME_DEFAULT_MAX);
  dsp_framer_feed(&f, hdr, 4);
  CHECK_INT(dsp_framer_next(&f, &p, &n), ==, DSP_FRAME_TOO_LARGE);
  CHECK_INT(dsp_framer_reserve(&f, 16, &w, &avail), ==, 0);
  CHECK(f.cap < (1u << 20)); /* no attempt to make room for 4 GiB */
  dsp_framer_free(&f);
  /* "GET / HTTP/1.1" read as a length is ~1.2 GB: over the limit. */
  dsp_framer_init(&f, DSP_FRAME_DEFAULT_MAX);
  dsp_framer_feed(&f, "GET / HTTP/1.1\r\n", 16);
  CHECK_INT(dsp_framer_next(&f, &p, &n), ==, DSP_FRAME_TOO_LARGE);
  dsp_framer_free(&f);
}

static void test_half_frame_waits(void) {
  dsp_framer f;
  const uint8_t *p;
  size_t n;
  uint8_t h[4];
  dsp_framer_init(&f, 100);
  dsp_frame_put_header(h, 10);
  dsp_framer_feed(&f, h, 4);
  dsp_framer_feed(&f, "abc", 3);
  CHECK_INT(dsp_framer_next(&f, &p, &n), ==, DSP_FRAME_NEED_MORE);
  CHECK_INT(dsp_framer_buffered(&f), ==, 7);
  dsp_framer_feed(&f, "defghij", 7);
  CHECK_INT(dsp_framer_next(&f, &p, &n), ==, DSP_FRAME_OK);
  CHECK(n == 10 && memcmp(p, "abcdefghij", 10) == 0);
  dsp_framer_free(&f);
}

/* reserve() makes room for the whole frame in progress. */
static void test_reserve_grows_for_large_frame(void) {
  dsp_framer f;
  uint8_t h[4], *w;
  size_t avail;
  dsp_framer_init(&f, 1 << 20);
  dsp_frame_put_header(h, 500000);
  dsp_framer_feed(&f, h, 4);
  CHECK_INT(dsp_framer_reserve(&f, 16, &w, &avail), ==, 0);
  CHECK(avail >= 500000);
  dsp_framer_free(&f);
}

static void test_varints(void) {
  static const uint64_t vals[] = {0, 1, 127, 128, 300, 16383, 16384, 1ULL << 35,
                                  (1ULL << 63) + 5, UINT64_MAX};
  uint8_t buf[16];
  for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
    size_t n = dsp_varint_put(buf, vals[i]), off = 0;
    uint64_t v = 0;
    CHECK(n >= 1 && n <= 10);
    CHECK_INT(dsp_varint_get(buf, n, &off, &v), ==, 0);
    CHECK(v == vals[i] && off == n);
    off = 0; /* cut short: an error, never a read past n */
    if (n > 1) CHECK_INT(dsp_varint_get(buf, n - 1, &off, &v), ==, -1);
  }
  {
    uint8_t bad[11];
    size_t off = 0;
    uint64_t v;
    memset(bad, 0xff, sizeof(bad)); /* never ends */
    CHECK_INT(dsp_varint_get(bad, sizeof(bad), &off, &v), ==, -1);
  }
  CHECK_INT(dsp_varint_put(buf, 300), ==, 2);
  CHECK(buf[0] == 0xac && buf[1] == 0x02); /* the protobuf docs' example */
}

static const test_entry tests[] = {
    TEST(test_varints),
    TEST(test_header_big_endian),        TEST(test_whole_and_concatenated),
    TEST(test_byte_by_byte),             TEST(test_limit_boundary),
    TEST(test_huge_length_rejected_early), TEST(test_half_frame_waits),
    TEST(test_reserve_grows_for_large_frame),
};

TEST_MAIN(tests)
