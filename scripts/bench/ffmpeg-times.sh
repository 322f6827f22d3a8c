#!/usr/bin/env bash
# ffmpeg, then its CPU time (user and system seconds, from bash's `times`) written to $SGMOE_BENCH_TIMES:
# scripts/bench/ingest.ts runs both the source's decoder and the `ffmpeg -f null` floor through this wrapper.
ffmpeg "$@"
rc=$?
times > "$SGMOE_BENCH_TIMES"  # second line: the children (ffmpeg)
exit $rc
