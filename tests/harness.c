/*
 * harness.c: see harness.h.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 64

static pid_t children[MAX_CHILDREN];
static int nchildren;
static char tmpdir[256];
static int cleanup_registered;

static void cleanup(void) {
  for (int i = 0; i < nchildren; i++)
    if (children[i] > 0) {
      kill(children[i], SIGCONT);
      kill(children[i], SIGKILL);
      waitpid(children[i], NULL, 0);
    }
  nchildren = 0;
  if (tmpdir[0] != '\0' && getenv("DSP_KEEP_TMP") == NULL) {
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "harness: could not remove %s\n", tmpdir);
  } else if (tmpdir[0] != '\0') {
    fprintf(stderr, "harness: kept %s\n", tmpdir);
  }
}

static void on_fatal_signal(int sig) {
  cleanup();
  signal(sig, SIG_DFL);
  raise(sig);
}

static void ensure_cleanup(void) {
  if (cleanup_registered) return;
  cleanup_registered = 1;
  atexit(cleanup);
  signal(SIGINT, on_fatal_signal);
  signal(SIGTERM, on_fatal_signal);
  signal(SIGPIPE, SIG_IGN);
}

uint64_t th_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void th_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

const char *th_tmpdir(void) {
  if (tmpdir[0] == '\0') {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/dsp-test-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
      perror("harness: mkdtemp");
      exit(1);
    }
    ensure_cleanup();
  }
  return tmpdir;
}

/* $var/rel in a small ring of buffers (a few may be live at once). */
static const char *under_env(const char *var, const char *rel) {
  static char buf[8][512];
  static int k;
  const char *dir = getenv(var);
  char *b = buf[k++ % 8];
  snprintf(b, sizeof(buf[0]), "%s/%s", dir ? dir : ".", rel);
  return b;
}

const char *th_bin(const char *name) { return under_env("DSP_BIN_DIR", name); }

const char *th_src(const char *rel) { return under_env("DSP_SOURCE_DIR", rel); }

/* ---- processes ---------------------------------------------------------- */

pid_t th_spawn(const char *log, char *const argv[]) {
  pid_t pid;
  ensure_cleanup();
  if (nchildren == MAX_CHILDREN) {
    fprintf(stderr, "harness: too many children\n");
    return -1;
  }
  pid = fork();
  if (pid < 0) {
    perror("harness: fork");
    return -1;
  }
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    /* Nothing of ours leaks into the child: its descriptors are its own
       (a test may run it under a small RLIMIT_NOFILE). */
    close_range(3, ~0u, 0);
    execv(argv[0], argv);
    fprintf(stderr, "harness: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  children[nchildren++] = pid;
  return pid;
}

static void forget(pid_t pid) {
  for (int i = 0; i < nchildren; i++)
    if (children[i] == pid) children[i] = 0;
}

int th_wait_exit(pid_t pid, int timeout_ms) {
  uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
  int status;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      forget(pid);
      return status;
    }
    if (r < 0 || th_now_ms() >= end) return -1;
    th_sleep_ms(10);
  }
}

void th_signal(pid_t pid, int sig) {
  if (pid > 0) kill(pid, sig);
}

int th_stop_clean(pid_t pid, const char *log, const char *name) {
  int status, ok;
  th_signal(pid, SIGCONT);
  th_signal(pid, SIGTERM);
  status = th_wait_exit(pid, 10000);
  if (status == -1) {
    th_signal(pid, SIGKILL);
    th_wait_exit(pid, 10000);
  }
  ok = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!ok) fprintf(stderr, "%s did not exit 0 after SIGTERM (status %d)%s%s\n", name, status,
                   log ? "; see " : "", log ? log : "");
  if (log != NULL && (th_log_has(log, "Sanitizer", 0) || th_log_has(log, "runtime error:", 0) ||
                      th_log_has(log, "handles still open", 0))) {
    char cmd[700];
    fprintf(stderr, "%s: sanitizer report or leaked handles in %s:\n", name, log);
    snprintf(cmd, sizeof(cmd),
             "grep -A30 -m1 'Sanitizer\\|runtime error:\\|handles still open' '%s' >&2", log);
    if (system(cmd) != 0) fprintf(stderr, "(could not print it)\n");
    ok = 0;
  }
  return ok;
}

/* ---- logs --------------------------------------------------------------- */

static char *slurp(const char *path, long from, long *len) {
  FILE *f = fopen(path, "rb");
  char *buf;
  long n;
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  if (from > n) from = n;
  fseek(f, from, SEEK_SET);
  buf = malloc((size_t)(n - from) + 1);
  if (buf == NULL) {
    fclose(f);
    return NULL;
  }
  n = (long)fread(buf, 1, (size_t)(n - from), f);
  buf[n] = '\0';
  fclose(f);
  *len = n;
  return buf;
}

