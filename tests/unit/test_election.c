/*
 * test_election.c: the election state machine without ZooKeeper. Each test
 * plays the part of the server: it feeds events and checks the actions.
 */
#include "election.h"
#include "test.h"

#define S1 0x0100000000000001LL /* our session */
#define S2 0x0100000000000002LL
#define S3 0x0100000000000003LL

static dsp_election el;
static dsp_el_action act[DSP_EL_MAX_ACTIONS];
static int nact;

static void step(dsp_el_event ev) { nact = dsp_election_step(&el, &ev, act); }

static const dsp_el_action *find(dsp_el_action_type t) {
  for (int i = 0; i < nact; i++)
    if (act[i].type == t) return &act[i];
  return NULL;
}

static void connected(int64_t session) {
  dsp_el_event ev = {.type = DSP_EV_CONNECTED, .session = session};
  step(ev);
}

static void children(const char *const *names, size_t n) {
  const dsp_el_action *a = find(DSP_ACT_LIST);
  dsp_el_event ev = {.type = DSP_EV_CHILDREN, .op = a ? a->op : 0, .rc = DSP_EL_OK,
                     .children = names, .nchildren = n};
  step(ev);
}

static void result(dsp_el_event_type t, dsp_el_action_type at, int rc) {
  const dsp_el_action *a = find(at);
  dsp_el_event ev = {.type = t, .op = a ? a->op : 0, .rc = rc};
  step(ev);
}

static void own_stat(int64_t owner, int64_t czxid) {
  const dsp_el_action *a = find(DSP_ACT_STAT_OWN);
  dsp_el_event ev = {.type = DSP_EV_OWN_STAT, .op = a ? a->op : 0, .rc = DSP_EL_OK,
                     .owner = owner, .czxid = czxid};
  step(ev);
}

#define ME0 "member-d1_0100000000000001-0000000000"
#define ME5 "member-d1_0100000000000001-0000000005"
#define D2_3 "member-d2_0100000000000002-0000000003"
#define D3_4 "member-d3_0100000000000003-0000000004"

/* Drive a fresh member to leadership with znode ME0, epoch 42. */
static void become_leader(void) {
  const char *kids[] = {ME0};
  dsp_election_init(&el, "d1");
  connected(S1);
  children(NULL, 0);
  {
    dsp_el_event ev = {.type = DSP_EV_CREATED, .op = find(DSP_ACT_CREATE)->op,
                       .rc = DSP_EL_OK, .name = ME0};
    step(ev);
  }
  children(kids, 1);
  own_stat(S1, 42);
  result(DSP_EV_PUBLISHED, DSP_ACT_PUBLISH, DSP_EL_OK);
}

static void test_parse_names(void) {
  dsp_el_member m;
  CHECK(dsp_el_parse_name(D2_3, &m) == 0);
  CHECK_STR(m.id, "d2");
  CHECK_INT(m.session, ==, S2);
  CHECK_INT(m.seq, ==, 3);
  CHECK(dsp_el_parse_name("member-a-b_c:1.2_0100000000000002-0000000007", &m) == 0);
  CHECK_STR(m.id, "a-b_c:1.2");
  /* Names written by hand, or by something else, are not members. */
  CHECK(dsp_el_parse_name("member-0000000001", &m) == -1);
  CHECK(dsp_el_parse_name("member-d1_01000000000000zz-0000000001", &m) == -1);
  CHECK(dsp_el_parse_name("member-d1_0100000000000002-00000000x1", &m) == -1);
  CHECK(dsp_el_parse_name("lock-d1_0100000000000002-0000000001", &m) == -1);
  CHECK(dsp_el_parse_name("member-_0100000000000002-0000000001", &m) == -1);
  CHECK(dsp_el_parse_name("member-d/1_0100000000000002-0000000001", &m) == -1);
  CHECK(dsp_el_parse_name("", &m) == -1);
}

