/*
 * test_cluster.c: the election end to end, with a real ZooKeeper server (or
 * ensemble) and real dispatcherd processes. Each test is one ctest entry
 * (see integration.cmake). Waits are bounded so a broken build fails instead
 * of hanging, but no assertion is about speed: the TERM test checks that the
 * hand-over comes before the old session *could* have expired, which is
 * behaviour (the session was closed), not a stopwatch.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "election.h"
#include "harness.h"
#include "json.h"
#include "test.h"

#define CLUSTER "it"
#define ELECTION "/dispatcher/" CLUSTER "/election"
#define LEADER "/dispatcher/" CLUSTER "/leader"
#define MAXM 4

typedef struct {
  char id[16], addr[32], log[512], timeout[16];
  pid_t pid;
} member;

typedef struct {
  zkh_ensemble *zk;
  zkc *c;
  member m[MAXM];
  int n;
} cluster;

static cluster cl;

static void start_member(int i, int timeout_ms) {
  member *m = &cl.m[i];
  char *argv[] = {NULL, "--zk", cl.zk->connect, "--cluster", CLUSTER, "--id", m->id,
                  "--listen", m->addr, "--session-timeout", m->timeout,
                  "--log-level", "debug", NULL};
  char id[16];
  snprintf(id, sizeof(id), "d%d", i + 1);
  snprintf(m->id, sizeof(m->id), "%s", id);
  snprintf(m->addr, sizeof(m->addr), "127.0.0.1:%d", th_free_port());
  snprintf(m->log, sizeof(m->log), "%s/%s.log", cl.zk->dir, id);
  snprintf(m->timeout, sizeof(m->timeout), "%d", timeout_ms);
  argv[0] = (char *)th_bin("dispatcherd");
  m->pid = th_spawn(m->log, argv);
}

typedef struct {
  char id[64];
  int64_t epoch;
} leader_rec;

static int leader_cb(const dsp_json_member *jm, void *ctx) {
  leader_rec *l = ctx;
  if (strcmp(jm->key, "id") == 0 && jm->type == DSP_JSON_STRING)
    snprintf(l->id, sizeof(l->id), "%s", jm->str);
  if (strcmp(jm->key, "epoch") == 0 && jm->type == DSP_JSON_INT) l->epoch = jm->num;
  return 0;
}

/* Read the leader znode; 1 if present and well-formed. */
static int read_leader(leader_rec *l) {
  char buf[1024], err[128];
  memset(l, 0, sizeof(*l));
  if (zkc_get(cl.c, LEADER, buf, sizeof(buf), NULL) != ZOK) return 0;
  if (dsp_json_parse(buf, strlen(buf), leader_cb, l, err, sizeof(err)) != 0) {
    fprintf(stderr, "bad leader data: %s (%s)\n", buf, err);
    return 0;
  }
  return l->id[0] != '\0' && l->epoch > 0;
}

/* Wait for a leader znode with epoch > min_epoch. */
static int wait_leader(leader_rec *l, int64_t min_epoch, int timeout_ms) {
  uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
  do {
    if (read_leader(l) && l->epoch > min_epoch) return 1;
    th_sleep_ms(10);
  } while (th_now_ms() < end);
  return 0;
}

/* A member's role, from the last role line in its log:
   'L' coordinator, 'F' follower, 'D' neither (stepped down, starting). */
static char role_of(const char *log) {
  FILE *f = fopen(log, "r");
  char line[2048];
  char role = 'D';
  if (f == NULL) return '?';
  while (fgets(line, sizeof(line), f)) {
    if (strstr(line, ": coordinator epoch=")) role = 'L';
    else if (strstr(line, ": following ")) role = 'F';
    else if (strstr(line, ": stepping down")) role = 'D';
  }
  fclose(f);
  return role;
}

static int index_of(const char *id) {
  for (int i = 0; i < cl.n; i++)
    if (strcmp(cl.m[i].id, id) == 0) return i;
  return -1;
}

static int count_members(void) {
  char *names[64];
  int n = zkc_children(cl.c, ELECTION, names, 64);
  if (n > 0) zkc_free_names(names, n);
  return n;
}

/* Converged: a leader znode naming a live member that says it leads, every
   other running member following, and `want` znodes in the election. */
