/*
 * service.c: see service.h.
 */
#include "service.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include "dedupe.h"
#include "frame.h"
#include "json.h"
#include "log.h"
#include "probe.h"

#define MAX_ROUTE_COUNT 1000
#define REPORTS_REMEMBERED 65536 /* repeats recognised among the last N */

struct dsp_service {
  dsp_member *member;
  dsp_registry *registry;
  dsp_monitor *monitor;
  dsp_forwarder *forwarder;
  dsp_dedupe *reports;     /* (client_token, id) of Reports applied */
  /* Route replies are built here, reused from request to request. */
  Dispatcher__V1__Decision *dec;
  Dispatcher__V1__Decision **decp;
  unsigned dec_cap;
  dsp_balance *table;      /* while coordinator */
  int64_t epoch;           /* while coordinator */
  dsp_strategy default_strategy;
  unsigned max_count;
  char cluster[128], id[DSP_ID_MAX + 1], addr[DSP_ADDR_MAX];
};

dsp_service *dsp_service_new(const dsp_service_config *cfg) {
  dsp_service *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  snprintf(s->cluster, sizeof(s->cluster), "%s", cfg->cluster);
  snprintf(s->id, sizeof(s->id), "%s", cfg->id);
  snprintf(s->addr, sizeof(s->addr), "%s", cfg->addr);
  s->default_strategy = cfg->default_strategy; /* DEFAULT: the table's (weighted) */
  s->max_count = cfg->max_route_count ? cfg->max_route_count : MAX_ROUTE_COUNT;
  s->reports = dsp_dedupe_new(REPORTS_REMEMBERED);
  if (s->reports == NULL) {
    free(s);
    return NULL;
  }
  return s;
}

void dsp_service_set_member(dsp_service *s, dsp_member *m) { s->member = m; }

void dsp_service_set_registry(dsp_service *s, dsp_registry *r) { s->registry = r; }

void dsp_service_set_forwarder(dsp_service *s, dsp_forwarder *f) { s->forwarder = f; }

void dsp_service_set_monitor(dsp_service *s, dsp_monitor *m) { s->monitor = m; }

void dsp_service_free(dsp_service *s) {
  if (s == NULL) return;
  dsp_balance_free(s->table);
  dsp_dedupe_free(s->reports);
  free(s->dec);
  free(s->decp);
  free(s);
}

/* Seed for random and p2c: different on every coordinator. */
static uint64_t random_seed(void) {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
    seed = (uint64_t)time(NULL) * 6364136223846793005ULL ^ (uint64_t)getpid();
  return seed;
}

static void set_role(dsp_service *s, int coordinator, int64_t epoch) {
  /* A new coordinator starts from a new table: cycles and in-flight counts
     do not survive a failover (docs/strategies.md). */
  if (s->registry) dsp_registry_follow(s->registry, NULL);
  if (s->monitor) dsp_monitor_follow(s->monitor, NULL, 0);
  dsp_balance_free(s->table);
  s->table = NULL;
  s->epoch = 0;
  if (!coordinator) return;
  s->table = dsp_balance_new();
  if (s->table == NULL) {
    DSP_ERROR("out of memory building the worker table");
    return;
  }
  if (s->default_strategy != DSP_STRATEGY_DEFAULT)
    dsp_balance_set_default(s->table, s->default_strategy);
  dsp_balance_seed(s->table, random_seed());
  s->epoch = epoch;
  /* Health records first: workers the registry adds find them. */
  if (s->monitor) dsp_monitor_follow(s->monitor, s->table, epoch);
  if (s->registry) dsp_registry_follow(s->registry, s->table);
}

void dsp_service_on_role(void *svc, int coordinator, int64_t epoch) {
  dsp_service *s = svc;
  set_role(s, coordinator, epoch);
  /* Held requests move along: answered here now, or sent to the next
     coordinator. */
  if (s->forwarder) dsp_forwarder_poke(s->forwarder);
}

