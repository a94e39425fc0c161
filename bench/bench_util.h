/* Helpers shared by the benchmarks: statistics over repetitions, the machine, option parsing. */
#ifndef LUAPOOL_BENCH_UTIL_H
#define LUAPOOL_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
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
/* Protected (lua_pcall it): LUAPOOL_LIBS_SAFE's libraries opened by hand, without the sandbox,
   as a server without a pool would. */
int bench_open_safe_libs(lua_State *L);
double bench_seconds_between(const struct timespec *a, const struct timespec *b);

#endif
