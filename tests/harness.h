/*
 * harness.h: what integration tests stand on. A private ZooKeeper, standalone
 * or a three-server ensemble, from Debian's package (via scripts/zkserver.sh),
 * on free loopback ports in a temp dir with a short tickTime; real processes
 * whose output goes to log files; and a small synchronous ZooKeeper client
 * (zookeeper_st driven with poll(2)) for looking at the tree.
 *
 * Everything a test starts is killed when the test process exits, whatever
 * the reason (atexit, and PR_SET_PDEATHSIG in each child). A ZooKeeper that
 * cannot be started is a failure, never a skip.
 */
#ifndef DSP_HARNESS_H
#define DSP_HARNESS_H

#include <stdint.h>
#include <sys/types.h>
#include <zookeeper/zookeeper.h>

#define ZKH_MAX_SERVERS 3

typedef struct {
  int n;
  char dir[320];                      /* its own dir under th_tmpdir() */
  char connect[256];                  /* "127.0.0.1:p1,..." */
  int client_port[ZKH_MAX_SERVERS];
  int peer_port[ZKH_MAX_SERVERS], elect_port[ZKH_MAX_SERVERS];
  pid_t pid[ZKH_MAX_SERVERS];         /* 0 while stopped */
} zkh_ensemble;

/* The test's scratch dir (created on first use, removed at exit). */
const char *th_tmpdir(void);

/* Path of a built binary (DSP_BIN_DIR) or a repo file (DSP_SOURCE_DIR). */
const char *th_bin(const char *name);
const char *th_src(const char *rel);

/* Start n (1 or 3) servers and wait until each answers ruok with imok.
   Returns NULL, after printing why, if they do not come up. */
zkh_ensemble *zkh_start(int n);
/* Stop server i (SIGTERM, wait for exit). */
void zkh_stop(zkh_ensemble *e, int i);
/* Start server i again on the same ports and data; wait for imok. 0 or -1. */
int zkh_restart(zkh_ensemble *e, int i);
void zkh_free(zkh_ensemble *e);
/* Send a four-letter command to server i; reply into buf. Returns length or -1. */
int zkh_4lw(zkh_ensemble *e, int i, const char *cmd, char *buf, size_t len);

/* Spawn argv (argv[0] a path) with stdout+stderr appended to `log`. */
pid_t th_spawn(const char *log, char *const argv[]);
/* Wait up to timeout_ms for pid to exit; returns its wait status, or -1. */
int th_wait_exit(pid_t pid, int timeout_ms);
/* Send sig; for SIGKILL/SIGTERM the caller still reaps with th_wait_exit. */
void th_signal(pid_t pid, int sig);

/* 1 if `needle` occurs in the file (from byte `from`), else 0. */
int th_log_has(const char *log, const char *needle, long from);
/* Count occurrences of needle in the file. */
int th_log_count(const char *log, const char *needle);
/* Current size of a file (an offset to search from later). */
long th_log_size(const char *log);
/* Poll until th_log_has() or timeout; returns 1 if found. */
int th_wait_log(const char *log, const char *needle, long from, int timeout_ms);

/*
 * Stop a process as an operator would: SIGCONT, SIGTERM, up to 10 s to
 * exit (SIGKILL after). Returns 1 if it exited 0 and its log (may be NULL)
 * holds no sanitizer report and no "handles still open"; otherwise prints
 * why, with the report, naming it `name`, and returns 0.
 */
int th_stop_clean(pid_t pid, const char *log, const char *name);

/* A loopback TCP port nobody listens on right now. */
int th_free_port(void);
/* A blocking TCP connection to 127.0.0.1:port: its fd, or -1. */
int th_connect(int port);

uint64_t th_now_ms(void);
void th_sleep_ms(int ms);

/* --- synchronous ZooKeeper client ---------------------------------------- */
typedef struct zkc zkc;
zkc *zkc_connect(const char *hosts, int timeout_ms);
void zkc_close(zkc *c);
/* Get data (NUL-terminated into buf) and stat. Returns a ZooKeeper rc. */
int zkc_get(zkc *c, const char *path, char *buf, int len, struct Stat *st);
/* Children into names[max] (malloc'd strings, caller frees with
   zkc_free_names). Returns count, or a negative ZooKeeper rc. */
int zkc_children(zkc *c, const char *path, char **names, int max);
void zkc_free_names(char **names, int n);
/* Delete path and everything below it, like zkCli's deleteall. Returns rc. */
int zkc_delete_all(zkc *c, const char *path);
int zkc_set(zkc *c, const char *path, const char *data);
/* Create a persistent znode. Returns rc. */
int zkc_create(zkc *c, const char *path, const char *data);

#endif
