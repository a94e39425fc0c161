/*
** test_luahttpd: starts examples/luahttpd on port 0 with the scripts of tests/httpd/ and checks
** what it answers over real HTTP/1.1 on TCP: a normal answer (status, header, body), that a
** request's globals never reach the next one, that the query, a header and the body reach the
** script, each failure's status and reason (script error, budget, memory limit, a body too
** large), a client that goes away interrupting its request, /metrics, SIGHUP with a new and with
** a broken script, and SIGTERM's clean exit.  The whole suite runs for the models pool, tpc and
** loop with --strategy luapool; the other strategies get a smoke run each.
**
** Nothing is timed: every wait is a bounded poll for an event, and every socket operation has a
** timeout, so a broken server fails the test instead of hanging it.  The bounds scale with
** $LUAHTTPD_TIMEOUT_MULTIPLIER (or $CK_TIMEOUT_MULTIPLIER), for slow builds.  $top_builddir and
** $top_srcdir (make check's TESTS_ENVIRONMENT) locate the server and the scripts.  Exits 77
** (skipped) when configure found no libmicrohttpd.
*/
#define _GNU_SOURCE /* strcasestr */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef HAVE_LUAHTTPD
int main(void) {
  puts("test_luahttpd: configure found no libmicrohttpd: skipped");
  return 77;
}
#else

static int failures, checks;
static double mult = 1;
static char server_bin[4096], script_dir[4096], work_dir[256], script_file[512], log_file[512];

#define CHECK(cond, ...) check_((cond), #cond, __LINE__, __VA_ARGS__)

static void check_(bool ok, const char *what, int line, const char *fmt, ...) {
  checks++;
  if (ok)
    return;
  failures++;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "FAIL line %d (%s): ", line, what);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

static long bound_ms(long ms) {
  return (long)(ms * mult);
}

/* The --budget-ms of the suites: long enough for /bomb to reach its memory limit first, even
   in a slow build (the multiplier scales it). */
static char budget_arg[32];

/* ---- the server ------------------------------------------------------------------------------ */

struct server {
  pid_t pid;
  int port;
};

static void copy_file(const char *from, const char *to) {
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp", to);
  FILE *in = fopen(from, "rb"), *out = fopen(tmp, "wb");
  if (in == NULL || out == NULL) {
    fprintf(stderr, "cannot copy %s to %s: %s\n", from, to, strerror(errno));
    exit(1);
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0)
    fwrite(buf, 1, n, out);
  fclose(in);
  fclose(out);
  rename(tmp, to); /* the server never reads half a file */
}

static void use_script(const char *name) {
  char from[4200];
  snprintf(from, sizeof from, "%s/%s", script_dir, name);
  copy_file(from, script_file);
}

/* Starts the server with the arguments (NULL-terminated) after --script; reads its port. */
static bool server_start(struct server *s, ...) {
  const char *argv[40];
  int argc = 0;
  const char *wrap = getenv("LUAHTTPD_WRAPPER"); /* e.g. valgrind, by hand */
  if (wrap != NULL && *wrap != '\0')
    argv[argc++] = wrap;
  argv[argc++] = server_bin;
  argv[argc++] = "--port";
  argv[argc++] = "0";
  argv[argc++] = "--script";
  argv[argc++] = script_file;
  va_list ap;
  va_start(ap, s);
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL && argc < 38)
    argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;
  int p[2];
  if (pipe(p) != 0)
    return false;
  fflush(stderr);
  s->pid = fork();
  if (s->pid == 0) {
    dup2(p[1], 1);
    int log = open(log_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (log >= 0)
      dup2(log, 2);
    close(p[0]);
    close(p[1]);
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  close(p[1]);
  char line[256];
  size_t len = 0;
  s->port = 0;
  long waited = 0;
  while (len < sizeof line - 1 && waited < bound_ms(20000)) {
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    if (poll(&pf, 1, 100) <= 0) {
      waited += 100;
      continue;
    }
    ssize_t n = read(p[0], line + len, 1);
    if (n <= 0)
      break;
    if (line[len++] == '\n')
      break;
  }
  line[len] = '\0';
  close(p[0]);
  const char *colon = strrchr(line, ':');
  if (colon != NULL)
    s->port = atoi(colon + 1);
  if (s->port <= 0) {
    fprintf(stderr, "the server did not say its port (got \"%s\")\n", line);
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return false;
  }
  return true;
}

/* Sends SIGTERM and waits (bounded) for the exit; true if it exited 0. */
static bool server_stop(struct server *s) {
  kill(s->pid, SIGTERM);
  int st = 0;
  for (long waited = 0; waited < bound_ms(20000); waited += 20) {
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == s->pid)
      return WIFEXITED(st) && WEXITSTATUS(st) == 0;
    sleep_ms(20);
  }
  fprintf(stderr, "the server did not exit after SIGTERM\n");
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  return false;
}

