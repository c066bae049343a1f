/*
 * simulate.h: `dispatchctl simulate`, the balancer without a cluster. It
 * builds a table from flags, runs picks or keys through one strategy and
 * prints the decisions, so users can see what a strategy does (and how many
 * keys a table change moves) before they deploy it. No ZooKeeper, no I/O
 * beyond stdin/stdout/stderr and the --keys file.
 */
#ifndef DSP_SIMULATE_H
#define DSP_SIMULATE_H

/*
 * Run `dispatchctl simulate ...`; argv[0] is "simulate". Prints results to
 * stdout and diagnostics to stderr. Returns the process exit code: 0 ok,
 * 1 error (e.g. unreadable --keys file), 2 usage (bad or missing flags;
 * `--help` prints usage to stdout and returns 0).
 */
int dsp_simulate_main(int argc, char **argv);

#endif
