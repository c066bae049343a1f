/*
 * election.c: the election state machine; see election.h for the recipe.
 *
 * Every operation we ask for gets a fresh op number; a result carrying any
 * other number answers a superseded request and is dropped. That one rule
 * handles replies that arrive after a disconnect, after a re-list, or after
 * the state moved on for any other reason.
 */
#include "election.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define PREFIX "member-"

typedef struct {
  dsp_el_action *out;
  int n;
} acts;

static void emit(acts *a, dsp_el_action_type type, unsigned op,
                 const char *name, int64_t epoch) {
  assert(a->n < DSP_EL_MAX_ACTIONS);
  a->out[a->n].type = type;
  a->out[a->n].op = op;
  a->out[a->n].name = name;
  a->out[a->n].epoch = epoch;
  a->n++;
}

static void set_str(char *dst, const char *src) {
  size_t n = strlen(src);
  assert(n < DSP_EL_NAME_MAX);
  memcpy(dst, src, n + 1);
}

void dsp_election_init(dsp_election *el, const char *id) {
  assert(dsp_id_valid(id));
  memset(el, 0, sizeof(*el));
  el->state = DSP_EL_DOWN;
  snprintf(el->id, sizeof(el->id), "%s", id);
}

int dsp_election_is_leader(const dsp_election *el) {
  return el->state == DSP_EL_LEADER;
}

const char *dsp_el_state_name(dsp_el_state s) {
  static const char *const names[] = {
      "down",     "listing",  "creating", "verifying", "publishing",
      "leader-wait", "leader", "watching", "follower", "yielding",
      "suspended", "failed"};
  return (unsigned)s < DSP_ARRAY_SIZE(names) ? names[s] : "?";
}

int dsp_el_parse_name(const char *name, dsp_el_member *m) {
  size_t n = name ? strlen(name) : 0;
  size_t plen = sizeof(PREFIX) - 1;
  const char *seq, *tag;
  size_t idlen;
  long long v = 0;
  uint64_t s = 0;

  /* member- <id> _ <16 hex> - <10 digits> */
  if (n < plen + 1 + 1 + 16 + 1 + 10 || strncmp(name, PREFIX, plen) != 0)
    return -1;
  seq = name + n - 10;
  tag = seq - 1 - 16;
  if (seq[-1] != '-' || tag[-1] != '_') return -1;
  for (int i = 0; i < 10; i++) {
    if (seq[i] < '0' || seq[i] > '9') return -1;
    v = v * 10 + (seq[i] - '0');
  }
  for (int i = 0; i < 16; i++) {
    char c = tag[i];
    s <<= 4;
    if (c >= '0' && c <= '9') s |= (uint64_t)(c - '0');
    else if (c >= 'a' && c <= 'f') s |= (uint64_t)(c - 'a' + 10);
    else return -1;
  }
  idlen = (size_t)(tag - 1 - (name + plen));
  if (idlen == 0 || idlen > DSP_ID_MAX) return -1;
  memcpy(m->id, name + plen, idlen);
  m->id[idlen] = '\0';
  if (!dsp_id_valid(m->id)) return -1;
  m->session = (int64_t)s;
  m->seq = v;
  return 0;
}

static void start_list(dsp_election *el, acts *a) {
  el->state = DSP_EL_LISTING;
  emit(a, DSP_ACT_LIST, ++el->op, NULL, 0);
}

static void retry_later(dsp_election *el, acts *a) {
  /* Nothing is pending while we pause; RETRY echoes this op. */
  el->state = DSP_EL_LISTING;
  emit(a, DSP_ACT_RETRY_LATER, ++el->op, NULL, 0);
}

/* Withdraw any claim on the leader znode (the glue deletes it only if it is
   still ours, and reports back with this claim's number). */
static void unpublish(dsp_election *el, acts *a) {
  if (el->may_own_leader) emit(a, DSP_ACT_UNPUBLISH, el->claim, NULL, el->epoch);
}

/* Leave leadership (or a claim on it) while still connected. */
static void step_down(dsp_election *el, acts *a) {
  if (el->state == DSP_EL_LEADER) emit(a, DSP_ACT_DEPOSED, 0, NULL, el->epoch);
  unpublish(el, a);
  el->epoch = 0;
}

