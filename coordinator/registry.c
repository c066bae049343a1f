/*
 * registry.c: see registry.h.
 *
 * Watching: one child watch on the workers folder, one data watch per
 * worker znode. When the folder changes we list it again, drop from the
 * table what is gone and read only the znodes not in the table yet (known
 * workers keep their data watch, which reports their own changes). Every
 * asynchronous answer carries the generation of the follow() that asked;
 * answers for an older one are dropped.
 */
#include "registry.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zookeeper/zookeeper.h>

#include "json.h"
#include "log.h"
#include "util.h"

#define PATH_LEN 512

struct dsp_registry {
  dsp_member *member;
  dsp_monitor *monitor;
  dsp_health_settings defaults;
  dsp_balance *table;
  unsigned gen;
  /* Workers left out for bad data, sorted: not read again when the folder
     changes (their data watch reports a fix), so each is logged once per
     change of its own data. */
  char **bad;
  size_t nbad, capbad;
  /* The first load after follow(): reads still out, and whether done. */
  unsigned loading;
  int loaded;
  char base[PATH_LEN];     /* /dispatcher/<cluster> */
  char folder[PATH_LEN];   /* base/workers */
  char requests[PATH_LEN]; /* base/requests: admin requests applied */
  uint64_t last_gc;        /* dsp_now_ms() of the last request-record GC */
};

/* ---- pure ----------------------------------------------------------------- */

int dsp_worker_name_valid(const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > DSP_BAL_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '.' || c == '_' || c == ':' || c == '-'))
      return 0;
  }
  return 1;
}

typedef struct {
  dsp_worker_spec *out;
  int have_addr, have_weight;
  char why[200];
} parse_ctx;

static int spec_member(const dsp_json_member *m, void *vctx) {
  parse_ctx *p = vctx;
  int rc = dsp_health_settings_member(&p->out->health, m, p->why, sizeof(p->why));
  if (rc != 0) return rc < 0 ? 1 : 0;
  if (strcmp(m->key, "addr") == 0) {
    char host[DSP_BAL_ADDR_MAX + 1];
    int port;
    if (m->type != DSP_JSON_STRING) {
      snprintf(p->why, sizeof(p->why), "\"addr\" is not a string");
      return 1;
    }
    if (m->str_len > DSP_BAL_ADDR_MAX ||
        dsp_parse_hostport(m->str, host, sizeof(host), &port) != 0) {
      snprintf(p->why, sizeof(p->why), "\"addr\" '%.64s' is not host:port", m->str);
      return 1;
    }
    snprintf(p->out->addr, sizeof(p->out->addr), "%s", m->str);
    p->have_addr = 1;
  } else if (strcmp(m->key, "weight") == 0) {
    if (m->type != DSP_JSON_INT) {
      snprintf(p->why, sizeof(p->why), "\"weight\" is not a whole number");
      return 1;
    }
    if (m->num < 1 || m->num > DSP_BAL_WEIGHT_MAX) {
      snprintf(p->why, sizeof(p->why), "weight %lld is out of range 1-%d", m->num,
               DSP_BAL_WEIGHT_MAX);
      return 1;
    }
    p->out->weight = (int)m->num;
    p->have_weight = 1;
  }
  return 0; /* other keys: kept in ZooKeeper, ignored here */
}

int dsp_worker_parse(const char *data, size_t len, const dsp_health_settings *defaults,
                     dsp_worker_spec *out, char *err, size_t errlen) {
  parse_ctx p;
  char jerr[128];
  int rc;
  memset(&p, 0, sizeof(p));
  memset(out, 0, sizeof(*out));
  p.out = out;
  out->weight = 1;
  if (defaults != NULL)
    out->health = *defaults;
  else
    dsp_health_settings_default(&out->health);
  if (data == NULL || len == 0) {
    snprintf(err, errlen, "no data (want {\"addr\":\"host:port\",\"weight\":N})");
    return -1;
  }
  rc = dsp_json_parse(data, len, spec_member, &p, jerr, sizeof(jerr));
  if (rc == -1) {
    snprintf(err, errlen, "not JSON: %s", jerr);
    return -1;
  }
  if (rc != 0) {
    snprintf(err, errlen, "%s", p.why);
    return -1;
  }
  if (!p.have_addr) {
    snprintf(err, errlen, "missing \"addr\"");
    return -1;
  }
  return dsp_health_settings_validate(&out->health, err, errlen);
}

