/*
 * client.c: see client.h. Plain blocking sockets with poll(2) for the
 * timeouts; no libuv, so any program can embed it.
 */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "util.h"

#define MAX_SERVERS 16
#define MAX_REPLY (64u << 20)

struct dsp_client {
  char servers[MAX_SERVERS][DSP_ADDR_MAX];
  int nservers, cur, fd, timeout_ms;
  uint64_t next_id;
  uint64_t token; /* client_token: random per client */
  uint8_t *out;
  size_t out_len, out_cap;
  dsp_framer in;
};

static int set_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b) {
  if (errlen > 0) snprintf(err, errlen, fmt, a, b);
  return -1;
}

static int connect_one(const char *addr, int timeout_ms) {
  char host[DSP_ADDR_MAX], portstr[8];
  struct addrinfo hints, *res = NULL, *ai;
  int port, fd = -1;
  if (dsp_parse_hostport(addr, host, sizeof(host), &port) != 0) return -1;
  snprintf(portstr, sizeof(portstr), "%d", port);
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, portstr, &hints, &res) != 0) return -1;
  for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
    struct pollfd p;
    int soerr = 0, one = 1;
    socklen_t sl = sizeof(soerr);
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) goto next;
    p.fd = fd;
    p.events = POLLOUT;
    if (poll(&p, 1, timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 ||
        soerr != 0)
      goto next;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    continue;
  next:
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

static void disconnect(dsp_client *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->out_len = 0;
  dsp_framer_free(&c->in);
  dsp_framer_init(&c->in, MAX_REPLY);
}

/* Connect to the current server or, failing that, the following ones. */
static int reconnect(dsp_client *c, int tries, char *err, size_t errlen) {
  disconnect(c);
  for (int i = 0; i < tries; i++) {
    c->fd = connect_one(c->servers[c->cur], c->timeout_ms);
    if (c->fd >= 0) return 0;
    c->cur = (c->cur + 1) % c->nservers;
  }
  if (errlen > 0) {
    size_t off = (size_t)snprintf(err, errlen, "cannot connect to any server:");
    for (int i = 0; i < c->nservers && off < errlen; i++)
      off += (size_t)snprintf(err + off, errlen - off, " %s", c->servers[i]);
  }
  return -1;
}

dsp_client *dsp_client_new(const char *servers, int timeout_ms, char *err, size_t errlen) {
  dsp_client *c = calloc(1, sizeof(*c));
  char buf[MAX_SERVERS * DSP_ADDR_MAX], *save = NULL, *tok, host[DSP_ADDR_MAX];
  int port;
  if (c == NULL) return NULL;
  c->fd = -1;
  c->timeout_ms = timeout_ms;
  c->next_id = 1;
  if (getrandom(&c->token, sizeof(c->token), GRND_NONBLOCK) != (ssize_t)sizeof(c->token) ||
      c->token == 0)
    c->token = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)c;
  dsp_framer_init(&c->in, MAX_REPLY);
  if (servers == NULL || strlen(servers) >= sizeof(buf)) goto bad;
  snprintf(buf, sizeof(buf), "%s", servers);
  for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (c->nservers == MAX_SERVERS || strlen(tok) >= DSP_ADDR_MAX ||
        dsp_parse_hostport(tok, host, sizeof(host), &port) != 0)
      goto bad;
    snprintf(c->servers[c->nservers++], DSP_ADDR_MAX, "%s", tok);
  }
  if (c->nservers == 0) goto bad;
  if (reconnect(c, c->nservers, err, errlen) != 0) {
    dsp_client_free(c);
    return NULL;
  }
  return c;
bad:
  set_err(err, errlen, "'%s' is not a list of HOST:PORT (at most 16)%s", servers ? servers : "", "");
  dsp_client_free(c);
  errno = EINVAL;
  return NULL;
}

void dsp_client_free(dsp_client *c) {
  if (c == NULL) return;
  disconnect(c);
  dsp_framer_free(&c->in);
  free(c->out);
  free(c);
}

const char *dsp_client_server(const dsp_client *c) { return c->servers[c->cur]; }

uint64_t dsp_client_next_id(dsp_client *c) { return c->next_id++; }

