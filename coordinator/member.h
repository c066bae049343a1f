/*
 * member.h: one dispatcherd's membership in the cluster: its ZooKeeper
 * session, its place in the election and what it knows of the leader.
 * The I/O glue around the pure election state machine (election.h).
 *
 * ZooKeeper layout (docs/zookeeper-layout.md):
 *   /dispatcher/<cluster>/election/member-<id>_<session>-<seq>
 *       EPHEMERAL_SEQUENTIAL, {"id":…,"addr":…,"pid":…}
 *   /dispatcher/<cluster>/leader
 *       EPHEMERAL, {"id":…,"addr":…,"epoch":…,"member":…}
 */
#ifndef DSP_MEMBER_H
#define DSP_MEMBER_H

#include <stdint.h>
#include <uv.h>

#include "util.h"

typedef struct dsp_member dsp_member;

typedef struct {
  const char *zk_hosts;       /* ZooKeeper connect string */
  const char *cluster;        /* /dispatcher/<cluster> */
  const char *id;             /* member id (dsp_id_valid) */
  const char *addr;           /* advertised RPC address, host:port */
  int session_timeout_ms;     /* asked of ZooKeeper; it may negotiate */
  /* Called when this member starts (coordinator=1) or stops (0) acting as
     coordinator; may be NULL. It may run inside a ZooKeeper callback: it
     may issue async ZooKeeper calls, but never close the session. */
  void (*on_role)(void *ctx, int coordinator, int64_t epoch);
  /* Called once if the member gives up for good (its id is taken) and has
     stopped itself; the process should close everything else and exit
     with dsp_member_exit_code(). May be NULL. */
  void (*on_fatal)(void *ctx);
  void *ctx;
} dsp_member_config;

/* What a member knows of the leader, from the leader znode. */
typedef struct {
  int known;                  /* 0 while no leader znode is readable */
  char id[DSP_ID_MAX + 1];
  char addr[DSP_ADDR_MAX];
  int64_t epoch;
} dsp_leader_info;

/*
 * Create a member on `loop`; strings in cfg are copied. Returns NULL when
 * out of memory. Nothing happens until dsp_member_start().
 */
dsp_member *dsp_member_new(uv_loop_t *loop, const dsp_member_config *cfg);

/* Open the session and join the election. Returns 0 or a negative errno. */
int dsp_member_start(dsp_member *m);

/*
 * Leave: stop acting as coordinator, close the session (the server deletes
 * our ephemeral znodes at once) and close every handle; the loop then runs
 * out. Safe to call more than once; not from a ZooKeeper callback.
 */
void dsp_member_stop(dsp_member *m);

/* Free after the loop has run out (dsp_member_stop + uv_run). */
void dsp_member_free(dsp_member *m);

/*
 * 1 if this member may act as coordinator right now, with its epoch in
 * *epoch. Checks the lease on the spot (election.h): a process that has just
 * woken from a freeze answers 0 even before its loop has noticed.
 */
int dsp_member_is_coordinator(dsp_member *m, int64_t *epoch);

/*
 * The path of this coordinator's own election znode, for fencing writes: a
 * multi that checks it exists (version -1) commits only while this member
 * still holds its place, i.e. still leads (a deposed member's znode is gone
 * with its session). Returns 0, or -1 when not coordinator or out too small.
 */
int dsp_member_fence_path(dsp_member *m, char *out, size_t len);

/* This member's id. */
const char *dsp_member_id(const dsp_member *m);

/* "coordinator", "follower" or "candidate" (joining, suspended, waiting). */
const char *dsp_member_role(dsp_member *m);

/* The leader as last read from ZooKeeper. */
const dsp_leader_info *dsp_member_leader(const dsp_member *m);

/* The ZooKeeper handle while a session is open, else NULL (for modules that
   keep their own znodes, like the worker registry). */
struct _zhandle;
struct _zhandle *dsp_member_zh(const dsp_member *m);

/* After zoo_a*() calls made outside a ZooKeeper callback: get them sent
   before the loop next blocks. */
void dsp_member_kick(dsp_member *m);

/* Exit status the process should end with: 0, or 1 after a fatal error. */
int dsp_member_exit_code(const dsp_member *m);

#endif