typedef struct {
  char *out;
  size_t len, n;
  int weight, wrote_weight, overflow, first;
} rewrite_ctx;

static void emit(rewrite_ctx *w, const char *s) {
  size_t k = strlen(s);
  if (w->n + k + 1 > w->len) {
    w->overflow = 1;
    return;
  }
  memcpy(w->out + w->n, s, k + 1);
  w->n += k;
}

static int rewrite_member(const dsp_json_member *m, void *vctx) {
  rewrite_ctx *w = vctx;
  char q[DSP_BAL_ADDR_MAX * 2 + 64], v[64];
  emit(w, w->first ? "" : ",");
  w->first = 0;
  if (dsp_json_quote(m->key, q, sizeof(q)) != 0) return (w->overflow = 1);
  emit(w, q);
  emit(w, ":");
  if (strcmp(m->key, "weight") == 0) {
    snprintf(v, sizeof(v), "%d", w->weight);
    emit(w, v);
    w->wrote_weight = 1;
    return 0;
  }
  switch (m->type) {
    case DSP_JSON_STRING: {
      char *big = malloc(m->str_len * 6 + 3);
      if (big == NULL || dsp_json_quote(m->str, big, m->str_len * 6 + 3) != 0) {
        free(big);
        return (w->overflow = 1);
      }
      emit(w, big);
      free(big);
      break;
    }
    case DSP_JSON_INT: snprintf(v, sizeof(v), "%lld", m->num); emit(w, v); break;
    case DSP_JSON_BOOL: emit(w, m->num ? "true" : "false"); break;
    case DSP_JSON_NULL: emit(w, "null"); break;
  }
  return 0;
}

int dsp_worker_set_weight_json(const char *data, size_t len, int weight, char *out,
                               size_t outlen) {
  dsp_worker_spec spec;
  rewrite_ctx w = {out, outlen, 0, weight, 0, 0, 1};
  char err[160], v[32];
  if (weight < 1 || weight > DSP_BAL_WEIGHT_MAX) return -1;
  if (dsp_worker_parse(data, len, NULL, &spec, err, sizeof(err)) != 0) return -1;
  emit(&w, "{");
  if (dsp_json_parse(data, len, rewrite_member, &w, err, sizeof(err)) != 0) return -1;
  if (!w.wrote_weight) {
    snprintf(v, sizeof(v), ",\"weight\":%d", weight);
    emit(&w, v);
  }
  emit(&w, "}");
  return w.overflow ? -1 : 0;
}

/* ---- watching (coordinator) ------------------------------------------------ */

typedef struct {
  dsp_registry *r;
  unsigned gen;
  char name[DSP_BAL_NAME_MAX + 1];
} wctx;

static wctx *new_ctx(dsp_registry *r, const char *name) {
  wctx *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->r = r;
  c->gen = r->gen;
  if (name) snprintf(c->name, sizeof(c->name), "%s", name);
  return c;
}

static int current(const wctx *c) { return c->r->table != NULL && c->gen == c->r->gen; }

/* Count reads of the first load; the last one to finish marks it loaded. */
static void load_begin(dsp_registry *r) {
  if (!r->loaded) r->loading++;
}

static void load_end(dsp_registry *r, const wctx *c) {
  if (!current(c) || r->loaded || r->loading == 0) return;
  if (--r->loading == 0) {
    r->loaded = 1;
    DSP_INFO("worker table loaded: %zu workers", dsp_balance_count(r->table));
  }
}

static zhandle_t *zh_of(dsp_registry *r) {
  return r->member ? (zhandle_t *)dsp_member_zh(r->member) : NULL;
}

/* Requests queued from an RPC handler go out before the loop blocks. */
static void kick(dsp_registry *r) {
  if (r->member) dsp_member_kick(r->member);
}

static void registry_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx);
static void list_workers(dsp_registry *r);

