/*
 * ctl_election.c: see ctl_election.h. One short ZooKeeper session on a
 * libuv loop (zkloop.c): list the election folder, read every member znode
 * and the leader znode, print, close. Data written by hand that does not
 * parse is shown as such, never trusted.
 */
#include "ctl_election.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "election.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "zkloop.h"

#define MAX_MEMBERS 256

typedef struct {
  char name[DSP_EL_NAME_MAX];
  dsp_el_member parsed;
  int valid;          /* name parsed */
  int have_data;
  char id[DSP_ID_MAX + 1], addr[DSP_ADDR_MAX];
  long long pid;
  int64_t owner;
} row;

typedef struct {
  uv_loop_t *loop;
  dsp_zkloop *zk;
  uv_timer_t deadline;
  const char *hosts, *cluster;
  char election[512], leader_path[512];
  row rows[MAX_MEMBERS];
  int nrows, pending, listed, failed;
  char err[1024];
  int leader_found;
  char leader_raw[1024];
  char leader_id[DSP_ID_MAX + 1], leader_addr[DSP_ADDR_MAX], leader_member[DSP_EL_NAME_MAX];
  int64_t leader_epoch;
  int leader_bad;
  int done;
} ctl;

static ctl *the_ctl;

static void finish(ctl *c) {
  if (c->done) return;
  c->done = 1;
  uv_timer_stop(&c->deadline);
  uv_close((uv_handle_t *)&c->deadline, NULL);
  /* Not inside a ZooKeeper callback: the caller made sure (see below). */
}

static void maybe_finish(ctl *c) {
  if (c->listed && c->pending == 0) uv_stop(c->loop);
}

static int member_cb(const dsp_json_member *m, void *ctx) {
  row *r = ctx;
  if (strcmp(m->key, "id") == 0 && m->type == DSP_JSON_STRING)
    snprintf(r->id, sizeof(r->id), "%s", m->str);
  else if (strcmp(m->key, "addr") == 0 && m->type == DSP_JSON_STRING)
    snprintf(r->addr, sizeof(r->addr), "%s", m->str);
  else if (strcmp(m->key, "pid") == 0 && m->type == DSP_JSON_INT)
    r->pid = m->num;
  return 0;
}

static void member_data_done(int rc, const char *value, int len, const struct Stat *st,
                             const void *data) {
  ctl *c = the_ctl;
  row *r = &c->rows[(intptr_t)data];
  char err[128];
  c->pending--;
  if (rc == ZOK && value != NULL && len > 0 &&
      dsp_json_parse(value, (size_t)len, member_cb, r, err, sizeof(err)) == 0)
    r->have_data = 1;
  if (rc == ZOK && st != NULL) r->owner = st->ephemeralOwner;
  maybe_finish(c);
}

static int leader_cb(const dsp_json_member *m, void *ctx) {
  ctl *c = ctx;
  if (strcmp(m->key, "id") == 0 && m->type == DSP_JSON_STRING)
    snprintf(c->leader_id, sizeof(c->leader_id), "%s", m->str);
  else if (strcmp(m->key, "addr") == 0 && m->type == DSP_JSON_STRING)
    snprintf(c->leader_addr, sizeof(c->leader_addr), "%s", m->str);
  else if (strcmp(m->key, "member") == 0 && m->type == DSP_JSON_STRING)
    snprintf(c->leader_member, sizeof(c->leader_member), "%s", m->str);
  else if (strcmp(m->key, "epoch") == 0 && m->type == DSP_JSON_INT)
    c->leader_epoch = m->num;
  return 0;
}

static void leader_done(int rc, const char *value, int len, const struct Stat *st,
                        const void *data) {
  ctl *c = the_ctl;
  char err[128];
  (void)st;
  (void)data;
  c->pending--;
  if (rc == ZOK) {
    c->leader_found = 1;
    snprintf(c->leader_raw, sizeof(c->leader_raw), "%.*s", len > 0 ? len : 0, value ? value : "");
    if (value == NULL || len <= 0 ||
        dsp_json_parse(value, (size_t)len, leader_cb, c, err, sizeof(err)) != 0 ||
        c->leader_id[0] == '\0')
      c->leader_bad = 1;
  } else if (rc != ZNONODE) {
    c->failed = 1;
    snprintf(c->err, sizeof(c->err), "reading %s: %s", c->leader_path, zerror(rc));
  }
  maybe_finish(c);
}

