/*
 * zkloop.c: see zkloop.h.
 */
#include "zkloop.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

typedef struct {
  uv_poll_t handle;
  int dupfd;        /* closed when the handle is */
} zk_poll;

struct dsp_zkloop {
  uv_loop_t *loop;
  zhandle_t *zh;
  watcher_fn watcher;
  void *ctx;
  zk_poll *poll;    /* on a dup of the client's socket; NULL when none */
  dev_t dev;        /* identity of the socket polled */
  ino_t ino;
  int events;       /* UV_READABLE/UV_WRITABLE now polled for */
  void (*wake_cb)(void *ctx, uint64_t silent_ms);
  void *wake_ctx;
  uv_timer_t timer;
  uv_prepare_t prepare;
  int dirty;        /* re-arm before the loop blocks */
  int closing;      /* dsp_zkloop_free() called */
  int nhandles;     /* open libuv handles, for free */
  uint64_t last_heard;
};

static void rearm(dsp_zkloop *zl);

static void on_handle_closed(uv_handle_t *h) {
  dsp_zkloop *zl = h->data;
  if (h != (uv_handle_t *)&zl->timer && h != (uv_handle_t *)&zl->prepare) {
    zk_poll *p = (zk_poll *)h;
    close(p->dupfd);
    free(p);
  }
  if (--zl->nhandles == 0 && zl->closing) free(zl);
}

static void drop_poll(dsp_zkloop *zl) {
  if (zl->poll == NULL) return;
  uv_close((uv_handle_t *)&zl->poll->handle, on_handle_closed);
  zl->poll = NULL;
  zl->events = 0;
}

/* Poll a dup of the client's socket `fd`, unless we already do. */
static void watch_socket(dsp_zkloop *zl, int fd) {
  struct stat st;
  zk_poll *p;
  if (fstat(fd, &st) != 0) {
    drop_poll(zl);
    return;
  }
  if (zl->poll != NULL && st.st_ino == zl->ino && st.st_dev == zl->dev) return;
  drop_poll(zl);
  p = malloc(sizeof(*p));
  if (p == NULL) goto fail;
  p->dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (p->dupfd < 0) goto fail;
  if (uv_poll_init(zl->loop, &p->handle, p->dupfd) != 0) {
    close(p->dupfd);
    goto fail;
  }
  p->handle.data = zl;
  zl->nhandles++;
  zl->poll = p;
  zl->dev = st.st_dev;
  zl->ino = st.st_ino;
  return;
fail:
  free(p);
  DSP_ERROR("cannot watch the ZooKeeper socket (fd %d)", fd);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  dsp_zkloop *zl = p->data;
  if (zl->poll == NULL || p != &zl->poll->handle) return; /* being replaced */
  int zev = 0;
  if (zl->zh == NULL) return;
  if (status < 0) {
    /* e.g. EBADF after the client closed the socket: let it notice. */
    zev = ZOOKEEPER_READ | ZOOKEEPER_WRITE;
  } else {
    if (events & UV_READABLE) zev |= ZOOKEEPER_READ;
    if (events & UV_WRITABLE) zev |= ZOOKEEPER_WRITE;
  }
  if (zev & ZOOKEEPER_READ) {
    uint64_t now = uv_now(zl->loop);
    if (zl->wake_cb) zl->wake_cb(zl->wake_ctx, now - zl->last_heard);
    zl->last_heard = now;
    if (zl->zh == NULL) return;
  }
  zookeeper_process(zl->zh, zev);
  /* A callback may have closed the session (it must not, but be safe). */
  if (zl->zh != NULL) rearm(zl);
}

static void on_timer(uv_timer_t *t) {
  dsp_zkloop *zl = t->data;
  if (zl->zh == NULL) return;
  zookeeper_process(zl->zh, 0);
  if (zl->zh != NULL) rearm(zl);
}

static void on_prepare(uv_prepare_t *p) {
  dsp_zkloop *zl = p->data;
  if (zl->dirty && zl->zh != NULL) rearm(zl);
}