static int cmp_str(const void *a, const void *b);

static char **bad_find(dsp_registry *r, const char *name) {
  return r->nbad ? bsearch(&name, r->bad, r->nbad, sizeof(*r->bad), cmp_str) : NULL;
}

static void bad_add(dsp_registry *r, const char *name) {
  size_t i = 0;
  char *copy;
  if (bad_find(r, name) != NULL) return;
  if (r->nbad == r->capbad) {
    size_t cap = r->capbad ? r->capbad * 2 : 16;
    char **nb = realloc(r->bad, cap * sizeof(*nb));
    if (nb == NULL) return; /* then it is only read again: harmless */
    r->bad = nb;
    r->capbad = cap;
  }
  if ((copy = strdup(name)) == NULL) return;
  while (i < r->nbad && strcmp(r->bad[i], name) < 0) i++;
  memmove(r->bad + i + 1, r->bad + i, (r->nbad - i) * sizeof(*r->bad));
  r->bad[i] = copy;
  r->nbad++;
}

static void bad_del(dsp_registry *r, const char *name) {
  char **p = bad_find(r, name);
  if (p == NULL) return;
  free(*p);
  memmove(p, p + 1, (size_t)(r->bad + r->nbad - (p + 1)) * sizeof(*r->bad));
  r->nbad--;
}

static void bad_clear(dsp_registry *r) {
  for (size_t i = 0; i < r->nbad; i++) free(r->bad[i]);
  r->nbad = 0;
}

/* Out of the table; `deleted` when its znode is gone (its health record
   goes too). */
static void drop_worker(dsp_registry *r, const char *name, const char *why, int deleted) {
  dsp_worker_id id;
  if (dsp_balance_find(r->table, name, &id) != 0) return;
  DSP_INFO("worker %s %s", name, why); /* name may be the table's own copy */
  if (r->monitor) dsp_monitor_removed(r->monitor, id, deleted);
  dsp_balance_remove(r->table, id);
}

static void data_done(int rc, const char *value, int len, const struct Stat *st, const void *d) {
  wctx *c = (wctx *)d;
  dsp_registry *r = c->r;
  dsp_worker_spec spec;
  dsp_worker_id id;
  char err[200];
  if (!current(c)) goto out;
  if (rc == ZNONODE) {
    bad_del(r, c->name);
    drop_worker(r, c->name, "removed", 1);
    list_workers(r); /* a worker that clashed with it may now join */
    goto out;
  }
  if (rc != ZOK) goto out; /* connection trouble: the coordinator steps down */
  if (dsp_worker_parse(value, len > 0 ? (size_t)len : 0, &r->defaults, &spec, err,
                       sizeof(err)) != 0) {
    DSP_WARN("%s/%s: %s; worker left out", r->folder, c->name, err);
    drop_worker(r, c->name, "left out of the table", 0);
    bad_add(r, c->name);
    goto out;
  }
  bad_del(r, c->name);
  if (dsp_balance_find(r->table, c->name, &id) == 0) {
    if (strcmp(dsp_balance_worker_addr(r->table, id), spec.addr) == 0) {
      if (dsp_balance_worker_weight(r->table, id) != spec.weight) {
        dsp_balance_set_weight(r->table, id, spec.weight);
        DSP_INFO("worker %s weight %d", c->name, spec.weight);
      }
      if (r->monitor) dsp_monitor_changed(r->monitor, id, &spec.health);
      goto out;
    }
    /* A new address: a new worker. One that clashed with the old may join. */
    if (r->monitor) dsp_monitor_removed(r->monitor, id, 0);
    dsp_balance_remove(r->table, id);
    list_workers(r);
  }
  rc = dsp_balance_add(r->table, c->name, spec.addr, spec.weight, &id);
  if (rc == 0) {
    DSP_INFO("worker %s at %s weight %d%s%s", c->name, spec.addr, spec.weight,
             spec.health.check[0] ? " check " : "", spec.health.check);
    if (r->monitor) dsp_monitor_added(r->monitor, id, c->name, &spec.health, st ? st->czxid : 0);
  } else {
    if (rc == DSP_BAL_EADDRINUSE) {
      /* Not bad data: read again whenever the folder changes, so it joins
         once the worker holding that address goes. */
      DSP_WARN("%s/%s: address %s is already used by another worker; worker left out",
               r->folder, c->name, spec.addr);
    } else {
      DSP_WARN("%s/%s: %s; worker left out", r->folder, c->name, dsp_balance_strerror(rc));
      bad_add(r, c->name);
    }
  }
out:
  load_end(r, c);
  free(c);
}

