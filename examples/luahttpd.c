/*
** luahttpd: an HTTP server (libmicrohttpd) whose requests run a Lua handler on states from
** luapool, or, for comparison, on states managed in the usual other ways.
**
**   luahttpd --script FILE [--address A] [--port N] [--model pool|tpc|loop] [--threads N]
**            [--strategy luapool|luapool-all|mutex|fresh|pinned] [--max-states N]
**            [--min-idle N] [--mem-limit-kb N] [--budget-ms N] [--budget-instructions N]
**            [--acquire-timeout-ms N] [--quiet]
**
** It prints "luahttpd: listening on http://ADDRESS:PORT/" on standard output once it accepts
** (with --port 0, the port the system picked); everything else, one line per event, goes to
** standard error.
**
** The handler contract.  FILE is a Lua chunk, read once at start and at each SIGHUP, run for
** every request (except GET /metrics) as a function with no arguments, on a state of its own for
** the request.  It sees the request through the global table req:
**   req.method()      the method ("GET", "POST", ...)
**   req.path()        the path, without the query string ("/hello")
**   req.query(name)   the query argument name (decoded), or nil
**   req.header(name)  the request header name (case-insensitive), or nil
**   req.body()        the upload (a string, "" when none; more than 1 MiB is refused with 413
**                     before the handler runs)
** and returns status, body[, headers]: status an integer from 100 to 599, body a string (or
** nil for none), headers a table of header name -> value, both strings.  Anything else is a
** 500 "script error".  Nothing a request leaves in its state (globals, changed libraries) is
** seen by the next request with the luapool strategies: the pool resets the state at release.
** When the handler fails, the answer says why, from the state's status (luapool_status(3), or
** the hand-made equivalent of the other strategies), never from the error's text:
**   a Lua error                                     500 "script error"
**   the memory limit (--mem-limit-kb)               500 "memory limit"
**   the time or instruction budget                  503 "budget"
**   interrupted (the client went away)              503 "interrupted"
**   no state within --acquire-timeout-ms            503 "no state"
**   the server is draining (SIGTERM)                503 "shutting down"
**
** Models (--model): pool is libmicrohttpd's thread pool of --threads workers (each worker serves
** the connections it accepted); tpc a thread per connection; loop the same --threads workers as
** event loops that never block on the pool: each worker has a notifier (luapool_notifier_open);
** when luapool_acquire_async has no state, the connection is queued on its worker and suspended
** (MHD_suspend_connection), and a helper thread polls the notifiers' descriptors and resumes the
** head of a worker's queue when its descriptor becomes readable, or a queued connection when its
** wait passes --acquire-timeout-ms; the access handler, called again for the resumed connection,
** calls luapool_acquire_async again (which takes the wake-up off the descriptor) and either runs
** the request or suspends it again.  Each worker runs at most one request at a time, so after
** every request it resumes the head of its queue, which then registers the notifier again if the
** pool still has no state.  The loop model needs a luapool strategy.
**
** A client that goes away interrupts its request: a monitor thread walks the list of requests
** that hold a state every LH_MONITOR_MS, and peeks at each one's socket (recv with MSG_PEEK |
** MSG_DONTWAIT); 0 bytes means the peer closed (or half-closed) its end, and the request is
** stopped with luapool_interrupt (or the hand-made flag).  It does so under the list's mutex,
** and a request leaves the list under that mutex before it releases its state, so an interrupt
** never reaches the state's next request.
**
** Signals (blocked in every thread, taken by the main thread with sigwait; no luapool call runs
** in a signal handler): SIGHUP re-reads FILE, and if it compiles, luapool_reload makes a new
** generation with it (a script that does not compile is refused with a log line, and the old one
** keeps serving); SIGTERM and SIGINT drain: stop accepting (MHD_quiesce_daemon), let the running
** requests finish for up to LH_DRAIN_MS (luapool_shutdown), interrupt what still runs, stop, exit
** 0.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "luahttpd.h"

#define LH_MONITOR_MS 5  /* how often the monitor looks for clients that went away */
#define LH_DRAIN_MS 5000 /* how long SIGTERM lets running requests finish */

enum lh_model { LH_MODEL_POOL, LH_MODEL_TPC, LH_MODEL_LOOP };

static enum lh_model model = LH_MODEL_POOL;
static long acquire_timeout_ms = 1000;

static uint64_t clock_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* ---- the requests that hold a state, and the monitor of their clients ------------------------ */

