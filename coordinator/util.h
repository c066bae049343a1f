/*
 * util.h: small helpers shared by every binary: the monotonic clock,
 * "host:port" and member-id validation, and strict number parsing for flags
 * and znode data. All functions are pure except dsp_now_ms().
 */
#ifndef DSP_UTIL_H
#define DSP_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define DSP_ID_MAX 64        /* longest member id, in bytes */
#define DSP_ADDR_MAX 256     /* longest "host:port" */

/* Milliseconds on the monotonic clock (never jumps with wall-clock changes). */
uint64_t dsp_now_ms(void);

/*
 * Split "host:port" (or "[v6]:port") into host and port. The host is copied
 * into host[hostlen] without brackets. Returns 0, or -1 when the string is not
 * a host followed by a port in 1..65535 or the host does not fit.
 */
int dsp_parse_hostport(const char *s, char *host, size_t hostlen, int *port);

/*
 * A member id is 1..DSP_ID_MAX bytes of [A-Za-z0-9._:-]: it becomes part of a
 * znode name, so it must not hold '/', spaces or control bytes. Returns 1 if
 * valid, 0 if not.
 */
int dsp_id_valid(const char *id);

/*
 * Parse a whole decimal integer in [min, max]. Leading/trailing garbage, an
 * empty string and overflow are errors. Returns 0 and sets *out, or -1.
 */
int dsp_parse_int(const char *s, long long min, long long max, long long *out);

/* snprintf that reports truncation: returns 0 if everything fit, -1 if not. */
int dsp_fmt(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Raise the soft limit on open files to the hard one (as nginx's
   worker_rlimit_nofile and Redis do): a coordinator probing thousands of
   workers, or a worker standing in for them, holds that many sockets. */
void dsp_raise_nofile(void);

#define DSP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define DSP_CONTAINER_OF(ptr, type, field) \
  ((type *)((char *)(ptr) - offsetof(type, field)))

#endif
