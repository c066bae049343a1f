/*
 * log.h: one-line log records on stderr:
 *   2026-11-23T19:41:58.123Z INFO  dispatcherd[1234] d1: coordinator epoch=42
 * Levels follow syslog's order. The prefix (program and member id) is set
 * once at start-up. errno is passed explicitly (nginx's ngx_log_error habit),
 * never read behind the caller's back.
 */
#ifndef DSP_LOG_H
#define DSP_LOG_H

typedef enum {
  DSP_LOG_ERROR = 0,
  DSP_LOG_WARN = 1,
  DSP_LOG_INFO = 2,
  DSP_LOG_DEBUG = 3
} dsp_log_level;

/* Set the program name and member id printed on every line (copied). */
void dsp_log_init(const char *program, const char *id);
void dsp_log_set_level(dsp_log_level level);
dsp_log_level dsp_log_get_level(void);

/* "error", "warn", "info", "debug" -> level; returns 0, or -1 if unknown. */
int dsp_log_parse_level(const char *s, dsp_log_level *out);

/* Log at `level`; when err != 0, ": strerror(err)" is appended. */
void dsp_log(dsp_log_level level, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define DSP_ERROR(...) dsp_log(DSP_LOG_ERROR, 0, __VA_ARGS__)
#define DSP_WARN(...) dsp_log(DSP_LOG_WARN, 0, __VA_ARGS__)
#define DSP_INFO(...) dsp_log(DSP_LOG_INFO, 0, __VA_ARGS__)
#define DSP_DEBUG(...) dsp_log(DSP_LOG_DEBUG, 0, __VA_ARGS__)

#endif
