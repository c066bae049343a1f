/*
 * util.c: see util.h. Nothing here allocates or does I/O (setrlimit aside).
 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

uint64_t dsp_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int dsp_parse_hostport(const char *s, char *host, size_t hostlen, int *port) {
  const char *colon, *hs, *he;
  long long p;

  if (s == NULL || *s == '\0') return -1;
  if (s[0] == '[') {
    he = strchr(s, ']');
    if (he == NULL || he[1] != ':') return -1;
    hs = s + 1;
    colon = he + 1;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL) return -1;
    hs = s;
    he = colon;
    if (memchr(hs, ':', (size_t)(he - hs)) != NULL) return -1; /* bare v6 */
  }
  if (he == hs || (size_t)(he - hs) >= hostlen) return -1;
  for (const char *c = hs; c < he; c++)
    if (!isalnum((unsigned char)*c) && *c != '.' && *c != '-' && *c != ':' &&
        *c != '_')
      return -1;
  if (dsp_parse_int(colon + 1, 1, 65535, &p) != 0) return -1;
  memcpy(host, hs, (size_t)(he - hs));
  host[he - hs] = '\0';
  *port = (int)p;
  return 0;
}

int dsp_id_valid(const char *id) {
  size_t n = id ? strlen(id) : 0;
  if (n == 0 || n > DSP_ID_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)id[i];
    if (!isalnum(c) && c != '.' && c != '_' && c != ':' && c != '-') return 0;
  }
  return 1;
}

int dsp_parse_int(const char *s, long long min, long long max, long long *out) {
  char *end;
  long long v;
  if (s == NULL || *s == '\0' || isspace((unsigned char)*s)) return -1;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max) return -1;
  *out = v;
  return 0;
}

int dsp_fmt(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(buf, len, fmt, ap);
  va_end(ap);
  return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

void dsp_raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
}
