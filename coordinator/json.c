/*
 * json.c: see json.h. A recursive-descent reader over one flat object.
 * Strings are unescaped into fixed buffers; a key or value longer than the
 * buffer is an error, which bounds the work per znode.
 */
#include "json.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 128
#define STR_MAX 4096

typedef struct {
  const char *s;
  size_t len, pos;
  char *err;
  size_t errlen;
} reader;

static int fail(reader *r, const char *what) {
  if (r->errlen > 0) snprintf(r->err, r->errlen, "byte %zu: %s", r->pos, what);
  return -1;
}

static void skip_ws(reader *r) {
  while (r->pos < r->len && (r->s[r->pos] == ' ' || r->s[r->pos] == '\t' ||
                             r->s[r->pos] == '\n' || r->s[r->pos] == '\r'))
    r->pos++;
}

static int hex4(reader *r, unsigned *out) {
  unsigned v = 0;
  if (r->len - r->pos < 4) return fail(r, "short \\u escape");
  for (int i = 0; i < 4; i++) {
    char c = r->s[r->pos++];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return fail(r, "bad hex digit in \\u escape");
  }
  *out = v;
  return 0;
}

/* Append code point cp as UTF-8. */
static int put_utf8(reader *r, char *out, size_t cap, size_t *n, unsigned cp) {
  char b[4];
  size_t k;
  if (cp == 0) return fail(r, "\\u0000 not allowed");
  if (cp < 0x80) { b[0] = (char)cp; k = 1; }
  else if (cp < 0x800) { b[0] = (char)(0xC0 | (cp >> 6)); b[1] = (char)(0x80 | (cp & 0x3F)); k = 2; }
  else if (cp < 0x10000) { b[0] = (char)(0xE0 | (cp >> 12)); b[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); b[2] = (char)(0x80 | (cp & 0x3F)); k = 3; }
  else { b[0] = (char)(0xF0 | (cp >> 18)); b[1] = (char)(0x80 | ((cp >> 12) & 0x3F)); b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (char)(0x80 | (cp & 0x3F)); k = 4; }
  if (*n + k >= cap) return fail(r, "string too long");
  memcpy(out + *n, b, k);
  *n += k;
  return 0;
}

static int read_string(reader *r, char *out, size_t cap, size_t *outn) {
  size_t n = 0;
  if (r->pos >= r->len || r->s[r->pos] != '"') return fail(r, "expected '\"'");
  r->pos++;
  for (;;) {
    unsigned char c;
    if (r->pos >= r->len) return fail(r, "unterminated string");
    c = (unsigned char)r->s[r->pos++];
    if (c == '"') break;
    if (c < 0x20) return fail(r, "control character in string");
    if (c == '\\') {
      unsigned cp;
      if (r->pos >= r->len) return fail(r, "unterminated escape");
      c = (unsigned char)r->s[r->pos++];
      switch (c) {
        case '"': case '\\': case '/': cp = c; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
          if (hex4(r, &cp) != 0) return -1;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned lo;
            if (r->len - r->pos < 2 || r->s[r->pos] != '\\' || r->s[r->pos + 1] != 'u')
              return fail(r, "lone surrogate");
            r->pos += 2;
            if (hex4(r, &lo) != 0) return -1;
            if (lo < 0xDC00 || lo > 0xDFFF) return fail(r, "bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return fail(r, "lone surrogate");
          }
          break;
        default:
          return fail(r, "bad escape");
      }
      if (put_utf8(r, out, cap, &n, cp) != 0) return -1;
      continue;
    }
    if (n + 1 >= cap) return fail(r, "string too long");
    out[n++] = (char)c;
  }
  out[n] = '\0';
  *outn = n;
  return 0;
}

static int match_word(reader *r, const char *w) {
  size_t k = strlen(w);
  if (r->len - r->pos < k || memcmp(r->s + r->pos, w, k) != 0) return 0;
  r->pos += k;
  return 1;
}