/* 1 if we may answer from the table now: coordinator (lease checked on the
   spot) with the registry loaded. A coordinator whose table is still
   loading holds requests (forwarder.h) rather than answer from a partial
   table. */
static int coordinating(dsp_service *s, int64_t *epoch) {
  return s->table != NULL && s->member != NULL && dsp_member_is_coordinator(s->member, epoch) &&
         (s->registry == NULL || dsp_registry_loaded(s->registry)) &&
         (s->monitor == NULL || dsp_monitor_loaded(s->monitor));
}

int dsp_service_ready(void *svc) { return coordinating(svc, NULL); }

static void not_coordinator(dsp_service *s, dsp_rpc_conn *c, uint64_t id) {
  const dsp_leader_info *l = s->member ? dsp_member_leader(s->member) : NULL;
  char msg[512];
  if (l != NULL && l->known && strcmp(l->id, s->id) != 0) {
    snprintf(msg, sizeof(msg), "%s is not the coordinator; the coordinator is %s at %s (epoch %" PRId64 ")",
             s->id, l->id, l->addr, l->epoch);
    dsp_rpc_reply_error(c, id, 0, DSP_PB(ERROR_CODE__NOT_COORDINATOR), msg);
  } else {
    snprintf(msg, sizeof(msg), "%s is not the coordinator and knows of none", s->id);
    dsp_rpc_reply_error(c, id, 0, DSP_PB(ERROR_CODE__NO_COORDINATOR), msg);
  }
}

static int bal_code(int rc) {
  switch (rc) {
    case DSP_BAL_ENOWORKER: return DSP_PB(ERROR_CODE__NO_ELIGIBLE_WORKER);
    case DSP_BAL_ESTRATEGY: return DSP_PB(ERROR_CODE__UNKNOWN_STRATEGY);
    case DSP_BAL_ENOKEY: return DSP_PB(ERROR_CODE__KEY_REQUIRED);
    case DSP_BAL_ENOENT: return DSP_PB(ERROR_CODE__UNKNOWN_WORKER);
    default: return DSP_PB(ERROR_CODE__INTERNAL);
  }
}

static void route(dsp_service *s, dsp_rpc_conn *c, const dsp_pb_request *req, int64_t epoch) {
  const Dispatcher__V1__RouteRequest *rr = req->route;
  dsp_pb_response r = DISPATCHER__V1__RESPONSE__INIT;
  Dispatcher__V1__RouteReply reply = DISPATCHER__V1__ROUTE_REPLY__INIT;
  Dispatcher__V1__Decision *dec, **decp;
  unsigned count = rr->count ? rr->count : 1;
  int strategy = DSP_STRATEGY_DEFAULT, rc = 0;
  const void *key = rr->key.len > 0 ? rr->key.data : NULL;
  char msg[160];

  if (rr->strategy != NULL && rr->strategy[0] != '\0') {
    strategy = dsp_strategy_parse(rr->strategy);
    if (strategy < 0) {
      snprintf(msg, sizeof(msg), "unknown strategy '%.64s'", rr->strategy);
      dsp_rpc_reply_error(c, req->id, epoch, DSP_PB(ERROR_CODE__UNKNOWN_STRATEGY), msg);
      return;
    }
  }
  if (count > s->max_count) {
    snprintf(msg, sizeof(msg), "count %u is over the limit of %u", count, s->max_count);
    dsp_rpc_reply_error(c, req->id, epoch, DSP_PB(ERROR_CODE__BAD_REQUEST), msg);
    return;
  }
  if (count > s->dec_cap) {
    Dispatcher__V1__Decision *nd = realloc(s->dec, count * sizeof(*nd));
    Dispatcher__V1__Decision **np = nd ? realloc(s->decp, count * sizeof(*np)) : NULL;
    if (nd) s->dec = nd;
    if (np == NULL) {
      dsp_rpc_reply_error(c, req->id, epoch, DSP_PB(ERROR_CODE__BUSY), "out of memory");
      return;
    }
    s->decp = np;
    s->dec_cap = count;
  }
  dec = s->dec;
  decp = s->decp;
  for (unsigned i = 0; i < count; i++) {
    dsp_worker_id w;
    rc = dsp_balance_pick(s->table, (dsp_strategy)strategy, key, rr->key.len, &w);
    if (rc != 0) {
      /* Undo the picks already counted in flight: nobody will report them. */
      for (unsigned j = 0; j < i; j++) {
        dsp_worker_id u;
        if (dsp_balance_find(s->table, dec[j].worker, &u) == 0)
          dsp_balance_report(s->table, u, 1, -1);
      }
      break;
    }
    dispatcher__v1__decision__init(&dec[i]);
    dec[i].worker = (char *)dsp_balance_worker_name(s->table, w);
    dec[i].addr = (char *)dsp_balance_worker_addr(s->table, w);
    decp[i] = &dec[i];
  }
  if (rc != 0) {
    dsp_rpc_reply_error(c, req->id, epoch, bal_code(rc), dsp_balance_strerror(rc));
  } else {
    reply.n_decisions = count;
    reply.decisions = decp;
    r.id = req->id;
    r.epoch = epoch;
    r.body_case = DSP_PB(RESPONSE__BODY_ROUTE);
    r.route = &reply;
    dsp_rpc_reply(c, &r);
  }
}

