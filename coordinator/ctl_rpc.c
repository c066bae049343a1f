/*
 * ctl_rpc.c: see ctl_rpc.h. Exit codes: 0 ok, 1 error (the error code and
 * message on stderr, e.g. "dispatchctl: NO_ELIGIBLE_WORKER: no eligible
 * worker"), 2 usage.
 */
#include "ctl_rpc.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "json.h"
#include "util.h"

#define ROUTE_BATCH 1000
#define ROUTE_MAX 10000000

static int usage_error(const char *cmd, const char *fmt, const char *arg) {
  fprintf(stderr, "dispatchctl %s: ", cmd);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'dispatchctl %s --help'.\n", cmd);
  return 2;
}

/* Common per-command option: --json may come after the command too. */
static int parse_common(int c, int *json) {
  if (c == 'j') {
    *json = 1;
    return 1;
  }
  return 0;
}

/* A worker table as a JSON array. */
static void print_workers_json(Dispatcher__V1__WorkerInfo *const *ws, size_t n) {
  printf("[");
  for (size_t i = 0; i < n; i++) {
    printf("%s{\"name\":", i ? "," : "");
    dsp_json_print(stdout, ws[i]->name);
    printf(",\"addr\":");
    dsp_json_print(stdout, ws[i]->addr);
    printf(",\"weight\":%u,\"eligible\":%s,\"inflight\":%" PRIu64 ",\"latency_ms\":%.3f",
           ws[i]->weight, ws[i]->eligible ? "true" : "false", ws[i]->inflight,
           ws[i]->latency_ms);
    printf(",\"state\":");
    dsp_json_print(stdout, ws[i]->state ? ws[i]->state : "");
    printf(",\"state_ms\":%" PRIu64 ",\"reason\":", ws[i]->state_ms);
    dsp_json_print(stdout, ws[i]->reason ? ws[i]->reason : "");
    printf(",\"check\":");
    dsp_json_print(stdout, ws[i]->check ? ws[i]->check : "");
    printf(",\"consecutive_ok\":%u,\"consecutive_fail\":%u,\"probe_ms\":%.3f,"
           "\"probes\":%" PRIu64 ",\"probe_failures\":%" PRIu64 ",\"last_error\":",
           ws[i]->consecutive_ok, ws[i]->consecutive_fail, ws[i]->probe_ms, ws[i]->probes,
           ws[i]->probe_failures);
    dsp_json_print(stdout, ws[i]->last_error ? ws[i]->last_error : "");
    printf(",\"last_probe_local\":%s", ws[i]->last_probe_local ? "true" : "false");
    printf(",\"heartbeat_ttl_ms\":%u,\"heartbeat_age_ms\":%" PRId64 ",\"ejected\":%s",
           ws[i]->heartbeat_ttl_ms, ws[i]->heartbeat_age_ms, ws[i]->ejected ? "true" : "false");
    printf(",\"failures\":{");
    for (size_t k = 0; k < ws[i]->n_failures; k++) {
      printf("%s", k ? "," : "");
      dsp_json_print(stdout, ws[i]->failures[k]->kind);
      printf(":%" PRIu64, ws[i]->failures[k]->count);
    }
    printf("}}");
  }
  printf("]");
}

/* "3.2s", "14m", "2h", "5d": how long a worker has been in its state. */
static void fmt_age(uint64_t ms, char *out, size_t len) {
  if (ms < 10000) snprintf(out, len, "%.1fs", (double)ms / 1000.0);
  else if (ms < 120000) snprintf(out, len, "%" PRIu64 "s", ms / 1000);
  else if (ms < 7200000) snprintf(out, len, "%" PRIu64 "m", ms / 60000);
  else if (ms < 172800000) snprintf(out, len, "%" PRIu64 "h", ms / 3600000);
  else snprintf(out, len, "%" PRIu64 "d", ms / 86400000);
}

/* An error response: print it, return 1. */
static int rpc_error(const dsp_pb_response *r) {
  fprintf(stderr, "dispatchctl: %s: %s\n", dsp_rpc_code_name(r->error->code),
          r->error->message ? r->error->message : "");
  return 1;
}