static int converged(int want, leader_rec *l) {
  int leaders = 0, li;
  if (!read_leader(l) || count_members() != want) return 0;
  li = index_of(l->id);
  if (li < 0 || cl.m[li].pid <= 0 || role_of(cl.m[li].log) != 'L') return 0;
  for (int i = 0; i < cl.n; i++) {
    char r;
    if (cl.m[i].pid <= 0) continue;
    r = role_of(cl.m[i].log);
    if (r == 'L') leaders++;
    else if (r != 'F') return 0;
  }
  return leaders == 1;
}

static int wait_converged(int want, leader_rec *l, int timeout_ms) {
  uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
  do {
    if (converged(want, l)) return 1;
    th_sleep_ms(20);
  } while (th_now_ms() < end);
  return 0;
}

static int setup(int nzk, int nmembers, int timeout_ms) {
  memset(&cl, 0, sizeof(cl));
  cl.zk = zkh_start(nzk);
  if (cl.zk == NULL) return -1;
  cl.c = zkc_connect(cl.zk->connect, 20000);
  if (cl.c == NULL) return -1;
  cl.n = nmembers;
  for (int i = 0; i < nmembers; i++) start_member(i, timeout_ms);
  return 0;
}

/* Stop every member with SIGTERM: each must exit 0, and no member log may
   hold a sanitizer report (under scripts/test.sh --asan a leak or a UB
   report lands there, not in the test's own output). */
static void teardown(void) {
  if (test_failed_flag) {
    /* What the members said, for whoever reads a failed CI log. */
    for (int i = 0; i < cl.n; i++) {
      char cmd[700];
      if (cl.m[i].log[0] == '\0') continue;
      fprintf(stderr, "--- last lines of %s ---\n", cl.m[i].log);
      snprintf(cmd, sizeof(cmd), "grep -v ZOO_ '%s' | tail -n 25 >&2", cl.m[i].log);
      if (system(cmd) != 0) fprintf(stderr, "(cannot read it)\n");
    }
  }
  for (int i = 0; i < cl.n; i++) {
    if (cl.m[i].pid > 0) {
      if (!th_stop_clean(cl.m[i].pid, cl.m[i].log[0] ? cl.m[i].log : NULL, cl.m[i].id))
        test_failed_flag = 1;
    } else if (cl.m[i].log[0] != '\0' && (th_log_has(cl.m[i].log, "Sanitizer", 0) ||
                                          th_log_has(cl.m[i].log, "runtime error:", 0))) {
      fprintf(stderr, "sanitizer report in %s\n", cl.m[i].log);
      test_failed_flag = 1;
    }
  }
  zkc_close(cl.c);
  zkh_free(cl.zk);
  memset(&cl, 0, sizeof(cl));
}

#define RUN(body)             \
  do {                        \
    if (setup_rc != 0) {      \
      teardown();             \
      CHECK(setup_rc == 0);   \
    }                         \
    body;                     \
  } while (0)

/* ---- tests -------------------------------------------------------------- */

static void three_members_body(void) {
  leader_rec l;
  char wchc[8192], *names[16];
  int n;
  CHECK(wait_converged(3, &l, 30000));
  /* Exactly one claims leadership, and the leader znode names it. */
  for (int i = 0; i < 3; i++)
    CHECK_INT(role_of(cl.m[i].log), ==, strcmp(cl.m[i].id, l.id) == 0 ? 'L' : 'F');
  /* Each follower watches only its predecessor: ask the server (wchc lists
     the paths each session watches). */
  CHECK(zkh_4lw(cl.zk, 0, "wchc", wchc, sizeof(wchc)) > 0);
  n = zkc_children(cl.c, ELECTION, names, 16);
  CHECK_INT(n, ==, 3);
  for (int i = 0; i < n; i++) {
    dsp_el_member me, other;
    char sess[32], *block, *end;
    int watched = 0, pred_ok = 0;
    CHECK(dsp_el_parse_name(names[i], &me) == 0);
    snprintf(sess, sizeof(sess), "0x%" PRIx64 "\n", (uint64_t)me.session);
    block = strstr(wchc, sess);
    if (strcmp(me.id, l.id) == 0) continue; /* leader watches its own znode */
    CHECK(block != NULL);
    block += strlen(sess);
    end = strstr(block, "0x");
    for (int j = 0; j < n; j++) {
      char path[256];
      char *hit;
      snprintf(path, sizeof(path), ELECTION "/%s\n", names[j]);
      hit = strstr(block, path);
      if (hit == NULL || (end != NULL && hit > end)) continue;
      watched++;
      CHECK(dsp_el_parse_name(names[j], &other) == 0);
      /* the predecessor: the largest seq below ours */
      int is_pred = other.seq < me.seq;
      for (int k = 0; k < n; k++) {
        dsp_el_member x;
        if (dsp_el_parse_name(names[k], &x) == 0 && x.seq < me.seq && x.seq > other.seq)
          is_pred = 0;
      }
      pred_ok += is_pred;
    }
    CHECK_INT(watched, ==, 1);
    CHECK_INT(pred_ok, ==, 1);
  }
  zkc_free_names(names, n);
}

