/*
 * member.c: see member.h. Carries out the election's actions with
 * asynchronous ZooKeeper calls and turns their results, watches and session
 * changes back into election events. Decisions live in election.c; this file
 * only translates, times and logs.
 *
 * Each async call passes the op number of its action as the completion's
 * `data`, so the state machine can drop answers to superseded requests.
 * Watches all use one watcher function; its context tells a session event
 * for the handle (ctx == the member) from the copies the C client delivers
 * to every registered path watcher (ctx == &m->path_watch), which we ignore.
 */
#include "member.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include "election.h"
#include "json.h"
#include "log.h"
#include "zkloop.h"

#define RETRY_PAUSE_MS 500
#define PATH_MAX_ZK 512

struct dsp_member {
  uv_loop_t *loop;
  dsp_zkloop *zk;
  dsp_election el;
  char hosts[1024];
  char cluster[128];
  char id[DSP_ID_MAX + 1];
  char addr[DSP_ADDR_MAX];
  int timeout_ms;             /* asked for */
  int negotiated_ms;          /* granted, once connected */
  char base[PATH_MAX_ZK];     /* /dispatcher/<cluster> */
  char election[PATH_MAX_ZK]; /* base/election */
  char leader_path[PATH_MAX_ZK];
  int path_watch;             /* address used as ctx of path watches */
  uv_timer_t expiry_timer, retry_timer, yield_timer, restart_timer;
  uv_prepare_t lease;
  unsigned retry_op;
  dsp_leader_info leader;
  int64_t leading_epoch;      /* 0 when not coordinator */
  int lease_suspended;        /* SUSPENDED by our lease check, not the client */
  void (*on_role)(void *ctx, int coordinator, int64_t epoch);
  void (*on_fatal)(void *ctx);
  void *role_ctx;
  int stopping;
  int exit_code;
  int nclosing;
};

static void carry_out(dsp_member *m, const dsp_el_action *a, int n);
static void track_leader(dsp_member *m);
static void watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx);
static void leader_exists_done(int rc, const struct Stat *st, const void *data);

/* ---- helpers ------------------------------------------------------------ */

static int el_rc(int zrc) {
  switch (zrc) {
    case ZOK: return DSP_EL_OK;
    case ZNONODE: return DSP_EL_NONODE;
    case ZNODEEXISTS: return DSP_EL_EXISTS;
    case ZCONNECTIONLOSS: case ZOPERATIONTIMEOUT: case ZSESSIONEXPIRED:
    case ZCLOSING: case ZINVALIDSTATE: case ZSESSIONMOVED:
      return DSP_EL_CONNLOSS;
    default: return DSP_EL_ERROR;
  }
}

static zhandle_t *zh_of(dsp_member *m) { return dsp_zkloop_handle(m->zk); }

static int64_t session_of(dsp_member *m) {
  zhandle_t *zh = zh_of(m);
  return zh ? zoo_client_id(zh)->client_id : 0;
}

/* Feed one event to the election and carry out what it says. */
static void feed(dsp_member *m, const dsp_el_event *ev) {
  dsp_el_action acts[DSP_EL_MAX_ACTIONS];
  dsp_el_state before = m->el.state;
  int n;
  if (m->stopping) return;
  n = dsp_election_step(&m->el, ev, acts);
  if (m->el.state != before)
    DSP_DEBUG("election: %s -> %s", dsp_el_state_name(before),
              dsp_el_state_name(m->el.state));
  carry_out(m, acts, n);
}

static void feed_result(dsp_member *m, dsp_el_event_type type, const void *data,
                        int zrc) {
  dsp_el_event ev = {0};
  ev.type = type;
  ev.op = (unsigned)(uintptr_t)data;
  ev.rc = el_rc(zrc);
  if (ev.rc == DSP_EL_ERROR)
    DSP_WARN("ZooKeeper operation failed: %s (will retry)", zerror(zrc));
  feed(m, &ev);
}

static void member_path(dsp_member *m, const char *name, char *out, size_t len) {
  if (dsp_fmt(out, len, "%s/%s", m->election, name) != 0) out[0] = '\0';
}

