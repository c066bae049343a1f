/*
 * election.h: ZooKeeper leader election (the recipe in ZooKeeper's
 * recipes.md) as a pure state machine. It makes no ZooKeeper calls: the
 * caller feeds it events (session changes, results of operations, watches)
 * and carries out the actions it returns. That keeps every decision testable
 * without a server (tests/unit/test_election.c) and keeps the I/O glue
 * (member.c) thin.
 *
 * The recipe, as implemented:
 *  - Each member holds one EPHEMERAL|SEQUENTIAL znode in the election folder,
 *    named "member-<id>_<session>-<seq>": <id> is the member id, <session>
 *    the 16-hex-digit session id (the "guid" that lets a member find its own
 *    znode again after a create whose reply was lost), <seq> the 10-digit
 *    sequence ZooKeeper appends.
 *  - Before creating, and after every (re)connect, the member lists the
 *    folder. Finding its own znode there, it adopts it instead of creating a
 *    second one.
 *  - The lowest <seq> leads. Every other member sets an exists-watch on its
 *    predecessor only, and lists again when that fires: it leads only if its
 *    own znode is now the lowest (no herd effect).
 *  - A would-be leader first stats its own znode: ephemeralOwner must equal
 *    its session, and the znode's czxid becomes its fencing epoch. czxids
 *    grow with every create, and a newer leader always holds a newer znode,
 *    so epochs strictly increase from one coordinator to the next.
 *  - It then creates the EPHEMERAL leader znode; only once that exists does
 *    it act as coordinator. If a /leader of another session is still there,
 *    it waits for that to go.
 *  - A lost connection deposes the coordinator at once. The session is
 *    given up when ZooKeeper says it expired, or when the caller's local
 *    timer (armed by DSP_ACT_ARM_EXPIRY) fires, since ZooKeeper only reports
 *    expiry after a reconnect. A new session means a new znode and a new
 *    epoch.
 *  - A member that may still hold the leader znode (it published one and has
 *    not seen it withdrawn) deletes it, if it is still its own, whenever it
 *    is not about to lead: a former leader can never keep the others out.
 *  - A second member using an id already present yields: it waits (bounded
 *    by the caller's yield timer) for the other znode to go, then fails.
 *
 * Ownership: dsp_election is embedded by the caller; strings in actions
 * point into it and stay valid until the next dsp_election_step().
 */
#ifndef DSP_ELECTION_H
#define DSP_ELECTION_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define DSP_EL_NAME_MAX 128 /* "member-" id "_" 16 hex "-" 10 digits */
#define DSP_EL_MAX_ACTIONS 6

typedef enum {
  DSP_EL_DOWN,        /* no session yet, or waiting for a new one */
  DSP_EL_LISTING,     /* getChildren of the election folder pending */
  DSP_EL_CREATING,    /* create of our member znode pending */
  DSP_EL_VERIFYING,   /* we look lowest: exists(own) pending */
  DSP_EL_PUBLISHING,  /* create (or set) of the leader znode pending */
  DSP_EL_LEADER_WAIT, /* the leader znode belongs to another session */
  DSP_EL_LEADER,      /* coordinator */
  DSP_EL_WATCHING,    /* exists-watch on predecessor pending */
  DSP_EL_FOLLOWER,    /* watching predecessor */
  DSP_EL_YIELDING,    /* our id is held by another session's znode */
  DSP_EL_SUSPENDED,   /* connection lost; the session may still be alive */
  DSP_EL_FAILED       /* gave up (duplicate id) */
} dsp_el_state;

/* Result codes of operations, converted from ZooKeeper's at the edge. */
enum {
  DSP_EL_OK = 0,
  DSP_EL_NONODE = -1,   /* ZNONODE */
  DSP_EL_EXISTS = -2,   /* ZNODEEXISTS */
  DSP_EL_CONNLOSS = -3, /* connection loss, timeout, closing: a session
                           event follows, so the result is ignored */
  DSP_EL_ERROR = -4     /* anything else: retried after a pause */
};

typedef enum {
  DSP_EV_CONNECTED,      /* session: session id (new or resumed) */
  DSP_EV_DISCONNECTED,   /* connection lost, or our lease ran out */
  DSP_EV_EXPIRED,        /* session gone: server said so or local timer */
  DSP_EV_CHILDREN,       /* op result: rc, children[nchildren] */
  DSP_EV_CREATED,        /* op result: rc, name (basename of new znode) */
  DSP_EV_OWN_STAT,       /* op result: rc, owner, czxid */
  DSP_EV_WATCH_SET,      /* op result of exists-watch on predecessor: rc */
  DSP_EV_PUBLISHED,      /* op result of create/set of leader znode: rc */
  DSP_EV_LEADER_STAT,    /* op result of exists-watch on leader znode: rc, owner */
  DSP_EV_MEMBER_WATCH,   /* watch fired on election/<name>: name, deleted */
  DSP_EV_LEADER_WATCH,   /* watch fired on the leader znode: deleted */
  DSP_EV_RETRY,          /* the pause after DSP_EL_ERROR is over */
  DSP_EV_UNPUBLISHED,    /* an UNPUBLISH finished: the leader znode is not
                            ours (deleted, absent, or another's); op echoes
                            the UNPUBLISH's */
  DSP_EV_YIELD_TIMEOUT   /* the yield timer fired */
} dsp_el_event_type;