static void report(dsp_service *s, dsp_rpc_conn *c, const dsp_pb_request *req, int64_t epoch) {
  const Dispatcher__V1__ReportRequest *rq = req->report;
  dsp_pb_response r = DISPATCHER__V1__RESPONSE__INIT;
  Dispatcher__V1__ReportReply reply = DISPATCHER__V1__REPORT_REPLY__INIT;
  dsp_worker_id w;
  char msg[320];
  if (rq->worker == NULL || dsp_balance_find(s->table, rq->worker, &w) != 0) {
    snprintf(msg, sizeof(msg), "no worker named '%.255s'", rq->worker ? rq->worker : "");
    dsp_rpc_reply_error(c, req->id, epoch, DSP_PB(ERROR_CODE__UNKNOWN_WORKER), msg);
    return;
  }
  /* A repeat (same client token and id) is answered, not applied again. */
  if (req->client_token == 0 ||
      !dsp_dedupe_seen(s->reports, req->client_token, req->origin_id ? req->origin_id : req->id)) {
    dsp_balance_report(s->table, w, rq->ok, (double)rq->latency_us);
    if (s->monitor) dsp_monitor_report(s->monitor, w, rq->ok);
  }
  r.id = req->id;
  r.epoch = epoch;
  r.body_case = DSP_PB(RESPONSE__BODY_REPORT);
  r.report = &reply;
  dsp_rpc_reply(c, &r);
}

static void heartbeat(dsp_service *s, dsp_rpc_conn *c, const dsp_pb_request *req,
                      int64_t epoch) {
  const char *name = req->heartbeat->name ? req->heartbeat->name : "";
  dsp_pb_response r = DISPATCHER__V1__RESPONSE__INIT;
  Dispatcher__V1__HeartbeatReply reply = DISPATCHER__V1__HEARTBEAT_REPLY__INIT;
  dsp_worker_id w;
  char msg[400];
  if (dsp_balance_find(s->table, name, &w) != 0) {
    snprintf(msg, sizeof(msg), "no worker named '%.255s'", name);
    dsp_rpc_reply_error(c, req->id, epoch, DSP_PB(ERROR_CODE__UNKNOWN_WORKER), msg);
    return;
  }
  if (s->monitor == NULL || dsp_monitor_heartbeat(s->monitor, w) != 0) {
    snprintf(msg, sizeof(msg),
             "worker %.255s is not in heartbeat mode (its znode has no heartbeat_ttl_ms)", name);
    dsp_rpc_reply_error(c, req->id, epoch, DSP_PB(ERROR_CODE__BAD_REQUEST), msg);
    return;
  }
  r.id = req->id;
  r.epoch = epoch;
  r.body_case = DSP_PB(RESPONSE__BODY_HEARTBEAT);
  r.heartbeat = &reply;
  dsp_rpc_reply(c, &r);
}