static int by_seq(const void *a, const void *b) {
  const row *x = a, *y = b;
  if (x->valid != y->valid) return y->valid - x->valid;
  if (!x->valid) return strcmp(x->name, y->name);
  return (x->parsed.seq > y->parsed.seq) - (x->parsed.seq < y->parsed.seq);
}

static void children_done(int rc, const struct String_vector *sv, const void *data) {
  ctl *c = the_ctl;
  zhandle_t *zh = dsp_zkloop_handle(c->zk);
  (void)data;
  c->listed = 1;
  if (rc == ZOK && sv != NULL) {
    for (int i = 0; i < sv->count && c->nrows < MAX_MEMBERS; i++) {
      row *r = &c->rows[c->nrows++];
      memset(r, 0, sizeof(*r));
      snprintf(r->name, sizeof(r->name), "%s", sv->data[i]);
      r->valid = dsp_el_parse_name(r->name, &r->parsed) == 0;
    }
    qsort(c->rows, (size_t)c->nrows, sizeof(row), by_seq);
    for (int i = 0; i < c->nrows; i++) {
      char path[700];
      snprintf(path, sizeof(path), "%s/%s", c->election, c->rows[i].name);
      c->pending++;
      zoo_aget(zh, path, 0, member_data_done, (void *)(intptr_t)i);
    }
  } else if (rc != ZNONODE) {
    c->failed = 1;
    snprintf(c->err, sizeof(c->err), "listing %s: %s", c->election, zerror(rc));
  }
  c->pending++;
  zoo_aget(zh, c->leader_path, 0, leader_done, NULL);
  dsp_zkloop_kick(c->zk);
}

static void watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
  ctl *c = ctx;
  (void)path;
  if (type != ZOO_SESSION_EVENT || c != the_ctl) return;
  if (state == ZOO_CONNECTED_STATE && !c->listed) {
    zoo_aget_children(zh, c->election, 0, children_done, NULL);
    dsp_zkloop_kick(c->zk);
  }
}

static void on_deadline(uv_timer_t *t) {
  ctl *c = t->data;
  c->failed = 1;
  snprintf(c->err, sizeof(c->err), "no answer from ZooKeeper at %s", c->hosts);
  uv_stop(c->loop);
}

static const char *role_of(ctl *c, int i) {
  if (!c->rows[i].valid) return "not a member znode";
  if (c->leader_found && !c->leader_bad && strcmp(c->leader_member, c->rows[i].name) == 0)
    return "leader";
  return i == 0 ? "candidate (lowest)" : "follower";
}

static void print_text(ctl *c) {
  int w_id = 2, w_addr = 4;
  printf("cluster   %s (ZooKeeper %s)\n", c->cluster, c->hosts);
  if (!c->leader_found) printf("leader    none\n");
  else if (c->leader_bad) printf("leader    unreadable data in %s: %s\n", c->leader_path, c->leader_raw);
  else
    printf("leader    %s at %s, epoch %" PRId64 " (%s)\n", c->leader_id, c->leader_addr,
           c->leader_epoch, c->leader_member);
  printf("members   %d\n\n", c->nrows);
  if (c->nrows == 0) return;
  for (int i = 0; i < c->nrows; i++) {
    int a = (int)strlen(c->rows[i].id), b = (int)strlen(c->rows[i].addr);
    if (a > w_id) w_id = a;
    if (b > w_addr) w_addr = b;
  }
  printf("%-10s  %-*s  %-*s  %-7s  %-18s  %s\n", "SEQ", w_id, "ID", w_addr, "ADDR", "PID",
         "SESSION", "ROLE");
  for (int i = 0; i < c->nrows; i++) {
    row *r = &c->rows[i];
    char seq[24] = "-", sess[24] = "-", pid[24] = "-";
    if (r->valid) snprintf(seq, sizeof(seq), "%010lld", r->parsed.seq);
    if (r->owner) snprintf(sess, sizeof(sess), "0x%016" PRIx64, (uint64_t)r->owner);
    if (r->pid > 0) snprintf(pid, sizeof(pid), "%lld", r->pid);
    printf("%-10s  %-*s  %-*s  %-7s  %-18s  %s%s%s\n", seq, w_id, r->have_data ? r->id : "?",
           w_addr, r->have_data ? r->addr : "?", pid, sess, role_of(c, i),
           r->valid ? "" : ": ", r->valid ? "" : r->name);
  }
}

