/*
 * Etsy statsd configuration for bench/run_throughput.sh: loopback only, no
 * backends, and a flush interval longer than any run so that the
 * statsd.metrics_received counter (read through the management port with
 * the "counters" command) is never reset during a run. statsd evaluates
 * this file as JavaScript, so the ports come from the environment.
 */
{
  address: "127.0.0.1",
  port: Number(process.env.STATSD_BENCH_PORT || 8125),
  mgmt_address: "127.0.0.1",
  mgmt_port: Number(process.env.STATSD_BENCH_MGMT_PORT || 8126),
  backends: [],
  flushInterval: 3600000,
  automaticConfigReload: false
}