/* A client for the server list, or NULL after saying why on stderr. */
static dsp_client *ctl_connect(const dsp_ctl_opts *o) {
  char err[512];
  dsp_client *cl = dsp_client_new(o->servers, o->timeout_ms, err, sizeof(err));
  if (cl == NULL) fprintf(stderr, "dispatchctl: %s\n", err);
  return cl;
}

/* Send req and wait for its reply. Returns 0 with *r a reply of body kind
   `want`, or 1 after saying on stderr why not (no answer, an error reply,
   a reply of another kind, to `what`). *r, if not NULL, is the caller's to
   free either way. */
static int ctl_call(dsp_client *cl, dsp_pb_request *req, int want, const char *what,
                    dsp_pb_response **r) {
  char err[512];
  *r = NULL;
  if (dsp_client_call(cl, req, r, err, sizeof(err)) != 0) {
    fprintf(stderr, "dispatchctl: %s\n", err);
    return 1;
  }
  if ((*r)->body_case == DSP_PB(RESPONSE__BODY_ERROR)) return rpc_error(*r);
  if ((int)(*r)->body_case != want) {
    fprintf(stderr, "dispatchctl: unexpected reply to %s\n", what);
    return 1;
  }
  return 0;
}

/* ---- status --------------------------------------------------------------- */

static void status_usage(FILE *out) {
  fprintf(out,
"Usage: dispatchctl [-s HOST:PORT,...] status [--json]\n"
"\n"
"Ask every member in the server list for its status: its id, role and epoch,\n"
"the leader it knows, the members in election order (the first is the\n"
"coordinator, each watches the one before it) and, from the coordinator, the\n"
"worker table.\n"
"Exits 0 if at least one member answered.\n");
}

