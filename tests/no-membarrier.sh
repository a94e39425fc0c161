#!/bin/sh
# The magazines without the asymmetric handshake (doc/design.md): LUAPOOL_MEMBARRIER=off makes
# every owner path use the read-modify-writes, as on a kernel without membarrier(2) or under a
# seccomp filter that refuses it.  The concurrency and fork tests run again that way.
set -e
b=${top_builddir:-.}
LUAPOOL_MEMBARRIER=off "$b/tests/test_threads"
LUAPOOL_MEMBARRIER=off "$b/tests/test_fork"