int dsp_client_send(dsp_client *c, const dsp_pb_request *req) {
  size_t n = dispatcher__v1__request__get_packed_size(req);
  if (n > UINT32_MAX) return -1;
  if (c->out_cap - c->out_len < n + DSP_FRAME_HEADER) {
    size_t cap = c->out_cap ? c->out_cap : 4096;
    uint8_t *p;
    while (cap - c->out_len < n + DSP_FRAME_HEADER) cap *= 2;
    p = realloc(c->out, cap);
    if (p == NULL) return -1;
    c->out = p;
    c->out_cap = cap;
  }
  dsp_frame_put_header(c->out + c->out_len, (uint32_t)n);
  dispatcher__v1__request__pack(req, c->out + c->out_len + DSP_FRAME_HEADER);
  c->out_len += n + DSP_FRAME_HEADER;
  return 0;
}

int dsp_client_flush(dsp_client *c, char *err, size_t errlen) {
  size_t off = 0;
  if (c->fd < 0) return set_err(err, errlen, "not connected to %s%s", c->servers[c->cur], "");
  while (off < c->out_len) {
    ssize_t w = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd p = {c->fd, POLLOUT, 0};
      if (poll(&p, 1, c->timeout_ms) == 1) continue;
      return set_err(err, errlen, "timed out writing to %s%s", c->servers[c->cur], "");
    }
    if (w < 0 && errno == EINTR) continue;
    return set_err(err, errlen, "lost the connection to %s: %s", c->servers[c->cur],
                   strerror(errno));
  }
  c->out_len = 0;
  return 0;
}

int dsp_client_recv(dsp_client *c, dsp_pb_response **resp, char *err, size_t errlen) {
  const uint8_t *payload;
  size_t len;
  if (c->out_len > 0 && dsp_client_flush(c, err, errlen) != 0) return -1;
  for (;;) {
    int rc = dsp_framer_next(&c->in, &payload, &len);
    if (rc == DSP_FRAME_OK) {
      *resp = dispatcher__v1__response__unpack(NULL, len, payload);
      if (*resp == NULL)
        return set_err(err, errlen, "undecodable response from %s%s", c->servers[c->cur], "");
      return 0;
    }
    if (rc != DSP_FRAME_NEED_MORE)
      return set_err(err, errlen, "oversize response from %s%s", c->servers[c->cur], "");
    uint8_t *p;
    size_t avail;
    struct pollfd pf = {c->fd, POLLIN, 0};
    ssize_t r;
    if (c->fd < 0) return set_err(err, errlen, "not connected to %s%s", c->servers[c->cur], "");
    if (dsp_framer_reserve(&c->in, 65536, &p, &avail) != 0)
      return set_err(err, errlen, "out of memory%s%s", "", "");
    r = recv(c->fd, p, avail, 0);
    if (r > 0) {
      dsp_framer_commit(&c->in, (size_t)r);
      continue;
    }
    if (r == 0)
      return set_err(err, errlen, "%s closed the connection%s", c->servers[c->cur], "");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return set_err(err, errlen, "lost the connection to %s: %s", c->servers[c->cur],
                     strerror(errno));
    if (poll(&pf, 1, c->timeout_ms) != 1)
      return set_err(err, errlen, "no answer from %s within the timeout%s", c->servers[c->cur],
                     "");
  }
}

void dsp_client_free_response(dsp_pb_response *resp) {
  if (resp) dispatcher__v1__response__free_unpacked(resp, NULL);
}

int dsp_client_call(dsp_client *c, dsp_pb_request *req, dsp_pb_response **resp, char *err,
                    size_t errlen) {
  /* One id and our token for every attempt: a coordinator that already
     applied a Report recognises it when it comes again. */
  req->id = dsp_client_next_id(c);
  if (req->client_token == 0) req->client_token = c->token;
  for (int attempt = 0; attempt <= c->nservers; attempt++) {
    if (c->fd < 0 && reconnect(c, c->nservers, err, errlen) != 0) return -1;
    if (dsp_client_send(c, req) != 0)
      return set_err(err, errlen, "cannot encode the request%s%s", "", "");
    if (dsp_client_flush(c, err, errlen) == 0) {
      for (;;) {
        if (dsp_client_recv(c, resp, err, errlen) != 0) break;
        if ((*resp)->id == req->id) return 0;
        dsp_client_free_response(*resp); /* a stale answer: keep reading */
      }
    }
    /* Connection trouble: the next server. A timeout is final. */
    if (strstr(err, "no answer") != NULL) return -1;
    disconnect(c);
    c->cur = (c->cur + 1) % c->nservers;
  }
  return -1;
}