int dsp_ctl_status_main(int argc, char **argv, const dsp_ctl_opts *o) {
  static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  char list[4096], *save = NULL, *tok, err[512];
  int json = o->json, c, answered = 0, first = 1;
  const Dispatcher__V1__StatusReply *coord = NULL;
  dsp_pb_response *replies[16] = {0};
  int nrep = 0;

  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (parse_common(c, &json)) continue;
    if (c == 'h') { status_usage(stdout); return 0; }
    return usage_error("status", "unknown option '%s'", argv[optind - 1]);
  }
  if (optind < argc) return usage_error("status", "unexpected argument '%s'", argv[optind]);
  snprintf(list, sizeof(list), "%s", o->servers);
  if (!json)
    printf("%-16s %-22s %-12s %-20s %s\n", "MEMBER", "ADDR", "ROLE", "EPOCH", "LEADER");
  else
    printf("{\"members\":[");
  for (tok = strtok_r(list, ",", &save); tok && nrep < 16; tok = strtok_r(NULL, ",", &save)) {
    dsp_client *cl = dsp_client_new(tok, o->timeout_ms, err, sizeof(err));
    dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
    Dispatcher__V1__StatusRequest sr = DISPATCHER__V1__STATUS_REQUEST__INIT;
    dsp_pb_response *r = NULL;
    req.body_case = DSP_PB(REQUEST__BODY_STATUS);
    req.status = &sr;
    if (cl == NULL || dsp_client_call(cl, &req, &r, err, sizeof(err)) != 0 ||
        r->body_case != DSP_PB(RESPONSE__BODY_STATUS)) {
      if (json) {
        printf("%s{\"server\":", first ? "" : ",");
        dsp_json_print(stdout, tok);
        printf(",\"error\":");
        dsp_json_print(stdout, err);
        printf("}");
      } else {
        printf("%-16s %-22s %-12s %-20s %s\n", "?", tok, "unreachable", "-", err);
      }
      first = 0;
      dsp_client_free_response(r);
      dsp_client_free(cl);
      continue;
    }
    answered++;
    replies[nrep++] = r;
    const Dispatcher__V1__StatusReply *s = r->status;
    if (strcmp(s->role, "coordinator") == 0) coord = s;
    if (json) {
      printf("%s{\"server\":", first ? "" : ",");
      dsp_json_print(stdout, tok);
      printf(",\"id\":");
      dsp_json_print(stdout, s->id);
      printf(",\"addr\":");
      dsp_json_print(stdout, s->addr);
      printf(",\"role\":");
      dsp_json_print(stdout, s->role);
      printf(",\"epoch\":%" PRId64 ",\"cluster\":", s->epoch);
      dsp_json_print(stdout, s->cluster);
      printf(",\"members\":[");
      for (size_t i = 0; i < s->n_members; i++) {
        printf("%s{\"id\":", i ? "," : "");
        dsp_json_print(stdout, s->members[i]->id);
        printf(",\"addr\":");
        dsp_json_print(stdout, s->members[i]->addr);
        printf(",\"znode\":");
        dsp_json_print(stdout, s->members[i]->znode);
        printf("}");
      }
      printf("]");
      printf(",\"leader\":");
      if (s->leader_id && s->leader_id[0]) {
        printf("{\"id\":");
        dsp_json_print(stdout, s->leader_id);
        printf(",\"addr\":");
        dsp_json_print(stdout, s->leader_addr);
        printf(",\"epoch\":%" PRId64 "}", s->leader_epoch);
      } else {
        printf("null");
      }
      printf("}");
    } else {
      char epoch[24] = "-", leader[600] = "none known";
      if (s->epoch) snprintf(epoch, sizeof(epoch), "%" PRId64, s->epoch);
      if (s->leader_id && s->leader_id[0])
        snprintf(leader, sizeof(leader), "%s at %s (epoch %" PRId64 ")", s->leader_id,
                 s->leader_addr, s->leader_epoch);
      printf("%-16s %-22s %-12s %-20s %s\n", s->id, s->addr, s->role, epoch, leader);
    }
    first = 0;
    dsp_client_free(cl);
  }
  /* The election as the first member that answered sees it. */
  if (!json && nrep > 0 && replies[0]->status->n_members > 0) {
    const Dispatcher__V1__StatusReply *s = replies[0]->status;
    printf("\n%-4s %-16s %-22s %s   (election order, as %s sees it)\n", "#", "MEMBER", "ADDR",
           "ZNODE", s->id);
    for (size_t i = 0; i < s->n_members; i++)
      printf("%-4zu %-16s %-22s %s\n", i + 1, s->members[i]->id, s->members[i]->addr,
             s->members[i]->znode);
  }
  if (json) {
    printf("],\"workers\":");
    if (coord == NULL) {
      printf("null");
    } else {
      print_workers_json(coord->workers, coord->n_workers);
    }
    printf("}\n");
  } else if (coord != NULL) {
    printf("\n%-20s %-22s %6s %-9s %9s %11s\n", "WORKER", "ADDR", "WEIGHT", "STATE", "INFLIGHT",
           "LATENCY_MS");
    for (size_t i = 0; i < coord->n_workers; i++) {
      const Dispatcher__V1__WorkerInfo *w = coord->workers[i];
      printf("%-20s %-22s %6u %-9s %9" PRIu64 " %11.3f\n", w->name, w->addr, w->weight,
             w->state && w->state[0] ? w->state : (w->eligible ? "up" : "down"), w->inflight,
             w->latency_ms);
    }
    if (coord->n_workers == 0) printf("(the coordinator's worker table is empty)\n");
  }
  for (int i = 0; i < nrep; i++) dsp_client_free_response(replies[i]);
  if (answered == 0) {
    fprintf(stderr, "dispatchctl: no member answered (servers: %s)\n", o->servers);
    return 1;
  }
  return 0;
}

/* ---- route ---------------------------------------------------------------- */

static void route_usage(FILE *out) {
  fprintf(out,
"Usage: dispatchctl [-s HOST:PORT,...] route [--strategy S] [--key K] [-n N] [--json]\n"
"\n"
"Ask the cluster for N routing decisions (default 1) and print one worker\n"
"name per line. Any member answers; the coordinator decides.\n"
"\n"
"  --strategy S   random, round-robin, weighted, hash, consistent-hash,\n"
"                 least-conn, least-time, p2c (default: the cluster's)\n"
"  --key K        the key for hash strategies\n"
"  -n N           number of decisions, 1-%d\n"
"  --json         {\"epoch\":…,\"decisions\":[{\"worker\":…,\"addr\":…},…]}\n",
          ROUTE_MAX);
}

