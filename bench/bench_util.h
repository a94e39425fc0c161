/* Helpers shared by the benchmarks: statistics over repetitions, the machine, option parsing. */
#ifndef LUAPOOL_BENCH_UTIL_H
#define LUAPOOL_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <lua.h>

/* Median and spread of a cell's repetitions (in whatever unit the caller measured). */
typedef struct bench_summary {
  double median, min, max;
} bench_summary;

bench_summary bench_summarize(double *samples, int n);
void bench_cpu_model(char *buf, size_t size);
bool bench_parse_seconds(const char *text, double *out); /* (0, 3600] */
bool bench_parse_int(const char *text, int min, int max, int *out, const char **end);
#define BENCH_MAX_REPS 1000
bool bench_parse_reps(const char *text, int *out); /* [1, BENCH_MAX_REPS], nothing after */
/* A comma-separated list of at most max_n integers, each in [min, max]. */
bool bench_parse_list(const char *text, int min, int max, int *out, int max_n, int *n);

/* What a benchmark's option callback says of one option. */
enum { BENCH_OPT_UNKNOWN, BENCH_OPT_FLAG, BENCH_OPT_GOOD, BENCH_OPT_BAD };
/*
** The command line: --help prints usage to stdout; every other option goes to one(opt, arg,
** value), value being the next argument ("" when there is none), which answers BENCH_OPT_FLAG
** (an option without a value), BENCH_OPT_GOOD (the value taken), BENCH_OPT_BAD or
** BENCH_OPT_UNKNOWN.  0: run; 1: --help printed; -1: a bad option, reported on stderr.
*/
int bench_parse_options(int argc, char **argv, const char *prog, void (*usage)(FILE *),
                        int (*one)(void *opt, const char *arg, const char *value), void *opt);
/* Protected (lua_pcall it): LUAPOOL_LIBS_SAFE's libraries opened by hand, without the sandbox,
   as a server without a pool would. */
int bench_open_safe_libs(lua_State *L);
double bench_seconds_between(const struct timespec *a, const struct timespec *b);

#endif