static void test_first_member_leads(void) {
  const char *kids[] = {ME0};
  dsp_election_init(&el, "d1");
  connected(S1);
  CHECK(find(DSP_ACT_LIST) != NULL);
  children(NULL, 0); /* empty election */
  CHECK(find(DSP_ACT_CREATE) != NULL);
  CHECK_STR(find(DSP_ACT_CREATE)->name, "member-d1_0100000000000001-");
  {
    const dsp_el_action *a = find(DSP_ACT_CREATE);
    dsp_el_event ev = {.type = DSP_EV_CREATED, .op = a->op, .rc = DSP_EL_OK, .name = ME0};
    step(ev);
  }
  CHECK(find(DSP_ACT_LIST) != NULL); /* re-list after creating */
  children(kids, 1);
  CHECK(find(DSP_ACT_STAT_OWN) != NULL);
  CHECK(!dsp_election_is_leader(&el)); /* not before verifying and publishing */
  own_stat(S1, 42);
  CHECK(find(DSP_ACT_PUBLISH) != NULL);
  CHECK_INT(find(DSP_ACT_PUBLISH)->epoch, ==, 42);
  CHECK(!dsp_election_is_leader(&el));
  result(DSP_EV_PUBLISHED, DSP_ACT_PUBLISH, DSP_EL_OK);
  CHECK(find(DSP_ACT_ELECTED) != NULL);
  CHECK_INT(find(DSP_ACT_ELECTED)->epoch, ==, 42);
  CHECK(dsp_election_is_leader(&el));
}

/* The create reached the server but its reply was lost: after reconnecting
   the member finds its znode by session tag and creates no second one. */
static void test_lost_create_reply(void) {
  const char *kids[] = {D2_3, ME5};
  dsp_el_event lost = {.type = DSP_EV_DISCONNECTED};
  dsp_election_init(&el, "d1");
  connected(S1);
  children(NULL, 0);
  CHECK(find(DSP_ACT_CREATE) != NULL);
  {
    const dsp_el_action *a = find(DSP_ACT_CREATE);
    unsigned op = a->op;
    step(lost);
    CHECK(find(DSP_ACT_ARM_EXPIRY) != NULL);
    /* The reply arrives as a connection-loss error: ignored. */
    dsp_el_event ev = {.type = DSP_EV_CREATED, .op = op, .rc = DSP_EL_CONNLOSS};
    step(ev);
    CHECK_INT(nact, ==, 0);
  }
  connected(S1); /* same session back */
  CHECK(find(DSP_ACT_DISARM_EXPIRY) != NULL);
  children(kids, 2);
  CHECK(find(DSP_ACT_CREATE) == NULL);
  CHECK(find(DSP_ACT_WATCH) != NULL);
  CHECK_STR(find(DSP_ACT_WATCH)->name, D2_3);
  CHECK_STR(el.own, ME5);
}

/* The lowest znode belongs to an expired session the server has not yet
   cleaned up: it is someone else's, so we wait on it, never lead. */
static void test_stale_lowest_znode(void) {
  const char *kids[] = {"member-d9_00000000000000aa-0000000001", ME5};
  const char *after[] = {ME5};
  dsp_election_init(&el, "d1");
  connected(S1);
  children(kids, 2);
  CHECK(find(DSP_ACT_WATCH) != NULL);
  CHECK_STR(find(DSP_ACT_WATCH)->name, "member-d9_00000000000000aa-0000000001");
  result(DSP_EV_WATCH_SET, DSP_ACT_WATCH, DSP_EL_OK);
  CHECK(find(DSP_ACT_FOLLOWING) != NULL);
  CHECK(!dsp_election_is_leader(&el));
  {
    dsp_el_event ev = {.type = DSP_EV_MEMBER_WATCH, .name = "member-d9_00000000000000aa-0000000001",
                       .deleted = 1};
    step(ev);
  }
  children(after, 1);
  CHECK(find(DSP_ACT_STAT_OWN) != NULL);
}

/* A znode that looks like ours but whose ephemeralOwner is not our session
   (created by hand) never makes us leader, and is not adopted again: no
   tight loop of list/stat. */