static void get_worker(dsp_registry *r, const char *name) {
  char path[PATH_LEN + DSP_BAL_NAME_MAX + 2];
  wctx *c = new_ctx(r, name);
  zhandle_t *zh = zh_of(r);
  if (c == NULL || zh == NULL) {
    free(c);
    return;
  }
  snprintf(path, sizeof(path), "%s/%s", r->folder, name);
  load_begin(r);
  if (zoo_awget(zh, path, registry_watcher, r, data_done, c) != ZOK) {
    load_end(r, c);
    free(c);
  }
  kick(r);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Forget left-out workers that are gone from the folder. */
static void bad_prune(dsp_registry *r, char **names, size_t n) {
  for (size_t i = r->nbad; i-- > 0;)
    if (bsearch(&r->bad[i], names, n, sizeof(*names), cmp_str) == NULL) bad_del(r, r->bad[i]);
}

static void exists_done(int rc, const struct Stat *st, const void *d) {
  wctx *c = (wctx *)d;
  (void)st;
  if (current(c) && rc == ZOK) list_workers(c->r); /* created meanwhile */
  free(c);
}

static void children_done(int rc, const struct String_vector *sv, const void *d) {
  wctx *c = (wctx *)d;
  dsp_registry *r = c->r;
  char **names = NULL;
  size_t n = 0, count;
  if (!current(c)) goto out;
  if (rc == ZNONODE) {
    /* No folder yet: an empty registry, and a watch for its creation. */
    while (dsp_balance_count(r->table) > 0) {
      dsp_worker_id id;
      dsp_balance_at(r->table, 0, &id);
      drop_worker(r, dsp_balance_worker_name(r->table, id), "removed", 1);
    }
    wctx *e = new_ctx(r, NULL);
    if (e && zoo_awexists(zh_of(r), r->folder, registry_watcher, r, exists_done, e) != ZOK)
      free(e);
    goto out;
  }
  if (rc != ZOK || sv == NULL) goto out;
  n = (size_t)sv->count;
  names = malloc((n ? n : 1) * sizeof(*names));
  if (names == NULL) goto out;
  for (size_t i = 0; i < n; i++) names[i] = sv->data[i];
  qsort(names, n, sizeof(*names), cmp_str);
  /* Workers gone from the folder leave the table. */
  count = dsp_balance_count(r->table);
  for (size_t pos = count; pos-- > 0;) {
    dsp_worker_id id;
    const char *wn;
    if (dsp_balance_at(r->table, pos, &id) != 0) continue;
    wn = dsp_balance_worker_name(r->table, id);
    if (bsearch(&wn, names, n, sizeof(*names), cmp_str) == NULL) drop_worker(r, wn, "removed", 1);
  }
  bad_prune(r, names, n);
  /* Read the ones we have not read (known ones report their own changes). */
  for (size_t i = 0; i < n; i++) {
    dsp_worker_id id;
    if (bad_find(r, names[i]) != NULL) continue;
    if (!dsp_worker_name_valid(names[i])) {
      DSP_WARN("%s/%s: not a valid worker name; left out", r->folder, names[i]);
      bad_add(r, names[i]);
      continue;
    }
    if (dsp_balance_find(r->table, names[i], &id) != 0) get_worker(r, names[i]);
  }
out:
  if (current(c) && rc != ZOK && rc != ZNONODE) {
    free(names);
    free(c); /* connection trouble: still not loaded */
    return;
  }
  load_end(r, c);
  free(names);
  free(c);
}

static void list_workers(dsp_registry *r) {
  wctx *c = new_ctx(r, NULL);
  zhandle_t *zh = zh_of(r);
  if (c == NULL || zh == NULL) {
    free(c);
    return;
  }
  load_begin(r);
  if (zoo_awget_children(zh, r->folder, registry_watcher, r, children_done, c) != ZOK) {
    load_end(r, c);
    free(c);
  }
  kick(r);
}

static void registry_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
  dsp_registry *r = ctx;
  size_t flen;
  (void)zh;
  (void)state;
  if (type == ZOO_SESSION_EVENT || r->table == NULL || path == NULL) return;
  flen = strlen(r->folder);
  if (strcmp(path, r->folder) == 0) {
    list_workers(r);
  } else if (strncmp(path, r->folder, flen) == 0 && path[flen] == '/') {
    if (type == ZOO_DELETED_EVENT) {
      bad_del(r, path + flen + 1);
      drop_worker(r, path + flen + 1, "removed", 1);
    } else {
      get_worker(r, path + flen + 1);
    }
  }
}