/* The leader znode's data: {"id":…,"addr":…,"epoch":…,"member":…} */
static int leader_json(dsp_member *m, int64_t epoch, char *out, size_t len) {
  char qid[2 * DSP_ID_MAX + 8], qaddr[2 * DSP_ADDR_MAX + 8], qmem[2 * DSP_EL_NAME_MAX + 8];
  if (dsp_json_quote(m->id, qid, sizeof(qid)) || dsp_json_quote(m->addr, qaddr, sizeof(qaddr)) ||
      dsp_json_quote(m->el.own, qmem, sizeof(qmem)))
    return -1;
  return dsp_fmt(out, len, "{\"id\":%s,\"addr\":%s,\"epoch\":%" PRId64 ",\"member\":%s}",
                 qid, qaddr, epoch, qmem);
}

/* ---- completions -------------------------------------------------------- */

/* Completions get only `data` (the op number), so the member they belong to
   is found here: one member per process, set by dsp_member_start() and
   cleared by dsp_member_stop() (after which late completions are dropped). */
static dsp_member *the_member;

static void children_done(int rc, const struct String_vector *sv, const void *data) {
  dsp_member *m = the_member;
  dsp_el_event ev = {0};
  if (m == NULL) return;
  ev.type = DSP_EV_CHILDREN;
  ev.op = (unsigned)(uintptr_t)data;
  if (rc == ZNONODE) {
    ev.rc = DSP_EL_OK; /* no folder yet: an empty election */
  } else {
    ev.rc = el_rc(rc);
    if (ev.rc == DSP_EL_ERROR) DSP_WARN("listing %s: %s", m->election, zerror(rc));
    if (rc == ZOK && sv != NULL) {
      ev.children = (const char *const *)sv->data;
      ev.nchildren = (size_t)sv->count;
      for (int i = 0; i < sv->count; i++) {
        dsp_el_member pm;
        if (dsp_el_parse_name(sv->data[i], &pm) != 0)
          DSP_DEBUG("ignoring %s/%s: not a member znode", m->election, sv->data[i]);
      }
    }
  }
  feed(m, &ev);
}

static void create_done(int rc, const char *value, const void *data) {
  dsp_member *m = the_member;
  dsp_el_event ev = {0};
  const char *slash;
  if (m == NULL) return;
  ev.type = DSP_EV_CREATED;
  ev.op = (unsigned)(uintptr_t)data;
  ev.rc = el_rc(rc);
  if (rc == ZOK && value != NULL && (slash = strrchr(value, '/')) != NULL) {
    ev.name = slash + 1;
    DSP_INFO("joined the election as %s", ev.name);
  }
  if (ev.rc == DSP_EL_ERROR) DSP_WARN("creating member znode: %s", zerror(rc));
  feed(m, &ev);
}

static void parent_done(int rc, const char *value, const void *data) {
  (void)value;
  if (rc != ZOK && rc != ZNODEEXISTS && el_rc(rc) != DSP_EL_CONNLOSS)
    DSP_WARN("creating %s: %s", (const char *)data, zerror(rc));
}

static void stat_own_done(int rc, const struct Stat *st, const void *data) {
  dsp_member *m = the_member;
  dsp_el_event ev = {0};
  if (m == NULL) return;
  ev.type = DSP_EV_OWN_STAT;
  ev.op = (unsigned)(uintptr_t)data;
  ev.rc = el_rc(rc);
  if (rc == ZOK && st != NULL) {
    ev.owner = st->ephemeralOwner;
    ev.czxid = st->czxid;
  }
  feed(m, &ev);
}

static void watch_set_done(int rc, const struct Stat *st, const void *data) {
  (void)st;
  if (the_member != NULL) feed_result(the_member, DSP_EV_WATCH_SET, data, rc);
}

static void publish_done(int rc, const char *value, const void *data) {
  (void)value;
  if (the_member != NULL) feed_result(the_member, DSP_EV_PUBLISHED, data, rc);
}

