#!/usr/bin/env bash
# The README's main job: builds serverless-init and wraps the example job
# (examples/job.sh), which sends a few DogStatsD metrics and exits. With no
# DD_API_KEY set, drainpipe shows on stderr what it would have sent.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target serverless-init
# drainpipe's own libcurl (loaded only with an API key; without it the
# system's libcurl is used, so a failure here is not fatal)
./scripts/build-libcurl.sh build/lib/drainpipe ||
  echo "run-example: the private libcurl was not built; the system's is used" >&2
exec ./build/bin/serverless-init ./examples/job.sh "$@"
