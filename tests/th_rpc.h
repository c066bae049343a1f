/*
 * th_rpc.h: for integration tests that talk to members over the RPC
 * (they link dsp_rpc; the harness itself does not).
 */
#ifndef TH_RPC_H
#define TH_RPC_H

#include <stdio.h>

#include "client.h"

/* One request, one response, with the client's failover; NULL (the reason
   on stderr) when no response came. Free it with dsp_client_free_response. */
static inline dsp_pb_response *th_call(dsp_client *c, dsp_pb_request *req) {
  dsp_pb_response *r = NULL;
  char err[256];
  if (dsp_client_call(c, req, &r, err, sizeof(err)) != 0) {
    fprintf(stderr, "call: %s\n", err);
    return NULL;
  }
  return r;
}

#endif