int th_log_has(const char *log, const char *needle, long from) {
  long n;
  char *buf = slurp(log, from, &n);
  int found = buf != NULL && strstr(buf, needle) != NULL;
  free(buf);
  return found;
}

int th_log_count(const char *log, const char *needle) {
  long n;
  char *buf = slurp(log, 0, &n), *p;
  int count = 0;
  if (buf == NULL) return 0;
  for (p = buf; (p = strstr(p, needle)) != NULL; p += strlen(needle)) count++;
  free(buf);
  return count;
}

long th_log_size(const char *log) {
  struct stat st;
  return stat(log, &st) == 0 ? (long)st.st_size : 0;
}

int th_wait_log(const char *log, const char *needle, long from, int timeout_ms) {
  uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
  do {
    if (th_log_has(log, needle, from)) return 1;
    th_sleep_ms(20);
  } while (th_now_ms() < end);
  return th_log_has(log, needle, from);
}

/* ---- ZooKeeper servers -------------------------------------------------- */

int th_connect(int port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int th_free_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

int zkh_4lw(zkh_ensemble *e, int i, const char *cmd, char *buf, size_t len) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  size_t n = 0;
  ssize_t r;
  struct timeval tv = {2, 0};
  if (fd < 0) return -1;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)e->client_port[i]);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd)) {
    close(fd);
    return -1;
  }
  while (n + 1 < len && (r = read(fd, buf + n, len - 1 - n)) > 0) n += (size_t)r;
  buf[n] = '\0';
  close(fd);
  return (int)n;
}

static int wait_imok(zkh_ensemble *e, int i, int timeout_ms) {
  uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
  char buf[64];
  do {
    int status;
    if (zkh_4lw(e, i, "ruok", buf, sizeof(buf)) == 4 && strcmp(buf, "imok") == 0) {
      /* imok only means the process is up; an ensemble member also needs a
         quorum before it serves. `srvr` answers with a Mode line then. */
      if (e->n == 1) return 0;
      char sbuf[1024];
      if (zkh_4lw(e, i, "srvr", sbuf, sizeof(sbuf)) > 0 && strstr(sbuf, "Mode:") != NULL)
        return 0;
    }
    if (waitpid(e->pid[i], &status, WNOHANG) == e->pid[i]) {
      fprintf(stderr, "harness: ZooKeeper server %d exited (status %d); see %s/zk%d.log\n",
              i, status, e->dir, i);
      forget(e->pid[i]);
      e->pid[i] = 0;
      return -1;
    }
    th_sleep_ms(50);
  } while (th_now_ms() < end);
  fprintf(stderr, "harness: ZooKeeper server %d did not answer imok within %d ms\n", i,
          timeout_ms);
  return -1;
}

static int spawn_server(zkh_ensemble *e, int i) {
  char cfg[512], log[512];
  char *argv[] = {"/bin/bash", NULL, cfg, NULL};
  snprintf(cfg, sizeof(cfg), "%s/zk%d/zoo.cfg", e->dir, i);
  snprintf(log, sizeof(log), "%s/zk%d.log", e->dir, i);
  argv[1] = (char *)th_src("scripts/zkserver.sh");
  e->pid[i] = th_spawn(log, argv);
  return e->pid[i] > 0 ? 0 : -1;
}