/* The table as WorkerInfo messages; *wi and *wip are malloc'd (free both).
   Returns the count (0 when out of memory). */
/* Probe failure counts by kind, for n workers: the storage behind
   WorkerInfo.failures, freed in one go after the reply is sent. */
typedef struct {
  Dispatcher__V1__FailureCount fc[DSP_MONITOR_KINDS];
  Dispatcher__V1__FailureCount *fcp[DSP_MONITOR_KINDS];
} failure_counts;

static size_t worker_infos(dsp_balance *t, dsp_monitor *mon,
                           Dispatcher__V1__WorkerInfo **wi_out,
                           Dispatcher__V1__WorkerInfo ***wip_out) {
  uint64_t now = dsp_now_ms();
  size_t n = dsp_balance_count(t);
  /* One block: the infos, then their pointers, then the failure counts. */
  size_t sz = (n ? n : 1) * (sizeof(Dispatcher__V1__WorkerInfo) +
                             sizeof(Dispatcher__V1__WorkerInfo *) + sizeof(failure_counts));
  Dispatcher__V1__WorkerInfo *wi = calloc(1, sz);
  Dispatcher__V1__WorkerInfo **wip = wi ? (Dispatcher__V1__WorkerInfo **)(wi + (n ? n : 1)) : NULL;
  failure_counts *fcs = wip ? (failure_counts *)(wip + (n ? n : 1)) : NULL;
  *wi_out = wi;
  *wip_out = NULL; /* part of wi's block */
  if (wi == NULL) return 0;
  for (size_t i = 0; i < n; i++) {
    dsp_worker_id w;
    const dsp_health *h;
    double lat;
    dispatcher__v1__worker_info__init(&wi[i]);
    wip[i] = &wi[i];
    if (dsp_balance_at(t, i, &w) != 0) continue;
    /* First: it applies what fell due, so eligibility below agrees. */
    h = mon != NULL ? dsp_monitor_health(mon, w, now) : NULL;
    wi[i].name = (char *)dsp_balance_worker_name(t, w);
    wi[i].addr = (char *)dsp_balance_worker_addr(t, w);
    wi[i].weight = (uint32_t)dsp_balance_worker_weight(t, w);
    wi[i].eligible = dsp_balance_worker_eligible(t, w) == 1;
    wi[i].inflight = (uint64_t)dsp_balance_worker_inflight(t, w);
    lat = dsp_balance_worker_latency(t, w);
    wi[i].latency_ms = lat < 0 ? 0 : lat / 1000.0;
    wi[i].state = wi[i].eligible ? "up" : "down";
    wi[i].heartbeat_age_ms = -1;
    if (h != NULL) {
      wi[i].state = (char *)dsp_health_state_name(dsp_health_state_of(h, now));
      wi[i].reason = (char *)h->reason;
      wi[i].state_ms = dsp_monitor_state_age(mon, w, now);
      wi[i].check = (char *)h->settings.check;
      wi[i].consecutive_ok = h->consec_ok;
      wi[i].consecutive_fail = h->consec_fail;
      wi[i].probe_ms = (double)h->last_latency_us / 1000.0;
      wi[i].last_error = (char *)h->last_error;
      wi[i].heartbeat_ttl_ms = h->settings.heartbeat_ttl_ms;
      if (h->heartbeat_seen)
        wi[i].heartbeat_age_ms =
            now > h->last_heartbeat_ms ? (int64_t)(now - h->last_heartbeat_ms) : 0;
      wi[i].ejected = h->ejected != 0;
      wi[i].probes = h->probes;
      wi[i].probe_failures = h->probe_failures;
      wi[i].last_probe_local = h->last_inconclusive != 0;
      {
        uint64_t by_kind[DSP_MONITOR_KINDS];
        size_t k = 0;
        if (dsp_monitor_failures(mon, w, by_kind) == 0) {
          for (int kind = 1; kind < DSP_MONITOR_KINDS; kind++) {
            if (by_kind[kind] == 0) continue;
            dispatcher__v1__failure_count__init(&fcs[i].fc[k]);
            fcs[i].fc[k].kind = (char *)dsp_probe_kind_name(kind);
            fcs[i].fc[k].count = by_kind[kind];
            fcs[i].fcp[k] = &fcs[i].fc[k];
            k++;
          }
        }
        wi[i].n_failures = k;
        wi[i].failures = fcs[i].fcp;
      }
    }
  }
  *wip_out = wip;
  return n;
}