static void test_owner_mismatch_never_leads(void) {
  const char *kids[] = {ME0};
  dsp_election_init(&el, "d1");
  connected(S1);
  children(kids, 1);
  own_stat(S3, 42);
  CHECK(find(DSP_ACT_PUBLISH) == NULL);
  CHECK(find(DSP_ACT_ELECTED) == NULL);
  CHECK(find(DSP_ACT_LIST) == NULL);
  CHECK(find(DSP_ACT_RETRY_LATER) != NULL); /* a pause, not a spin */
  CHECK_STR(el.own, "");
  {
    dsp_el_event ev = {.type = DSP_EV_RETRY, .op = find(DSP_ACT_RETRY_LATER)->op};
    step(ev);
  }
  children(kids, 1);
  CHECK(find(DSP_ACT_CREATE) != NULL); /* a real znode of our own */
  CHECK(find(DSP_ACT_STAT_OWN) == NULL);
}

/* A former leader whose znode was deleted while it was disconnected comes
   back as a follower: it must withdraw its leader znode, or the next
   member waits for it forever. */
static void test_former_leader_unpublishes(void) {
  const char *kids[] = {"member-d2_0100000000000002-0000000001"};
  dsp_el_event lost = {.type = DSP_EV_DISCONNECTED};
  const dsp_el_action *u;
  unsigned claim;
  become_leader();
  step(lost);
  connected(S1);
  children(kids, 1); /* our znode is gone; d2 is there */
  u = find(DSP_ACT_UNPUBLISH);
  CHECK(u != NULL);
  claim = u->op;
  CHECK(find(DSP_ACT_CREATE) != NULL);
  /* Until the glue says the znode is not ours, every decision asks again. */
  {
    const char *kids2[] = {"member-d2_0100000000000002-0000000001", ME5};
    dsp_el_event ev = {.type = DSP_EV_CREATED, .op = find(DSP_ACT_CREATE)->op,
                       .rc = DSP_EL_OK, .name = ME5};
    step(ev);
    children(kids2, 2);
    CHECK(find(DSP_ACT_UNPUBLISH) != NULL);
    dsp_el_event done = {.type = DSP_EV_UNPUBLISHED, .op = claim};
    step(done);
    CHECK(!el.may_own_leader);
    connected(S1);
    children(kids2, 2);
    CHECK(find(DSP_ACT_UNPUBLISH) == NULL);
    CHECK(find(DSP_ACT_WATCH) != NULL);
  }
}

/* An answer for an older claim does not clear a newer one. */
static void test_stale_unpublished_ignored(void) {
  dsp_el_event del = {.type = DSP_EV_LEADER_WATCH, .deleted = 1};
  unsigned old;
  become_leader();
  old = el.claim;
  step(del); /* republish: a new claim */
  CHECK(find(DSP_ACT_PUBLISH) != NULL);
  CHECK(el.claim != old);
  {
    dsp_el_event done = {.type = DSP_EV_UNPUBLISHED, .op = old};
    step(done);
  }
  CHECK(el.may_own_leader);
}

/* The client may reconnect without reporting the loss: a leader that sees
   CONNECTED stops acting until it has verified again. */
static void test_connected_while_leader_deposes(void) {
  become_leader();
  connected(S1);
  CHECK(find(DSP_ACT_DEPOSED) != NULL);
  CHECK(!dsp_election_is_leader(&el));
  CHECK(find(DSP_ACT_LIST) != NULL);
}

/* A persistent leader znode (ephemeralOwner 0) is junk written by hand. */
static void test_junk_leader_cleared(void) {
  const char *kids[] = {ME0};
  dsp_election_init(&el, "d1");
  connected(S1);
  children(kids, 1);
  own_stat(S1, 42);
  result(DSP_EV_PUBLISHED, DSP_ACT_PUBLISH, DSP_EL_EXISTS);
  {
    const dsp_el_action *a = find(DSP_ACT_STAT_LEADER);
    dsp_el_event ev = {.type = DSP_EV_LEADER_STAT, .op = a->op, .rc = DSP_EL_OK, .owner = 0};
    step(ev);
  }
  CHECK(find(DSP_ACT_CLEAR_JUNK) != NULL);
  CHECK(!dsp_election_is_leader(&el));
  {
    dsp_el_event ev = {.type = DSP_EV_LEADER_WATCH, .deleted = 1};
    step(ev);
  }
  CHECK(find(DSP_ACT_PUBLISH) != NULL);
}