static void claim(dsp_election *el, dsp_el_action_type t, acts *a) {
  el->claim++;
  el->may_own_leader = 1;
  emit(a, t, ++el->op, NULL, el->epoch);
}

/* The decision after listing the election folder. */
static void decide(dsp_election *el, const dsp_el_event *ev, acts *a) {
  dsp_el_member own = {{0}, 0, -1}, m;
  const char *own_name = NULL, *dup = NULL, *pred = NULL, *stale = NULL;
  long long dup_seq = 0, pred_seq = -1;

  for (size_t i = 0; i < ev->nchildren; i++) {
    if (dsp_el_parse_name(ev->children[i], &m) != 0) continue;
    if (strcmp(ev->children[i], el->foreign) == 0) continue; /* not really ours */
    if (m.session == el->session && strcmp(m.id, el->id) == 0 &&
        (own_name == NULL || m.seq < own.seq)) {
      own = m;
      own_name = ev->children[i];
    }
  }
  /* Adopt our znode (a create whose reply was lost), or notice it is gone. */
  if (own_name != NULL) set_str(el->own, own_name);
  else el->own[0] = '\0';

  for (size_t i = 0; i < ev->nchildren; i++) {
    const char *name = ev->children[i];
    if (dsp_el_parse_name(name, &m) != 0 || name == own_name) continue;
    if (strcmp(name, el->foreign) == 0) continue;
    if (strcmp(m.id, el->id) == 0 && m.session != el->session) {
      if (m.session == el->prev_session) {
        /* Ours, from the session we gave up: it can only mislead. */
        if (stale == NULL) stale = name;
        continue;
      }
      if ((own_name == NULL || m.seq < own.seq) && (dup == NULL || m.seq < dup_seq)) {
        dup = name;
        dup_seq = m.seq;
      }
      continue;
    }
    if (own_name != NULL && m.seq < own.seq && m.seq > pred_seq) {
      pred = name;
      pred_seq = m.seq;
    }
  }
  if (stale != NULL) emit(a, DSP_ACT_DELETE, 0, stale, 0);
  /* Not about to lead: a leader znode we may still hold must go. */
  if (own_name == NULL || pred != NULL || dup != NULL) unpublish(el, a);

  if (dup != NULL) {
    /* Another live session holds our id and was there first: yield. */
    if (own_name != NULL) emit(a, DSP_ACT_DELETE, 0, own_name, 0);
    el->own[0] = '\0';
    el->state = DSP_EL_YIELDING;
    set_str(el->watched, dup);
    emit(a, DSP_ACT_WATCH, ++el->op, el->watched, 0);
    emit(a, DSP_ACT_YIELD, 0, el->watched, 0);
    return;
  }
  if (own_name == NULL) {
    el->state = DSP_EL_CREATING;
    emit(a, DSP_ACT_CREATE, ++el->op, el->prefix, 0);
    return;
  }
  if (pred == NULL) {
    el->state = DSP_EL_VERIFYING;
    emit(a, DSP_ACT_STAT_OWN, ++el->op, el->own, 0);
    return;
  }
  el->state = DSP_EL_WATCHING;
  set_str(el->watched, pred);
  emit(a, DSP_ACT_WATCH, ++el->op, el->watched, 0);
}

static void publish(dsp_election *el, acts *a) {
  el->state = DSP_EL_PUBLISHING;
  claim(el, DSP_ACT_PUBLISH, a);
}

