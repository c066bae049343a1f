/*
 * dispatcherd: one member of a dispatcher cluster. It joins the ZooKeeper
 * election of its cluster; the elected member is the coordinator. One libuv
 * loop owns all I/O; there are no threads.
 *
 * Exit status: 0 after SIGTERM/SIGINT, 1 on a fatal runtime error (e.g. its
 * id is taken), 2 on bad flags.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <curl/curl.h>

#include "frame.h"
#include "health.h"
#include "log.h"
#include "member.h"
#include "monitor.h"
#include "rpc_server.h"
#include "service.h"
#include "util.h"
#include "zkloop.h"

#define DEFAULT_ZK "127.0.0.1:2181"
#define DEFAULT_CLUSTER "default"
#define DEFAULT_LISTEN "127.0.0.1:7001"
#define DEFAULT_SESSION_TIMEOUT_MS 10000
#define FIRST_HEALTH_OPT 10 /* index of --check-interval in opts[] */

static void usage(FILE *out) {
  fprintf(out,
"Usage: dispatcherd [OPTIONS]\n"
"\n"
"Run one member of a dispatcher cluster. Members elect a coordinator through\n"
"ZooKeeper; see docs/architecture.md.\n"
"\n"
"Options:\n"
"  --zk CONNECT            ZooKeeper connect string, host:port[,host:port...][/chroot]\n"
"                          (default " DEFAULT_ZK ")\n"
"  --cluster NAME          cluster name; znodes live under /dispatcher/NAME\n"
"                          (default " DEFAULT_CLUSTER ")\n"
"  --id ID                 member id, unique in the cluster: 1-64 of [A-Za-z0-9._:-]\n"
"                          (default: the --listen address)\n"
"  --listen HOST:PORT      RPC address this member advertises (default " DEFAULT_LISTEN ")\n"
"  --session-timeout MS    ZooKeeper session timeout asked for, 400-600000\n"
"                          (default %d); the server may bound it\n"
"  --max-frame BYTES       largest request frame accepted, 64-67108864\n"
"                          (default 1048576)\n"
"  --client-idle-timeout MS  drop a client that leaves half a frame unsent\n"
"                          this long, 100-3600000 (default 10000)\n"
"  --hold-timeout MS       how long a follower holds a request while no\n"
"                          coordinator answers, 100-3600000 (default: twice\n"
"                          the session timeout)\n"
"  --default-strategy S    strategy for routes that name none, used while this\n"
"                          member coordinates; give every member the same\n"
"                          (default weighted; see docs/strategies.md)\n"
"\n"
"Health checks: the cluster's defaults, each overridable per worker in its\n"
"znode (docs/health.md); give every member the same:\n"
"  --check-interval MS     between probes of a worker, 100-3600000 (default 2000)\n"
"  --check-timeout MS      a probe's whole time, below the interval (default 1000)\n"
"  --check-fall N          failures in a row that take a worker down (default 3)\n"
"  --check-rise N          successes in a row that bring it back (default 2)\n"
"  --check-jitter PCT      shorten each interval by up to PCT%% at random (default 0)\n"
"  --check-expect-status S passing statuses: 200, 2xx or 200-399 (default 2xx)\n"
"  --check-expect-body TEXT  a substring the body must hold (default: any body)\n"
"  --check-body-limit BYTES  most bytes of a reply read (default 65536)\n"
"  --max-fails N           failed task reports within --fail-timeout that take\n"
"                          a worker out for --fail-timeout; 0 = never (default 1)\n"
"  --fail-timeout MS       (default 10000)\n"
"\n"
"  --log-level LEVEL       error, warn, info or debug (default info)\n"
"  -h, --help              show this help and exit\n"
"  -V, --version           show the version and exit\n"
"\n"
"Signals: SIGTERM or SIGINT leaves the cluster at once (the session is closed,\n"
"so another member takes over without waiting for a timeout) and exits 0.\n",
          DEFAULT_SESSION_TIMEOUT_MS);
}