zkh_ensemble *zkh_start(int n) {
  zkh_ensemble *e = calloc(1, sizeof(*e));
  size_t off = 0;
  if (e == NULL || n < 1 || n > ZKH_MAX_SERVERS) {
    free(e);
    return NULL;
  }
  e->n = n;
  /* A fresh dir per ensemble: a second one in the same test process must
     not load the first one's data. */
  snprintf(e->dir, sizeof(e->dir), "%s/zk-XXXXXX", th_tmpdir());
  if (mkdtemp(e->dir) == NULL) {
    perror("harness: mkdtemp");
    free(e);
    return NULL;
  }
  for (int i = 0; i < n; i++) {
    e->client_port[i] = th_free_port();
    e->peer_port[i] = th_free_port();
    e->elect_port[i] = th_free_port();
  }
  for (int i = 0; i < n; i++) {
    char path[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/zk%d", e->dir, i);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/zk%d/data", e->dir, i);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/zk%d/data/myid", e->dir, i);
    if ((f = fopen(path, "w")) != NULL) {
      fprintf(f, "%d\n", i + 1);
      fclose(f);
    }
    snprintf(path, sizeof(path), "%s/zk%d/zoo.cfg", e->dir, i);
    if ((f = fopen(path, "w")) == NULL) goto fail;
    /* A short tick makes session expiry fast; sessions may still ask for
       up to a minute. Every four-letter word is allowed (wchc for tests). */
    fprintf(f,
            "tickTime=200\ninitLimit=50\nsyncLimit=25\n"
            "dataDir=%s/zk%d/data\nclientPort=%d\nclientPortAddress=127.0.0.1\n"
            "minSessionTimeout=400\nmaxSessionTimeout=60000\n"
            "4lw.commands.whitelist=*\nadmin.enableServer=false\n"
            "maxClientCnxns=0\n",
            e->dir, i, e->client_port[i]);
    if (n > 1)
      for (int j = 0; j < n; j++)
        fprintf(f, "server.%d=127.0.0.1:%d:%d\n", j + 1, e->peer_port[j], e->elect_port[j]);
    fclose(f);
    off += (size_t)snprintf(e->connect + off, sizeof(e->connect) - off, "%s127.0.0.1:%d",
                            i ? "," : "", e->client_port[i]);
  }
  for (int i = 0; i < n; i++)
    if (spawn_server(e, i) != 0) goto fail;
  for (int i = 0; i < n; i++)
    if (wait_imok(e, i, 60000) != 0) goto fail;
  return e;
fail:
  fprintf(stderr, "harness: cannot start ZooKeeper (is the zookeeper package installed? "
                  "run scripts/setup.sh)\n");
  zkh_free(e);
  return NULL;
}

void zkh_stop(zkh_ensemble *e, int i) {
  if (e->pid[i] <= 0) return;
  kill(e->pid[i], SIGTERM);
  if (th_wait_exit(e->pid[i], 10000) < 0) {
    kill(e->pid[i], SIGKILL);
    th_wait_exit(e->pid[i], 10000);
  }
  e->pid[i] = 0;
}

int zkh_restart(zkh_ensemble *e, int i) {
  if (e->pid[i] > 0) return 0;
  if (spawn_server(e, i) != 0) return -1;
  return wait_imok(e, i, 60000);
}

void zkh_free(zkh_ensemble *e) {
  if (e == NULL) return;
  for (int i = 0; i < e->n; i++) zkh_stop(e, i);
  free(e);
}

/* ---- synchronous ZooKeeper client --------------------------------------- */

struct zkc {
  zhandle_t *zh;
  int connected;
  char hosts[512];
};

typedef struct {
  int done, rc;
  char *buf;
  int len;
  struct Stat st;
  char **names;
  int max, count;
} zkc_op;

static void zkc_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
  zkc *c = ctx;
  (void)zh;
  (void)path;
  if (type == ZOO_SESSION_EVENT && c != NULL) c->connected = state == ZOO_CONNECTED_STATE;
}

/* Drive the client until *done or timeout. On a timeout the handle is
   closed at once (zkc_zh() makes a new one): closing runs the completions
   still pending, while the caller's op on its stack is alive, instead of
   some later call running them into a dead stack frame. */
static int zkc_run(zkc *c, int *done, int timeout_ms) {
  uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
  while (!*done) {
    int fd = -1, interest = 0, events = 0, wait;
    struct timeval tv = {0, 0};
    struct pollfd p;
    uint64_t now = th_now_ms();
    if (now >= end) {
      zookeeper_close(c->zh);
      c->zh = NULL;
      c->connected = 0;
      return -1;
    }
    zookeeper_interest(c->zh, &fd, &interest, &tv);
    wait = (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
    if (wait > (int)(end - now)) wait = (int)(end - now);
    if (wait > 50) wait = 50;
    p.fd = fd;
    p.events = (short)(((interest & ZOOKEEPER_READ) ? POLLIN : 0) |
                       ((interest & ZOOKEEPER_WRITE) ? POLLOUT : 0));
    p.revents = 0;
    if (fd >= 0) {
      if (poll(&p, 1, wait) > 0) {
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) events |= ZOOKEEPER_READ;
        if (p.revents & POLLOUT) events |= ZOOKEEPER_WRITE;
      }
    } else {
      th_sleep_ms(wait > 0 ? wait : 1);
    }
    zookeeper_process(c->zh, events);
  }
  return 0;
}

zkc *zkc_connect(const char *hosts, int timeout_ms) {
  zkc *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  zoo_set_debug_level((ZooLogLevel)0);
  snprintf(c->hosts, sizeof(c->hosts), "%s", hosts);
  c->zh = zookeeper_init(hosts, zkc_watcher, 10000, NULL, c, 0);
  if (c->zh == NULL || zkc_run(c, &c->connected, timeout_ms) != 0) {
    fprintf(stderr, "harness: cannot connect to ZooKeeper at %s\n", hosts);
    zkc_close(c);
    return NULL;
  }
  return c;
}