static void republish_done(int rc, const struct Stat *st, const void *data) {
  (void)st;
  if (the_member != NULL) feed_result(the_member, DSP_EV_PUBLISHED, data, rc);
}

static void leader_stat_done(int rc, const struct Stat *st, const void *data) {
  dsp_member *m = the_member;
  dsp_el_event ev = {0};
  if (m == NULL) return;
  ev.type = DSP_EV_LEADER_STAT;
  ev.op = (unsigned)(uintptr_t)data;
  ev.rc = el_rc(rc);
  if (rc == ZOK && st != NULL) ev.owner = st->ephemeralOwner;
  feed(m, &ev);
}

static void void_done(int rc, const void *data) {
  if (rc != ZOK && rc != ZNONODE && el_rc(rc) != DSP_EL_CONNLOSS)
    DSP_WARN("deleting %s: %s", (const char *)data, zerror(rc));
}

/* UNPUBLISH: delete the leader znode only if it is still ours, by version,
   then tell the election (with the claim number it gave) that the znode is
   not ours any more. On connection loss nothing is reported: the election
   asks again after reconnecting. */
static void unpublish_stat_done(int rc, const struct Stat *st, const void *data);

static void report_unpublished(dsp_member *m, const void *claim) {
  dsp_el_event ev = {0};
  ev.type = DSP_EV_UNPUBLISHED;
  ev.op = (unsigned)(uintptr_t)claim;
  feed(m, &ev);
}

static void unpublish_delete_done(int rc, const void *data) {
  dsp_member *m = the_member;
  if (m == NULL) return;
  if (rc == ZOK || rc == ZNONODE) {
    report_unpublished(m, data);
  } else if (rc == ZBADVERSION && zh_of(m) != NULL) {
    zoo_aexists(zh_of(m), m->leader_path, 0, unpublish_stat_done, data); /* look again */
  }
}

static void unpublish_stat_done(int rc, const struct Stat *st, const void *data) {
  dsp_member *m = the_member;
  if (m == NULL || zh_of(m) == NULL) return;
  if (rc == ZNONODE || (rc == ZOK && st != NULL && st->ephemeralOwner != session_of(m))) {
    report_unpublished(m, data);
  } else if (rc == ZOK && st != NULL) {
    zoo_adelete(zh_of(m), m->leader_path, st->version, unpublish_delete_done, data);
  }
}

/* CLEAR_JUNK: a persistent leader znode was written by hand: delete it. */
static void junk_stat_done(int rc, const struct Stat *st, const void *data) {
  dsp_member *m = the_member;
  (void)data;
  if (m == NULL || zh_of(m) == NULL || rc != ZOK || st == NULL || st->ephemeralOwner != 0)
    return;
  DSP_WARN("%s is a persistent znode (written by hand?); deleting it", m->leader_path);
  zoo_adelete(zh_of(m), m->leader_path, st->version, void_done, "leader znode");
}

/* ---- leader tracking (every member reads the leader znode) ------------- */

typedef struct {
  dsp_leader_info *li;
  int bad;
} leader_parse;

static int leader_member(const dsp_json_member *jm, void *ctx) {
  leader_parse *lp = ctx;
  if (strcmp(jm->key, "id") == 0 && jm->type == DSP_JSON_STRING && dsp_id_valid(jm->str))
    snprintf(lp->li->id, sizeof(lp->li->id), "%s", jm->str);
  else if (strcmp(jm->key, "addr") == 0 && jm->type == DSP_JSON_STRING &&
           jm->str_len < sizeof(lp->li->addr))
    snprintf(lp->li->addr, sizeof(lp->li->addr), "%s", jm->str);
  else if (strcmp(jm->key, "epoch") == 0 && jm->type == DSP_JSON_INT && jm->num > 0)
    lp->li->epoch = jm->num;
  else if (strcmp(jm->key, "id") == 0 || strcmp(jm->key, "addr") == 0 ||
           strcmp(jm->key, "epoch") == 0)
    lp->bad = 1;
  return 0;
}