/* The predecessor goes but a lower member remains: we re-list and watch
   the new predecessor, not lead. */
static void test_pred_deleted_not_lowest(void) {
  const char *kids[] = {"member-d2_0100000000000002-0000000001", D3_4, ME5};
  const char *after[] = {"member-d2_0100000000000002-0000000001", ME5};
  dsp_election_init(&el, "d1");
  connected(S1);
  children(kids, 3);
  CHECK_STR(find(DSP_ACT_WATCH)->name, D3_4); /* only the predecessor */
  result(DSP_EV_WATCH_SET, DSP_ACT_WATCH, DSP_EL_OK);
  {
    dsp_el_event ev = {.type = DSP_EV_MEMBER_WATCH, .name = D3_4, .deleted = 1};
    step(ev);
  }
  CHECK(find(DSP_ACT_LIST) != NULL);
  children(after, 2);
  CHECK(find(DSP_ACT_STAT_OWN) == NULL);
  CHECK_STR(find(DSP_ACT_WATCH)->name, "member-d2_0100000000000002-0000000001");
  /* A watch on some other znode is ignored. */
  {
    dsp_el_event ev = {.type = DSP_EV_MEMBER_WATCH, .name = D3_4, .deleted = 1};
    step(ev);
    CHECK_INT(nact, ==, 0);
  }
}

/* The predecessor vanished between listing and setting the watch. */
static void test_pred_gone_before_watch(void) {
  const char *kids[] = {D2_3, ME5};
  dsp_election_init(&el, "d1");
  connected(S1);
  children(kids, 2);
  result(DSP_EV_WATCH_SET, DSP_ACT_WATCH, DSP_EL_NONODE);
  CHECK(find(DSP_ACT_LIST) != NULL);
}

static void test_disconnect_deposes_at_once(void) {
  dsp_el_event ev = {.type = DSP_EV_DISCONNECTED};
  become_leader();
  CHECK(dsp_election_is_leader(&el));
  step(ev);
  CHECK(find(DSP_ACT_DEPOSED) != NULL);
  CHECK(find(DSP_ACT_ARM_EXPIRY) != NULL);
  CHECK(!dsp_election_is_leader(&el));
  /* Reconnecting with the same session: verify again before leading. */
  connected(S1);
  CHECK(!dsp_election_is_leader(&el));
  CHECK(find(DSP_ACT_LIST) != NULL);
}

static void test_expiry_new_session_new_epoch(void) {
  const char *kids[] = {D2_3, "member-d1_0100000000000003-0000000009"};
  dsp_el_event ev = {.type = DSP_EV_EXPIRED};
  become_leader();
  step(ev);
  CHECK(find(DSP_ACT_DEPOSED) != NULL);
  CHECK(find(DSP_ACT_NEW_SESSION) != NULL);
  CHECK_STR(el.own, "");
  CHECK_INT(el.state, ==, DSP_EL_DOWN);
  /* Late results of the old session are ignored. */
  result(DSP_EV_PUBLISHED, DSP_ACT_PUBLISH, DSP_EL_OK);
  CHECK_INT(nact, ==, 0);
  connected(S3);
  CHECK_STR(find(DSP_ACT_LIST) ? "list" : "", "list");
  children(kids, 2);
  /* Our new znode is not the lowest: follow. */
  CHECK_STR(find(DSP_ACT_WATCH)->name, D2_3);
  CHECK(!dsp_election_is_leader(&el));
}

/* The old session's znode (same id) is still there after we started a new
   session: it is ours and only misleads, so it is deleted, not yielded to. */