static void test_three_members(void) {
  int setup_rc = setup(1, 3, 4000);
  RUN(three_members_body());
  teardown();
}

static void failover_term_body(void) {
  leader_rec l, l2;
  int li, status;
  uint64_t t0, dt;
  CHECK(wait_converged(3, &l, 30000));
  li = index_of(l.id);
  t0 = th_now_ms();
  th_signal(cl.m[li].pid, SIGTERM);
  /* The session is closed, not left to expire: a new leader must appear
     well before the 20 s session timeout could have run out. */
  CHECK(wait_leader(&l2, l.epoch, 10000));
  dt = th_now_ms() - t0;
  printf("failover after SIGTERM: %" PRIu64 " ms (session timeout 20000 ms)\n", dt);
  status = th_wait_exit(cl.m[li].pid, 10000);
  cl.m[li].pid = 0;
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(strcmp(l2.id, l.id) != 0);
  CHECK(l2.epoch > l.epoch);
  CHECK(wait_converged(2, &l2, 10000));
}

static void test_failover_term(void) {
  int setup_rc = setup(1, 3, 20000);
  RUN(failover_term_body());
  teardown();
}

static void failover_kill_body(void) {
  leader_rec l, prev;
  int64_t epochs[3];
  CHECK(wait_converged(3, &l, 30000));
  epochs[0] = l.epoch;
  /* Kill the leader twice: each time another takes over once the server
     expires the dead session, with a strictly higher epoch. */
  for (int round = 1; round <= 2; round++) {
    int li = index_of(l.id);
    uint64_t t0 = th_now_ms();
    prev = l;
    th_signal(cl.m[li].pid, SIGKILL);
    th_wait_exit(cl.m[li].pid, 10000);
    cl.m[li].pid = 0;
    CHECK(wait_leader(&l, prev.epoch, 30000));
    printf("failover after SIGKILL: %" PRIu64 " ms (session timeout 2000 ms)\n",
           th_now_ms() - t0);
    CHECK(strcmp(l.id, prev.id) != 0);
    epochs[round] = l.epoch;
    CHECK(epochs[round] > epochs[round - 1]);
    CHECK(wait_converged(3 - round, &l, 30000));
  }
}

static void test_failover_kill(void) {
  int setup_rc = setup(1, 3, 2000);
  RUN(failover_kill_body());
  teardown();
}

static void frozen_leader_body(void) {
  leader_rec l, l2;
  char needle[128];
  long off;
  int li;
  CHECK(wait_converged(3, &l, 30000));
  li = index_of(l.id);
  th_signal(cl.m[li].pid, SIGSTOP);
  /* Another takes over only once the frozen one's session expired. */
  CHECK(wait_leader(&l2, l.epoch, 30000));
  CHECK(strcmp(l2.id, l.id) != 0);
  off = th_log_size(cl.m[li].log);
  th_signal(cl.m[li].pid, SIGCONT);
  /* It rejoins as a follower with a new znode (a new session). */
  snprintf(needle, sizeof(needle), "joined the election as member-%s_", l.id);
  CHECK(th_wait_log(cl.m[li].log, needle, off, 30000));
  CHECK(wait_converged(3, &l2, 30000));
  CHECK(strcmp(l2.id, l.id) != 0);
  CHECK_INT(role_of(cl.m[li].log), ==, 'F');
  /* It never claimed leadership again, under the old epoch or any. */
  snprintf(needle, sizeof(needle), "coordinator epoch=%" PRId64 " ", l.epoch);
  CHECK_INT(th_log_count(cl.m[li].log, needle), ==, 1);
  CHECK(!th_log_has(cl.m[li].log, ": coordinator epoch=", off));
}

static void test_frozen_leader(void) {
  int setup_rc = setup(1, 3, 2000);
  RUN(frozen_leader_body());
  teardown();
}