dsp_registry *dsp_registry_new(const char *cluster) {
  dsp_registry *r = calloc(1, sizeof(*r));
  if (r == NULL) return NULL;
  dsp_health_settings_default(&r->defaults);
  snprintf(r->base, sizeof(r->base), "/dispatcher/%.128s", cluster);
  snprintf(r->folder, sizeof(r->folder), "/dispatcher/%.128s/workers", cluster);
  snprintf(r->requests, sizeof(r->requests), "/dispatcher/%.128s/requests", cluster);
  return r;
}

void dsp_registry_free(dsp_registry *r) {
  if (r == NULL) return;
  bad_clear(r);
  free(r->bad);
  free(r);
}

void dsp_registry_set_member(dsp_registry *r, dsp_member *m) { r->member = m; }

void dsp_registry_set_monitor(dsp_registry *r, dsp_monitor *mon,
                              const dsp_health_settings *defaults) {
  r->monitor = mon;
  if (defaults) r->defaults = *defaults;
}

int dsp_registry_loaded(const dsp_registry *r) { return r->table != NULL && r->loaded; }

void dsp_registry_follow(dsp_registry *r, dsp_balance *table) {
  r->gen++;
  r->loading = 0;
  r->loaded = 0;
  bad_clear(r);
  r->table = table;
  if (table != NULL) list_workers(r);
}

/* ---- admin (any member) ---------------------------------------------------- */

/*
 * Exactly-once admin writes. A client that lost its connection sends the
 * same request (same client_token and id) again, maybe to another member.
 * With a token, the write goes to ZooKeeper in one multi together with the
 * creation of base/requests/<token>-<id>: if that znode exists, the write
 * was applied already and the repeat is answered with success; if the
 * write failed, neither happened. Request znodes older than REQUEST_TTL_S
 * are deleted by whichever member next writes, at most every GC_EVERY_MS.
 */
#define REQUEST_TTL_S 3600
#define GC_EVERY_MS (10 * 60 * 1000)

typedef enum { OP_ADD, OP_REMOVE, OP_WEIGHT } admin_op;

typedef struct {
  dsp_registry *r;
  dsp_rpc_conn *conn;
  uint64_t id, token;
  admin_op op;
  int weight, tries;
  int weight_rc;           /* what a repeat answers if it was not applied */
  zoo_op_t ops[2];
  zoo_op_result_t res[2];
  char name[DSP_BAL_NAME_MAX + 1];
  char path[PATH_LEN + DSP_BAL_NAME_MAX + 2];
  char logpath[PATH_LEN + 48];
  char data[4096];
  char logdata[DSP_BAL_NAME_MAX + 64];
} actx;

