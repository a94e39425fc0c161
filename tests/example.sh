#!/bin/sh
# The README's example program runs and prints what the README says it prints.
set -eu
out=$("${top_builddir:-.}/doc/example")
expected='hello, request (clean: yes)
hello, request (clean: yes)'
if [ "$out" != "$expected" ]; then
  printf 'doc/example printed:\n%s\nexpected:\n%s\n' "$out" "$expected" >&2
  exit 1
fi
echo "PASS: doc/example prints the README's output"