static void zk_outage_short_body(void) {
  leader_rec l, l2;
  long off[3];
  CHECK(wait_converged(3, &l, 30000));
  for (int i = 0; i < 3; i++) off[i] = th_log_size(cl.m[i].log);
  zkh_stop(cl.zk, 0);
  th_sleep_ms(500);
  CHECK(zkh_restart(cl.zk, 0) == 0);
  /* Every member gets its old session back... */
  for (int i = 0; i < 3; i++) {
    CHECK(th_wait_log(cl.m[i].log, "connection lost", off[i], 1));
    CHECK(th_wait_log(cl.m[i].log, "connected (timeout", off[i], 20000));
    CHECK(!th_log_has(cl.m[i].log, "opening a new ZooKeeper session", off[i]));
  }
  /* ...and the same member leads, under the same epoch. (A bound on the
     wait, not a speed claim: a loaded machine restarts the JVM slowly.) */
  CHECK(wait_converged(3, &l2, 60000));
  CHECK_STR(l2.id, l.id);
  CHECK_INT(l2.epoch, ==, l.epoch);
}

static void test_zk_outage_short(void) {
  /* Long enough to outlast a JVM restart on a slow machine. */
  int setup_rc = setup(1, 3, 20000);
  RUN(zk_outage_short_body());
  teardown();
}

static void zk_outage_long_body(void) {
  leader_rec l, l2;
  long off[3];
  int li;
  CHECK(wait_converged(3, &l, 30000));
  li = index_of(l.id);
  for (int i = 0; i < 3; i++) off[i] = th_log_size(cl.m[i].log);
  zkh_stop(cl.zk, 0);
  /* The leader steps down at once, and every member gives up its session
     once the session timeout has passed without ZooKeeper. */
  CHECK(th_wait_log(cl.m[li].log, "stepping down", off[li], 20000));
  for (int i = 0; i < 3; i++)
    CHECK(th_wait_log(cl.m[i].log, "the session is expired", off[i], 20000));
  CHECK(zkh_restart(cl.zk, 0) == 0);
  /* Exactly one leader again (old sessions expire after the restart). */
  CHECK(wait_converged(3, &l2, 60000));
  CHECK(l2.epoch > l.epoch);
}

static void test_zk_outage_long(void) {
  int setup_rc = setup(1, 3, 2000);
  RUN(zk_outage_long_body());
  teardown();
}

static void deleted_parent_body(void) {
  leader_rec l, l2;
  CHECK(wait_converged(3, &l, 30000));
  /* What `deleteall /dispatcher/it/election` in zkCli does. Members may
     re-create children between the deletes; retry like a person would. */
  for (int tries = 0; tries < 5 && zkc_delete_all(cl.c, ELECTION) != ZOK; tries++) {
  }
  CHECK(wait_converged(3, &l2, 30000));
  CHECK(l2.epoch > l.epoch);
}

static void test_deleted_parent(void) {
  int setup_rc = setup(1, 3, 4000);
  RUN(deleted_parent_body());
  teardown();
}

static void duplicate_id_body(void) {
  leader_rec l, l2;
  char log[512], *argv[] = {NULL, "--zk", NULL, "--cluster", CLUSTER, "--id", "d2",
                            "--listen", NULL, "--session-timeout", "2000", NULL};
  char addr[32];
  pid_t dup;
  int status;
  CHECK(wait_converged(3, &l, 30000));
  argv[0] = (char *)th_bin("dispatcherd");
  argv[2] = cl.zk->connect;
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", th_free_port());
  argv[8] = addr;
  snprintf(log, sizeof(log), "%s/dup.log", th_tmpdir());
  dup = th_spawn(log, argv);
  status = th_wait_exit(dup, 30000);
  CHECK(status != -1);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
  CHECK(th_log_has(log, "id d2 is already in use", 0));
  CHECK(!th_log_has(log, "Sanitizer", 0) && !th_log_has(log, "runtime error:", 0));
  /* The cluster is as it was. */
  CHECK(wait_converged(3, &l2, 10000));
  CHECK_STR(l2.id, l.id);
  CHECK_INT(l2.epoch, ==, l.epoch);
}

static void test_duplicate_id(void) {
  int setup_rc = setup(1, 3, 2000);
  RUN(duplicate_id_body());
  teardown();
}

static void ensemble_body(void) {
  leader_rec l, l2;
  int li;
  CHECK(wait_converged(3, &l, 60000));
  /* Lose one ZooKeeper server (a quorum remains), then the leader. */
  zkh_stop(cl.zk, 0);
  li = index_of(l.id);
  th_signal(cl.m[li].pid, SIGKILL);
  th_wait_exit(cl.m[li].pid, 10000);
  cl.m[li].pid = 0;
  CHECK(wait_leader(&l2, l.epoch, 60000));
  CHECK(strcmp(l2.id, l.id) != 0);
  CHECK(wait_converged(2, &l2, 60000));
}