static bool log_has(const char *what) {
  FILE *f = fopen(log_file, "r");
  if (f == NULL)
    return false;
  char line[2048];
  bool found = false;
  while (!found && fgets(line, sizeof line, f) != NULL)
    found = strstr(line, what) != NULL;
  fclose(f);
  return found;
}

/* ---- a tiny HTTP/1.1 client --------------------------------------------------------------------
 */

struct resp {
  int status;
  char headers[8192];
  char *body; /* malloc'd, NUL-terminated */
  size_t body_len;
};

/* Every socket operation's timeout; a poll of /metrics uses a shorter one (see metric). */
static long io_timeout_ms = 20000;

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  long ms = bound_ms(io_timeout_ms);
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static bool send_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n <= 0)
      return false;
    p += n;
    len -= (size_t)n;
  }
  return true;
}

static bool send_request(int fd, const char *method, const char *path, const char *headers,
                         const char *body, size_t body_len) {
  char head[2048];
  int n = snprintf(head, sizeof head,
                   "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
                   "Content-Length: %zu\r\n\r\n",
                   method, path, headers != NULL ? headers : "", body_len);
  return send_all(fd, head, (size_t)n) && (body_len == 0 || send_all(fd, body, body_len));
}

/* Reads the whole answer (the server closes after it: Connection: close) and parses it. */
static bool read_response(int fd, struct resp *r) {
  size_t cap = 16384, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (len + 1 >= cap)
      buf = realloc(buf, cap *= 2);
    ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
    if (n < 0) {
      free(buf);
      return false; /* a timeout included */
    }
    if (n == 0)
      break;
    len += (size_t)n;
  }
  buf[len] = '\0';
  char *end = strstr(buf, "\r\n\r\n");
  if (end == NULL || sscanf(buf, "HTTP/1.1 %d", &r->status) != 1) {
    free(buf);
    return false;
  }
  size_t hlen = (size_t)(end - buf) + 2;
  if (hlen >= sizeof r->headers)
    hlen = sizeof r->headers - 1;
  memcpy(r->headers, buf, hlen);
  r->headers[hlen] = '\0';
  char *body = end + 4;
  r->body_len = len - (size_t)(body - buf);
  r->body = malloc(r->body_len + 1);
  memcpy(r->body, body, r->body_len + 1);
  const char *cl = strcasestr(r->headers, "\r\nContent-Length:");
  bool ok = cl != NULL && strtoul(cl + 17, NULL, 10) == r->body_len;
  free(buf);
  if (!ok) {
    free(r->body);
    r->body = NULL;
  }
  return ok;
}

static bool http(int port, const char *method, const char *path, const char *headers,
                 const char *body, size_t body_len, struct resp *r) {
  memset(r, 0, sizeof *r);
  int fd = connect_to(port);
  if (fd < 0)
    return false;
  bool ok = send_request(fd, method, path, headers, body, body_len) && read_response(fd, r);
  close(fd);
  return ok;
}

static void resp_free(struct resp *r) {
  free(r->body);
  r->body = NULL;
}

/* The value of header name in r ("" if absent). */
static const char *header(const struct resp *r, const char *name, char *out, size_t len) {
  char key[128];
  snprintf(key, sizeof key, "\r\n%s:", name);
  const char *h = strcasestr(r->headers, key);
  out[0] = '\0';
  if (h != NULL) {
    h += strlen(key);
    while (*h == ' ')
      h++;
    size_t n = strcspn(h, "\r");
    if (n >= len)
      n = len - 1;
    memcpy(out, h, n);
    out[n] = '\0';
  }
  return out;
}