static void log_following(dsp_member *m) {
  if (m->el.state != DSP_EL_FOLLOWER) return;
  if (m->leader.known)
    DSP_INFO("following %s (leader %s at %s, epoch=%" PRId64 ")", m->el.watched,
             m->leader.id, m->leader.addr, m->leader.epoch);
  else
    DSP_INFO("following %s (leader not yet published)", m->el.watched);
}

static void leader_data_done(int rc, const char *value, int len,
                             const struct Stat *st, const void *data) {
  dsp_member *m = the_member;
  dsp_leader_info li;
  leader_parse lp = {&li, 0};
  char err[128];
  (void)st;
  (void)data;
  if (m == NULL || m->stopping) return;
  if (rc == ZNONODE) {
    if (m->leader.known) DSP_INFO("leader znode is gone; no coordinator known");
    memset(&m->leader, 0, sizeof(m->leader));
    /* getData sets no watch on a missing node; exists does. */
    zoo_awexists(zh_of(m), m->leader_path, watcher, &m->path_watch,
                 leader_exists_done, NULL);
    dsp_zkloop_kick(m->zk);
    return;
  }
  if (rc != ZOK) return; /* reconnect re-reads it */
  memset(&li, 0, sizeof(li));
  if (value == NULL || len <= 0 ||
      dsp_json_parse(value, (size_t)len, leader_member, &lp, err, sizeof(err)) != 0 ||
      lp.bad || li.id[0] == '\0' || li.addr[0] == '\0' || li.epoch <= 0) {
    DSP_WARN("%s holds unreadable data; ignoring it until it changes", m->leader_path);
    memset(&m->leader, 0, sizeof(m->leader));
    return;
  }
  li.known = 1;
  if (!m->leader.known || strcmp(li.id, m->leader.id) != 0 || li.epoch != m->leader.epoch) {
    m->leader = li;
    if (strcmp(li.id, m->id) != 0) {
      DSP_INFO("leader is %s at %s (epoch=%" PRId64 ")", li.id, li.addr, li.epoch);
      log_following(m);
    }
  }
  m->leader = li;
}

static void leader_exists_done(int rc, const struct Stat *st, const void *data) {
  dsp_member *m = the_member;
  (void)st;
  (void)data;
  /* Created between our getData and this exists: read it now. */
  if (m != NULL && rc == ZOK) track_leader(m);
}

static void track_leader(dsp_member *m) {
  zhandle_t *zh = zh_of(m);
  if (zh == NULL) return;
  /* The watch belongs to the shared path watcher, deduplicated by the
     client with the election's own watch on the same znode. */
  zoo_awget(zh, m->leader_path, watcher, &m->path_watch, leader_data_done, NULL);
  dsp_zkloop_kick(m->zk);
}

/* ---- watcher ------------------------------------------------------------ */

static const char *state_name(int state) {
  if (state == ZOO_CONNECTED_STATE) return "connected";
  if (state == ZOO_CONNECTING_STATE) return "connecting";
  if (state == ZOO_EXPIRED_SESSION_STATE) return "expired";
  if (state == ZOO_AUTH_FAILED_STATE) return "auth-failed";
  return "other";
}