static int read_value(reader *r, dsp_json_member *m, char *strbuf) {
  char c;
  if (r->pos >= r->len) return fail(r, "expected a value");
  c = r->s[r->pos];
  if (c == '"') {
    m->type = DSP_JSON_STRING;
    m->str = strbuf;
    return read_string(r, strbuf, STR_MAX, &m->str_len);
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    char num[32];
    size_t start = r->pos, k;
    char *end;
    if (c == '-') r->pos++;
    if (r->pos >= r->len || !isdigit((unsigned char)r->s[r->pos]))
      return fail(r, "bad number");
    if (r->s[r->pos] == '0' && r->pos + 1 < r->len &&
        isdigit((unsigned char)r->s[r->pos + 1]))
      return fail(r, "leading zero in number");
    while (r->pos < r->len && isdigit((unsigned char)r->s[r->pos])) r->pos++;
    if (r->pos < r->len && (r->s[r->pos] == '.' || r->s[r->pos] == 'e' ||
                            r->s[r->pos] == 'E'))
      return fail(r, "unsupported value (only integers)");
    k = r->pos - start;
    if (k >= sizeof(num)) return fail(r, "number out of range");
    memcpy(num, r->s + start, k);
    num[k] = '\0';
    errno = 0;
    m->num = strtoll(num, &end, 10);
    if (errno != 0) return fail(r, "number out of range");
    m->type = DSP_JSON_INT;
    return 0;
  }
  if (match_word(r, "true")) { m->type = DSP_JSON_BOOL; m->num = 1; return 0; }
  if (match_word(r, "false")) { m->type = DSP_JSON_BOOL; m->num = 0; return 0; }
  if (match_word(r, "null")) { m->type = DSP_JSON_NULL; return 0; }
  if (c == '{' || c == '[') return fail(r, "unsupported value (nested)");
  return fail(r, "expected a value");
}

#define SEEN_MAX 64

int dsp_json_parse(const char *s, size_t len, dsp_json_member_cb cb, void *ctx,
                   char *err, size_t errlen) {
  reader r = {s, len, 0, err, errlen};
  char key[KEY_MAX];
  char *strbuf;
  char (*seen)[KEY_MAX];
  int nseen = 0, rc = -1;

  if (errlen > 0) err[0] = '\0';
  strbuf = malloc(STR_MAX);
  seen = malloc(sizeof(*seen) * SEEN_MAX);
  if (strbuf == NULL || seen == NULL) {
    free(strbuf);
    free(seen);
    if (errlen > 0) snprintf(err, errlen, "out of memory");
    return -1;
  }
  skip_ws(&r);
  if (r.pos >= r.len || r.s[r.pos] != '{') {
    fail(&r, "expected '{'");
    goto out;
  }
  r.pos++;
  skip_ws(&r);
  if (r.pos < r.len && r.s[r.pos] == '}') {
    r.pos++;
  } else {
    for (;;) {
      dsp_json_member m;
      size_t klen;
      memset(&m, 0, sizeof(m));
      skip_ws(&r);
      if (read_string(&r, key, sizeof(key), &klen) != 0) goto out;
      for (int i = 0; i < nseen; i++)
        if (strcmp(seen[i], key) == 0) {
          fail(&r, "duplicate key");
          goto out;
        }
      if (nseen == SEEN_MAX) {
        fail(&r, "too many keys");
        goto out;
      }
      memcpy(seen[nseen++], key, klen + 1);
      skip_ws(&r);
      if (r.pos >= r.len || r.s[r.pos] != ':') {
        fail(&r, "expected ':'");
        goto out;
      }
      r.pos++;
      skip_ws(&r);
      m.key = key;
      if (read_value(&r, &m, strbuf) != 0) goto out;
      if (cb != NULL) {
        int crc = cb(&m, ctx);
        if (crc != 0) {
          rc = crc;
          goto out;
        }
      }
      skip_ws(&r);
      if (r.pos < r.len && r.s[r.pos] == ',') {
        r.pos++;
        continue;
      }
      if (r.pos < r.len && r.s[r.pos] == '}') {
        r.pos++;
        break;
      }
      fail(&r, "expected ',' or '}'");
      goto out;
    }
  }
  skip_ws(&r);
  if (r.pos != r.len) {
    fail(&r, "trailing data after object");
    goto out;
  }
  rc = 0;
out:
  free(strbuf);
  free(seen);
  return rc;
}

int dsp_json_quote(const char *in, char *out, size_t outlen) {
  size_t n = 0;
  if (outlen < 3) return -1;
  out[n++] = '"';
  for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
    char esc[8];
    size_t k;
    if (*p == '"' || *p == '\\') { esc[0] = '\\'; esc[1] = (char)*p; k = 2; }
    else if (*p == '\n') { memcpy(esc, "\\n", 2); k = 2; }
    else if (*p == '\t') { memcpy(esc, "\\t", 2); k = 2; }
    else if (*p == '\r') { memcpy(esc, "\\r", 2); k = 2; }
    else if (*p < 0x20) { k = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", *p); }
    else { esc[0] = (char)*p; k = 1; }
    if (n + k + 2 > outlen) return -1;
    memcpy(out + n, esc, k);
    n += k;
  }
  out[n++] = '"';
  out[n] = '\0';
  return 0;
}

void dsp_json_print(FILE *out, const char *in) {
  char q[8192];
  if (dsp_json_quote(in ? in : "", q, sizeof(q)) == 0) fputs(q, out);
  else fputs("\"\"", out);
}
