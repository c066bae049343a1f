/*
 * dispatchctl: the command-line client of a dispatcher cluster.
 *
 * Each subcommand lives in its own file and has its own --help; this file
 * only dispatches. Exit codes everywhere: 0 ok, 1 error (the reason on
 * stderr), 2 usage.
 */
#include <stdio.h>
#include <string.h>

#include "ctl_election.h"
#include "ctl_rpc.h"
#include "simulate.h"
#include "util.h"

static dsp_ctl_opts opts = {DSP_CTL_DEFAULT_SERVERS, 0, 5000};

static int election(int argc, char **argv) { return dsp_ctl_election_main(argc, argv); }
static int simulate(int argc, char **argv) { return dsp_simulate_main(argc, argv); }
static int status(int argc, char **argv) { return dsp_ctl_status_main(argc, argv, &opts); }
static int route(int argc, char **argv) { return dsp_ctl_route_main(argc, argv, &opts); }
static int report(int argc, char **argv) { return dsp_ctl_report_main(argc, argv, &opts); }
static int worker(int argc, char **argv) { return dsp_ctl_worker_main(argc, argv, &opts); }
static int heartbeat(int argc, char **argv) { return dsp_ctl_heartbeat_main(argc, argv, &opts); }

typedef struct {
  const char *name;
  int (*main)(int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
    {"status", status, "each member's role, epoch and leader; the coordinator's workers"},
    {"route", route, "ask the coordinator for routing decisions"},
    {"report", report, "report how a routed task ended (ok/fail, latency)"},
    {"worker", worker, "add, remove, reweigh or list workers (add|rm|weight|ls)"},
    {"heartbeat", heartbeat, "tell the coordinator a worker is alive, once or every MS"},
    {"election", election, "show the election as ZooKeeper has it (leader, epoch, members)"},
    {"simulate", simulate, "try a routing strategy offline on a worker list (no cluster needed)"},
};

static void usage(FILE *out) {
  fprintf(out,
          "Usage: dispatchctl [-s HOST:PORT[,HOST:PORT...]] [--json] [--timeout MS]\n"
          "                   COMMAND [OPTIONS]\n"
          "\n"
          "The command-line client of a dispatcher cluster.\n"
          "\n"
          "  -s, --servers LIST  members to talk to; on a connection failure the next\n"
          "                      is tried (default " DSP_CTL_DEFAULT_SERVERS ")\n"
          "  --json              machine-readable output\n"
          "  --timeout MS        how long to wait for a member (default 5000)\n"
          "\n"
          "Commands:\n");
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out,
          "\n"
          "Run 'dispatchctl COMMAND --help' for a command's options.\n"
          "Exit status: 0 ok, 1 error, 2 usage.\n");
}

int main(int argc, char **argv) {
  int i = 1;
  long long v;
  /* Global options come before the command. */
  while (i < argc && argv[i][0] == '-') {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
      printf("dispatchctl 0.1.0\n");
      return 0;
    }
    if (strcmp(a, "--json") == 0) {
      opts.json = 1;
      i++;
      continue;
    }
    if (strcmp(a, "-s") == 0 || strcmp(a, "--servers") == 0 || strcmp(a, "--timeout") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "dispatchctl: option '%s' needs a value\n", a);
        return 2;
      }
      if (strcmp(a, "--timeout") == 0) {
        if (dsp_parse_int(argv[i + 1], 1, 3600000, &v) != 0) {
          fprintf(stderr, "dispatchctl: --timeout: '%s' is not a number of milliseconds\n",
                  argv[i + 1]);
          return 2;
        }
        opts.timeout_ms = (int)v;
      } else {
        opts.servers = argv[i + 1];
      }
      i += 2;
      continue;
    }
    fprintf(stderr, "dispatchctl: unknown option '%s'\nTry 'dispatchctl --help'.\n", a);
    return 2;
  }
  if (i >= argc) {
    usage(stderr);
    return 2;
  }
  if (strcmp(argv[i], "help") == 0) {
    usage(stdout);
    return 0;
  }
  for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
    if (strcmp(argv[i], commands[k].name) == 0) return commands[k].main(argc - i, argv + i);
  fprintf(stderr, "dispatchctl: unknown command '%s'\nTry 'dispatchctl --help'.\n", argv[i]);
  return 2;
}
