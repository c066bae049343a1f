/*
 * json.h: a strict reader for the flat JSON objects we keep in znodes, such
 * as {"id":"d1","addr":"127.0.0.1:7001"}, and a string escaper for writing
 * them. Znode data can be written by hand with zkCli, so everything here
 * treats its input as untrusted: any deviation from RFC 8259 is an error with
 * a message saying where, never a crash or a read past `len`.
 *
 * Only what znodes need is supported: one top-level object whose values are
 * strings, integers (64-bit), true, false or null. Nested objects, arrays and
 * fractions are rejected ("unsupported value").
 */
#ifndef DSP_JSON_H
#define DSP_JSON_H

#include <stddef.h>

typedef enum {
  DSP_JSON_STRING,
  DSP_JSON_INT,
  DSP_JSON_BOOL,
  DSP_JSON_NULL
} dsp_json_type;

typedef struct {
  const char *key;   /* NUL-terminated, unescaped; valid during the callback */
  dsp_json_type type;
  const char *str;   /* DSP_JSON_STRING: unescaped, NUL-terminated */
  size_t str_len;    /* may be < strlen(str) never: embedded \u0000 rejected */
  long long num;     /* DSP_JSON_INT; DSP_JSON_BOOL: 0 or 1 */
} dsp_json_member;

/* Called for each member in order; return non-zero to stop with that code. */
typedef int (*dsp_json_member_cb)(const dsp_json_member *m, void *ctx);

/*
 * Parse s[0..len) as one object and call cb for each member. Returns 0 on
 * success, the callback's non-zero value if it stopped the walk, or -1 on a
 * syntax error with a message in err[errlen] (e.g. "byte 7: expected ':'").
 * Duplicate keys are an error. s need not be NUL-terminated.
 */
int dsp_json_parse(const char *s, size_t len, dsp_json_member_cb cb, void *ctx,
                   char *err, size_t errlen);

/*
 * Write `in` as a JSON string literal (with quotes) into out[outlen].
 * Returns 0, or -1 if it does not fit.
 */
int dsp_json_quote(const char *in, char *out, size_t outlen);

/* Print `in` as a JSON string literal to out ("" if it is too long). */
#include <stdio.h>
void dsp_json_print(FILE *out, const char *in);

#endif