static void rearm(dsp_zkloop *zl) {
  int fd = -1, interest = 0, rc, events = 0;
  struct timeval tv = {0, 0};
  uint64_t ms;

  zl->dirty = 0;
  rc = zookeeper_interest(zl->zh, &fd, &interest, &tv);
  if (rc != ZOK && rc != ZCONNECTIONLOSS && rc != ZOPERATIONTIMEOUT)
    DSP_DEBUG("zookeeper_interest: %s", zerror(rc));
  if (fd >= 0) watch_socket(zl, fd);
  else drop_poll(zl);
  if (zl->poll != NULL) {
    if (interest & ZOOKEEPER_READ) events |= UV_READABLE;
    if (interest & ZOOKEEPER_WRITE) events |= UV_WRITABLE;
    if (events != zl->events) {
      if (events != 0) uv_poll_start(&zl->poll->handle, events, on_poll);
      else uv_poll_stop(&zl->poll->handle);
      zl->events = events;
    }
  }
  ms = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
  uv_timer_start(&zl->timer, on_timer, ms, 0);
}

dsp_zkloop *dsp_zkloop_new(uv_loop_t *loop, watcher_fn watcher, void *ctx) {
  dsp_zkloop *zl = calloc(1, sizeof(*zl));
  if (zl == NULL) return NULL;
  zl->loop = loop;
  zl->watcher = watcher;
  zl->ctx = ctx;
  uv_timer_init(loop, &zl->timer);
  uv_prepare_init(loop, &zl->prepare);
  zl->timer.data = zl;
  zl->prepare.data = zl;
  zl->nhandles = 2;
  return zl;
}

int dsp_zkloop_open(dsp_zkloop *zl, const char *hosts, int session_timeout_ms) {
  if (zl->zh != NULL) return -EBUSY;
  errno = 0;
  zl->zh = zookeeper_init(hosts, zl->watcher, session_timeout_ms, NULL, zl->ctx, 0);
  if (zl->zh == NULL) return errno ? -errno : -EINVAL;
  zl->last_heard = uv_now(zl->loop);
  uv_prepare_start(&zl->prepare, on_prepare);
  uv_unref((uv_handle_t *)&zl->prepare); /* the timer keeps the loop alive */
  rearm(zl);
  return 0;
}

void dsp_zkloop_close(dsp_zkloop *zl) {
  zhandle_t *zh = zl->zh;
  if (zh == NULL) return;
  zl->zh = NULL; /* callbacks run inside zookeeper_close see no handle */
  drop_poll(zl);
  uv_timer_stop(&zl->timer);
  uv_prepare_stop(&zl->prepare);
  zookeeper_close(zh);
}

zhandle_t *dsp_zkloop_handle(const dsp_zkloop *zl) { return zl->zh; }

void dsp_zkloop_kick(dsp_zkloop *zl) { zl->dirty = 1; }

uint64_t dsp_zkloop_last_heard(const dsp_zkloop *zl) { return zl->last_heard; }

void dsp_zkloop_on_wake(dsp_zkloop *zl, void (*cb)(void *ctx, uint64_t silent_ms), void *ctx) {
  zl->wake_cb = cb;
  zl->wake_ctx = ctx;
}

void dsp_zkloop_free(dsp_zkloop *zl) {
  if (zl == NULL) return;
  dsp_zkloop_close(zl);
  zl->closing = 1;
  uv_close((uv_handle_t *)&zl->timer, on_handle_closed);
  uv_close((uv_handle_t *)&zl->prepare, on_handle_closed);
}

void dsp_zkloop_set_client_log(int debug) {
  zoo_set_log_stream(stderr);
  /* 0 turns the client's logger off: we log session changes ourselves, and
     its per-retry connect errors would flood the log during an outage. */
  zoo_set_debug_level(debug ? ZOO_LOG_LEVEL_WARN : (ZooLogLevel)0);
}