struct inflight {
  const struct lh_slot *slot;
  int fd;       /* the connection's socket */
  bool stopped; /* interrupted already */
  struct inflight *prev, *next;
};

static pthread_mutex_t inflight_mu = PTHREAD_MUTEX_INITIALIZER;
static struct inflight *inflight_head; /* under inflight_mu */
/* Set by main to end the monitor; relaxed: the join orders everything after it. */
static atomic_bool monitor_stop;

static void inflight_add(struct inflight *e) {
  pthread_mutex_lock(&inflight_mu);
  e->prev = NULL;
  e->next = inflight_head;
  if (inflight_head != NULL)
    inflight_head->prev = e;
  inflight_head = e;
  pthread_mutex_unlock(&inflight_mu);
}

/* Before the release: from here the monitor never touches the slot. */
static void inflight_remove(struct inflight *e) {
  pthread_mutex_lock(&inflight_mu);
  if (e->prev != NULL)
    e->prev->next = e->next;
  else
    inflight_head = e->next;
  if (e->next != NULL)
    e->next->prev = e->prev;
  pthread_mutex_unlock(&inflight_mu);
}

/* Interrupts the requests whose client closed, or every one (at the end of a drain). */
static void inflight_sweep(bool all) {
  pthread_mutex_lock(&inflight_mu);
  for (struct inflight *e = inflight_head; e != NULL; e = e->next) {
    if (e->stopped)
      continue;
    char b;
    ssize_t n = all ? 0 : recv(e->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      lh_interrupt(e->slot); /* the request still holds it: it leaves the list first */
      e->stopped = true;
    }
  }
  pthread_mutex_unlock(&inflight_mu);
}

/* Waits up to ms for the requests that hold a state to finish (the drain of the strategies
   without luapool_shutdown; after it, quick for the luapool ones). */
static void inflight_drain(long ms) {
  const struct timespec pause = {0, 10 * 1000000L};
  uint64_t until = clock_ms() + (uint64_t)ms;
  for (;;) {
    pthread_mutex_lock(&inflight_mu);
    bool idle = inflight_head == NULL;
    pthread_mutex_unlock(&inflight_mu);
    if (idle || clock_ms() >= until)
      return;
    nanosleep(&pause, NULL);
  }
}

static void *monitor_main(void *arg) {
  (void)arg;
  const struct timespec pause = {0, LH_MONITOR_MS * 1000000L};
  while (!atomic_load_explicit(&monitor_stop, memory_order_relaxed)) {
    inflight_sweep(false);
    nanosleep(&pause, NULL);
  }
  return NULL;
}

/* ---- answers -----------------------------------------------------------------------------------
 */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             void *body, size_t len, enum MHD_ResponseMemoryMode mode,
                             const struct lh_answer *a) {
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
  if (resp == NULL) {
    if (mode == MHD_RESPMEM_MUST_FREE)
      free(body);
    return MHD_NO;
  }
  bool typed = false;
  for (size_t i = 0; a != NULL && i < a->nheaders; i++) {
    if (MHD_add_response_header(resp, a->headers[2 * i], a->headers[2 * i + 1]) != MHD_YES) {
      lh_log("a header the handler returned was refused: %s", a->headers[2 * i]);
      MHD_destroy_response(resp);
      const char text[] = "script error";
      resp = MHD_create_response_from_buffer(sizeof text - 1, (void *)text, MHD_RESPMEM_MUST_COPY);
      if (resp == NULL)
        return MHD_NO;
      status = 500;
      typed = false;
      break;
    }
    if (strcasecmp(a->headers[2 * i], "Content-Type") == 0)
      typed = true;
  }
  if (!typed)
    MHD_add_response_header(resp, "Content-Type", type);
  enum MHD_Result ok = MHD_queue_response(c, status, resp);
  MHD_destroy_response(resp);
  return ok;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text) {
  return reply(c, status, "text/plain", (void *)text, strlen(text), MHD_RESPMEM_MUST_COPY, NULL);
}

static enum MHD_Result reply_answer(struct MHD_Connection *c, struct lh_answer *a) {
  enum MHD_Result ok = reply(c, a->status, "text/plain", a->body != NULL ? a->body : "",
                             a->body_len, MHD_RESPMEM_MUST_COPY, a);
  lh_answer_free(a);
  return ok;
}