static void test_ensemble(void) {
  int setup_rc = setup(3, 3, 4000);
  if (setup_rc == 0) {
    /* The harness client talks to server 0, which this test stops. */
    zkc_close(cl.c);
    char hosts[128];
    snprintf(hosts, sizeof(hosts), "127.0.0.1:%d,127.0.0.1:%d", cl.zk->client_port[1],
             cl.zk->client_port[2]);
    cl.c = zkc_connect(hosts, 20000);
    if (cl.c == NULL) setup_rc = -1;
  }
  RUN(ensemble_body());
  teardown();
}

/* Junk written by hand with zkCli: the coordinator puts its leader record
   back, and a stray child of the election folder is ignored. */
static void hand_written_body(void) {
  leader_rec l, l2;
  char buf[1024];
  int li;
  CHECK(wait_converged(3, &l, 30000));
  li = index_of(l.id);
  CHECK(zkc_set(cl.c, LEADER, "this is not json") == ZOK);
  CHECK(wait_leader(&l2, l.epoch - 1, 10000));
  CHECK_STR(l2.id, l.id);
  CHECK_INT(l2.epoch, ==, l.epoch);
  CHECK(zkc_get(cl.c, LEADER, buf, sizeof(buf), NULL) == ZOK);
  CHECK(strstr(buf, "\"addr\":\"") != NULL);
  /* Children that are not member znodes. */
  CHECK(zkc_create(cl.c, ELECTION "/hello", "hand-written") == ZOK);
  CHECK(zkc_create(cl.c, ELECTION "/member-0000000000", "{}") == ZOK);
  /* The member after the junk must not be confused: kill the leader and
     the cluster still converges on one leader among the real members. */
  th_signal(cl.m[li].pid, SIGTERM);
  th_wait_exit(cl.m[li].pid, 10000);
  cl.m[li].pid = 0;
  CHECK(wait_leader(&l2, l.epoch, 20000));
  CHECK(strcmp(l2.id, l.id) != 0);
  CHECK(wait_converged(4, &l2, 20000)); /* 2 members + 2 junk children */
}

static void test_hand_written_znodes(void) {
  int setup_rc = setup(1, 3, 4000);
  RUN(hand_written_body());
  teardown();
}

/* dispatchctl election: what it prints about a live cluster, and its
   errors. */
static void ctl_election_body(void) {
  leader_rec l;
  char log[512], needle[128];
  int status;
  CHECK(wait_converged(3, &l, 30000));
  {
    char *argv[] = {NULL, "election", "--zk", cl.zk->connect, "--cluster", CLUSTER, "--json", NULL};
    argv[0] = (char *)th_bin("dispatchctl");
    snprintf(log, sizeof(log), "%s/ctl-json.log", th_tmpdir());
    status = th_wait_exit(th_spawn(log, argv), 20000);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    snprintf(needle, sizeof(needle), "\"leader\":{\"id\":\"%s\"", l.id);
    CHECK(th_log_has(log, needle, 0));
    snprintf(needle, sizeof(needle), "\"epoch\":%" PRId64 ",", l.epoch);
    CHECK(th_log_has(log, needle, 0));
    for (int i = 0; i < 3; i++) {
      snprintf(needle, sizeof(needle), "\"id\":\"%s\",\"addr\":\"%s\"", cl.m[i].id, cl.m[i].addr);
      CHECK(th_log_has(log, needle, 0));
    }
    CHECK_INT(th_log_count(log, "\"role\":\"leader\""), ==, 1);
    CHECK_INT(th_log_count(log, "\"role\":\"follower\""), ==, 2);
  }
  {
    char *argv[] = {NULL, "election", "--zk", cl.zk->connect, "--cluster", CLUSTER, NULL};
    argv[0] = (char *)th_bin("dispatchctl");
    snprintf(log, sizeof(log), "%s/ctl-text.log", th_tmpdir());
    status = th_wait_exit(th_spawn(log, argv), 20000);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    snprintf(needle, sizeof(needle), "leader    %s at ", l.id);
    CHECK(th_log_has(log, needle, 0));
    CHECK(th_log_has(log, "SEQ         ID  ADDR", 0));
  }
  {
    /* No cluster of that name: no leader, no members, still exit 0. */
    char *argv[] = {NULL, "election", "--zk", cl.zk->connect, "--cluster", "nosuch", NULL};
    argv[0] = (char *)th_bin("dispatchctl");
    snprintf(log, sizeof(log), "%s/ctl-none.log", th_tmpdir());
    status = th_wait_exit(th_spawn(log, argv), 20000);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(th_log_has(log, "leader    none", 0));
  }
  {
    /* Nothing listening: exit 1 with the reason. */
    char *argv[] = {NULL, "election", "--zk", "127.0.0.1:1", NULL};
    argv[0] = (char *)th_bin("dispatchctl");
    snprintf(log, sizeof(log), "%s/ctl-down.log", th_tmpdir());
    status = th_wait_exit(th_spawn(log, argv), 30000);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    CHECK(th_log_has(log, "no answer from ZooKeeper at 127.0.0.1:1", 0));
  }
  {
    static const char *const bad[][2] = {{"--cluster", "a/b"}, {"--bogus", NULL},
                                         {"--zk", NULL}, {"extra", NULL}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
      char *argv[] = {NULL, "election", (char *)bad[i][0], (char *)bad[i][1], NULL};
      argv[0] = (char *)th_bin("dispatchctl");
      snprintf(log, sizeof(log), "%s/ctl-bad%zu.log", th_tmpdir(), i);
      status = th_wait_exit(th_spawn(log, argv), 20000);
      CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
      CHECK(th_log_has(log, "dispatchctl election: ", 0));
    }
  }
}

