/*
 * test_frame.c: the frame decoder on whole, split, concatenated, empty and
 * hostile input; the hand-rolled wire helpers (peek, route batches) against
 * protobuf-c.
 */
#include <string.h>

#include "frame.h"
#include "rpc.h"
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

/* dsp_pb_peek: the envelope of requests a follower forwards unread; all
   else is left to the full decoder (-1). Bytes written out by hand from
   the wire format. */
static void test_peek(void) {
  dsp_pb_envelope e;
  /* id=7, route{strategy="rr", count=3} */
  static const uint8_t route[] = {0x08, 0x07, 0x12, 0x06, 0x0a, 0x02, 'r', 'r', 0x18, 0x03};
  /* report{worker="w", ok=true}, id=300 (two bytes), origin_id=5, token=9 */
  static const uint8_t report[] = {0x1a, 0x05, 0x0a, 0x01, 'w', 0x10, 0x01, 0x08, 0xac,
                                   0x02, 0x70, 0x05, 0x78, 0x09};
  /* id=1 id=2 (the last wins), heartbeat{name="h"}, an unknown field 20 */
  static const uint8_t twice[] = {0x08, 0x01, 0x08, 0x02, 0x4a, 0x03, 0x0a, 0x01, 'h',
                                  0xa0, 0x01, 0x05};
  static const uint8_t list[] = {0x08, 0x04, 0x42, 0x00};
  static const uint8_t status[] = {0x08, 0x04, 0x22, 0x00};
  static const uint8_t bad_type[] = {0x08, 0x04, 0x12, 0x02, 0x18, 0x02, 0x0a}; /* cut short */
  static const uint8_t wrong_wt[] = {0x0a, 0x01, 0x00, 0x42, 0x00};             /* id as bytes */
  static const uint8_t nested_wt[] = {0x12, 0x02, 0x1a, 0x00};  /* count as bytes */
  static const uint8_t group[] = {0x08, 0x01, 0x43, 0x44};      /* a group */
  static const uint8_t long_len[] = {0x4a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
  CHECK_INT(dsp_pb_peek(route, sizeof(route), &e), ==, 0);
  CHECK(e.id == 7 && e.body == 2 && e.origin_id == 0);
  CHECK_INT(dsp_pb_peek(report, sizeof(report), &e), ==, 0);
  CHECK(e.id == 300 && e.body == 3 && e.origin_id == 5);
  CHECK_INT(dsp_pb_peek(twice, sizeof(twice), &e), ==, 0);
  CHECK(e.id == 2 && e.body == 9);
  CHECK_INT(dsp_pb_peek(list, sizeof(list), &e), ==, 0);
  CHECK(e.id == 4 && e.body == 8);
  CHECK_INT(dsp_pb_peek(NULL, 0, &e), ==, 0);
  CHECK(e.id == 0 && e.body == 0);
  CHECK_INT(dsp_pb_peek(status, sizeof(status), &e), ==, -1);
  CHECK_INT(dsp_pb_peek(bad_type, sizeof(bad_type), &e), ==, -1);
  CHECK_INT(dsp_pb_peek(wrong_wt, sizeof(wrong_wt), &e), ==, -1);
  CHECK_INT(dsp_pb_peek(nested_wt, sizeof(nested_wt), &e), ==, -1);
  CHECK_INT(dsp_pb_peek(group, sizeof(group), &e), ==, -1);
  CHECK_INT(dsp_pb_peek(long_len, sizeof(long_len), &e), ==, -1);
}

/* dsp_pb_peek()'s verdict on joining a batch: 1 when it accepts p[n] as
   `single`, with the RouteRequest's bytes in *route, *routelen. */
static int route_single(const uint8_t *p, size_t n, const uint8_t **route, size_t *routelen) {
  dsp_pb_envelope env;
  if (dsp_pb_peek(p, n, &env) != 0 || !env.single) return 0;
  *route = env.route;
  *routelen = env.routelen;
  return 1;
}

/* Which Requests a follower may gather into a batch. */
static void test_route_single(void) {
  const uint8_t *r = NULL;
  size_t rl = 0;
  /* id=7, route{strategy="rr"} */
  static const uint8_t plain[] = {0x08, 0x07, 0x12, 0x04, 0x0a, 0x02, 'r', 'r'};
  /* route{count=1, key="k"}, id=9 (id after the body) */
  static const uint8_t count1[] = {0x12, 0x05, 0x18, 0x01, 0x12, 0x01, 'k', 0x08, 0x09};
  static const uint8_t empty_route[] = {0x12, 0x00};                     /* no id at all */
  static const uint8_t count3[] = {0x08, 0x01, 0x12, 0x02, 0x18, 0x03}; /* three wanted */
  static const uint8_t count3then1[] = {0x08, 0x01, 0x12, 0x04, 0x18, 0x03, 0x18, 0x01};
  static const uint8_t token[] = {0x08, 0x01, 0x12, 0x00, 0x78, 0x05};  /* client_token */
  static const uint8_t origin[] = {0x08, 0x01, 0x12, 0x00, 0x70, 0x05}; /* forwarded */
  static const uint8_t two_routes[] = {0x12, 0x00, 0x12, 0x00};
  static const uint8_t report[] = {0x08, 0x01, 0x1a, 0x00};
  static const uint8_t no_body[] = {0x08, 0x01};
  static const uint8_t bad_count[] = {0x12, 0x02, 0x1a, 0x00};          /* count as bytes */
  static const uint8_t cut[] = {0x08, 0x01, 0x12, 0x04, 0x0a, 0x02, 'r'};
  uint8_t big[300];
  CHECK_INT(route_single(plain, sizeof(plain), &r, &rl), ==, 1);
  CHECK(r == plain + 4 && rl == 4);
  CHECK_INT(route_single(count1, sizeof(count1), &r, &rl), ==, 1);
  CHECK(r == count1 + 2 && rl == 5);
  CHECK_INT(route_single(empty_route, sizeof(empty_route), &r, &rl), ==, 1);
  CHECK_INT(rl, ==, 0);
  CHECK_INT(route_single(count3then1, sizeof(count3then1), &r, &rl), ==, 1);
  CHECK_INT(route_single(count3, sizeof(count3), &r, &rl), ==, 0);
  CHECK_INT(route_single(token, sizeof(token), &r, &rl), ==, 0);
  CHECK_INT(route_single(origin, sizeof(origin), &r, &rl), ==, 0);
  CHECK_INT(route_single(two_routes, sizeof(two_routes), &r, &rl), ==, 0);
  CHECK_INT(route_single(report, sizeof(report), &r, &rl), ==, 0);
  CHECK_INT(route_single(no_body, sizeof(no_body), &r, &rl), ==, 0);
  CHECK_INT(route_single(bad_count, sizeof(bad_count), &r, &rl), ==, 0);
  CHECK_INT(route_single(cut, sizeof(cut), &r, &rl), ==, 0);
  /* A RouteRequest over DSP_ROUTE_SUB_MAX (a long key) goes alone. */
  memset(big, 'k', sizeof(big));
  big[0] = 0x12;
  big[1] = 0x80 | ((DSP_ROUTE_SUB_MAX + 1) & 0x7f);
  big[2] = (DSP_ROUTE_SUB_MAX + 1) >> 7;
  big[3] = 0x12; /* key, of the rest */
  big[4] = 0x80 | ((DSP_ROUTE_SUB_MAX - 2) & 0x7f);
  big[5] = (DSP_ROUTE_SUB_MAX - 2) >> 7;
  CHECK_INT(route_single(big, 3 + DSP_ROUTE_SUB_MAX + 1, &r, &rl), ==, 0);
  big[1] = 0x80 | (DSP_ROUTE_SUB_MAX & 0x7f);
  big[2] = DSP_ROUTE_SUB_MAX >> 7;
  big[4] = 0x80 | ((DSP_ROUTE_SUB_MAX - 3) & 0x7f);
  big[5] = (DSP_ROUTE_SUB_MAX - 3) >> 7;
  CHECK_INT(route_single(big, 3 + DSP_ROUTE_SUB_MAX, &r, &rl), ==, 1);
  CHECK_INT(rl, ==, DSP_ROUTE_SUB_MAX);
}

/* A batch decodes, with protobuf-c, to the client's Route with our count
   and id, marked forwarded; a reply splits into one-decision replies. */
static void test_route_batch(void) {
  static const uint8_t req[] = {0x08, 0x07, 0x12, 0x08, 0x0a, 0x03, 'r', 'r', 'x',
                                0x12, 0x01, 'k'};
  uint8_t out[DSP_ROUTE_BATCH_FRAME_MAX(DSP_ROUTE_SUB_MAX)];
  const uint8_t *r = NULL;
  size_t rl = 0, n;
  dsp_pb_request *q;
  CHECK_INT(route_single(req, sizeof(req), &r, &rl), ==, 1);
  n = dsp_pb_route_batch(out, r, rl, 128, (1ULL << 40) + 3);
  CHECK(n <= DSP_ROUTE_BATCH_FRAME_MAX(rl));
  CHECK(out[0] == 0 && out[1] == 0 && out[2] == 0 && out[3] == n - DSP_FRAME_HEADER);
  q = dispatcher__v1__request__unpack(NULL, n - DSP_FRAME_HEADER, out + DSP_FRAME_HEADER);
  CHECK(q != NULL);
  CHECK(q->id == (1ULL << 40) + 3 && q->origin_id == q->id && q->client_token == 0);
  CHECK_INT(q->body_case, ==, DSP_PB(REQUEST__BODY_ROUTE));
  CHECK_STR(q->route->strategy, "rrx");
  CHECK(q->route->key.len == 1 && q->route->key.data[0] == 'k');
  CHECK_INT(q->route->count, ==, 128);
  dispatcher__v1__request__free_unpacked(q, NULL);

  {
    /* A coordinator's reply to a batch of three. */
    Dispatcher__V1__Decision d[3];
    Dispatcher__V1__Decision *dp[3];
    Dispatcher__V1__RouteReply rr = DISPATCHER__V1__ROUTE_REPLY__INIT;
    dsp_pb_response resp = DISPATCHER__V1__RESPONSE__INIT, *one;
    static const char *names[3] = {"w1", "w2", "a-much-longer-worker-name"};
    uint8_t wire[512], mine[DSP_ROUTE_REPLY_HEAD_MAX + 128];
    size_t len, off = 0, declen = 0, route_off;
    const uint8_t *dec = NULL;
    uint64_t v;
    for (int i = 0; i < 3; i++) {
      dispatcher__v1__decision__init(&d[i]);
      d[i].worker = (char *)names[i];
      d[i].addr = "127.0.0.1:9000";
      dp[i] = &d[i];
    }
    rr.n_decisions = 3;
    rr.decisions = dp;
    resp.id = 55;
    resp.epoch = 300;
    resp.body_case = DSP_PB(RESPONSE__BODY_ROUTE);
    resp.route = &rr;
    len = dispatcher__v1__response__pack(&resp, wire);
    /* The RouteReply's bytes: field 4, after id and epoch. */
    route_off = 0;
    CHECK(wire[route_off++] == 0x08);
    CHECK_INT(dsp_varint_get(wire, len, &route_off, &v), ==, 0);
    CHECK(wire[route_off++] == 0x10);
    CHECK_INT(dsp_varint_get(wire, len, &route_off, &v), ==, 0);
    CHECK(wire[route_off++] == 0x22);
    CHECK_INT(dsp_varint_get(wire, len, &route_off, &v), ==, 0);
    CHECK(route_off + v == len);
    for (int i = 0; i < 3; i++) {
      CHECK_INT(dsp_pb_next_decision(wire + route_off, v, &off, &dec, &declen), ==, 1);
      CHECK(declen <= 128);
      /* The reply: its head, then the Decision as it came. */
      n = dsp_pb_route_reply_head(mine, 1000 + (uint64_t)i, 300, declen);
      CHECK(n <= DSP_ROUTE_REPLY_HEAD_MAX);
      memcpy(mine + n, dec, declen);
      n += declen;
      one = dispatcher__v1__response__unpack(NULL, n, mine);
      CHECK(one != NULL);
      CHECK(one->id == 1000 + (uint64_t)i && one->epoch == 300);
      CHECK_INT(one->body_case, ==, DSP_PB(RESPONSE__BODY_ROUTE));
      CHECK_INT(one->route->n_decisions, ==, 1);
      CHECK_STR(one->route->decisions[0]->worker, names[i]);
      CHECK_STR(one->route->decisions[0]->addr, "127.0.0.1:9000");
      dispatcher__v1__response__free_unpacked(one, NULL);
    }
    CHECK_INT(dsp_pb_next_decision(wire + route_off, v, &off, &dec, &declen), ==, 0);
    off = 0; /* cut short: malformed, never a read past the end */
    CHECK_INT(dsp_pb_next_decision(wire + route_off, 3, &off, &dec, &declen), ==, -1);
  }
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
    TEST(test_varints),                  TEST(test_peek),
    TEST(test_header_big_endian),        TEST(test_whole_and_concatenated),
    TEST(test_byte_by_byte),             TEST(test_limit_boundary),
    TEST(test_huge_length_rejected_early), TEST(test_half_frame_waits),
    TEST(test_reserve_grows_for_large_frame),
    TEST(test_route_single),             TEST(test_route_batch),
};

TEST_MAIN(tests)