static void worker_list(dsp_service *s, dsp_rpc_conn *c, const dsp_pb_request *req,
                        int64_t epoch) {
  dsp_pb_response r = DISPATCHER__V1__RESPONSE__INIT;
  Dispatcher__V1__WorkerListReply wl = DISPATCHER__V1__WORKER_LIST_REPLY__INIT;
  Dispatcher__V1__WorkerInfo *wi, **wip;
  wl.n_workers = worker_infos(s->table, s->monitor, &wi, &wip);
  wl.workers = wip;
  r.id = req->id;
  r.epoch = epoch;
  r.body_case = DSP_PB(RESPONSE__BODY_WORKER_LIST);
  r.worker_list = &wl;
  dsp_rpc_reply(c, &r);
  free(wi);
}

/* ---- Status ----------------------------------------------------------------
 * Answered by this member from what it knows, plus the members: read from
 * the election folder when asked (Status is rare; members are ordered by
 * their election sequence, the coordinator first). */

#define STATUS_MEMBERS_MAX 64

typedef struct {
  dsp_service *s;
  dsp_rpc_conn *conn;
  uint64_t id;
  unsigned pending;
  size_t n;
  Dispatcher__V1__MemberInfo mi[STATUS_MEMBERS_MAX];
  Dispatcher__V1__MemberInfo *mip[STATUS_MEMBERS_MAX];
  char ids[STATUS_MEMBERS_MAX][DSP_ID_MAX + 1];
  char addrs[STATUS_MEMBERS_MAX][DSP_ADDR_MAX];
  char znodes[STATUS_MEMBERS_MAX][160];
} status_ctx;

static void status_reply(status_ctx *x) {
  dsp_service *s = x->s;
  dsp_pb_response r = DISPATCHER__V1__RESPONSE__INIT;
  Dispatcher__V1__StatusReply st = DISPATCHER__V1__STATUS_REPLY__INIT;
  const dsp_leader_info *l = dsp_member_leader(s->member);
  Dispatcher__V1__WorkerInfo *wi = NULL, **wip = NULL;
  int64_t epoch = 0;
  size_t k = 0;

  st.id = s->id;
  st.addr = s->addr;
  st.cluster = s->cluster;
  st.role = (char *)dsp_member_role(s->member);
  if (coordinating(s, &epoch)) {
    st.epoch = epoch;
    st.n_workers = worker_infos(s->table, s->monitor, &wi, &wip);
    st.workers = wip;
  }
  if (l->known) {
    st.leader_id = (char *)l->id;
    st.leader_addr = (char *)l->addr;
    st.leader_epoch = l->epoch;
  }
  for (size_t i = 0; i < x->n; i++)
    if (x->mi[i].id != NULL) x->mip[k++] = &x->mi[i];
  st.n_members = k;
  st.members = x->mip;
  r.id = x->id;
  r.body_case = DSP_PB(RESPONSE__BODY_STATUS);
  r.status = &st;
  dsp_rpc_reply(x->conn, &r);
  free(wi);
  dsp_rpc_conn_unref(x->conn);
  free(x);
}

typedef struct {
  status_ctx *x;
  size_t i;
} member_read;

