#!/usr/bin/env bash
# examples/job.sh - a batch job that reports DogStatsD metrics and exits at
# once. Run it under serverless-init:
#
#   DD_API_KEY=... serverless-init ./examples/job.sh     # to Datadog
#   serverless-init ./examples/job.sh                    # no key: shown on
#                                                        # stderr instead
#
# Every line below is one UDP datagram to the DogStatsD server that
# serverless-init bound before it started this script; when the script
# exits, serverless-init drains them all to the intake before it exits
# with the script's code.
set -euo pipefail

port=${DD_DOGSTATSD_PORT:-8125}
send() { printf '%s' "$1" > "/dev/udp/127.0.0.1/$port"; }

send "job.rows_processed:1200|c|#table:orders"   # count
send "job.rows_processed:34|c|#table:refunds"
send "job.queue_depth:17|g"                      # gauge (last value wins)
send "job.batch_seconds:1.25|h"                  # histogram
send "job.batch_seconds:0.75|h"
send "job.request_latency_ms:12|d"               # distribution
send "job.request_latency_ms:48|d"
send "job.customers:alice|s"                     # set (unique values)
send "job.customers:bob|s"
send $'job.steps:1|c\njob.steps:1|c'             # several lines, one packet

echo "job done"