static void watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
  dsp_member *m = the_member;
  dsp_el_event ev = {0};
  size_t elen;
  (void)zh;
  if (m == NULL || m->stopping) return;

  if (type == ZOO_SESSION_EVENT) {
    if (ctx != m) return; /* per-path copy of a session event */
    m->lease_suspended = 0;
    if (state == ZOO_CONNECTED_STATE) {
      m->negotiated_ms = zoo_recv_timeout(zh_of(m));
      DSP_INFO("ZooKeeper session 0x%016" PRIx64 " connected (timeout %d ms)",
               (uint64_t)session_of(m), m->negotiated_ms);
      ev.type = DSP_EV_CONNECTED;
      ev.session = session_of(m);
      feed(m, &ev);
      track_leader(m);
    } else if (state == ZOO_CONNECTING_STATE) {
      DSP_WARN("ZooKeeper connection lost; session 0x%016" PRIx64
               " may live %d ms more, reconnecting", (uint64_t)session_of(m),
               m->negotiated_ms);
      ev.type = DSP_EV_DISCONNECTED;
      feed(m, &ev);
    } else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE) {
      DSP_WARN("ZooKeeper session %s", state_name(state));
      ev.type = DSP_EV_EXPIRED;
      feed(m, &ev);
    }
    return;
  }
  if (path == NULL) return;
  if (strcmp(path, m->leader_path) == 0) {
    ev.type = DSP_EV_LEADER_WATCH;
    ev.deleted = type == ZOO_DELETED_EVENT;
    feed(m, &ev);
    track_leader(m);
    return;
  }
  elen = strlen(m->election);
  if (strncmp(path, m->election, elen) == 0 && path[elen] == '/') {
    ev.type = DSP_EV_MEMBER_WATCH;
    ev.name = path + elen + 1;
    ev.deleted = type == ZOO_DELETED_EVENT;
    feed(m, &ev);
  }
}

/* ---- timers ------------------------------------------------------------- */

static void on_expiry(uv_timer_t *t) {
  dsp_member *m = t->data;
  dsp_el_event ev = {0};
  DSP_WARN("no contact with ZooKeeper for the session timeout; the session is "
           "expired, giving it up");
  ev.type = DSP_EV_EXPIRED;
  feed(m, &ev);
}

static void on_retry(uv_timer_t *t) {
  dsp_member *m = t->data;
  dsp_el_event ev = {0};
  ev.type = DSP_EV_RETRY;
  ev.op = m->retry_op;
  feed(m, &ev);
}

static void on_yield_timeout(uv_timer_t *t) {
  dsp_member *m = t->data;
  dsp_el_event ev = {0};
  ev.type = DSP_EV_YIELD_TIMEOUT;
  feed(m, &ev);
}

static void on_restart(uv_timer_t *t) {
  dsp_member *m = t->data;
  int rc;
  if (m->stopping) return;
  dsp_zkloop_close(m->zk);
  memset(&m->leader, 0, sizeof(m->leader));
  DSP_INFO("opening a new ZooKeeper session");
  rc = dsp_zkloop_open(m->zk, m->hosts, m->timeout_ms);
  if (rc != 0) {
    DSP_ERROR("cannot open a ZooKeeper session: %s", strerror(-rc));
    uv_timer_start(&m->restart_timer, on_restart, 1000, 0);
  }
}

/* Judge the lease on `last_heard`: a coordinator that has not heard from
   ZooKeeper for 2/3 of the session timeout stops acting before the client
   even notices; after the whole timeout the session is certainly gone. */
static void check_lease(dsp_member *m, uint64_t last_heard, int resume_ok) {
  dsp_el_event ev = {0};
  dsp_lease l;
  if (m->stopping || zh_of(m) == NULL || m->negotiated_ms <= 0) return;
  if (m->el.state == DSP_EL_DOWN || m->el.state == DSP_EL_FAILED) return;
  l = dsp_el_lease_check(last_heard, uv_now(m->loop), (uint64_t)m->negotiated_ms);
  if (l == DSP_LEASE_EXPIRED) {
    DSP_WARN("silent ZooKeeper for longer than the session timeout (frozen?); "
             "the session is expired, giving it up");
    ev.type = DSP_EV_EXPIRED;
    feed(m, &ev);
  } else if (resume_ok && l == DSP_LEASE_OK && m->el.state == DSP_EL_SUSPENDED &&
             m->lease_suspended && zoo_state(zh_of(m)) == ZOO_CONNECTED_STATE) {
    /* We stepped down on our own lease check, but the client never lost the
       connection and the server has spoken since: carry on with the same
       session (leading again needs fresh round trips, so this is safe). */
    DSP_INFO("ZooKeeper answered again; resuming session 0x%016" PRIx64,
             (uint64_t)session_of(m));
    m->lease_suspended = 0;
    ev.type = DSP_EV_CONNECTED;
    ev.session = session_of(m);
    feed(m, &ev);
  } else if (l == DSP_LEASE_SUSPECT && m->el.state == DSP_EL_LEADER) {
    DSP_WARN("no word from ZooKeeper for 2/3 of the session timeout; "
             "stepping down until it answers");
    m->lease_suspended = 1;
    ev.type = DSP_EV_DISCONNECTED;
    feed(m, &ev);
  }
}