static void print_json(ctl *c) {
  printf("{\"cluster\":");
  dsp_json_print(stdout, c->cluster);
  printf(",\"leader\":");
  if (!c->leader_found || c->leader_bad) {
    printf("null");
  } else {
    printf("{\"id\":");
    dsp_json_print(stdout, c->leader_id);
    printf(",\"addr\":");
    dsp_json_print(stdout, c->leader_addr);
    printf(",\"epoch\":%" PRId64 ",\"member\":", c->leader_epoch);
    dsp_json_print(stdout, c->leader_member);
    printf("}");
  }
  printf(",\"members\":[");
  for (int i = 0; i < c->nrows; i++) {
    row *r = &c->rows[i];
    printf("%s{\"znode\":", i ? "," : "");
    dsp_json_print(stdout, r->name);
    if (r->valid) printf(",\"seq\":%lld", r->parsed.seq);
    if (r->have_data) {
      printf(",\"id\":");
      dsp_json_print(stdout, r->id);
      printf(",\"addr\":");
      dsp_json_print(stdout, r->addr);
      if (r->pid > 0) printf(",\"pid\":%lld", r->pid);
    }
    printf(",\"session\":\"0x%016" PRIx64 "\",\"role\":", (uint64_t)r->owner);
    dsp_json_print(stdout, role_of(c, i));
    printf("}");
  }
  printf("]}\n");
}

static void usage(FILE *out) {
  fprintf(out,
"Usage: dispatchctl election [--zk CONNECT] [--cluster NAME] [--json]\n"
"\n"
"Show a cluster's election as ZooKeeper has it: the leader znode (who leads,\n"
"at which address, under which epoch) and every member znode in sequence\n"
"order. Reads ZooKeeper directly; no member needs to be running.\n"
"\n"
"  --zk CONNECT     ZooKeeper connect string (default 127.0.0.1:2181)\n"
"  --cluster NAME   cluster name (default default)\n"
"  --json           machine-readable output\n"
"  -h, --help       show this help\n");
}

int dsp_ctl_election_main(int argc, char **argv) {
  static const struct option opts[] = {{"zk", required_argument, NULL, 'z'},
                                       {"cluster", required_argument, NULL, 'c'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  ctl *c = calloc(1, sizeof(*c));
  int json = 0, opt, rc;
  if (c == NULL) return 1;
  c->hosts = "127.0.0.1:2181";
  c->cluster = "default";
  optind = 1;
  opterr = 0;
  while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (opt) {
      case 'z': c->hosts = optarg; break;
      case 'c':
        if (strchr(optarg, '/') != NULL || *optarg == '\0' || strlen(optarg) > 64) {
          fprintf(stderr, "dispatchctl election: --cluster: '%s' is not a cluster name\n", optarg);
          free(c);
          return 2;
        }
        c->cluster = optarg;
        break;
      case 'j': json = 1; break;
      case 'h': usage(stdout); free(c); return 0;
      case ':':
        fprintf(stderr, "dispatchctl election: option '%s' needs a value\n", argv[optind - 1]);
        free(c);
        return 2;
      default:
        fprintf(stderr, "dispatchctl election: unknown option '%s'\n"
                        "Try 'dispatchctl election --help'.\n", argv[optind - 1]);
        free(c);
        return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "dispatchctl election: unexpected argument '%s'\n", argv[optind]);
    free(c);
    return 2;
  }
  snprintf(c->election, sizeof(c->election), "/dispatcher/%s/election", c->cluster);
  snprintf(c->leader_path, sizeof(c->leader_path), "/dispatcher/%s/leader", c->cluster);
  the_ctl = c;
  dsp_zkloop_set_client_log(0);
  c->loop = uv_default_loop();
  c->zk = dsp_zkloop_new(c->loop, watcher, c);
  uv_timer_init(c->loop, &c->deadline);
  c->deadline.data = c;
  uv_timer_start(&c->deadline, on_deadline, 5000, 0);
  if (c->zk == NULL || dsp_zkloop_open(c->zk, c->hosts, 10000) != 0) {
    fprintf(stderr, "dispatchctl election: '%s' is not a ZooKeeper connect string\n", c->hosts);
    rc = 2;
    goto out;
  }
  uv_run(c->loop, UV_RUN_DEFAULT);
  if (c->failed) {
    fprintf(stderr, "dispatchctl election: %s\n", c->err);
    rc = 1;
  } else {
    if (json) print_json(c);
    else print_text(c);
    rc = 0;
  }
out:
  finish(c);
  dsp_zkloop_free(c->zk); /* closes the session; we are outside any callback */
  uv_run(c->loop, UV_RUN_DEFAULT);
  uv_loop_close(c->loop);
  the_ctl = NULL;
  free(c);
  return rc;
}