static int member_field(const dsp_json_member *m, void *vctx) {
  member_read *mr = vctx;
  status_ctx *x = mr->x;
  if (m->type != DSP_JSON_STRING) return 0;
  if (strcmp(m->key, "id") == 0 && dsp_id_valid(m->str))
    snprintf(x->ids[mr->i], sizeof(x->ids[0]), "%s", m->str);
  else if (strcmp(m->key, "addr") == 0 && m->str_len < DSP_ADDR_MAX)
    snprintf(x->addrs[mr->i], sizeof(x->addrs[0]), "%s", m->str);
  return 0;
}

static void member_data_done(int rc, const char *value, int len, const struct Stat *st,
                             const void *d) {
  member_read *mr = (member_read *)d;
  status_ctx *x = mr->x;
  char err[128];
  (void)st;
  /* A znode that is gone or not ours is left out. */
  if (rc == ZOK && value != NULL && len > 0 &&
      dsp_json_parse(value, (size_t)len, member_field, mr, err, sizeof(err)) == 0 &&
      x->ids[mr->i][0] != '\0') {
    Dispatcher__V1__MemberInfo *mi = &x->mi[mr->i];
    mi->id = x->ids[mr->i];
    mi->addr = x->addrs[mr->i];
    mi->znode = x->znodes[mr->i];
  }
  free(mr);
  if (--x->pending == 0) status_reply(x);
}

/* Election znodes end in "-<10-digit sequence>": order by it. */
static int cmp_seq(const void *a, const void *b) {
  const char *x = *(char *const *)a, *y = *(char *const *)b;
  const char *dx = strrchr(x, '-'), *dy = strrchr(y, '-');
  int c = strcmp(dx ? dx : x, dy ? dy : y);
  return c ? c : strcmp(x, y);
}

static void members_done(int rc, const struct String_vector *sv, const void *d) {
  status_ctx *x = (status_ctx *)d;
  zhandle_t *zh = dsp_member_zh(x->s->member);
  char path[512];
  if (rc != ZOK || sv == NULL || zh == NULL || sv->count == 0) {
    status_reply(x);
    return;
  }
  qsort(sv->data, (size_t)sv->count, sizeof(sv->data[0]), cmp_seq);
  x->pending = 1; /* held until every read is sent */
  for (int i = 0; i < sv->count && x->n < STATUS_MEMBERS_MAX; i++) {
    member_read *mr;
    if (strncmp(sv->data[i], "member-", 7) != 0 || strlen(sv->data[i]) >= sizeof(x->znodes[0]))
      continue;
    mr = malloc(sizeof(*mr));
    if (mr == NULL) break;
    mr->x = x;
    mr->i = x->n++;
    snprintf(x->znodes[mr->i], sizeof(x->znodes[0]), "%s", sv->data[i]);
    snprintf(path, sizeof(path), "/dispatcher/%s/election/%s", x->s->cluster, sv->data[i]);
    x->pending++;
    if (zoo_aget(zh, path, 0, member_data_done, mr) != ZOK) {
      x->pending--;
      free(mr);
    }
  }
  if (--x->pending == 0) status_reply(x);
}

static void status(dsp_service *s, dsp_rpc_conn *c, const dsp_pb_request *req) {
  status_ctx *x = calloc(1, sizeof(*x));
  zhandle_t *zh = dsp_member_zh(s->member);
  char path[256];
  if (x == NULL) {
    dsp_rpc_reply_error(c, req->id, 0, DSP_PB(ERROR_CODE__BUSY), "out of memory");
    return;
  }
  x->s = s;
  x->conn = c;
  x->id = req->id;
  dsp_rpc_conn_ref(c);
  for (size_t i = 0; i < STATUS_MEMBERS_MAX; i++) dispatcher__v1__member_info__init(&x->mi[i]);
  snprintf(path, sizeof(path), "/dispatcher/%s/election", s->cluster);
  if (zh == NULL || zoo_aget_children(zh, path, 0, members_done, x) != ZOK) {
    status_reply(x); /* no session: what this member knows by itself */
    return;
  }
  dsp_member_kick(s->member);
}

