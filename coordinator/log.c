/*
 * log.c: see log.h. Each record is formatted into one buffer and written
 * with a single write(2), so lines from several processes sharing a file
 * do not interleave mid-line.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static dsp_log_level cur_level = DSP_LOG_INFO;
static char prefix[128] = "dispatcher";

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const level_tags[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};

void dsp_log_init(const char *program, const char *id) {
  if (id != NULL && *id != '\0')
    snprintf(prefix, sizeof(prefix), "%s[%d] %s", program, (int)getpid(), id);
  else
    snprintf(prefix, sizeof(prefix), "%s[%d]", program, (int)getpid());
}

void dsp_log_set_level(dsp_log_level level) { cur_level = level; }

dsp_log_level dsp_log_get_level(void) { return cur_level; }

int dsp_log_parse_level(const char *s, dsp_log_level *out) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, level_names[i]) == 0) {
      *out = (dsp_log_level)i;
      return 0;
    }
  return -1;
}

void dsp_log(dsp_log_level level, int err, const char *fmt, ...) {
  char buf[2048];
  struct timeval tv;
  struct tm tm;
  size_t n;
  va_list ap;

  if (level > cur_level) return;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(buf + n, sizeof(buf) - n, ".%03dZ %s %s: ",
                        (int)(tv.tv_usec / 1000), level_tags[level], prefix);
  va_start(ap, fmt);
  if (n < sizeof(buf)) n += (size_t)vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
  va_end(ap);
  if (err != 0 && n < sizeof(buf))
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, ": %s", strerror(err));
  if (n > sizeof(buf) - 2) n = sizeof(buf) - 2;
  buf[n++] = '\n';
  (void)!write(STDERR_FILENO, buf, n);
}