/* GET path: checks the status and the body (NULL: any). */
static void expect(int port, const char *path, int status, const char *body) {
  struct resp r;
  bool ok = http(port, "GET", path, NULL, NULL, 0, &r);
  CHECK(ok, "GET %s: no valid answer", path);
  if (ok) {
    CHECK(r.status == status, "GET %s: status %d, expected %d (body \"%s\")", path, r.status,
          status, r.body);
    if (body != NULL)
      CHECK(strcmp(r.body, body) == 0, "GET %s: body \"%s\", expected \"%s\"", path, r.body, body);
  }
  resp_free(&r);
}

/* The value of metric name in the /metrics text, or -1.  In the pool and loop models a worker
   owns the connections it accepted: one accepted by the worker that runs an endless request
   waits until that request ends, so a poll gives up on a connection after a second and the next
   try, on a new connection, goes to a free worker. */
static long long metric(int port, const char *name) {
  struct resp r;
  long long v = -1;
  long saved = io_timeout_ms;
  io_timeout_ms = 1000;
  bool ok = http(port, "GET", "/metrics", NULL, NULL, 0, &r);
  io_timeout_ms = saved;
  if (ok && r.status == 200) {
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *m = strstr(r.body, key);
    if (m != NULL)
      v = strtoll(m + strlen(key), NULL, 10);
  }
  resp_free(&r);
  return v;
}

static bool poll_metric(int port, const char *name, long long want) {
  for (long waited = 0; waited < bound_ms(5000); waited += 20) {
    if (metric(port, name) == want)
      return true;
    sleep_ms(20);
  }
  return false;
}

/* ---- the suites --------------------------------------------------------------------------------
 */

static void check_basics(int port) {
  struct resp r;
  char v[256];
  bool ok = http(port, "GET", "/hello", NULL, NULL, 0, &r);
  CHECK(ok, "GET /hello: no valid answer");
  if (ok) {
    CHECK(r.status == 200, "GET /hello: status %d", r.status);
    CHECK(strcmp(r.body, "hello /hello") == 0, "GET /hello: body \"%s\"", r.body);
    CHECK(strcmp(header(&r, "X-Test", v, sizeof v), "yes") == 0, "X-Test: \"%s\"", v);
    CHECK(strcmp(header(&r, "Content-Type", v, sizeof v), "text/plain") == 0,
          "Content-Type: \"%s\"", v);
  }
  resp_free(&r);
}

static void check_isolation(int port) {
  expect(port, "/set", 200, "set");
  expect(port, "/get", 200, "leak=nil"); /* --max-states 1: the same state, reset */
}

static void check_request_reaches_script(int port) {
  struct resp r;
  bool ok = http(port, "POST", "/echo?a=1", "X-Foo: bar\r\n", "payload", 7, &r);
  CHECK(ok, "POST /echo: no valid answer");
  if (ok)
    CHECK(r.status == 200 && strcmp(r.body, "m=POST a=1 h=bar b=payload") == 0,
          "POST /echo: %d \"%s\"", r.status, r.body);
  resp_free(&r);
  size_t big = (1u << 20) + 1;
  char *body = malloc(big);
  memset(body, 'x', big);
  ok = http(port, "POST", "/echo", NULL, body, big, &r);
  CHECK(ok && r.status == 413, "a body over 1 MiB: %d", r.status);
  resp_free(&r);
  ok = http(port, "POST", "/len", NULL, body, big - 1, &r);
  CHECK(ok && r.status == 200 && strcmp(r.body, "1048576") == 0, "a body of exactly 1 MiB: %d, %s",
        r.status, r.body);
  resp_free(&r);
  free(body);
}

static void check_failures(int port) {
  expect(port, "/error", 500, "script error");
  expect(port, "/badret", 500, "script error");
  expect(port, "/spin", 503, "budget");
  expect(port, "/hello", 200, "hello /hello"); /* still serving */
  expect(port, "/bomb", 500, "memory limit");
  expect(port, "/hello", 200, "hello /hello");
}

static void check_metrics(int port) {
  struct resp r;
  char v[256];
  bool ok = http(port, "GET", "/metrics", NULL, NULL, 0, &r);
  CHECK(ok && r.status == 200, "GET /metrics: %d", r.status);
  if (ok) {
    CHECK(strcmp(header(&r, "Content-Type", v, sizeof v), "text/plain; version=0.0.4") == 0,
          "/metrics Content-Type: \"%s\"", v);
    static const char *names[] = {"\nluapool_acquires_total ", "\nluapool_interrupted_total ",
                                  "\nluapool_live ", "\n# TYPE luapool_acquire_wait_seconds "};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
      CHECK(strstr(r.body, names[i]) != NULL, "/metrics lacks%s", names[i]);
  }
  resp_free(&r);
  CHECK(metric(port, "luapool_budget_exceeded_total") >= 1, "budget_exceeded not counted");
}