static void admin_finish(actx *a, int zrc) {
  dsp_pb_response resp = DISPATCHER__V1__RESPONSE__INIT;
  Dispatcher__V1__WorkerReply wr = DISPATCHER__V1__WORKER_REPLY__INIT;
  char msg[1024];
  if (zrc == ZOK) {
    resp.id = a->id;
    resp.body_case = DSP_PB(RESPONSE__BODY_WORKER);
    resp.worker = &wr;
    dsp_rpc_reply(a->conn, &resp);
  } else if (zrc == ZNODEEXISTS) {
    snprintf(msg, sizeof(msg), "worker %s exists", a->name);
    dsp_rpc_reply_error(a->conn, a->id, 0, DSP_PB(ERROR_CODE__WORKER_EXISTS), msg);
  } else if (zrc == ZNONODE) {
    snprintf(msg, sizeof(msg), "no worker named %s", a->name);
    dsp_rpc_reply_error(a->conn, a->id, 0, DSP_PB(ERROR_CODE__UNKNOWN_WORKER), msg);
  } else if (zrc == ZBADARGUMENTS) {
    snprintf(msg, sizeof(msg), "%s holds data that is not a valid worker; fix or remove it",
             a->path);
    dsp_rpc_reply_error(a->conn, a->id, 0, DSP_PB(ERROR_CODE__BAD_REQUEST), msg);
  } else {
    snprintf(msg, sizeof(msg), "ZooKeeper: %s", zerror(zrc));
    dsp_rpc_reply_error(a->conn, a->id, 0, DSP_PB(ERROR_CODE__UNAVAILABLE), msg);
  }
  dsp_rpc_conn_unref(a->conn);
  free(a);
}

static void weight_get_done(int rc, const char *value, int len, const struct Stat *st,
                            const void *d);

static void write_done(int rc, const void *d) {
  actx *a = (actx *)d;
  zhandle_t *zh = zh_of(a->r);
  int op = a->token ? 1 : 0; /* index of the worker write in ops[] */
  if (rc != ZOK && a->token && a->res[0].err == ZNODEEXISTS) {
    rc = ZOK; /* applied by an earlier send of this request */
  } else if (rc != ZOK && rc != ZCONNECTIONLOSS && rc != ZSESSIONEXPIRED &&
             rc != ZOPERATIONTIMEOUT && a->res[op].err != ZOK) {
    rc = a->res[op].err; /* what the worker write itself ran into */
  }
  if (rc == ZBADVERSION && a->op == OP_WEIGHT && a->tries++ < 3 && zh != NULL &&
      zoo_aget(zh, a->path, 0, weight_get_done, a) == ZOK)
    return; /* someone wrote in between: read again */
  admin_finish(a, rc);
}

/* Send ops: the request record (with a token) and the worker write, which
   the caller has put in ops[a->token ? 1 : 0]. */
