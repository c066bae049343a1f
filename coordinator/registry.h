/*
 * registry.h: the worker registry in ZooKeeper.
 *
 *   /dispatcher/<cluster>/workers/<name>   persistent,
 *       {"addr":"host:port","weight":N,    (weight optional, default 1)
 *        "check":"http://…", …}            (health settings, health.h;
 *                                           other keys are kept and ignored)
 *
 * Admin requests on any member write these znodes; people may too, with
 * zkCli. The coordinator watches the folder and every worker znode and
 * applies each change to its table before its next decision after the change
 * arrives; a new coordinator reads everything when it takes over.
 *
 * Data written by hand is untrusted: a znode whose data is not JSON, lacks
 * "addr", has a bad address, a weight that is 0, negative, over 1000 or
 * not a number, or a bad health setting is logged with its path and that
 * worker is left out of the table (removed, if it was in). A second worker with an address already in
 * the table is left out the same way. Nothing else is affected.
 */
#ifndef DSP_REGISTRY_H
#define DSP_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "balance.h"
#include "health.h"
#include "member.h"
#include "monitor.h"
#include "rpc_server.h"

/* ---- pure: worker znode data --------------------------------------------- */

typedef struct {
  char addr[DSP_BAL_ADDR_MAX + 1];
  int weight;
  dsp_health_settings health; /* the defaults, overridden by the znode */
} dsp_worker_spec;

/*
 * Parse and validate worker znode data; health settings start from
 * `defaults` (NULL: dsp_health_settings_default()). Returns 0 and fills
 * *out, or -1 with the reason in err[errlen] ("not JSON: byte 3: expected
 * '{'", "missing \"addr\"", "weight 0 is out of range 1-1000", "\"fall\" 0
 * is out of range 1-100", "timeout_ms 2000 must be below interval_ms
 * 2000", …).
 */
int dsp_worker_parse(const char *data, size_t len, const dsp_health_settings *defaults,
                     dsp_worker_spec *out, char *err, size_t errlen);

/* 1 if `name` can be a worker name (and so a znode name). */
int dsp_worker_name_valid(const char *name);

/*
 * Rewrite worker data with a new weight, keeping every other key as it was.
 * Returns 0, or -1 if `data` is not valid worker data or out is too small.
 */
int dsp_worker_set_weight_json(const char *data, size_t len, int weight, char *out,
                               size_t outlen);

/* ---- the registry ---------------------------------------------------------- */

typedef struct dsp_registry dsp_registry;

/* One per process. cluster is copied. */
dsp_registry *dsp_registry_new(const char *cluster);
void dsp_registry_free(dsp_registry *r);

/* The member whose session the registry uses (set once, before start). */
void dsp_registry_set_member(dsp_registry *r, dsp_member *m);

/* The health monitor told of every worker that joins, changes or leaves
   the table, and the cluster's default health settings (copied). */
void dsp_registry_set_monitor(dsp_registry *r, dsp_monitor *mon,
                              const dsp_health_settings *defaults);

/*
 * Start keeping `table` in step with ZooKeeper (on becoming coordinator), or
 * stop (table NULL, on stepping down). Answers still in flight for an older
 * start are dropped.
 */
void dsp_registry_follow(dsp_registry *r, dsp_balance *table);

/* 1 once the table holds everything the registry had when follow() began
   (the folder listed and every worker read): a coordinator decides nothing
   before that. */
int dsp_registry_loaded(const dsp_registry *r);

/*
 * Admin requests, answered on c once ZooKeeper has answered. With a nonzero
 * client token, a request is applied at most once per (token, id): a repeat,
 * on this member or another, is answered with success and changes nothing
 * (the record is /dispatcher/<cluster>/requests/<token>-<id>, kept an hour).
 */
void dsp_registry_add(dsp_registry *r, dsp_rpc_conn *c, uint64_t id, uint64_t token,
                      const char *name, const char *addr, unsigned weight, const char *check,
                      unsigned heartbeat_ttl_ms);
void dsp_registry_remove(dsp_registry *r, dsp_rpc_conn *c, uint64_t id, uint64_t token,
                         const char *name);
void dsp_registry_set_weight(dsp_registry *r, dsp_rpc_conn *c, uint64_t id, uint64_t token,
                             const char *name, unsigned weight);

#endif