static bool poll_body(int port, const char *path, const char *want) {
  for (long waited = 0; waited < bound_ms(5000); waited += 20) {
    struct resp r;
    bool ok =
        http(port, "GET", path, NULL, NULL, 0, &r) && r.status == 200 && strcmp(r.body, want) == 0;
    resp_free(&r);
    if (ok)
      return true;
    sleep_ms(20);
  }
  return false;
}

static void check_reload(struct server *s) {
  expect(s->port, "/version", 200, "v1");
  use_script("handler2.lua");
  kill(s->pid, SIGHUP);
  CHECK(poll_body(s->port, "/version", "v2"), "SIGHUP: the new script never answered");
  use_script("broken.lua");
  kill(s->pid, SIGHUP);
  bool refused = false;
  for (long waited = 0; !refused && waited < bound_ms(5000); waited += 20) {
    refused = log_has("reload refused");
    if (!refused)
      sleep_ms(20);
  }
  CHECK(refused, "SIGHUP with a broken script: no \"reload refused\" in the log");
  expect(s->port, "/version", 200, "v2"); /* the old one still serves */
}

/* GET path until an answer comes, each try on a new connection given up after a second (see
   metric: a connection that the busy worker accepted waits); false if none came in time. */
static bool first_answer(int port, const char *path, struct resp *r) {
  long saved = io_timeout_ms;
  bool ok = false;
  io_timeout_ms = 1000;
  for (long waited = 0; !ok && waited < bound_ms(5000); waited += bound_ms(1000))
    ok = http(port, "GET", path, NULL, NULL, 0, r);
  io_timeout_ms = saved;
  return ok;
}

/* A client that goes away while its request loops (no budget): the request is interrupted.  While
   it holds the only state, another request waits --acquire-timeout-ms and gets a 503. */
static void check_disconnect(const char *model) {
  struct server s;
  use_script("handler.lua");
  bool up =
      server_start(&s, "--model", model, "--strategy", "luapool", "--max-states", "1", "--threads",
                   "2", "--budget-ms", "0", "--acquire-timeout-ms", "100", "--quiet", (char *)NULL);
  CHECK(up, "%s: the server did not start", model);
  if (!up)
    return;
  int fd = connect_to(s.port);
  CHECK(fd >= 0 && send_request(fd, "GET", "/spin", NULL, NULL, 0), "cannot send /spin");
  CHECK(poll_metric(s.port, "luapool_in_use", 1), "%s: /spin never held a state", model);
  struct resp r;
  bool ok = first_answer(s.port, "/hello", &r);
  CHECK(ok && r.status == 503 && strcmp(r.body, "no state") == 0,
        "%s: a request while no state is free: %d \"%s\"", model, r.status,
        r.body != NULL ? r.body : "");
  resp_free(&r);
  if (fd >= 0)
    close(fd);
  CHECK(poll_metric(s.port, "luapool_interrupted_total", 1),
        "%s: the request of a client that went away was not interrupted", model);
  expect(s.port, "/hello", 200, "hello /hello");
  CHECK(server_stop(&s), "%s: SIGTERM: no clean exit", model);
}

/* The loop model with fewer states than workers: a request that finds none waits (suspended)
   and is answered once the state comes back. */
static void check_loop_wait(void) {
  struct server s;
  use_script("handler.lua");
  bool up = server_start(&s, "--model", "loop", "--strategy", "luapool", "--max-states", "1",
                         "--threads", "4", "--budget-ms", "300", "--acquire-timeout-ms", "20000",
                         "--quiet", (char *)NULL);
  CHECK(up, "loop: the server did not start");
  if (!up)
    return;
  int spin[3];
  for (int i = 0; i < 3; i++) {
    spin[i] = connect_to(s.port);
    CHECK(spin[i] >= 0 && send_request(spin[i], "GET", "/spin", NULL, NULL, 0),
          "cannot send /spin");
  }
  expect(s.port, "/hello", 200, "hello /hello");
  for (int i = 0; i < 3; i++) {
    struct resp r;
    memset(&r, 0, sizeof r);
    bool ok = spin[i] >= 0 && read_response(spin[i], &r);
    CHECK(ok && r.status == 503 && strcmp(r.body, "budget") == 0, "loop: /spin %d: %d", i,
          r.status);
    resp_free(&r);
    if (spin[i] >= 0)
      close(spin[i]);
  }
  CHECK(server_stop(&s), "loop: SIGTERM: no clean exit");
}