static void test_own_stale_znode_deleted(void) {
  const char *kids[] = {ME0};
  dsp_el_event ev = {.type = DSP_EV_EXPIRED};
  dsp_election_init(&el, "d1");
  connected(S1);
  children(kids, 1);
  step(ev);
  connected(S3);
  children(kids, 1);
  CHECK(find(DSP_ACT_DELETE) != NULL);
  CHECK_STR(find(DSP_ACT_DELETE)->name, ME0);
  CHECK(find(DSP_ACT_YIELD) == NULL);
  CHECK(find(DSP_ACT_CREATE) != NULL);
}

static void test_duplicate_id_yields_then_fails(void) {
  const char *kids[] = {"member-d1_0100000000000002-0000000001"};
  dsp_el_event timeout = {.type = DSP_EV_YIELD_TIMEOUT};
  dsp_election_init(&el, "d1");
  connected(S1);
  children(kids, 1);
  CHECK(find(DSP_ACT_CREATE) == NULL);
  CHECK(find(DSP_ACT_YIELD) != NULL);
  CHECK_STR(find(DSP_ACT_WATCH)->name, "member-d1_0100000000000002-0000000001");
  step(timeout);
  CHECK(find(DSP_ACT_FAIL) != NULL);
  CHECK_INT(el.state, ==, DSP_EL_FAILED);
  connected(S1); /* nothing moves it after failing */
  CHECK_INT(nact, ==, 0);
}

static void test_duplicate_goes_away(void) {
  const char *kids[] = {"member-d1_0100000000000002-0000000001"};
  dsp_election_init(&el, "d1");
  connected(S1);
  children(kids, 1);
  {
    dsp_el_event ev = {.type = DSP_EV_MEMBER_WATCH,
                       .name = "member-d1_0100000000000002-0000000001", .deleted = 1};
    step(ev);
  }
  CHECK(find(DSP_ACT_LIST) != NULL);
  children(NULL, 0);
  CHECK(find(DSP_ACT_CREATE) != NULL);
}

/* Two members started at once with the same id: the later znode yields. */
static void test_duplicate_race_later_yields(void) {
  const char *kids[] = {"member-d1_0100000000000002-0000000001", ME5};
  dsp_election_init(&el, "d1");
  connected(S1);
  children(kids, 2);
  CHECK(find(DSP_ACT_DELETE) != NULL);
  CHECK_STR(find(DSP_ACT_DELETE)->name, ME5);
  CHECK(find(DSP_ACT_YIELD) != NULL);
}

static void test_leader_znode_held_by_other(void) {
  const char *kids[] = {ME0};
  dsp_election_init(&el, "d1");
  connected(S1);
  children(kids, 1);
  own_stat(S1, 42);
  result(DSP_EV_PUBLISHED, DSP_ACT_PUBLISH, DSP_EL_EXISTS);
  CHECK(find(DSP_ACT_STAT_LEADER) != NULL);
  {
    const dsp_el_action *a = find(DSP_ACT_STAT_LEADER);
    dsp_el_event ev = {.type = DSP_EV_LEADER_STAT, .op = a->op, .rc = DSP_EL_OK, .owner = S2};
    step(ev);
  }
  CHECK(!dsp_election_is_leader(&el));
  CHECK_INT(el.state, ==, DSP_EL_LEADER_WAIT);
  {
    dsp_el_event ev = {.type = DSP_EV_LEADER_WATCH, .deleted = 1};
    step(ev);
  }
  CHECK(find(DSP_ACT_PUBLISH) != NULL);
  result(DSP_EV_PUBLISHED, DSP_ACT_PUBLISH, DSP_EL_OK);
  CHECK(dsp_election_is_leader(&el));
}

/* Our earlier create of the leader znode landed but its reply was lost. */
static void test_leader_znode_already_ours(void) {
  const char *kids[] = {ME0};
  dsp_election_init(&el, "d1");
  connected(S1);
  children(kids, 1);
  own_stat(S1, 42);
  result(DSP_EV_PUBLISHED, DSP_ACT_PUBLISH, DSP_EL_EXISTS);
  {
    const dsp_el_action *a = find(DSP_ACT_STAT_LEADER);
    dsp_el_event ev = {.type = DSP_EV_LEADER_STAT, .op = a->op, .rc = DSP_EL_OK, .owner = S1};
    step(ev);
  }
  CHECK(find(DSP_ACT_REPUBLISH) != NULL);
  result(DSP_EV_PUBLISHED, DSP_ACT_REPUBLISH, DSP_EL_OK);
  CHECK(dsp_election_is_leader(&el));
}

