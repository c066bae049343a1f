/*
 * ctl_rpc.h: the dispatchctl commands that speak RPC to members:
 * status, route, report, worker.
 */
#ifndef DSP_CTL_RPC_H
#define DSP_CTL_RPC_H

typedef struct {
  const char *servers;  /* -s: "h:p,h:p,…" */
  int json;             /* --json */
  int timeout_ms;       /* --timeout */
} dsp_ctl_opts;

#define DSP_CTL_DEFAULT_SERVERS "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"

/* argv[0] is the command name. Return the exit code: 0, 1 error, 2 usage. */
int dsp_ctl_status_main(int argc, char **argv, const dsp_ctl_opts *o);
int dsp_ctl_route_main(int argc, char **argv, const dsp_ctl_opts *o);
int dsp_ctl_report_main(int argc, char **argv, const dsp_ctl_opts *o);
int dsp_ctl_worker_main(int argc, char **argv, const dsp_ctl_opts *o);
int dsp_ctl_heartbeat_main(int argc, char **argv, const dsp_ctl_opts *o);

#endif
