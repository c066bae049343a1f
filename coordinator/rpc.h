/*
 * rpc.h: short names for the protobuf-c types of proto/dispatcher.proto, and
 * the helpers every RPC speaker shares: packing a message into a frame.
 */
#ifndef DSP_RPC_H
#define DSP_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "dispatcher.pb-c.h"

typedef Dispatcher__V1__Request dsp_pb_request;
typedef Dispatcher__V1__Response dsp_pb_response;
typedef Dispatcher__V1__Error dsp_pb_error;
typedef Dispatcher__V1__ErrorCode dsp_pb_code;

#define DSP_PB(name) DISPATCHER__V1__##name

/* The error code's name as in the proto ("NOT_COORDINATOR"), or "UNKNOWN". */
const char *dsp_rpc_code_name(int code);

#endif