static int bad(const char *fmt, const char *arg) {
  fprintf(stderr, "dispatcherd: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'dispatcherd --help'.\n");
  return 2;
}

/* host:port[,host:port...][/chroot] */
static int zk_connect_valid(const char *s) {
  char buf[1024], host[256];
  char *save = NULL, *tok, *slash;
  int port;
  if (strlen(s) == 0 || strlen(s) >= sizeof(buf)) return 0;
  snprintf(buf, sizeof(buf), "%s", s);
  slash = strchr(buf, '/');
  if (slash != NULL) {
    if (slash[1] == '\0' || strstr(slash, "//") != NULL || slash[strlen(slash) - 1] == '/')
      return 0;
    *slash = '\0';
  }
  for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
    if (dsp_parse_hostport(tok, host, sizeof(host), &port) != 0) return 0;
  return buf[0] != '\0' && buf[strlen(buf) - 1] != ',' && strstr(s, ",,") == NULL &&
         s[0] != ',';
}

static int cluster_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 64 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '.' || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

typedef struct {
  uv_signal_t term, intr;
  dsp_member *member;
  dsp_rpc_server *rpc;
  dsp_service *svc;
  dsp_registry *reg;
  dsp_monitor *mon;
  dsp_forwarder *fwd;
} app;

/* Close everything but the member (closed by the caller or by itself). */
static void shut_down(app *a) {
  if (a->fwd) dsp_forwarder_close(a->fwd);
  a->fwd = NULL;
  if (a->rpc) dsp_rpc_server_close(a->rpc);
  a->rpc = NULL;
  dsp_monitor_close(a->mon);
  if (!uv_is_closing((uv_handle_t *)&a->term)) {
    uv_close((uv_handle_t *)&a->term, NULL);
    uv_close((uv_handle_t *)&a->intr, NULL);
  }
}