static enum MHD_Result reply_metrics(struct MHD_Connection *c) {
  size_t len;
  char *text = lh_metrics(&len);
  if (text == NULL)
    return reply_text(c, 404, "no metrics for this strategy\n");
  return reply(c, 200, "text/plain; version=0.0.4", text, len, MHD_RESPMEM_MUST_FREE, NULL);
}

static enum MHD_Result reply_acquire_error(struct MHD_Connection *c, int rc) {
  if (rc == LUAPOOL_ETIMEDOUT)
    return reply_text(c, 503, "no state");
  if (rc == LUAPOOL_ECLOSED)
    return reply_text(c, 503, "shutting down");
  lh_log("acquire: %s", luapool_strerror(rc));
  return reply_text(c, 500, "no state");
}

/* Runs r on the held slot, watched by the monitor, releases the slot, and answers. */
static enum MHD_Result serve_held(struct MHD_Connection *c, struct lh_request *r,
                                  struct lh_slot *slot) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  struct inflight e = {.slot = slot, .fd = ci != NULL ? ci->connect_fd : -1};
  struct lh_answer a;
  if (e.fd >= 0)
    inflight_add(&e);
  lh_run(slot, r, &a);
  if (e.fd >= 0)
    inflight_remove(&e);
  lh_release(slot);
  return reply_answer(c, &a);
}

/* ---- the event-loop model ------------------------------------------------------------------- */

/* One per MHD worker thread, made by it at its first request.  n is used by that thread only
   (a notifier belongs to one thread); the helper thread only polls its descriptor, fd.  The
   queue and waking are under loop_mu. */
struct lh_loop {
  luapool_notifier *n;
  int fd;
  struct lh_request *head, *tail; /* suspended requests waiting for a state, oldest first */
  struct lh_request *waking;      /* resumed for a wake-up, not yet back in the access handler */
  struct lh_loop *next;
};

static pthread_mutex_t loop_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t loop_cv = PTHREAD_COND_INITIALIZER; /* a queue became non-empty */
static struct lh_loop *loops;                             /* every worker's, under loop_mu */
static bool loop_closing; /* under loop_mu: the helper resumes everything and ends */
static __thread struct lh_loop *my_loop;

static struct lh_loop *loop_mine(void) {
  if (my_loop != NULL)
    return my_loop;
  struct lh_loop *w = calloc(1, sizeof *w);
  if (w == NULL)
    return NULL;
  int rc = luapool_notifier_open(lh_pool(), &w->n);
  if (rc != LUAPOOL_OK) {
    lh_log("luapool_notifier_open: %s", luapool_strerror(rc));
    free(w);
    return NULL;
  }
  w->fd = luapool_notifier_fd(w->n);
  pthread_mutex_lock(&loop_mu);
  w->next = loops;
  loops = w;
  pthread_mutex_unlock(&loop_mu);
  my_loop = w;
  return w;
}

/* Under loop_mu. */
static void queue_remove(struct lh_loop *w, struct lh_request *r) {
  struct lh_request **pp = &w->head, *prev = NULL;
  while (*pp != NULL && *pp != r) {
    prev = *pp;
    pp = &(*pp)->qnext;
  }
  if (*pp == NULL)
    return;
  *pp = r->qnext;
  if (w->tail == r)
    w->tail = prev;
  r->qnext = NULL;
  r->queued = false;
  if (w->waking == r)
    w->waking = NULL;
}

/* Under loop_mu: resumes r unless it is on its way back to the access handler already.  The
   suspend happens under loop_mu too, so a resume always follows its suspend. */
static void queue_resume(struct lh_request *r) {
  if (!r->resumed) {
    r->resumed = true;
    MHD_resume_connection(r->conn);
  }
}

/* Under loop_mu: resumes the head of w's queue unless one is on its way already. */
static void queue_wake_head(struct lh_loop *w) {
  if (w->head != NULL && w->waking == NULL && !loop_closing) {
    w->waking = w->head;
    queue_resume(w->head);
  }
}

