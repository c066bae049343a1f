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
#include "simulate.h"

typedef struct {
  const char *name;
  int (*main)(int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
    {"election", dsp_ctl_election_main,
     "show the election as ZooKeeper has it (leader, epoch, members)"},
    {"simulate", dsp_simulate_main,
     "try a routing strategy offline on a worker list (no cluster needed)"},
};

static void usage(FILE *out) {
  fprintf(out,
          "Usage: dispatchctl COMMAND [OPTIONS]\n"
          "\n"
          "The command-line client of a dispatcher cluster.\n"
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
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
    printf("dispatchctl 0.1.0\n");
    return 0;
  }
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].main(argc - 1, argv + 1);
  fprintf(stderr, "dispatchctl: unknown command '%s'\nTry 'dispatchctl --help'.\n", argv[1]);
  return 2;
}