static void on_signal(uv_signal_t *s, int signum) {
  app *a = s->data;
  DSP_INFO("received %s; leaving the cluster", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  dsp_member_stop(a->member);
  shut_down(a);
}

static void on_role(void *ctx, int coordinator, int64_t epoch) {
  app *a = ctx;
  dsp_service_on_role(a->svc, coordinator, epoch);
}

static void on_fatal(void *ctx) { shut_down(ctx); }

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"zk", required_argument, NULL, 'z'},
      {"cluster", required_argument, NULL, 'c'},
      {"id", required_argument, NULL, 'i'},
      {"listen", required_argument, NULL, 'l'},
      {"session-timeout", required_argument, NULL, 't'},
      {"log-level", required_argument, NULL, 'L'},
      {"max-frame", required_argument, NULL, 'F'},
      {"client-idle-timeout", required_argument, NULL, 'I'},
      {"default-strategy", required_argument, NULL, 'S'},
      {"hold-timeout", required_argument, NULL, 'H'},
      {"check-interval", required_argument, NULL, 1000},
      {"check-timeout", required_argument, NULL, 1001},
      {"check-fall", required_argument, NULL, 1002},
      {"check-rise", required_argument, NULL, 1003},
      {"check-jitter", required_argument, NULL, 1004},
      {"check-expect-status", required_argument, NULL, 1005},
      {"check-expect-body", required_argument, NULL, 1006},
      {"check-body-limit", required_argument, NULL, 1007},
      {"max-fails", required_argument, NULL, 1008},
      {"fail-timeout", required_argument, NULL, 1009},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0}};
  dsp_member_config cfg = {DEFAULT_ZK, DEFAULT_CLUSTER, NULL, DEFAULT_LISTEN,
                           DEFAULT_SESSION_TIMEOUT_MS, NULL, NULL, NULL};
  dsp_log_level level = DSP_LOG_INFO;
  dsp_rpc_limits limits = {DSP_FRAME_DEFAULT_MAX, 0, 10000};
  dsp_service_config scfg;
  dsp_service *svc;
  char host[DSP_ADDR_MAX];
  long long v;
  int c, port, rc;
  app a;
  int strategy = DSP_STRATEGY_DEFAULT;
  long long hold_ms = 0;
  uv_loop_t *loop;
  /* --check-* and friends, in option order, to the health.h keys. */
  static const char *const health_keys[] = {
      "interval_ms", "timeout_ms", "fall",       "rise",      "jitter_pct",
      "expect_status", "expect_body", "body_limit", "max_fails", "fail_timeout_ms"};
  dsp_health_settings hdef;
  char herr[200];

  dsp_health_settings_default(&hdef);

  opterr = 0;
  while ((c = getopt_long(argc, argv, ":hV", opts, NULL)) != -1) {
    switch (c) {
      case 'z':
        if (!zk_connect_valid(optarg))
          return bad("--zk: '%s' is not host:port[,host:port...][/chroot]", optarg);
        cfg.zk_hosts = optarg;
        break;
      case 'c':
        if (!cluster_valid(optarg))
          return bad("--cluster: '%s' must be 1-64 of [A-Za-z0-9._-]", optarg);
        cfg.cluster = optarg;
        break;
      case 'i':
        if (!dsp_id_valid(optarg))
          return bad("--id: '%s' must be 1-64 of [A-Za-z0-9._:-]", optarg);
        cfg.id = optarg;
        break;
      case 'l':
        if (strlen(optarg) >= DSP_ADDR_MAX ||
            dsp_parse_hostport(optarg, host, sizeof(host), &port) != 0)
          return bad("--listen: '%s' is not HOST:PORT with a port in 1-65535", optarg);
        cfg.addr = optarg;
        break;
      case 't':
        if (dsp_parse_int(optarg, 400, 600000, &v) != 0)
          return bad("--session-timeout: '%s' is not a number of milliseconds in 400-600000",
                     optarg);
        cfg.session_timeout_ms = (int)v;
        break;
      case 'L':
        if (dsp_log_parse_level(optarg, &level) != 0)
          return bad("--log-level: '%s' is not one of error, warn, info, debug", optarg);
        break;
      case 'F':
        if (dsp_parse_int(optarg, 64, 64 << 20, &v) != 0)
          return bad("--max-frame: '%s' is not a number of bytes in 64-67108864", optarg);
        limits.max_frame = (size_t)v;
        break;
      case 'I':
        if (dsp_parse_int(optarg, 100, 3600000, &v) != 0)
          return bad("--client-idle-timeout: '%s' is not a number of milliseconds in 100-3600000",
                     optarg);
        limits.idle_timeout_ms = (uint64_t)v;
        break;
      case 'H':
        if (dsp_parse_int(optarg, 100, 3600000, &hold_ms) != 0)
          return bad("--hold-timeout: '%s' is not a number of milliseconds in 100-3600000",
                     optarg);
        break;
      case 'S':
        strategy = dsp_strategy_parse(optarg);
        if (strategy < 0)
          return bad("--default-strategy: '%s' is not one of random, round-robin, weighted, "
                     "hash, consistent-hash, least-conn, least-time, p2c", optarg);
        break;
      case 1000: case 1001: case 1002: case 1003: case 1004:
      case 1005: case 1006: case 1007: case 1008: case 1009:
        if (dsp_health_settings_set(&hdef, health_keys[c - 1000], optarg, herr, sizeof(herr)) !=
            0) {
          char msg[300];
          snprintf(msg, sizeof(msg), "--%s: %s", opts[FIRST_HEALTH_OPT + c - 1000].name, herr);
          return bad("%s", msg);
        }
        break;
      case 'h':
        usage(stdout);
        return 0;
      case 'V':
        printf("dispatcherd 0.1.0\n");
        return 0;
      case ':':
        return bad("option '%s' needs a value", argv[optind - 1]);
      default:
        return bad("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return bad("unexpected argument '%s'", argv[optind]);
  if (dsp_health_settings_validate(&hdef, herr, sizeof(herr)) != 0)
    return bad("health check flags: %s", herr);
  if (cfg.id == NULL) {
    if (!dsp_id_valid(cfg.addr))
      return bad("cannot derive an id from --listen '%s'; give --id", cfg.addr);
    cfg.id = cfg.addr;
  }

  dsp_log_init("dispatcherd", cfg.id);
  dsp_log_set_level(level);
  dsp_zkloop_set_client_log(level == DSP_LOG_DEBUG);
  signal(SIGPIPE, SIG_IGN);
  dsp_raise_nofile(); /* RPC clients, and up to 1024 probes in flight */

  loop = uv_default_loop();
  memset(&scfg, 0, sizeof(scfg));
  scfg.cluster = cfg.cluster;
  scfg.id = cfg.id;
  scfg.addr = cfg.addr;
  scfg.default_strategy = (dsp_strategy)strategy;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    DSP_ERROR("cannot initialise libcurl");
    return 1;
  }
  svc = a.svc = dsp_service_new(&scfg);
  a.reg = dsp_registry_new(cfg.cluster);
  a.mon = dsp_monitor_new(loop, cfg.cluster);
  cfg.on_role = on_role;
  cfg.on_fatal = on_fatal;
  cfg.ctx = &a;
  a.member = svc ? dsp_member_new(loop, &cfg) : NULL;
  a.rpc = svc ? dsp_rpc_server_new(loop, &limits, dsp_service_on_request, svc) : NULL;
  if (a.member == NULL || a.rpc == NULL || a.reg == NULL || a.mon == NULL) {
    DSP_ERROR("out of memory");
    return 1;
  }
  dsp_service_set_member(svc, a.member);
  dsp_registry_set_member(a.reg, a.member);
  dsp_service_set_registry(svc, a.reg);
  dsp_monitor_set_member(a.mon, a.member);
  dsp_registry_set_monitor(a.reg, a.mon, &hdef);
  dsp_service_set_monitor(svc, a.mon);
  a.fwd = dsp_forwarder_new(loop, a.member,
                            (uint64_t)(hold_ms ? hold_ms : 2LL * cfg.session_timeout_ms), 65536,
                            dsp_service_on_request, dsp_service_ready, svc);
  if (a.fwd == NULL) {
    DSP_ERROR("out of memory");
    return 1;
  }
  dsp_service_set_forwarder(svc, a.fwd);
  dsp_forwarder_set_max_frame(a.fwd, limits.max_frame);
  dsp_rpc_server_set_raw(a.rpc, dsp_service_on_raw);
  dsp_parse_hostport(cfg.addr, host, sizeof(host), &port);
  rc = dsp_rpc_server_listen(a.rpc, host, port);
  if (rc != 0) {
    DSP_ERROR("cannot listen on %s: %s", cfg.addr, uv_strerror(rc));
    return 1;
  }
  DSP_INFO("serving RPC on %s (max frame %zu bytes)", cfg.addr, limits.max_frame);
  rc = dsp_member_start(a.member);
  if (rc != 0) {
    DSP_ERROR("cannot start a ZooKeeper session with '%s': %s", cfg.zk_hosts, strerror(-rc));
    return 1;
  }
  uv_signal_init(loop, &a.term);
  uv_signal_init(loop, &a.intr);
  /* Signal handles exist before anything can call shut_down(). */
  a.term.data = a.intr.data = &a;
  uv_signal_start(&a.term, on_signal, SIGTERM);
  uv_signal_start(&a.intr, on_signal, SIGINT);
  /* Signals never keep the loop alive: it runs out when the member has
     closed everything, whether after a signal or a fatal error. */
  uv_unref((uv_handle_t *)&a.term);
  uv_unref((uv_handle_t *)&a.intr);

  uv_run(loop, UV_RUN_DEFAULT);

  rc = dsp_member_exit_code(a.member);
  shut_down(&a);
  uv_run(loop, UV_RUN_DEFAULT);
  dsp_member_free(a.member);
  dsp_service_free(svc);
  dsp_registry_free(a.reg);
  dsp_monitor_free(a.mon);
  curl_global_cleanup();
  if (uv_loop_close(loop) != 0) DSP_WARN("loop closed with handles still open");
  DSP_INFO("exiting with status %d", rc);
  return rc;
}
