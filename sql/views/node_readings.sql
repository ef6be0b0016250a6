-- Node readings (the lines without a kind): one a node a minute, the whole machine's CPU from
-- /proc/stat, host's figures as columns. pod and namespace of such a line are the sampler's own
-- pod, hence sampler_pod and sampler_namespace here; container is the sampler's own container.
CREATE OR REPLACE VIEW node_readings AS
SELECT
  dt, hour, node, window_start, window_end, window_seconds,
  host.cores AS cores,
  host.busy_percent AS busy_percent,
  host.user_percent AS user_percent,
  host.system_percent AS system_percent,
  host.iowait_percent AS iowait_percent,
  host.steal_percent AS steal_percent,
  host.idle_percent AS idle_percent,
  container,
  container_unavailable_reason,
  pod AS sampler_pod,
  namespace AS sampler_namespace
FROM cpu_readings
WHERE kind IS NULL;
