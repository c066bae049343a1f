/*
 * monitor.h: the coordinator's health monitor. It keeps one dsp_health
 * (health.h) per worker in the table, feeds it active HTTP probes
 * (probe.h, on the loop), heartbeats and task reports, and marks the
 * worker eligible or not in the table the moment a signal changes, so the
 * very next decision follows.
 *
 * Each active/heartbeat transition is written to ZooKeeper (a write per
 * transition, not per probe):
 *
 *   /dispatcher/<cluster>/health/<name>   persistent,
 *       {"state":"down","since_ms":…,"reason":"…","epoch":…}
 *
 * in a multi that first checks the coordinator's own election znode, so a
 * deposed coordinator's write cannot commit. A new coordinator reads every
 * record before it decides anything: a worker last seen down starts down,
 * one seen up starts up, and both are probed at once. A record older than
 * its worker's znode (its mzxid below the worker's czxid: the worker was
 * deleted and added again) is ignored. See docs/health.md.
 */
#ifndef DSP_MONITOR_H
#define DSP_MONITOR_H

#include <stdint.h>
#include <uv.h>

#include "balance.h"
#include "health.h"
#include "member.h"

typedef struct dsp_monitor dsp_monitor;

/* A monitor on `loop` for `cluster` (copied). Returns NULL when out of
   memory or when curl cannot start. Ends with dsp_monitor_close(). */
dsp_monitor *dsp_monitor_new(uv_loop_t *loop, const char *cluster);

/* The member whose session and fence the records use (set once). */
void dsp_monitor_set_member(dsp_monitor *m, dsp_member *member);

/*
 * Start watching the workers of `table` as coordinator `epoch`: read the
 * records, then probe (table != NULL); or stop everything (table NULL, on
 * stepping down), dropping every probe and timer. Workers arrive through
 * dsp_monitor_added() as the registry adds them.
 */
void dsp_monitor_follow(dsp_monitor *m, dsp_balance *table, int64_t epoch);

/* 1 once every record has been read since follow(table) began. */
int dsp_monitor_loaded(const dsp_monitor *m);

/*
 * The registry's hooks. added(): a worker just added to the table, with
 * its settings and its znode's czxid; it is ineligible until its first
 * passing probe or heartbeat (unless it has neither, or a record says it
 * was up). changed(): new settings for a worker in the table. removed():
 * called before the worker leaves the table; `deleted` when its znode is
 * gone, which deletes its record too.
 */
void dsp_monitor_added(dsp_monitor *m, dsp_worker_id id, const char *name,
                       const dsp_health_settings *s, int64_t czxid);
void dsp_monitor_changed(dsp_monitor *m, dsp_worker_id id, const dsp_health_settings *s);
void dsp_monitor_removed(dsp_monitor *m, dsp_worker_id id, int deleted);

/* A heartbeat for worker id. Returns 0, or -1 if the worker is not in
   heartbeat mode (no heartbeat_ttl_ms). */
int dsp_monitor_heartbeat(dsp_monitor *m, dsp_worker_id id);

/* The outcome of a task (Report): passive ejection, max_fails/fail_timeout. */
void dsp_monitor_report(dsp_monitor *m, dsp_worker_id id, int ok);

/* The worker's health at monotonic `now`, or NULL. What has fallen due by
   now (a heartbeat TTL, a passive ejection's end) is applied first, as its
   timer would: the table's eligibility, the log and the record agree with
   what is returned. Valid until the next call into the monitor or the
   loop. */
const dsp_health *dsp_monitor_health(dsp_monitor *m, dsp_worker_id id, uint64_t now);

/* How long worker id has been in its state, in ms at monotonic `now`: from
   its predecessor's record (wall clock) while the state it gave holds, so
   a failover does not reset it. 0 for an unknown worker. */
uint64_t dsp_monitor_state_age(const dsp_monitor *m, dsp_worker_id id, uint64_t now);

/* Probe failures of worker id by kind (index: dsp_probe_kind, probe.h;
   DSP_MONITOR_KINDS entries). Returns 0, or -1 for an unknown worker. */
#define DSP_MONITOR_KINDS 10
int dsp_monitor_failures(const dsp_monitor *m, dsp_worker_id id,
                         uint64_t out[DSP_MONITOR_KINDS]);

/* Stop everything and close every handle (the loop then runs out of the
   monitor's). ZooKeeper answers may still arrive until the session is
   closed: free the monitor only after that, once the loop has run out. */
void dsp_monitor_close(dsp_monitor *m);
void dsp_monitor_free(dsp_monitor *m);

#endif