static void test_ctl_election(void) {
  int setup_rc = setup(1, 3, 4000);
  RUN(ctl_election_body());
  teardown();
}

/* Bad flags: exit 2 with a message naming the flag; no ZooKeeper needed. */
static void test_bad_flags(void) {
  static const char *const cases[][3] = {
      {"--session-timeout", "abc", "--session-timeout"},
      {"--session-timeout", "10", "--session-timeout"},
      {"--listen", "nohostport", "--listen"},
      {"--listen", "127.0.0.1:70000", "--listen"},
      {"--id", "bad/id", "--id"},
      {"--id", "", "--id"},
      {"--cluster", "a/b", "--cluster"},
      {"--zk", "localhost", "--zk"},
      {"--zk", "h:1,,h:2", "--zk"},
      {"--log-level", "loud", "--log-level"},
      {"--default-strategy", "fastest", "--default-strategy"},
      {"--max-frame", "10", "--max-frame"},
      {"--client-idle-timeout", "x", "--client-idle-timeout"},
      {"--check-fall", "0", "--check-fall: \"fall\" 0 is out of range"},
      {"--check-interval", "soon", "--check-interval"},
      {"--check-timeout", "5000", "timeout_ms 5000 must be below interval_ms 2000"},
      {"--check-jitter", "101", "--check-jitter"},
      {"--check-expect-status", "7xx", "--check-expect-status"},
      {"--check-body-limit", "0", "--check-body-limit"},
      {"--max-fails", "-1", "--max-fails"},
      {"--fail-timeout", "", "--fail-timeout"},
      {"--bogus", NULL, "unknown option"},
  };
  char log[512];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *argv[4] = {(char *)th_bin("dispatcherd"), (char *)cases[i][0], (char *)cases[i][1], NULL};
    int status;
    snprintf(log, sizeof(log), "%s/flags%zu.log", th_tmpdir(), i);
    status = th_wait_exit(th_spawn(log, argv), 10000);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    CHECK(th_log_has(log, cases[i][2], 0));
  }
  {
    char *argv[] = {(char *)th_bin("dispatcherd"), "--help", NULL};
    int status;
    snprintf(log, sizeof(log), "%s/help.log", th_tmpdir());
    status = th_wait_exit(th_spawn(log, argv), 10000);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(th_log_has(log, "Usage: dispatcherd", 0));
    CHECK(th_log_has(log, "--session-timeout", 0));
    CHECK(th_log_has(log, "--check-interval", 0));
  }
}

static const test_entry tests[] = {
    TEST(test_three_members),   TEST(test_failover_term), TEST(test_failover_kill),
    TEST(test_frozen_leader),   TEST(test_zk_outage_short), TEST(test_zk_outage_long),
    TEST(test_deleted_parent),  TEST(test_duplicate_id),  TEST(test_ensemble),
    TEST(test_bad_flags),       TEST(test_hand_written_znodes), TEST(test_ctl_election),
};

TEST_MAIN(tests)
