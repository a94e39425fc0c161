/* bench_util.c: what every benchmark needs the same way (bench_util.h). */
#include "bench_util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sorts samples in place. */
bench_summary bench_summarize(double *samples, int n) {
  qsort(samples, (size_t)n, sizeof *samples, compare_doubles);
  double median = n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
  return (bench_summary){median, samples[0], samples[n - 1]};
}

/* The "model name" of /proc/cpuinfo, or "unknown CPU". */
void bench_cpu_model(char *buf, size_t size) {
  snprintf(buf, size, "unknown CPU");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f == NULL)
    return;
  char line[256];
  while (fgets(line, sizeof line, f) != NULL) {
    char *colon = strchr(line, ':');
    if (strncmp(line, "model name", 10) != 0 || colon == NULL)
      continue;
    colon += strspn(colon + 1, " \t") + 1;
    colon[strcspn(colon, "\n")] = '\0';
    if (*colon != '\0')
      snprintf(buf, size, "%s", colon);
    break;
  }
  fclose(f);
}

bool bench_parse_seconds(const char *text, double *out) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || *end != '\0' || errno != 0 || !isfinite(v) || v <= 0 || v > 3600)
    return false;
  *out = v;
  return true;
}

double bench_seconds_between(const struct timespec *a, const struct timespec *b) {
  return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* A decimal integer in [min, max], digits only; *end gets what follows it. */
bool bench_parse_int(const char *text, int min, int max, int *out, const char **end) {
  if (!isdigit((unsigned char)*text))
    return false;
  char *stop;
  errno = 0;
  long v = strtol(text, &stop, 10);
  if (errno != 0 || v < min || v > max)
    return false;
  *out = (int)v;
  *end = stop;
  return true;
}

bool bench_parse_reps(const char *text, int *out) {
  const char *end;
  return bench_parse_int(text, 1, BENCH_MAX_REPS, out, &end) && *end == '\0';
}

bool bench_parse_list(const char *text, int min, int max, int *out, int max_n, int *n) {
  *n = 0;
  for (const char *p = text;; p++) {
    int v;
    if (*n == max_n || !bench_parse_int(p, min, max, &v, &p))
      return false;
    out[(*n)++] = v;
    if (*p == '\0')
      return true;
    if (*p != ',')
      return false;
  }
}

int bench_parse_options(int argc, char **argv, const char *prog, void (*usage)(FILE *),
                        int (*one)(void *opt, const char *arg, const char *value), void *opt) {
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--help") == 0) {
      usage(stdout);
      return 1;
    }
    bool missing = i + 1 >= argc;
    const char *value = missing ? "" : argv[i + 1];
    int r = one(opt, arg, value);
    if (r == BENCH_OPT_FLAG)
      continue;
    if (r == BENCH_OPT_UNKNOWN) {
      fprintf(stderr, "%s: unknown option '%s'\n", prog, arg);
      usage(stderr);
      return -1;
    }
    if (r == BENCH_OPT_BAD) {
      fprintf(stderr, "%s: bad value for %s: %s\n", prog, arg, missing ? "(missing)" : value);
      usage(stderr);
      return -1;
    }
    i++; /* the value */
  }
  return 0;
}

int bench_open_safe_libs(lua_State *L) {
  static const luaL_Reg libs[] = {
      {LUA_GNAME, luaopen_base},       {LUA_COLIBNAME, luaopen_coroutine},
      {LUA_TABLIBNAME, luaopen_table}, {LUA_STRLIBNAME, luaopen_string},
      {LUA_MATHLIBNAME, luaopen_math}, {LUA_UTF8LIBNAME, luaopen_utf8},
  };
  for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
    luaL_requiref(L, libs[i].name, libs[i].func, 1);
    lua_pop(L, 1);
  }
  return 0;
}
