/*
 * service.h: what a member does with each RPC request (docs/protocol.md).
 *
 * Status is answered by every member itself. Route, Report, Heartbeat and
 * WorkerList need the coordinator's table: the coordinator answers them from its
 * table, stamped with its epoch; any other member forwards them to the
 * coordinator (forwarder.h). Worker admin
 * requests are written to ZooKeeper by whichever member gets them
 * (registry.h); WorkerList is the coordinator's table.
 */
#ifndef DSP_SERVICE_H
#define DSP_SERVICE_H

#include <stdint.h>
#include <uv.h>

#include "balance.h"
#include "forwarder.h"
#include "member.h"
#include "monitor.h"
#include "registry.h"
#include "rpc_server.h"

typedef struct dsp_service dsp_service;

typedef struct {
  const char *cluster, *id, *addr;  /* copied */
  dsp_strategy default_strategy;    /* DSP_STRATEGY_DEFAULT: weighted */
  unsigned max_route_count;         /* largest RouteRequest.count; 0: 1000 */
} dsp_service_config;

/* Returns NULL when out of memory. The member is set later (it needs the
   service's role callback first): see dsp_service_set_member(). */
dsp_service *dsp_service_new(const dsp_service_config *cfg);
void dsp_service_set_member(dsp_service *s, dsp_member *m);
/* The worker registry (admin requests; the coordinator's table follows it). */
void dsp_service_set_registry(dsp_service *s, dsp_registry *r);
/* The health monitor (the coordinator's; it follows the table). */
void dsp_service_set_monitor(dsp_service *s, dsp_monitor *m);
/* The link to the coordinator used while this member follows. */
void dsp_service_set_forwarder(dsp_service *s, dsp_forwarder *f);
void dsp_service_free(dsp_service *s);

/* The member's role callback (dsp_member_config.on_role). */
void dsp_service_on_role(void *svc, int coordinator, int64_t epoch);

/* 1 while this member coordinates with its table loaded (the forwarder's
   ready callback). */
int dsp_service_ready(void *svc);

/* The rpc_server raw callback: a follower forwards the requests that need
   the coordinator without decoding them (rpc_server.h). */
int dsp_service_on_raw(void *svc, dsp_rpc_conn *c, const uint8_t *raw, size_t rawlen);

/* The rpc_server request callback. */
void dsp_service_on_request(void *svc, dsp_rpc_conn *c, const dsp_pb_request *req,
                            const uint8_t *raw, size_t rawlen);


#endif
