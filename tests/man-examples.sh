#!/bin/sh
# Every code example in the man pages (each .EX/.EE block of doc/*.3) and in the guides (each
# ```c block of doc/*.md and README.md) compiles against the public header, so the pages cannot
# drift from the API:
#   - a block with main() is a whole program: it is also linked with the library just built
#     (through libtool, with the build's sanitizer flags) and run, and must exit 0;
#   - a block that starts with "typedef struct" lists a public struct: each field line must be
#     in include/luapool.h, in the same order;
#   - a shell command (starting with "cc ") is skipped;
#   - otherwise the block is a fragment: up to the end of its last function definition it is
#     file scope (helper functions, statics), the rest is the body of a function returning int.
# The names fragments use without declaring them (pool, L, chunk, log_error...) are declared in
# the prelude below.
set -eu
src=${top_srcdir:-.}
cc=${CC:-cc}
tmp=${TMPDIR:-/tmp}/luapool-man-examples.$$
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/prelude.h" <<'EOF'
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lua.h>
#include <luapool.h>
extern luapool *pool;
extern lua_State *L;
extern const char *chunk, *src;
extern size_t src_len;
extern int state_is_spoiled;
void use(lua_State *L);
void log_error(const char *msg);
void log_script_error(const char *msg);
EOF

# Splits each page's blocks into $tmp/<page>.<n>.txt, with roff escapes undone.
for page in "$src"/doc/*.3; do
  base=$(basename "$page" .3)
  awk -v out="$tmp/$base" '
    /^\.EX/ { n++; file = out "." n ".txt"; inblock = 1; next }
    /^\.EE/ { inblock = 0; close(file); next }
    inblock {
      gsub(/\\-/, "-"); gsub(/\\\(dq/, "\""); gsub(/\\&/, ""); gsub(/\\e/, "\\");
      print > file
    }' "$page"
done

# The guides' ```c blocks, as md-<guide>.<n>.txt.
for guide in "$src"/doc/*.md "$src"/README.md; do
  [ -e "$guide" ] || continue
  base=md-$(basename "$guide" .md)
  awk -v out="$tmp/$base" '
    /^```c[[:space:]]*$/ { n++; file = out "." n ".txt"; inblock = 1; next }
    /^```/ && inblock { inblock = 0; close(file); next }
    inblock { print > file }' "$guide"
done

fail=0
count=0
ran=0
for block in "$tmp"/*.txt; do
  [ -e "$block" ] || continue
  name=$(basename "$block" .txt)
  first=$(sed -n '/[^[:space:]]/{p;q;}' "$block")
  case $first in
  "cc "*) continue ;;
  "typedef struct"*)
    count=$((count + 1))
    # each field line, whitespace squeezed, must appear in the header in this order
    tr -s ' \t' ' ' <"$src/include/luapool.h" | sed 's/ *\/\*.*//; s/^ //' >"$tmp/header.txt"
    last=0
    while IFS= read -r line; do
      l=$(printf '%s' "$line" | tr -s ' \t' ' ' | sed 's/^ //')
      case $l in "typedef struct"* | "}"*) continue ;; esac
      at=$(grep -n -F -x -- "$l" "$tmp/header.txt" | head -n 1 | cut -d: -f1)
      if [ -z "$at" ] || [ "$at" -le "$last" ]; then
        echo "FAIL: $name: '$l' is not in include/luapool.h (or out of order)" >&2
        fail=1
        break
      fi
      last=$at
    done <"$block"
    continue
    ;;
  esac
  count=$((count + 1))
  c="$tmp/$name.c"
  if grep -q 'main(void)' "$block"; then
    cp "$block" "$c"
  else
    # the last function definition: a "{" alone in column 0, or a line in column 0 that is no
    # statement and ends in ") {"; file scope runs to the first "}" in column 0 after it
    start=$(grep -n -E '^\{$|^[A-Za-z_][^;]*\) \{$' "$block" | grep -v -E '^[0-9]+:(if|for|while|switch|do|else)\b' |
      tail -n 1 | cut -d: -f1)
    split=0
    if [ -n "$start" ]; then
      split=$(awk -v s="$start" 'NR > s && /^}/ { print NR; exit }' "$block")
      split=${split:-0}
    fi
    {
      echo '#include "prelude.h"'
      head -n "$split" "$block"
      echo 'int example(void);'
      echo 'int example(void) {'
      tail -n "+$((split + 1))" "$block"
      echo 'return 0;'
      echo '}'
    } >"$c"
  fi
  # shellcheck disable=SC2086
  if ! $cc -fsyntax-only -fno-builtin -std=c11 -Wall -Werror -Wno-unused -I"$src/include" \
    -I"$tmp" ${LUA_CFLAGS:-} "$c" 2>"$tmp/err"; then
    echo "FAIL: the example $name does not compile:" >&2
    cat "$tmp/err" >&2
    fail=1
    continue
  fi
  # A whole program runs, when the build told us how to link it (make check does).
  if grep -q 'main(void)' "$block" && [ -n "${LIBTOOL:-}" ] && [ -n "${top_builddir:-}" ]; then
    # shellcheck disable=SC2086
    if ! $LIBTOOL --quiet --mode=link --tag=CC $cc -std=c11 -pthread ${SAN_CFLAGS:-} \
      -I"$src/include" ${LUA_CFLAGS:-} -o "$tmp/$name" "$c" "$top_builddir/lib/libluapool.la" \
      ${LUA_LIBS:-} 2>"$tmp/err"; then
      echo "FAIL: the example $name does not link:" >&2
      cat "$tmp/err" >&2
      fail=1
    elif ! (cd "$tmp" && timeout 60 "./$name" >"$tmp/$name.out" 2>&1); then
      echo "FAIL: the example $name does not run (exit status non-zero); it printed:" >&2
      cat "$tmp/$name.out" >&2
      fail=1
    else
      ran=$((ran + 1))
    fi
  fi
done
if [ "$count" -eq 0 ]; then
  echo "FAIL: no examples found in doc/*.3" >&2
  exit 1
fi
[ "$fail" -eq 0 ] || exit 1
echo "PASS: the $count code examples of the man pages and guides compile; $ran whole programs ran"