/* Every loop turn. */
static void on_lease(uv_prepare_t *p) {
  dsp_member *m = p->data;
  if (m->zk != NULL) check_lease(m, dsp_zkloop_last_heard(m->zk), 1);
}

/* Bytes from ZooKeeper are about to be processed after `silent` ms: judge
   the lease on that silence first (the bytes may be stale). */
static void on_wake(void *ctx, uint64_t silent) {
  dsp_member *m = ctx;
  check_lease(m, uv_now(m->loop) - silent, 0);
}

/* ---- carrying out actions ---------------------------------------------- */

static void do_create(dsp_member *m, const dsp_el_action *a) {
  zhandle_t *zh = zh_of(m);
  char path[PATH_MAX_ZK], data[512], qid[2 * DSP_ID_MAX + 8], qaddr[2 * DSP_ADDR_MAX + 8];
  const char *parents[] = {"/dispatcher", m->base, m->election};

  /* Parents first, pipelined: ZooKeeper applies one session's requests in
     order, so these land (or find the node there) before the member. */
  for (size_t i = 0; i < DSP_ARRAY_SIZE(parents); i++)
    zoo_acreate(zh, parents[i], "", 0, &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT,
                parent_done, parents[i]);
  member_path(m, a->name, path, sizeof(path));
  dsp_json_quote(m->id, qid, sizeof(qid));
  dsp_json_quote(m->addr, qaddr, sizeof(qaddr));
  dsp_fmt(data, sizeof(data), "{\"id\":%s,\"addr\":%s,\"pid\":%d}", qid, qaddr,
          (int)getpid());
  zoo_acreate(zh, path, data, (int)strlen(data), &ZOO_OPEN_ACL_UNSAFE,
              ZOO_EPHEMERAL_SEQUENTIAL, create_done, (void *)(uintptr_t)a->op);
}