/* Someone deletes the election folder: the leader's own znode goes. */
static void test_leader_own_znode_deleted(void) {
  dsp_el_event ev = {.type = DSP_EV_MEMBER_WATCH, .name = ME0, .deleted = 1};
  become_leader();
  step(ev);
  CHECK(find(DSP_ACT_DEPOSED) != NULL);
  CHECK(find(DSP_ACT_UNPUBLISH) != NULL);
  CHECK(find(DSP_ACT_LIST) != NULL);
  CHECK(!dsp_election_is_leader(&el));
  children(NULL, 0);
  CHECK(find(DSP_ACT_CREATE) != NULL);
}

static void test_leader_znode_deleted_by_hand(void) {
  dsp_el_event ev = {.type = DSP_EV_LEADER_WATCH, .deleted = 1};
  become_leader();
  step(ev);
  CHECK(find(DSP_ACT_PUBLISH) != NULL);
  CHECK_INT(find(DSP_ACT_PUBLISH)->epoch, ==, 42);
}

static void test_error_retries(void) {
  dsp_election_init(&el, "d1");
  connected(S1);
  result(DSP_EV_CHILDREN, DSP_ACT_LIST, DSP_EL_ERROR);
  CHECK(find(DSP_ACT_RETRY_LATER) != NULL);
  {
    dsp_el_event ev = {.type = DSP_EV_RETRY, .op = find(DSP_ACT_RETRY_LATER)->op};
    step(ev);
  }
  CHECK(find(DSP_ACT_LIST) != NULL);
}

static void test_junk_children_ignored(void) {
  const char *kids[] = {"hello", "member-", ME5, "member-zz"};
  dsp_election_init(&el, "d1");
  connected(S1);
  children(kids, 4);
  CHECK(find(DSP_ACT_STAT_OWN) != NULL); /* lowest of the real members */
}

static void test_lease(void) {
  CHECK_INT(dsp_el_lease_check(1000, 1000, 3000), ==, DSP_LEASE_OK);
  CHECK_INT(dsp_el_lease_check(1000, 2999, 3000), ==, DSP_LEASE_OK);
  CHECK_INT(dsp_el_lease_check(1000, 3000, 3000), ==, DSP_LEASE_SUSPECT);
  CHECK_INT(dsp_el_lease_check(1000, 4000, 3000), ==, DSP_LEASE_EXPIRED);
  CHECK_INT(dsp_el_lease_check(5000, 4000, 3000), ==, DSP_LEASE_OK); /* clock order */
}

static const test_entry tests[] = {
    TEST(test_parse_names),
    TEST(test_first_member_leads),
    TEST(test_lost_create_reply),
    TEST(test_stale_lowest_znode),
    TEST(test_owner_mismatch_never_leads),
    TEST(test_former_leader_unpublishes),
    TEST(test_stale_unpublished_ignored),
    TEST(test_connected_while_leader_deposes),
    TEST(test_junk_leader_cleared),
    TEST(test_pred_deleted_not_lowest),
    TEST(test_pred_gone_before_watch),
    TEST(test_disconnect_deposes_at_once),
    TEST(test_expiry_new_session_new_epoch),
    TEST(test_own_stale_znode_deleted),
    TEST(test_duplicate_id_yields_then_fails),
    TEST(test_duplicate_goes_away),
    TEST(test_duplicate_race_later_yields),
    TEST(test_leader_znode_held_by_other),
    TEST(test_leader_znode_already_ours),
    TEST(test_leader_own_znode_deleted),
    TEST(test_leader_znode_deleted_by_hand),
    TEST(test_error_retries),
    TEST(test_junk_children_ignored),
    TEST(test_lease),
};

TEST_MAIN(tests)