/* An op result for the op we await. */
static void on_result(dsp_election *el, const dsp_el_event *ev, acts *a) {
  if (ev->rc == DSP_EL_CONNLOSS) return; /* a session event follows */
  if (ev->rc == DSP_EL_ERROR) {
    if (el->state == DSP_EL_LEADER) return; /* keep leading; watch is lost */
    step_down(el, a);
    retry_later(el, a);
    return;
  }
  switch (ev->type) {
    case DSP_EV_CHILDREN:
      if (el->state == DSP_EL_LISTING) decide(el, ev, a);
      break;
    case DSP_EV_CREATED:
      if (el->state != DSP_EL_CREATING) break;
      if (ev->rc != DSP_EL_OK || ev->name == NULL) {
        retry_later(el, a);
        break;
      }
      set_str(el->own, ev->name);
      start_list(el, a); /* decide with the full picture, duplicates too */
      break;
    case DSP_EV_OWN_STAT:
      if (el->state == DSP_EL_LEADER) {
        /* Re-armed watch on our own znode while leading. */
        if (ev->rc == DSP_EL_NONODE || ev->owner != el->session) {
          step_down(el, a);
          el->own[0] = '\0';
          start_list(el, a);
        }
        break;
      }
      if (el->state != DSP_EL_VERIFYING) break;
      if (ev->rc == DSP_EL_NONODE) {
        el->own[0] = '\0';
        start_list(el, a);
        break;
      }
      if (ev->owner != el->session) {
        /* Named like ours but owned by another (written by hand): never
           lead on it, ignore it from now on, and pause before going on. */
        set_str(el->foreign, el->own);
        el->own[0] = '\0';
        retry_later(el, a);
        break;
      }
      el->epoch = ev->czxid;
      publish(el, a);
      break;
    case DSP_EV_PUBLISHED:
      if (el->state == DSP_EL_PUBLISHING) {
        if (ev->rc == DSP_EL_EXISTS) {
          el->state = DSP_EL_LEADER_WAIT;
          emit(a, DSP_ACT_STAT_LEADER, ++el->op, NULL, 0);
          break;
        }
        if (ev->rc != DSP_EL_OK) {
          retry_later(el, a);
          break;
        }
        el->state = DSP_EL_LEADER;
        emit(a, DSP_ACT_ELECTED, 0, NULL, el->epoch);
        emit(a, DSP_ACT_STAT_LEADER, ++el->op, NULL, 0);
      } else if (el->state == DSP_EL_LEADER) {
        /* Our republish landed (re-arm the watch) or found a leader znode
           again (look at whose it is). */
        emit(a, DSP_ACT_STAT_LEADER, ++el->op, NULL, 0);
      }
      break;
    case DSP_EV_LEADER_STAT:
      if (el->state == DSP_EL_LEADER) {
        if (ev->rc == DSP_EL_NONODE) {
          claim(el, DSP_ACT_PUBLISH, a);
        } else if (ev->owner != el->session) {
          /* Another session claims leadership: never argue, re-check. */
          step_down(el, a);
          start_list(el, a);
        }
        break;
      }
      if (el->state != DSP_EL_LEADER_WAIT) break;
      if (ev->rc == DSP_EL_NONODE) {
        publish(el, a);
      } else if (ev->owner == el->session) {
        /* Ours already: an earlier create whose reply was lost. */
        el->state = DSP_EL_PUBLISHING;
        claim(el, DSP_ACT_REPUBLISH, a);
      } else if (ev->owner == 0) {
        /* A persistent leader znode is no leader's: written by hand.
           Delete it; its watch brings us back to publish. */
        emit(a, DSP_ACT_CLEAR_JUNK, 0, NULL, 0);
      }
      /* else: another session's; its watch brings us back. */
      break;
    case DSP_EV_WATCH_SET:
      if (el->state == DSP_EL_WATCHING) {
        if (ev->rc == DSP_EL_NONODE) {
          start_list(el, a);
        } else {
          el->state = DSP_EL_FOLLOWER;
          emit(a, DSP_ACT_FOLLOWING, 0, el->watched, 0);
        }
      } else if (el->state == DSP_EL_YIELDING && ev->rc == DSP_EL_NONODE) {
        start_list(el, a);
      }
      break;
    default:
      break;
  }
}