static enum MHD_Result serve_loop(struct MHD_Connection *c, struct lh_request *r) {
  struct lh_loop *w = loop_mine();
  if (w == NULL)
    return reply_text(c, 500, "no state");
  pthread_mutex_lock(&loop_mu);
  if (w->waking == r)
    w->waking = NULL; /* the wake-up reaches its acquire below */
  r->resumed = false;
  bool timed_out = r->timed_out, closing = loop_closing;
  pthread_mutex_unlock(&loop_mu);
  struct lh_slot slot;
  int rc = closing     ? LUAPOOL_ECLOSED
           : timed_out ? LUAPOOL_ETIMEDOUT
                       : lh_acquire_async(w->n, &slot);
  pthread_mutex_lock(&loop_mu);
  if (rc == LUAPOOL_EAGAIN && !loop_closing) {
    if (!r->queued) { /* a request resumed and still without a state keeps its place */
      r->queued = true;
      r->loop = w;
      r->deadline_ms = clock_ms() + (uint64_t)acquire_timeout_ms;
      if (w->tail != NULL)
        w->tail->qnext = r;
      else
        w->head = r;
      w->tail = r;
      pthread_cond_signal(&loop_cv);
    }
    MHD_suspend_connection(c); /* under loop_mu: see queue_resume */
    pthread_mutex_unlock(&loop_mu);
    return MHD_YES;
  }
  queue_remove(w, r);
  bool none_waits = w->head == NULL;
  pthread_mutex_unlock(&loop_mu);
  if (rc != LUAPOOL_OK) {
    if (none_waits)
      luapool_notifier_cancel(w->n); /* no wake-up stays with a loop that wants none */
    return reply_acquire_error(c, rc == LUAPOOL_EAGAIN ? LUAPOOL_ECLOSED : rc);
  }
  enum MHD_Result ok = serve_held(c, r, &slot);
  pthread_mutex_lock(&loop_mu);
  queue_wake_head(w); /* it acquires again: with a state free, or registering the notifier */
  pthread_mutex_unlock(&loop_mu);
  return ok;
}

/* The helper: resumes a queue's head when its worker's notifier is readable, and the requests
   that waited too long. */
static void *loop_helper(void *arg) {
  (void)arg;
  struct pollfd fds[64];
  struct lh_loop *ws[64];
  pthread_mutex_lock(&loop_mu);
  while (!loop_closing) {
    nfds_t n = 0;
    bool any = false;
    uint64_t now = clock_ms();
    for (struct lh_loop *w = loops; w != NULL; w = w->next) {
      for (struct lh_request *r = w->head; r != NULL; r = r->qnext) {
        any = true;
        if (!r->timed_out && now >= r->deadline_ms) {
          r->timed_out = true;
          queue_resume(r); /* out of order: it leaves the queue in its access handler */
        }
      }
      if (w->head != NULL && w->waking == NULL && n < 64) {
        fds[n] = (struct pollfd){.fd = w->fd, .events = POLLIN};
        ws[n++] = w;
      }
    }
    if (!any) {
      pthread_cond_wait(&loop_cv, &loop_mu);
      continue;
    }
    pthread_mutex_unlock(&loop_mu);
    int ready = poll(fds, n, 10);
    pthread_mutex_lock(&loop_mu);
    for (nfds_t i = 0; ready > 0 && i < n; i++) {
      if (fds[i].revents & POLLIN)
        queue_wake_head(ws[i]);
    }
  }
  for (struct lh_loop *w = loops; w != NULL; w = w->next) { /* closing: nobody waits any more */
    for (struct lh_request *r = w->head; r != NULL; r = r->qnext)
      queue_resume(r);
  }
  pthread_mutex_unlock(&loop_mu);
  return NULL;
}

/* ---- libmicrohttpd's callbacks ------------------------------------------------------------- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_len, void **con_cls) {
  (void)cls, (void)version;
  struct lh_request *r = *con_cls;
  if (r == NULL) { /* the headers are in; the body, if any, comes in the next calls */
    r = calloc(1, sizeof *r);
    if (r == NULL)
      return MHD_NO;
    r->conn = c;
    r->method = method;
    r->url = url;
    *con_cls = r;
    return MHD_YES;
  }
  if (*upload_len > 0) {
    size_t n = *upload_len;
    *upload_len = 0;
    if (r->too_large || r->body_len + n > LH_BODY_MAX) {
      r->too_large = true; /* read and dropped: answered 413 at the end */
      return MHD_YES;
    }
    if (r->body_len + n > r->body_cap) {
      size_t cap = r->body_cap != 0 ? r->body_cap : 4096;
      while (cap < r->body_len + n)
        cap *= 2;
      char *b = realloc(r->body, cap);
      if (b == NULL)
        return MHD_NO;
      r->body = b;
      r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, upload, n);
    r->body_len += n;
    return MHD_YES;
  }
  if (r->too_large)
    return reply_text(c, 413, "body too large");
  if (strcmp(url, "/metrics") == 0 && strcmp(method, "GET") == 0)
    return reply_metrics(c);
  if (model == LH_MODEL_LOOP)
    return serve_loop(c, r);
  struct lh_slot slot;
  int rc = lh_acquire(acquire_timeout_ms, &slot);
  if (rc != LUAPOOL_OK)
    return reply_acquire_error(c, rc);
  return serve_held(c, r, &slot);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode why) {
  (void)cls, (void)c, (void)why;
  struct lh_request *r = *con_cls;
  if (r == NULL)
    return;
  if (r->loop != NULL) {
    pthread_mutex_lock(&loop_mu);
    struct lh_loop *w = r->loop;
    queue_remove(w, r);
    bool none_waits = w->head == NULL;
    queue_wake_head(w); /* a wake-up meant for r goes to the next request */
    pthread_mutex_unlock(&loop_mu);
    if (none_waits && w == my_loop)
      luapool_notifier_cancel(w->n);
  }
  free(r->body);
  free(r);
  *con_cls = NULL;
}