static void carry_out(dsp_member *m, const dsp_el_action *acts, int n) {
  zhandle_t *zh = zh_of(m);
  char path[PATH_MAX_ZK], data[1024];
  void *op;

  for (int i = 0; i < n; i++) {
    const dsp_el_action *a = &acts[i];
    op = (void *)(uintptr_t)a->op;
    switch (a->type) {
      case DSP_ACT_LIST:
        zoo_aget_children(zh, m->election, 0, children_done, op);
        break;
      case DSP_ACT_CREATE:
        do_create(m, a);
        break;
      case DSP_ACT_STAT_OWN:
        member_path(m, a->name, path, sizeof(path));
        zoo_awexists(zh, path, watcher, &m->path_watch, stat_own_done, op);
        break;
      case DSP_ACT_WATCH:
        member_path(m, a->name, path, sizeof(path));
        zoo_awexists(zh, path, watcher, &m->path_watch, watch_set_done, op);
        break;
      case DSP_ACT_PUBLISH:
        if (leader_json(m, a->epoch, data, sizeof(data)) == 0)
          zoo_acreate(zh, m->leader_path, data, (int)strlen(data), &ZOO_OPEN_ACL_UNSAFE,
                      ZOO_EPHEMERAL, publish_done, op);
        break;
      case DSP_ACT_REPUBLISH:
        if (leader_json(m, a->epoch, data, sizeof(data)) == 0)
          zoo_aset(zh, m->leader_path, data, (int)strlen(data), -1, republish_done, op);
        break;
      case DSP_ACT_STAT_LEADER:
        zoo_awexists(zh, m->leader_path, watcher, &m->path_watch, leader_stat_done, op);
        break;
      case DSP_ACT_UNPUBLISH:
        zoo_aexists(zh, m->leader_path, 0, unpublish_stat_done, op);
        break;
      case DSP_ACT_CLEAR_JUNK:
        zoo_aexists(zh, m->leader_path, 0, junk_stat_done, NULL);
        break;
      case DSP_ACT_DELETE:
        member_path(m, a->name, path, sizeof(path));
        DSP_INFO("deleting %s", path);
        zoo_adelete(zh, path, -1, void_done, "member znode");
        break;
      case DSP_ACT_ELECTED:
        m->leading_epoch = a->epoch;
        DSP_INFO("coordinator epoch=%" PRId64 " (%s)", a->epoch, m->el.own);
        if (m->on_role) m->on_role(m->role_ctx, 1, a->epoch);
        break;
      case DSP_ACT_DEPOSED:
        m->leading_epoch = 0;
        DSP_WARN("stepping down: no longer coordinator (epoch=%" PRId64 ")", a->epoch);
        if (m->on_role) m->on_role(m->role_ctx, 0, a->epoch);
        break;
      case DSP_ACT_FOLLOWING:
        log_following(m);
        break;
      case DSP_ACT_ARM_EXPIRY: {
        uint64_t silent = uv_now(m->loop) - dsp_zkloop_last_heard(m->zk);
        uint64_t t = (uint64_t)(m->negotiated_ms > 0 ? m->negotiated_ms : m->timeout_ms);
        uv_timer_start(&m->expiry_timer, on_expiry, silent < t ? t - silent : 0, 0);
        break;
      }
      case DSP_ACT_DISARM_EXPIRY:
        uv_timer_stop(&m->expiry_timer);
        break;
      case DSP_ACT_NEW_SESSION:
        /* Never close the handle from inside its own callback. */
        uv_timer_start(&m->restart_timer, on_restart, 0, 0);
        break;
      case DSP_ACT_RETRY_LATER:
        m->retry_op = a->op;
        uv_timer_start(&m->retry_timer, on_retry, RETRY_PAUSE_MS, 0);
        break;
      case DSP_ACT_YIELD: {
        uint64_t wait = 2u * (uint64_t)(m->negotiated_ms > 0 ? m->negotiated_ms : m->timeout_ms);
        DSP_WARN("id %s is held by %s/%s of another session; waiting up to %" PRIu64
                 " ms for it to go", m->id, m->election, a->name, wait);
        uv_timer_start(&m->yield_timer, on_yield_timeout, wait, 0);
        break;
      }
      case DSP_ACT_FAIL:
        DSP_ERROR("id %s is already in use by %s/%s: another dispatcherd is running "
                  "with --id %s; exiting", m->id, m->election, a->name, m->id);
        m->exit_code = 1;
        dsp_member_stop(m);
        if (m->on_fatal) m->on_fatal(m->role_ctx);
        return;
    }
  }
  if (n > 0 && m->zk != NULL) dsp_zkloop_kick(m->zk);
}

/* ---- lifecycle ---------------------------------------------------------- */

dsp_member *dsp_member_new(uv_loop_t *loop, const dsp_member_config *cfg) {
  dsp_member *m = calloc(1, sizeof(*m));
  if (m == NULL) return NULL;
  m->loop = loop;
  snprintf(m->hosts, sizeof(m->hosts), "%s", cfg->zk_hosts);
  snprintf(m->cluster, sizeof(m->cluster), "%s", cfg->cluster);
  snprintf(m->id, sizeof(m->id), "%s", cfg->id);
  snprintf(m->addr, sizeof(m->addr), "%s", cfg->addr);
  m->timeout_ms = cfg->session_timeout_ms;
  m->on_role = cfg->on_role;
  m->on_fatal = cfg->on_fatal;
  m->role_ctx = cfg->ctx;
  /* cluster is at most 128 bytes, so these fit. */
  dsp_fmt(m->base, sizeof(m->base), "/dispatcher/%s", m->cluster);
  dsp_fmt(m->election, sizeof(m->election), "/dispatcher/%s/election", m->cluster);
  dsp_fmt(m->leader_path, sizeof(m->leader_path), "/dispatcher/%s/leader", m->cluster);
  dsp_election_init(&m->el, m->id);
  m->zk = dsp_zkloop_new(loop, watcher, m);
  if (m->zk == NULL) {
    free(m);
    return NULL;
  }
  dsp_zkloop_on_wake(m->zk, on_wake, m);
  uv_timer_init(loop, &m->expiry_timer);
  uv_timer_init(loop, &m->retry_timer);
  uv_timer_init(loop, &m->yield_timer);
  uv_timer_init(loop, &m->restart_timer);
  uv_prepare_init(loop, &m->lease);
  m->expiry_timer.data = m->retry_timer.data = m->yield_timer.data = m;
  m->restart_timer.data = m->lease.data = m;
  return m;
}