static void suite_full(const char *model) {
  struct server s;
  fprintf(stderr, "--- model %s, strategy luapool\n", model);
  use_script("handler.lua");
  bool up = server_start(&s, "--model", model, "--strategy", "luapool", "--max-states", "1",
                         "--threads", "2", "--budget-ms", budget_arg, "--mem-limit-kb", "2048",
                         "--quiet", (char *)NULL);
  CHECK(up, "%s: the server did not start", model);
  if (!up)
    return;
  check_basics(s.port);
  check_isolation(s.port);
  check_request_reaches_script(s.port);
  check_failures(s.port);
  check_metrics(s.port);
  check_reload(&s);
  CHECK(server_stop(&s), "%s: SIGTERM: no clean exit", model);
  check_disconnect(model);
}

static void suite_smoke(const char *strategy) {
  struct server s;
  fprintf(stderr, "--- model pool, strategy %s\n", strategy);
  use_script("handler.lua");
  bool up =
      server_start(&s, "--model", "pool", "--strategy", strategy, "--threads", "2", "--budget-ms",
                   budget_arg, "--mem-limit-kb", "2048", "--quiet", (char *)NULL);
  CHECK(up, "%s: the server did not start", strategy);
  if (!up)
    return;
  check_basics(s.port);
  expect(s.port, "/error", 500, "script error");
  expect(s.port, "/spin", 503, "budget");
  expect(s.port, "/bomb", 500, "memory limit");
  expect(s.port, "/hello", 200, "hello /hello");
  struct resp r;
  bool ok = http(s.port, "GET", "/metrics", NULL, NULL, 0, &r);
  bool pooled = strncmp(strategy, "luapool", 7) == 0;
  CHECK(ok && r.status == (pooled ? 200 : 404), "%s: /metrics %d", strategy, r.status);
  resp_free(&r);
  CHECK(server_stop(&s), "%s: SIGTERM: no clean exit", strategy);
}

int main(void) {
  const char *b = getenv("top_builddir"), *src = getenv("top_srcdir");
  const char *m = getenv("LUAHTTPD_TIMEOUT_MULTIPLIER");
  if (m == NULL)
    m = getenv("CK_TIMEOUT_MULTIPLIER");
  if (m != NULL && atof(m) > 0)
    mult = atof(m);
  snprintf(budget_arg, sizeof budget_arg, "%ld", bound_ms(500)); /* 100 was short under TSan
                                                                 with make -j2 check */
  snprintf(server_bin, sizeof server_bin, "%s/examples/luahttpd", b != NULL ? b : ".");
  if (getenv("LUAHTTPD") != NULL) /* a server built elsewhere (CI: against the installed library) */
    snprintf(server_bin, sizeof server_bin, "%s", getenv("LUAHTTPD"));
  snprintf(script_dir, sizeof script_dir, "%s/tests/httpd", src != NULL ? src : ".");
  if (server_bin[0] != '/' && strchr(server_bin, '/') == NULL) { /* execvp: keep it a path */
    memmove(server_bin + 2, server_bin, strlen(server_bin) + 1);
    memcpy(server_bin, "./", 2);
  }
  snprintf(work_dir, sizeof work_dir, "/tmp/test_luahttpd.XXXXXX");
  if (mkdtemp(work_dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(script_file, sizeof script_file, "%s/handler.lua", work_dir);
  snprintf(log_file, sizeof log_file, "%s/server.log", work_dir);
  signal(SIGPIPE, SIG_IGN);

  suite_full("pool");
  suite_full("tpc");
  suite_full("loop");
  check_loop_wait();
  suite_smoke("luapool-all");
  suite_smoke("mutex");
  suite_smoke("fresh");
  suite_smoke("pinned");

  if (failures != 0) {
    fprintf(stderr, "--- the server's last log (%s):\n", log_file);
    FILE *f = fopen(log_file, "r");
    char line[2048];
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
      fputs(line, stderr);
    if (f != NULL)
      fclose(f);
  }
  unlink(script_file);
  unlink(log_file);
  rmdir(work_dir);
  printf("test_luahttpd: %d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
#endif
