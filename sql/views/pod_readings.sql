-- Pod readings (kind 'pod'): one a pod a minute, from the pod's cgroup on its node. pod and
-- namespace are NULL when the sampler could not name the pod (no API access, or the pod was
-- already gone); pod_uid is always there. request_* NULL: no request (or not known); limit_* NULL:
-- no limit.
CREATE OR REPLACE VIEW pod_readings AS
SELECT
  dt, hour, node, window_start, window_end, window_seconds,
  pod_uid, pod, namespace, qos_class, cgroup_version,
  cores_used, request_cores, limit_cores, request_percent, limit_percent, throttled_seconds
FROM cpu_readings
WHERE kind = 'pod';