typedef struct {
  dsp_el_event_type type;
  unsigned op;                   /* op results: the op of the action */
  int rc;                        /* op results: DSP_EL_* */
  int64_t session;               /* CONNECTED */
  int64_t owner;                 /* OWN_STAT, LEADER_STAT: ephemeralOwner */
  int64_t czxid;                 /* OWN_STAT */
  const char *name;              /* CREATED, MEMBER_WATCH */
  int deleted;                   /* MEMBER_WATCH, LEADER_WATCH */
  const char *const *children;   /* CHILDREN */
  size_t nchildren;
} dsp_el_event;

typedef enum {
  DSP_ACT_LIST,          /* getChildren(election)                       -> CHILDREN */
  DSP_ACT_CREATE,        /* create election/<name> EPHEMERAL_SEQUENTIAL -> CREATED */
  DSP_ACT_STAT_OWN,      /* exists(election/<name>) with watch          -> OWN_STAT */
  DSP_ACT_WATCH,         /* exists(election/<name>) with watch          -> WATCH_SET */
  DSP_ACT_PUBLISH,       /* create leader znode EPHEMERAL, data w/ epoch -> PUBLISHED */
  DSP_ACT_REPUBLISH,     /* set leader znode data (it is ours)          -> PUBLISHED */
  DSP_ACT_STAT_LEADER,   /* exists(leader) with watch                   -> LEADER_STAT */
  DSP_ACT_UNPUBLISH,     /* delete leader znode if ours   -> UNPUBLISHED (not on
                            connection loss: it is asked again after) */
  DSP_ACT_CLEAR_JUNK,    /* delete the leader znode if it is persistent
                            (ephemeralOwner 0: written by hand); no event */
  DSP_ACT_DELETE,        /* delete election/<name>; no event */
  DSP_ACT_ELECTED,       /* start acting as coordinator with epoch */
  DSP_ACT_DEPOSED,       /* stop acting as coordinator, at once */
  DSP_ACT_FOLLOWING,     /* informational: now following <name> */
  DSP_ACT_ARM_EXPIRY,    /* start the local session-expiry timer */
  DSP_ACT_DISARM_EXPIRY, /* stop it */
  DSP_ACT_NEW_SESSION,   /* from the loop: close the handle, open a new one */
  DSP_ACT_RETRY_LATER,   /* pause, then deliver DSP_EV_RETRY */
  DSP_ACT_YIELD,         /* start the yield timer: <name> holds our id */
  DSP_ACT_FAIL           /* give up: <name> holds our id */
} dsp_el_action_type;

typedef struct {
  dsp_el_action_type type;
  unsigned op;          /* echo it in the result event */
  const char *name;     /* CREATE: name prefix ("member-<id>_<session>-");
                           STAT_OWN/WATCH/DELETE/FOLLOWING/YIELD/FAIL: znode name */
  int64_t epoch;        /* PUBLISH, REPUBLISH, ELECTED, DEPOSED */
} dsp_el_action;

typedef struct {
  dsp_el_state state;
  char id[DSP_ID_MAX + 1];
  int64_t session;               /* 0 when none */
  int64_t prev_session;          /* the session we gave up last, if any */
  char tag[17];                  /* session id as 16 hex digits */
  char own[DSP_EL_NAME_MAX];     /* our znode, "" when none */
  char watched[DSP_EL_NAME_MAX]; /* predecessor or duplicate we watch */
  char prefix[DSP_EL_NAME_MAX];  /* CREATE prefix, built per session */
  int64_t epoch;                 /* while leading (or publishing) */
  unsigned op;                   /* id of the op whose result we await */
  unsigned claim;                /* bumped by every PUBLISH/REPUBLISH */
  int may_own_leader;            /* a claim not yet withdrawn */
  char foreign[DSP_EL_NAME_MAX]; /* named like ours, owned by another */
} dsp_election;

/* A parsed member znode name. */
typedef struct {
  char id[DSP_ID_MAX + 1];
  int64_t session;
  long long seq;
} dsp_el_member;

/* Initialise for member `id` (must satisfy dsp_id_valid). State DOWN. */
void dsp_election_init(dsp_election *el, const char *id);

/*
 * Feed one event; fill out[] with up to DSP_EL_MAX_ACTIONS actions, in the
 * order to carry them out, and return their count. Stale events (results of
 * superseded ops, watches on znodes we no longer care about) yield none.
 */
int dsp_election_step(dsp_election *el, const dsp_el_event *ev,
                      dsp_el_action out[DSP_EL_MAX_ACTIONS]);

/* 1 while we act as coordinator. */
int dsp_election_is_leader(const dsp_election *el);

/*
 * Parse "member-<id>_<16 hex>-<10 digits>". Returns 0, or -1 when the name
 * is not one of ours (e.g. written by hand): such znodes are ignored.
 */
int dsp_el_parse_name(const char *name, dsp_el_member *m);

const char *dsp_el_state_name(dsp_el_state s);

/*
 * Lease check for a coordinator. The ZooKeeper client gives up on a
 * connection that has been silent for 2/3 of the session timeout, and the
 * server expires a session silent for the whole timeout. A process that was
 * frozen (SIGSTOP, a long GC-like stall) wakes up with stale beliefs, so the
 * caller checks, before acting and on every loop turn, how long ago it last
 * heard from the server:
 *   DSP_LEASE_OK       silence < 2/3 timeout
 *   DSP_LEASE_SUSPECT  silence >= 2/3 timeout: treat as disconnected
 *   DSP_LEASE_EXPIRED  silence >= timeout: the session is certainly gone
 */
typedef enum { DSP_LEASE_OK, DSP_LEASE_SUSPECT, DSP_LEASE_EXPIRED } dsp_lease;
dsp_lease dsp_el_lease_check(uint64_t last_heard_ms, uint64_t now_ms,
                             uint64_t session_timeout_ms);

#endif
