/*
 * zkloop.h: drives the single-threaded ZooKeeper C client (zookeeper_st)
 * from a libuv loop, so ZooKeeper shares the loop with everything else and
 * needs no thread.
 *
 * How (the pattern of ZooKeeper's cli.c, on libuv like node-zookeeper):
 * zookeeper_interest() says which fd to watch, for what, and for how long;
 * we hold a uv_poll on that fd and a uv_timer for that timeout, and call
 * zookeeper_process() when either fires. PINGs are sent from inside
 * zookeeper_interest(), so it must be called again after every
 * zookeeper_process() and after every zoo_a*() call (which only queues
 * output): dsp_zkloop_kick() asks for that before the loop next blocks.
 * The fd changes on reconnect and is -1 while the client backs off. We poll
 * a dup() of it, never the client's own number: the client may close its
 * socket inside any zoo_a*() call, and that number may then be handed to
 * another connection on this loop before we re-arm; polling the dup keeps
 * libuv's view of every fd true. A new client socket is recognised by its
 * inode, since a reconnect often reuses the old fd number.
 *
 * Rule: never call dsp_zkloop_close() from inside a ZooKeeper callback
 * (completion or watcher): the client is still on the stack. Schedule it.
 */
#ifndef DSP_ZKLOOP_H
#define DSP_ZKLOOP_H

#include <stdint.h>
#include <uv.h>
#include <zookeeper/zookeeper.h>

typedef struct dsp_zkloop dsp_zkloop;

/*
 * Create a driver on `loop`. `watcher` is the session watcher given to
 * zookeeper_init(), called with `ctx` as its watcherCtx. Returns NULL when
 * out of memory. Owned by the caller; release with dsp_zkloop_free().
 */
dsp_zkloop *dsp_zkloop_new(uv_loop_t *loop, watcher_fn watcher, void *ctx);

/*
 * Open a new session to `hosts` ("h:p,h:p[/chroot]") asking for
 * `session_timeout_ms`. Returns 0, or a negative errno (-EINVAL for a host
 * string the client rejects). Fails with -EBUSY if a session is open.
 */
int dsp_zkloop_open(dsp_zkloop *zl, const char *hosts, int session_timeout_ms);

/*
 * Close the session (zookeeper_close: if connected, the server deletes our
 * ephemeral znodes at once). Pending completions are called with ZCLOSING
 * before this returns. No-op when nothing is open. Not from a ZK callback.
 */
void dsp_zkloop_close(dsp_zkloop *zl);

/* The open handle, or NULL. */
zhandle_t *dsp_zkloop_handle(const dsp_zkloop *zl);

/* Re-arm poll and timer before the loop blocks again (after zoo_a* calls). */
void dsp_zkloop_kick(dsp_zkloop *zl);

/* uv_now() of the last time bytes arrived from the server (or of open). */
uint64_t dsp_zkloop_last_heard(const dsp_zkloop *zl);

/*
 * Called when bytes from the server are about to be processed, with how
 * long the connection had been silent, before that silence is forgotten:
 * bytes read after a freeze may have waited in the socket all along, so a
 * lease must be judged on the silence, not on their arrival.
 */
void dsp_zkloop_on_wake(dsp_zkloop *zl, void (*cb)(void *ctx, uint64_t silent_ms), void *ctx);

/* Close the session if open, then the libuv handles; frees on the loop. */
void dsp_zkloop_free(dsp_zkloop *zl);

/* Map --log-level onto the client's own logger (it is chatty at INFO). */
void dsp_zkloop_set_client_log(int debug);

#endif