int dsp_member_start(dsp_member *m) {
  int rc;
  the_member = m;
  rc = dsp_zkloop_open(m->zk, m->hosts, m->timeout_ms);
  if (rc != 0) return rc;
  uv_prepare_start(&m->lease, on_lease);
  uv_unref((uv_handle_t *)&m->lease);
  DSP_INFO("member %s (%s) joining cluster '%s' at %s", m->id, m->addr, m->cluster, m->hosts);
  return 0;
}

static void on_closed(uv_handle_t *h) {
  dsp_member *m = h->data;
  m->nclosing--;
}

void dsp_member_stop(dsp_member *m) {
  uv_handle_t *hs[] = {(uv_handle_t *)&m->expiry_timer, (uv_handle_t *)&m->retry_timer,
                       (uv_handle_t *)&m->yield_timer, (uv_handle_t *)&m->restart_timer,
                       (uv_handle_t *)&m->lease};
  if (m->stopping) return;
  if (m->leading_epoch != 0) {
    DSP_INFO("stepping down: shutting down (epoch=%" PRId64 ")", m->leading_epoch);
    if (m->on_role) m->on_role(m->role_ctx, 0, m->leading_epoch);
  }
  m->leading_epoch = 0;
  m->stopping = 1;
  /* Closing the session deletes our ephemeral znodes at once. */
  dsp_zkloop_free(m->zk);
  m->zk = NULL;
  the_member = NULL;
  for (size_t i = 0; i < DSP_ARRAY_SIZE(hs); i++) {
    m->nclosing++;
    uv_close(hs[i], on_closed);
  }
}

void dsp_member_free(dsp_member *m) { free(m); }

int dsp_member_is_coordinator(dsp_member *m, int64_t *epoch) {
  if (m->stopping || !dsp_election_is_leader(&m->el) || m->negotiated_ms <= 0) return 0;
  uv_update_time(m->loop);
  if (dsp_el_lease_check(dsp_zkloop_last_heard(m->zk), uv_now(m->loop),
                         (uint64_t)m->negotiated_ms) != DSP_LEASE_OK)
    return 0;
  if (epoch) *epoch = m->el.epoch;
  return 1;
}

const dsp_leader_info *dsp_member_leader(const dsp_member *m) { return &m->leader; }

int dsp_member_exit_code(const dsp_member *m) { return m->exit_code; }

struct _zhandle *dsp_member_zh(const dsp_member *m) {
  return m->zk ? dsp_zkloop_handle(m->zk) : NULL;
}

const char *dsp_member_role(dsp_member *m) {
  if (dsp_member_is_coordinator(m, NULL)) return "coordinator";
  if (m->el.state == DSP_EL_FOLLOWER) return "follower";
  return "candidate";
}

void dsp_member_kick(dsp_member *m) {
  if (m->zk != NULL) dsp_zkloop_kick(m->zk);
}

const char *dsp_member_id(const dsp_member *m) { return m->id; }

int dsp_member_fence_path(dsp_member *m, char *out, size_t len) {
  if (!dsp_member_is_coordinator(m, NULL) || m->el.own[0] == '\0') return -1;
  return dsp_fmt(out, len, "%s/%s", m->election, m->el.own);
}