static void admin_send(actx *a) {
  zhandle_t *zh = zh_of(a->r);
  int n = 1;
  if (a->token) {
    snprintf(a->logdata, sizeof(a->logdata), "{\"op\":\"%s\",\"worker\":\"%s\"}",
             a->op == OP_ADD ? "add" : a->op == OP_REMOVE ? "rm" : "weight", a->name);
    zoo_create_op_init(&a->ops[0], a->logpath, a->logdata, (int)strlen(a->logdata),
                       &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
    n = 2;
  }
  memset(a->res, 0, sizeof(a->res));
  if (zh == NULL || zoo_amulti(zh, n, a->ops, a->res, write_done, a) != ZOK)
    admin_finish(a, ZCONNECTIONLOSS);
}

/* A repeat of a weight change that finds the worker gone (or its data
   bad) may be one whose first send was applied: its request record says. */
static void record_done(int rc, const struct Stat *st, const void *d) {
  actx *a = (actx *)d;
  (void)st;
  admin_finish(a, rc == ZOK ? ZOK : a->weight_rc);
}

static int was_applied(actx *a, int otherwise) {
  zhandle_t *zh = zh_of(a->r);
  if (!a->token || zh == NULL) return 0;
  a->weight_rc = otherwise;
  return zoo_aexists(zh, a->logpath, 0, record_done, a) == ZOK;
}

static void weight_get_done(int rc, const char *value, int len, const struct Stat *st,
                            const void *d) {
  actx *a = (actx *)d;
  char msg[1024];
  if (rc != ZOK || st == NULL || zh_of(a->r) == NULL) {
    if (rc == ZNONODE && was_applied(a, ZNONODE)) return;
    admin_finish(a, rc == ZOK ? ZCONNECTIONLOSS : rc);
    return;
  }
  if (dsp_worker_set_weight_json(value, len > 0 ? (size_t)len : 0, a->weight, a->data,
                                 sizeof(a->data)) != 0) {
    if (was_applied(a, ZBADARGUMENTS)) return;
    snprintf(msg, sizeof(msg), "%s holds data that is not a valid worker; fix or remove it",
             a->path);
    dsp_rpc_reply_error(a->conn, a->id, 0, DSP_PB(ERROR_CODE__BAD_REQUEST), msg);
    dsp_rpc_conn_unref(a->conn);
    free(a);
    return;
  }
  zoo_set_op_init(&a->ops[a->token ? 1 : 0], a->path, a->data, (int)strlen(a->data),
                  st->version, NULL);
  admin_send(a);
}

/* ---- request record GC ---- */

typedef struct {
  dsp_registry *r;
  char path[PATH_LEN + 48];
} gctx;

static void gc_deleted(int rc, const void *d) {
  (void)rc;
  free((void *)d);
}

static void gc_stat_done(int rc, const struct Stat *st, const void *d) {
  gctx *g = (gctx *)d;
  zhandle_t *zh = zh_of(g->r);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  if (rc == ZOK && st != NULL && zh != NULL &&
      st->ctime / 1000 + REQUEST_TTL_S < (int64_t)now.tv_sec &&
      zoo_adelete(zh, g->path, st->version, gc_deleted, g) == ZOK)
    return;
  free(g);
}

static void gc_children_done(int rc, const struct String_vector *sv, const void *d) {
  dsp_registry *r = (dsp_registry *)d;
  zhandle_t *zh = zh_of(r);
  if (rc != ZOK || sv == NULL || zh == NULL) return;
  for (int i = 0; i < sv->count; i++) {
    gctx *g = malloc(sizeof(*g));
    if (g == NULL) return;
    g->r = r;
    snprintf(g->path, sizeof(g->path), "%s/%s", r->requests, sv->data[i]);
    if (zoo_aexists(zh, g->path, 0, gc_stat_done, g) != ZOK) free(g);
  }
}

static void maybe_gc(dsp_registry *r) {
  uint64_t now = dsp_now_ms();
  if (r->last_gc != 0 && now - r->last_gc < GC_EVERY_MS) return;
  r->last_gc = now;
  zoo_aget_children(zh_of(r), r->requests, 0, gc_children_done, r);
}

static actx *admin_start(dsp_registry *r, dsp_rpc_conn *c, uint64_t id, uint64_t token,
                         admin_op op, const char *name) {
  actx *a;
  char msg[320];
  if (!dsp_worker_name_valid(name)) {
    snprintf(msg, sizeof(msg), "'%.255s' is not a worker name: 1-255 of [A-Za-z0-9._:-]",
             name ? name : "");
    dsp_rpc_reply_error(c, id, 0, DSP_PB(ERROR_CODE__BAD_REQUEST), msg);
    return NULL;
  }
  if (zh_of(r) == NULL || (a = calloc(1, sizeof(*a))) == NULL) {
    dsp_rpc_reply_error(c, id, 0, DSP_PB(ERROR_CODE__UNAVAILABLE), "no ZooKeeper session");
    return NULL;
  }
  a->r = r;
  a->conn = c;
  a->id = id;
  a->token = token;
  a->op = op;
  snprintf(a->name, sizeof(a->name), "%s", name);
  snprintf(a->path, sizeof(a->path), "%s/%s", r->folder, name);
  snprintf(a->logpath, sizeof(a->logpath), "%s/%016" PRIx64 "-%016" PRIx64, r->requests, token,
           id);
  dsp_rpc_conn_ref(c);
  return a;
}

static void parent_done(int rc, const char *value, const void *d) {
  (void)rc;
  (void)value;
  (void)d;
}

/* The folders a write needs, pipelined ahead of it (ZooKeeper applies one
   session's requests in order). */
static void make_parents(dsp_registry *r) {
  zhandle_t *zh = zh_of(r);
  zoo_acreate(zh, "/dispatcher", "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, parent_done, NULL);
  zoo_acreate(zh, r->base, "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, parent_done, NULL);
  zoo_acreate(zh, r->folder, "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, parent_done, NULL);
  zoo_acreate(zh, r->requests, "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, parent_done, NULL);
}

void dsp_registry_add(dsp_registry *r, dsp_rpc_conn *c, uint64_t id, uint64_t token,
                      const char *name, const char *addr, unsigned weight, const char *check,
                      unsigned heartbeat_ttl_ms) {
  char q[DSP_BAL_ADDR_MAX * 2 + 8], qc[DSP_HEALTH_URL_MAX * 2 + 8], host[DSP_BAL_ADDR_MAX + 1];
  char err[240], msg[300], ttl[48] = "";
  dsp_worker_spec spec;
  int port;
  actx *a;
  if (weight == 0) weight = 1;
  if (addr == NULL || strlen(addr) > DSP_BAL_ADDR_MAX ||
      dsp_parse_hostport(addr, host, sizeof(host), &port) != 0) {
    dsp_rpc_reply_error(c, id, 0, DSP_PB(ERROR_CODE__BAD_REQUEST), "addr must be host:port");
    return;
  }
  if (weight > DSP_BAL_WEIGHT_MAX) {
    dsp_rpc_reply_error(c, id, 0, DSP_PB(ERROR_CODE__BAD_REQUEST), "weight must be 1-1000");
    return;
  }
  if (check != NULL && check[0] != '\0' && dsp_json_quote(check, qc, sizeof(qc)) != 0) {
    dsp_rpc_reply_error(c, id, 0, DSP_PB(ERROR_CODE__BAD_REQUEST), "check URL too long");
    return;
  }
  if ((a = admin_start(r, c, id, token, OP_ADD, name)) == NULL) return;
  dsp_json_quote(addr, q, sizeof(q));
  if (heartbeat_ttl_ms) snprintf(ttl, sizeof(ttl), ",\"heartbeat_ttl_ms\":%u", heartbeat_ttl_ms);
  snprintf(a->data, sizeof(a->data), "{\"addr\":%s,\"weight\":%u%s%s%s}", q, weight,
           check && check[0] ? ",\"check\":" : "", check && check[0] ? qc : "", ttl);
  /* What the coordinator will accept, checked before it is written. */
  if (dsp_worker_parse(a->data, strlen(a->data), &r->defaults, &spec, err, sizeof(err)) != 0) {
    snprintf(msg, sizeof(msg), "bad worker: %s", err);
    dsp_rpc_reply_error(c, id, 0, DSP_PB(ERROR_CODE__BAD_REQUEST), msg);
    dsp_rpc_conn_unref(a->conn);
    free(a);
    return;
  }
  make_parents(r);
  zoo_create_op_init(&a->ops[token ? 1 : 0], a->path, a->data, (int)strlen(a->data),
                     &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
  admin_send(a);
  maybe_gc(r);
  kick(r);
}

void dsp_registry_remove(dsp_registry *r, dsp_rpc_conn *c, uint64_t id, uint64_t token,
                         const char *name) {
  actx *a = admin_start(r, c, id, token, OP_REMOVE, name);
  if (a == NULL) return;
  if (token) make_parents(r);
  zoo_delete_op_init(&a->ops[token ? 1 : 0], a->path, -1);
  admin_send(a);
  maybe_gc(r);
  kick(r);
}

void dsp_registry_set_weight(dsp_registry *r, dsp_rpc_conn *c, uint64_t id, uint64_t token,
                             const char *name, unsigned weight) {
  actx *a;
  if (weight < 1 || weight > DSP_BAL_WEIGHT_MAX) {
    dsp_rpc_reply_error(c, id, 0, DSP_PB(ERROR_CODE__BAD_REQUEST), "weight must be 1-1000");
    return;
  }
  if ((a = admin_start(r, c, id, token, OP_WEIGHT, name)) == NULL) return;
  a->weight = (int)weight;
  if (token) make_parents(r);
  if (zoo_aget(zh_of(r), a->path, 0, weight_get_done, a) != ZOK) admin_finish(a, ZCONNECTIONLOSS);
  maybe_gc(r);
  kick(r);
}