int dsp_ctl_route_main(int argc, char **argv, const dsp_ctl_opts *o) {
  static const struct option opts[] = {{"strategy", required_argument, NULL, 's'},
                                       {"key", required_argument, NULL, 'k'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *strategy = "", *key = NULL;
  long long n = 1;
  int json = o->json, c, rc = 0, first = 1;
  dsp_client *cl;
  int64_t epoch = 0;

  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":hn:", opts, NULL)) != -1) {
    if (parse_common(c, &json)) continue;
    switch (c) {
      case 's': strategy = optarg; break;
      case 'k': key = optarg; break;
      case 'n':
        if (dsp_parse_int(optarg, 1, ROUTE_MAX, &n) != 0)
          return usage_error("route", "-n: '%s' is not a number from 1 to 10000000", optarg);
        break;
      case 'h': route_usage(stdout); return 0;
      case ':': return usage_error("route", "option '%s' needs a value", argv[optind - 1]);
      default: return usage_error("route", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return usage_error("route", "unexpected argument '%s'", argv[optind]);
  if ((cl = ctl_connect(o)) == NULL) return 1;
  if (json) printf("{\"decisions\":[");
  for (long long done = 0; done < n && rc == 0;) {
    dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
    Dispatcher__V1__RouteRequest rr = DISPATCHER__V1__ROUTE_REQUEST__INIT;
    dsp_pb_response *r = NULL;
    unsigned batch = (unsigned)(n - done > ROUTE_BATCH ? ROUTE_BATCH : n - done);
    rr.strategy = (char *)strategy;
    if (key != NULL) {
      rr.key.data = (uint8_t *)key;
      rr.key.len = strlen(key);
    }
    rr.count = batch;
    req.body_case = DSP_PB(REQUEST__BODY_ROUTE);
    req.route = &rr;
    rc = ctl_call(cl, &req, DSP_PB(RESPONSE__BODY_ROUTE), "route", &r);
    if (rc == 0) {
      epoch = r->epoch;
      for (size_t i = 0; i < r->route->n_decisions; i++) {
        const Dispatcher__V1__Decision *d = r->route->decisions[i];
        if (json) {
          printf("%s{\"worker\":", first ? "" : ",");
          dsp_json_print(stdout, d->worker);
          printf(",\"addr\":");
          dsp_json_print(stdout, d->addr);
          printf("}");
        } else {
          printf("%s\n", d->worker);
        }
        first = 0;
      }
      done += (long long)r->route->n_decisions;
      if (r->route->n_decisions == 0) rc = 1;
    }
    dsp_client_free_response(r);
  }
  if (json) printf("],\"epoch\":%" PRId64 "}\n", epoch);
  dsp_client_free(cl);
  return rc;
}

/* ---- report --------------------------------------------------------------- */

static void report_usage(FILE *out) {
  fprintf(out,
"Usage: dispatchctl [-s HOST:PORT,...] report WORKER ok|fail [--latency-ms MS] [--json]\n"
"\n"
"Tell the coordinator how a task routed to WORKER ended: its in-flight count\n"
"drops by one, and the latency feeds least-time.\n");
}

int dsp_ctl_report_main(int argc, char **argv, const dsp_ctl_opts *o) {
  static const struct option opts[] = {{"latency-ms", required_argument, NULL, 'l'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  long long lat = 0;
  int json = o->json, c, ok, rc;
  dsp_client *cl;
  dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
  Dispatcher__V1__ReportRequest rq = DISPATCHER__V1__REPORT_REQUEST__INIT;
  dsp_pb_response *r = NULL;

  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (parse_common(c, &json)) continue;
    switch (c) {
      case 'l':
        if (dsp_parse_int(optarg, 0, 86400000, &lat) != 0)
          return usage_error("report", "--latency-ms: '%s' is not a number of milliseconds",
                             optarg);
        break;
      case 'h': report_usage(stdout); return 0;
      case ':': return usage_error("report", "option '%s' needs a value", argv[optind - 1]);
      default: return usage_error("report", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (argc - optind != 2) return usage_error("report", "needs WORKER and ok|fail%s", "");
  if (strcmp(argv[optind + 1], "ok") == 0) ok = 1;
  else if (strcmp(argv[optind + 1], "fail") == 0) ok = 0;
  else return usage_error("report", "outcome '%s' is neither ok nor fail", argv[optind + 1]);
  if ((cl = ctl_connect(o)) == NULL) return 1;
  rq.worker = argv[optind];
  rq.ok = ok;
  rq.latency_us = (uint64_t)lat * 1000u;
  req.body_case = DSP_PB(REQUEST__BODY_REPORT);
  req.report = &rq;
  rc = ctl_call(cl, &req, DSP_PB(RESPONSE__BODY_REPORT), "report", &r);
  if (rc == 0 && json) printf("{\"ok\":true,\"epoch\":%" PRId64 "}\n", r->epoch);
  dsp_client_free_response(r);
  dsp_client_free(cl);
  return rc;
}

/* ---- worker ---------------------------------------------------------------- */

static void worker_usage(FILE *out) {
  fprintf(out,
"Usage: dispatchctl [-s HOST:PORT,...] worker add NAME HOST:PORT [--weight W]\n"
"                                               [--check URL] [--heartbeat-ttl MS]\n"
"                                           worker rm NAME\n"
"                                           worker weight NAME W\n"
"                                           worker ls [--json]\n"
"\n"
"Manage the worker registry (ZooKeeper /dispatcher/<cluster>/workers). Any\n"
"member writes it; the coordinator applies each change before its next\n"
"decision. W is 1-1000 (default 1).\n"
"\n"
"  --check URL          probe GET URL (http:// or https://); the worker takes\n"
"                       tasks only after its first passing probe\n"
"  --heartbeat-ttl MS   heartbeat mode: down when no heartbeat for MS\n"
"                       (see dispatchctl heartbeat)\n"
"\n"
"Other health settings (interval_ms, fall, rise, expect_status, ...) are keys\n"
"of the worker's znode; see docs/health.md.\n"
"\n"
"ls shows the coordinator's table: STATE is up, down or pending (waiting for a\n"
"first probe or heartbeat), FOR how long, OK/FAIL the probes passed or failed\n"
"in a row, PROBE_MS the last probe's time, and WHY the reason of the last\n"
"change (the last probe error while down).\n");
}

static int worker_ls(dsp_client *cl, int json) {
  dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
  Dispatcher__V1__WorkerListRequest wl = DISPATCHER__V1__WORKER_LIST_REQUEST__INIT;
  dsp_pb_response *r = NULL;
  int rc, wn = 6, wa = 4;
  req.body_case = DSP_PB(REQUEST__BODY_WORKER_LIST);
  req.worker_list = &wl;
  rc = ctl_call(cl, &req, DSP_PB(RESPONSE__BODY_WORKER_LIST), "worker ls", &r);
  if (rc != 0) {
    /* said why */
  } else if (json) {
    printf("{\"epoch\":%" PRId64 ",\"workers\":", r->epoch);
    print_workers_json(r->worker_list->workers, r->worker_list->n_workers);
    printf("}\n");
  } else {
    for (size_t i = 0; i < r->worker_list->n_workers; i++) {
      const Dispatcher__V1__WorkerInfo *w = r->worker_list->workers[i];
      if ((int)strlen(w->name) > wn) wn = (int)strlen(w->name);
      if ((int)strlen(w->addr) > wa) wa = (int)strlen(w->addr);
    }
    printf("%-*s  %-*s  %6s  %-7s  %6s  %4s  %4s  %8s  %8s  %10s  %s\n", wn, "WORKER", wa,
           "ADDR", "WEIGHT", "STATE", "FOR", "OK", "FAIL", "PROBE_MS", "INFLIGHT", "LATENCY_MS",
           "WHY");
    for (size_t i = 0; i < r->worker_list->n_workers; i++) {
      const Dispatcher__V1__WorkerInfo *w = r->worker_list->workers[i];
      char age[16], probe[16] = "-", local[256];
      const char *why = w->reason ? w->reason : "";
      fmt_age(w->state_ms, age, sizeof(age));
      if (w->probes > 0) snprintf(probe, sizeof(probe), "%.1f", w->probe_ms);
      if (!w->eligible && w->last_error && w->last_error[0] && w->consecutive_fail > 0)
        why = w->last_error;
      if (w->last_probe_local && w->last_error && w->last_error[0]) {
        snprintf(local, sizeof(local), "probe not made here: %s", w->last_error);
        why = local;
      }
      if (w->ejected) why = "ejected: failed reports (max_fails)";
      printf("%-*s  %-*s  %6u  %-7s  %6s  %4u  %4u  %8s  %8" PRIu64 "  %10.3f  %s\n", wn,
             w->name, wa, w->addr, w->weight, w->state && w->state[0] ? w->state : "?", age,
             w->consecutive_ok, w->consecutive_fail, probe, w->inflight, w->latency_ms, why);
    }
  }
  dsp_client_free_response(r);
  return rc;
}

int dsp_ctl_worker_main(int argc, char **argv, const dsp_ctl_opts *o) {
  static const struct option opts[] = {{"weight", required_argument, NULL, 'w'},
                                       {"check", required_argument, NULL, 'c'},
                                       {"heartbeat-ttl", required_argument, NULL, 't'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  long long weight = 1, ttl = 0;
  const char *check = NULL;
  int json = o->json, c, rc, nargs;
  const char *verb;
  char **args;
  dsp_client *cl;
  dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
  Dispatcher__V1__WorkerAddRequest add = DISPATCHER__V1__WORKER_ADD_REQUEST__INIT;
  Dispatcher__V1__WorkerRemoveRequest rm = DISPATCHER__V1__WORKER_REMOVE_REQUEST__INIT;
  Dispatcher__V1__WorkerSetWeightRequest sw = DISPATCHER__V1__WORKER_SET_WEIGHT_REQUEST__INIT;
  dsp_pb_response *r = NULL;

  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (parse_common(c, &json)) continue;
    switch (c) {
      case 'w':
        if (dsp_parse_int(optarg, 1, 1000, &weight) != 0)
          return usage_error("worker", "--weight: '%s' is not a number from 1 to 1000", optarg);
        break;
      case 'c':
        if (strncmp(optarg, "http://", 7) != 0 && strncmp(optarg, "https://", 8) != 0)
          return usage_error("worker", "--check: '%s' is not an http:// or https:// URL", optarg);
        check = optarg;
        break;
      case 't':
        if (dsp_parse_int(optarg, 100, 86400000, &ttl) != 0)
          return usage_error("worker", "--heartbeat-ttl: '%s' is not a number of milliseconds "
                             "in 100-86400000", optarg);
        break;
      case 'h': worker_usage(stdout); return 0;
      case ':': return usage_error("worker", "option '%s' needs a value", argv[optind - 1]);
      default: return usage_error("worker", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind >= argc) return usage_error("worker", "needs add, rm, weight or ls%s", "");
  verb = argv[optind];
  args = argv + optind + 1;
  nargs = argc - optind - 1;
  if (strcmp(verb, "add") == 0) {
    if (nargs != 2) return usage_error("worker", "add needs NAME and HOST:PORT%s", "");
    add.name = args[0];
    add.addr = args[1];
    add.weight = (uint32_t)weight;
    add.check = (char *)(check ? check : "");
    add.heartbeat_ttl_ms = (uint32_t)ttl;
    req.body_case = DSP_PB(REQUEST__BODY_WORKER_ADD);
    req.worker_add = &add;
  } else if (check != NULL || ttl != 0) {
    return usage_error("worker", "--check and --heartbeat-ttl go with add, not '%s'", verb);
  } else if (strcmp(verb, "rm") == 0) {
    if (nargs != 1) return usage_error("worker", "rm needs NAME%s", "");
    rm.name = args[0];
    req.body_case = DSP_PB(REQUEST__BODY_WORKER_REMOVE);
    req.worker_remove = &rm;
  } else if (strcmp(verb, "weight") == 0) {
    if (nargs != 2) return usage_error("worker", "weight needs NAME and W%s", "");
    if (dsp_parse_int(args[1], 1, 1000, &weight) != 0)
      return usage_error("worker", "weight '%s' is not a number from 1 to 1000", args[1]);
    sw.name = args[0];
    sw.weight = (uint32_t)weight;
    req.body_case = DSP_PB(REQUEST__BODY_WORKER_SET_WEIGHT);
    req.worker_set_weight = &sw;
  } else if (strcmp(verb, "ls") != 0) {
    return usage_error("worker", "unknown verb '%s' (add, rm, weight, ls)", verb);
  } else if (nargs != 0) {
    return usage_error("worker", "ls takes no arguments%s", "");
  }
  if ((cl = ctl_connect(o)) == NULL) return 1;
  if (strcmp(verb, "ls") == 0) {
    rc = worker_ls(cl, json);
  } else {
    rc = ctl_call(cl, &req, DSP_PB(RESPONSE__BODY_WORKER), "worker", &r);
    if (rc == 0 && json) printf("{\"ok\":true}\n");
  }
  dsp_client_free_response(r);
  dsp_client_free(cl);
  return rc;
}

/* ---- heartbeat ------------------------------------------------------------- */

static void heartbeat_usage(FILE *out) {
  fprintf(out,
"Usage: dispatchctl [-s HOST:PORT,...] heartbeat NAME [--every MS] [--json]\n"
"\n"
"Tell the coordinator that worker NAME is alive. NAME must be in heartbeat\n"
"mode (heartbeat_ttl_ms in its znode, or worker add --heartbeat-ttl): it is\n"
"down when no heartbeat arrives within its TTL. Any member takes it.\n"
"\n"
"  --every MS   keep sending, one every MS (100-3600000), until killed; a\n"
"               failed send is reported on stderr and the loop goes on.\n"
"               Send well within the TTL (a third of it, say).\n"
"\n"
"Exit status: 0 once sent (without --every), 1 on an error, 2 on bad usage.\n");
}

static volatile sig_atomic_t hb_stop;
static void hb_on_signal(int sig) {
  (void)sig;
  hb_stop = 1;
}

int dsp_ctl_heartbeat_main(int argc, char **argv, const dsp_ctl_opts *o) {
  static const struct option opts[] = {{"every", required_argument, NULL, 'e'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  long long every = 0;
  int json = o->json, c, rc = 0;
  unsigned long long sent = 0;
  dsp_client *cl;

  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (parse_common(c, &json)) continue;
    switch (c) {
      case 'e':
        if (dsp_parse_int(optarg, 100, 3600000, &every) != 0)
          return usage_error("heartbeat", "--every: '%s' is not a number of milliseconds in "
                             "100-3600000", optarg);
        break;
      case 'h': heartbeat_usage(stdout); return 0;
      case ':': return usage_error("heartbeat", "option '%s' needs a value", argv[optind - 1]);
      default: return usage_error("heartbeat", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (argc - optind != 1) return usage_error("heartbeat", "needs the worker's NAME%s", "");
  if ((cl = ctl_connect(o)) == NULL) return 1;
  if (every) {
    signal(SIGTERM, hb_on_signal);
    signal(SIGINT, hb_on_signal);
  }
  do {
    dsp_pb_request req = DISPATCHER__V1__REQUEST__INIT;
    Dispatcher__V1__HeartbeatRequest hb = DISPATCHER__V1__HEARTBEAT_REQUEST__INIT;
    dsp_pb_response *r = NULL;
    uint64_t start = dsp_now_ms();
    hb.name = argv[optind];
    req.body_case = DSP_PB(REQUEST__BODY_HEARTBEAT);
    req.heartbeat = &hb;
    rc = ctl_call(cl, &req, DSP_PB(RESPONSE__BODY_HEARTBEAT), "heartbeat", &r);
    if (rc == 0) {
      sent++;
      if (json) printf("{\"ok\":true,\"epoch\":%" PRId64 "}\n", r->epoch);
      if (json) fflush(stdout);
    }
    dsp_client_free_response(r);
    if (every && !hb_stop) {
      uint64_t spent = dsp_now_ms() - start;
      if (spent < (uint64_t)every) {
        struct timespec ts = {(time_t)((uint64_t)every - spent) / 1000,
                              (long)(((uint64_t)every - spent) % 1000) * 1000000L};
        nanosleep(&ts, NULL); /* a signal cuts it short */
      }
    }
  } while (every && !hb_stop);
  dsp_client_free(cl);
  return every ? 0 : rc;
}