int dsp_election_step(dsp_election *el, const dsp_el_event *ev,
                      dsp_el_action out[DSP_EL_MAX_ACTIONS]) {
  acts a = {out, 0};

  if (el->state == DSP_EL_FAILED) return 0;
  switch (ev->type) {
    case DSP_EV_CONNECTED:
      if (ev->session != el->session) {
        if (el->session != 0) el->prev_session = el->session;
        el->session = ev->session;
        snprintf(el->tag, sizeof(el->tag), "%016" PRIx64, (uint64_t)ev->session);
        snprintf(el->prefix, sizeof(el->prefix), PREFIX "%s_%s-", el->id, el->tag);
        el->own[0] = '\0';
        el->may_own_leader = 0; /* went with the old session */
      }
      /* The client can reconnect without reporting the loss first. */
      if (el->state == DSP_EL_LEADER) emit(&a, DSP_ACT_DEPOSED, 0, NULL, el->epoch);
      el->epoch = 0;
      emit(&a, DSP_ACT_DISARM_EXPIRY, 0, NULL, 0);
      start_list(el, &a);
      break;

    case DSP_EV_DISCONNECTED:
      if (el->state == DSP_EL_DOWN || el->state == DSP_EL_SUSPENDED) break;
      if (el->state == DSP_EL_LEADER) emit(&a, DSP_ACT_DEPOSED, 0, NULL, el->epoch);
      el->state = DSP_EL_SUSPENDED;
      el->op++;
      emit(&a, DSP_ACT_ARM_EXPIRY, 0, NULL, 0);
      break;

    case DSP_EV_EXPIRED:
      if (el->state == DSP_EL_DOWN) break;
      if (el->state == DSP_EL_LEADER) emit(&a, DSP_ACT_DEPOSED, 0, NULL, el->epoch);
      el->state = DSP_EL_DOWN;
      el->op++;
      el->own[0] = '\0';
      el->epoch = 0;
      el->may_own_leader = 0; /* an ephemeral znode dies with its session */
      emit(&a, DSP_ACT_DISARM_EXPIRY, 0, NULL, 0);
      emit(&a, DSP_ACT_NEW_SESSION, 0, NULL, 0);
      break;

    case DSP_EV_CHILDREN:
    case DSP_EV_CREATED:
    case DSP_EV_OWN_STAT:
    case DSP_EV_WATCH_SET:
    case DSP_EV_PUBLISHED:
    case DSP_EV_LEADER_STAT:
      if (ev->op == el->op) on_result(el, ev, &a);
      break;

    case DSP_EV_RETRY:
      if (ev->op == el->op && el->state == DSP_EL_LISTING) start_list(el, &a);
      break;

    case DSP_EV_UNPUBLISHED:
      if (ev->op == el->claim) el->may_own_leader = 0;
      break;

    case DSP_EV_MEMBER_WATCH:
      if (ev->name == NULL) break;
      if ((el->state == DSP_EL_WATCHING || el->state == DSP_EL_FOLLOWER ||
           el->state == DSP_EL_YIELDING) &&
          strcmp(ev->name, el->watched) == 0) {
        start_list(el, &a);
      } else if ((el->state == DSP_EL_LEADER || el->state == DSP_EL_PUBLISHING ||
                  el->state == DSP_EL_LEADER_WAIT || el->state == DSP_EL_VERIFYING) &&
                 strcmp(ev->name, el->own) == 0) {
        if (ev->deleted) {
          /* Our own znode was deleted (by hand): we are no longer in the
             election. Step down first, then rejoin. */
          step_down(el, &a);
          el->own[0] = '\0';
          start_list(el, &a);
        } else if (el->state == DSP_EL_LEADER) {
          emit(&a, DSP_ACT_STAT_OWN, ++el->op, el->own, 0); /* re-arm */
        }
      }
      break;

    case DSP_EV_LEADER_WATCH:
      if (el->state == DSP_EL_LEADER_WAIT) {
        if (ev->deleted) publish(el, &a);
        else emit(&a, DSP_ACT_STAT_LEADER, ++el->op, NULL, 0);
      } else if (el->state == DSP_EL_LEADER) {
        /* Deleted or rewritten by hand: put our record back. */
        claim(el, ev->deleted ? DSP_ACT_PUBLISH : DSP_ACT_REPUBLISH, &a);
      }
      break;

    case DSP_EV_YIELD_TIMEOUT:
      if (el->state == DSP_EL_YIELDING) {
        el->state = DSP_EL_FAILED;
        emit(&a, DSP_ACT_FAIL, 0, el->watched, 0);
      }
      break;
  }
  return a.n;
}

dsp_lease dsp_el_lease_check(uint64_t last_heard_ms, uint64_t now_ms,
                             uint64_t session_timeout_ms) {
  uint64_t silent = now_ms > last_heard_ms ? now_ms - last_heard_ms : 0;
  if (silent >= session_timeout_ms) return DSP_LEASE_EXPIRED;
  if (silent * 3 >= session_timeout_ms * 2) return DSP_LEASE_SUSPECT;
  return DSP_LEASE_OK;
}
