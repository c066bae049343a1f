/*
 * client.h: a small blocking client for the dispatcher RPC, used by
 * dispatchctl, the tests and the benchmark.
 *
 * It is given a list of servers ("h:p,h:p,…") and talks to one at a time;
 * when a connection fails it moves on to the next. Requests may be
 * pipelined: send several, then receive their responses (matched by id by
 * the caller; the server may answer out of order). Every wait is bounded by
 * the timeout given at creation.
 */
#ifndef DSP_CLIENT_H
#define DSP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "rpc.h"

typedef struct dsp_client dsp_client;

/*
 * Parse the server list and connect to the first server that answers.
 * Returns NULL with a message in err[errlen] when the list is malformed
 * (errno EINVAL) or no server accepts a connection.
 */
dsp_client *dsp_client_new(const char *servers, int timeout_ms, char *err, size_t errlen);
void dsp_client_free(dsp_client *c);

/* "host:port" of the server currently connected to. */
const char *dsp_client_server(const dsp_client *c);

/* A fresh request id (1, 2, …). */
uint64_t dsp_client_next_id(dsp_client *c);

/*
 * Queue req (its id set by the caller) for sending. Returns 0, or -1 if it
 * cannot be encoded. Nothing is written until dsp_client_flush() or a
 * receive.
 */
int dsp_client_send(dsp_client *c, const dsp_pb_request *req);

/* Write everything queued. Returns 0 or -1 (connection lost; see err). */
int dsp_client_flush(dsp_client *c, char *err, size_t errlen);

/*
 * Wait for the next response (flushing first). Returns 0 and sets *resp
 * (free with dsp_client_free_response), or -1 on timeout, a lost connection
 * or an undecodable reply, with err set.
 */
int dsp_client_recv(dsp_client *c, dsp_pb_response **resp, char *err, size_t errlen);
void dsp_client_free_response(dsp_pb_response *resp);

/*
 * One request, one response, with failover: if the connection fails before
 * the response arrives, reconnect to the next server in the list (each at
 * most once) and send again. Only for requests that are safe to repeat
 * (Status, Route, and Report and admin writes: they are sent again with the
 * same id and this client's random client_token, so they are applied once).
 * Sets
 * req->id (and client_token, if 0). Returns as recv().
 */
int dsp_client_call(dsp_client *c, dsp_pb_request *req, dsp_pb_response **resp, char *err,
                    size_t errlen);

#endif