int dsp_service_on_raw(void *svc, dsp_rpc_conn *c, const uint8_t *raw, size_t rawlen) {
  dsp_service *s = svc;
  dsp_pb_envelope env;
  /* A follower (no table: it cannot be coordinating) forwards route,
     report, worker_list and heartbeat as they came; only their envelope is
     read (frame.h). A coordinator decodes everything anyway, so it skips
     the scan; so does anything the scan does not vouch for. */
  if (s->forwarder == NULL || s->table != NULL || dsp_pb_peek(raw, rawlen, &env) != 0 ||
      env.origin_id != 0)
    return 0;
  if (env.body != DSP_PB(REQUEST__BODY_ROUTE) && env.body != DSP_PB(REQUEST__BODY_REPORT) &&
      env.body != DSP_PB(REQUEST__BODY_WORKER_LIST) && env.body != DSP_PB(REQUEST__BODY_HEARTBEAT))
    return 0;
  dsp_forwarder_submit(s->forwarder, c, &env, env.id, raw, rawlen);
  return 1;
}

void dsp_service_on_request(void *svc, dsp_rpc_conn *c, const dsp_pb_request *req,
                            const uint8_t *raw, size_t rawlen) {
  dsp_service *s = svc;
  int64_t epoch = 0;
  switch (req->body_case) {
    case DSP_PB(REQUEST__BODY_STATUS):
      status(s, c, req);
      return;
    case DSP_PB(REQUEST__BODY_ROUTE):
    case DSP_PB(REQUEST__BODY_REPORT):
    case DSP_PB(REQUEST__BODY_WORKER_LIST):
    case DSP_PB(REQUEST__BODY_HEARTBEAT):
      if (!coordinating(s, &epoch)) {
        if (req->origin_id != 0) {
          /* Forwarded to us by a member that thinks we coordinate: never
             forward it on (two stale views would bounce it between them).
             NOT_COORDINATOR makes that member send it again once the
             leader znode names the coordinator. */
          dsp_rpc_reply_error(c, req->id, 0, DSP_PB(ERROR_CODE__NOT_COORDINATOR),
                              "not the coordinator (forwarded request)");
        } else if (s->forwarder) {
          dsp_forwarder_submit(s->forwarder, c, NULL, req->id, raw, rawlen);
        } else {
          not_coordinator(s, c, req->id);
        }
      } else if (req->body_case == DSP_PB(REQUEST__BODY_ROUTE)) {
        route(s, c, req, epoch);
      } else if (req->body_case == DSP_PB(REQUEST__BODY_REPORT)) {
        report(s, c, req, epoch);
      } else if (req->body_case == DSP_PB(REQUEST__BODY_HEARTBEAT)) {
        heartbeat(s, c, req, epoch);
      } else {
        worker_list(s, c, req, epoch);
      }
      return;
    case DSP_PB(REQUEST__BODY_WORKER_ADD):
      dsp_registry_add(s->registry, c, req->id, req->client_token, req->worker_add->name,
                       req->worker_add->addr, req->worker_add->weight, req->worker_add->check,
                       req->worker_add->heartbeat_ttl_ms);
      return;
    case DSP_PB(REQUEST__BODY_WORKER_REMOVE):
      dsp_registry_remove(s->registry, c, req->id, req->client_token, req->worker_remove->name);
      return;
    case DSP_PB(REQUEST__BODY_WORKER_SET_WEIGHT):
      dsp_registry_set_weight(s->registry, c, req->id, req->client_token,
                              req->worker_set_weight->name, req->worker_set_weight->weight);
      return;
    default:
      dsp_rpc_reply_error(c, req->id, 0, DSP_PB(ERROR_CODE__BAD_REQUEST), "unknown request");
      return;
  }
}