/* ---- options, start, signals ---------------------------------------------------------------- */

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s --script FILE [--address A] [--port N] [--model pool|tpc|loop]\n"
          "  [--threads N] [--strategy luapool|luapool-all|mutex|fresh|pinned]\n"
          "  [--max-states N] [--min-idle N] [--mem-limit-kb N] [--budget-ms N]\n"
          "  [--budget-instructions N] [--acquire-timeout-ms N] [--quiet]\n",
          argv0);
  exit(2);
}

static unsigned long long number(const char *s, const char *argv0) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
    usage(argv0);
  return v;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"address", required_argument, NULL, 'a'},
                                       {"port", required_argument, NULL, 'p'},
                                       {"model", required_argument, NULL, 'm'},
                                       {"threads", required_argument, NULL, 't'},
                                       {"script", required_argument, NULL, 's'},
                                       {"strategy", required_argument, NULL, 'S'},
                                       {"max-states", required_argument, NULL, 'M'},
                                       {"min-idle", required_argument, NULL, 'i'},
                                       {"mem-limit-kb", required_argument, NULL, 'k'},
                                       {"budget-ms", required_argument, NULL, 'b'},
                                       {"budget-instructions", required_argument, NULL, 'I'},
                                       {"acquire-timeout-ms", required_argument, NULL, 'T'},
                                       {"quiet", no_argument, NULL, 'q'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *address = "127.0.0.1", *script = NULL;
  unsigned long long port = 0, threads = 2;
  bool max_set = false;
  struct lh_settings s = {.strategy = LH_LUAPOOL, .mem_limit = 64u << 20, .budget_ms = 1000};
  int ch;
  while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (ch) {
    case 'a':
      address = optarg;
      break;
    case 'p':
      port = number(optarg, argv[0]);
      break;
    case 'm':
      if (strcmp(optarg, "pool") == 0)
        model = LH_MODEL_POOL;
      else if (strcmp(optarg, "tpc") == 0)
        model = LH_MODEL_TPC;
      else if (strcmp(optarg, "loop") == 0)
        model = LH_MODEL_LOOP;
      else
        usage(argv[0]);
      break;
    case 't':
      threads = number(optarg, argv[0]);
      break;
    case 's':
      script = optarg;
      break;
    case 'S':
      if (strcmp(optarg, "luapool") == 0)
        s.strategy = LH_LUAPOOL;
      else if (strcmp(optarg, "luapool-all") == 0)
        s.strategy = LH_LUAPOOL_ALL;
      else if (strcmp(optarg, "mutex") == 0)
        s.strategy = LH_MUTEX;
      else if (strcmp(optarg, "fresh") == 0)
        s.strategy = LH_FRESH;
      else if (strcmp(optarg, "pinned") == 0)
        s.strategy = LH_PINNED;
      else
        usage(argv[0]);
      break;
    case 'M':
      s.max_states = (unsigned)number(optarg, argv[0]);
      max_set = true;
      break;
    case 'i':
      s.min_idle = (unsigned)number(optarg, argv[0]);
      break;
    case 'k':
      s.mem_limit = (size_t)number(optarg, argv[0]) * 1024u;
      break;
    case 'b':
      s.budget_ms = (unsigned)number(optarg, argv[0]);
      break;
    case 'I':
      s.budget_instructions = number(optarg, argv[0]);
      break;
    case 'T':
      acquire_timeout_ms = (long)number(optarg, argv[0]);
      break;
    case 'q':
      s.quiet = true;
      break;
    default:
      usage(argv[0]);
    }
  }
  if (script == NULL || optind != argc || port > 65535 || threads == 0 || threads > 1024)
    usage(argv[0]);
  if (model == LH_MODEL_LOOP && s.strategy != LH_LUAPOOL && s.strategy != LH_LUAPOOL_ALL) {
    fprintf(stderr, "luahttpd: --model loop needs --strategy luapool or luapool-all\n");
    return 2;
  }
  /* A worker never holds two states: the pool model's workers need no more than threads. */
  if (!max_set && model != LH_MODEL_TPC)
    s.max_states = (unsigned)threads;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, address, &sa.sin_addr) != 1) {
    fprintf(stderr, "luahttpd: --address %s: not an IPv4 address\n", address);
    return 2;
  }

  /* The signals go to the main thread's sigwait only: blocked before any thread starts, so
     every thread inherits the mask. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGHUP);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGPIPE); /* blocked, never waited for: a write to a closed socket fails */
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  sigdelset(&sigs, SIGPIPE);

  if (lh_init(&s, script) != LUAPOOL_OK) {
    lh_destroy();
    return 1;
  }
  pthread_t monitor, helper;
  if (pthread_create(&monitor, NULL, monitor_main, NULL) != 0) {
    lh_log("cannot start the monitor thread");
    lh_destroy();
    return 1;
  }
  bool have_helper = model == LH_MODEL_LOOP;
  if (have_helper && pthread_create(&helper, NULL, loop_helper, NULL) != 0) {
    lh_log("cannot start the loop's helper thread");
    have_helper = false;
  }
  struct MHD_Daemon *d = NULL;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
  if (model == LH_MODEL_TPC) {
    d = MHD_start_daemon(flags | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL, on_request, NULL,
                         MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                         MHD_OPTION_CONNECTION_LIMIT, 1000u, MHD_OPTION_END);
  } else if (have_helper || model == LH_MODEL_POOL) {
    if (model == LH_MODEL_LOOP)
      flags |= MHD_ALLOW_SUSPEND_RESUME;
    d = MHD_start_daemon(flags | MHD_USE_EPOLL, 0, NULL, NULL, on_request, NULL,
                         MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
                         MHD_OPTION_CONNECTION_LIMIT, 1000u, MHD_OPTION_END);
  }
  int status = 0;
  MHD_socket listen_fd = MHD_INVALID_SOCKET;
  if (d == NULL) {
    lh_log("cannot start the server on %s:%llu", address, port);
    status = 1;
  } else {
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("luahttpd: listening on http://%s:%u/\n", address, di != NULL ? di->port : 0u);
    fflush(stdout);
    for (;;) {
      int sig;
      if (sigwait(&sigs, &sig) != 0)
        continue;
      if (sig == SIGHUP) {
        lh_reload(script);
        continue;
      }
      lh_log("signal %d: draining", sig);
      break;
    }
    listen_fd = MHD_quiesce_daemon(d); /* no new connections from here */
    int rc = lh_shutdown(LH_DRAIN_MS);
    if (rc != LUAPOOL_OK)
      lh_log("drain: %s; interrupting what still runs", luapool_strerror(rc));
    inflight_drain(rc == LUAPOOL_OK ? LH_DRAIN_MS : 0);
    inflight_sweep(true); /* what still runs, whatever the strategy */
  }
  if (have_helper) {
    pthread_mutex_lock(&loop_mu);
    loop_closing = true;
    pthread_cond_signal(&loop_cv);
    pthread_mutex_unlock(&loop_mu);
    pthread_join(helper, NULL);
  }
  if (d != NULL)
    MHD_stop_daemon(d); /* joins the workers: no request runs after it */
  if (listen_fd != MHD_INVALID_SOCKET)
    close(listen_fd); /* MHD_quiesce_daemon handed it to us */
  atomic_store_explicit(&monitor_stop, true, memory_order_relaxed);
  pthread_join(monitor, NULL);
  while (loops != NULL) { /* every worker is gone: this thread is the notifiers' only user */
    struct lh_loop *w = loops;
    loops = w->next;
    luapool_notifier_close(w->n);
    free(w);
  }
  lh_destroy();
  return status;
}