/* The handle, made anew after a timed-out call (zkc_run) or an expired
   session: the harness's session holds no ephemeral znodes, and a dead
   handle would fail every later read while the members are fine. */
static zhandle_t *zkc_zh(zkc *c) {
  int st = c->zh ? zoo_state(c->zh) : ZOO_EXPIRED_SESSION_STATE;
  if (st == ZOO_EXPIRED_SESSION_STATE || st == ZOO_AUTH_FAILED_STATE) {
    if (c->zh) zookeeper_close(c->zh);
    c->connected = 0;
    c->zh = zookeeper_init(c->hosts, zkc_watcher, 10000, NULL, c, 0);
    if (c->zh) (void)zkc_run(c, &c->connected, 10000);
  }
  return c->zh;
}

void zkc_close(zkc *c) {
  if (c == NULL) return;
  if (c->zh) zookeeper_close(c->zh);
  free(c);
}

static void get_done(int rc, const char *value, int len, const struct Stat *st, const void *d) {
  zkc_op *op = (zkc_op *)d;
  op->rc = rc;
  if (rc == ZOK) {
    int n = len < 0 ? 0 : len;
    if (n >= op->len) n = op->len - 1;
    if (value && n > 0) memcpy(op->buf, value, (size_t)n);
    op->buf[n] = '\0';
    if (st) op->st = *st;
  }
  op->done = 1;
}

int zkc_get(zkc *c, const char *path, char *buf, int len, struct Stat *st) {
  zkc_op op = {0};
  op.buf = buf;
  op.len = len;
  buf[0] = '\0';
  if (zoo_aget(zkc_zh(c), path, 0, get_done, &op) != ZOK || zkc_run(c, &op.done, 10000) != 0)
    return ZOPERATIONTIMEOUT;
  if (st) *st = op.st;
  return op.rc;
}

static void children_done(int rc, const struct String_vector *sv, const void *d) {
  zkc_op *op = (zkc_op *)d;
  op->rc = rc;
  if (rc == ZOK && sv)
    for (int i = 0; i < sv->count && op->count < op->max; i++)
      op->names[op->count++] = strdup(sv->data[i]);
  op->done = 1;
}

int zkc_children(zkc *c, const char *path, char **names, int max) {
  zkc_op op = {0};
  op.names = names;
  op.max = max;
  if (zoo_aget_children(zkc_zh(c), path, 0, children_done, &op) != ZOK ||
      zkc_run(c, &op.done, 10000) != 0)
    return -ZOPERATIONTIMEOUT;
  return op.rc == ZOK ? op.count : (op.rc < 0 ? op.rc : -op.rc);
}

void zkc_free_names(char **names, int n) {
  for (int i = 0; i < n; i++) free(names[i]);
}

static void void_done(int rc, const void *d) {
  zkc_op *op = (zkc_op *)d;
  op->rc = rc;
  op->done = 1;
}

static void stat_done(int rc, const struct Stat *st, const void *d) {
  zkc_op *op = (zkc_op *)d;
  (void)st;
  op->rc = rc;
  op->done = 1;
}

int zkc_delete_all(zkc *c, const char *path) {
  char *names[256];
  int n = zkc_children(c, path, names, 256);
  zkc_op op = {0};
  if (n < 0) return -n;
  for (int i = 0; i < n; i++) {
    char child[1024];
    snprintf(child, sizeof(child), "%s/%s", path, names[i]);
    zkc_delete_all(c, child);
  }
  zkc_free_names(names, n);
  if (zoo_adelete(zkc_zh(c), path, -1, void_done, &op) != ZOK || zkc_run(c, &op.done, 10000) != 0)
    return ZOPERATIONTIMEOUT;
  return op.rc;
}

int zkc_set(zkc *c, const char *path, const char *data) {
  zkc_op op = {0};
  if (zoo_aset(zkc_zh(c), path, data, (int)strlen(data), -1, stat_done, &op) != ZOK ||
      zkc_run(c, &op.done, 10000) != 0)
    return ZOPERATIONTIMEOUT;
  return op.rc;
}

static void create_done(int rc, const char *value, const void *d) {
  zkc_op *op = (zkc_op *)d;
  (void)value;
  op->rc = rc;
  op->done = 1;
}

int zkc_create(zkc *c, const char *path, const char *data) {
  zkc_op op = {0};
  if (zoo_acreate(zkc_zh(c), path, data, (int)strlen(data), &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT,
                  create_done, &op) != ZOK ||
      zkc_run(c, &op.done, 10000) != 0)
    return ZOPERATIONTIMEOUT;
  return op.rc;
}
