-- The ten pods that used the most CPU over one day (UTC), by their average cores used, with the
-- 95th percentile and the highest one-minute reading beside it.
-- The day: change the date in WHERE dt = '...'.
SELECT
  namespace, pod, pod_uid,
  readings,
  avg_cores_used,
  p95_cores_used,
  max_cores_used
FROM pod_days
WHERE dt = '2026-11-27'
ORDER BY avg_cores_used DESC, pod_uid
LIMIT 10;
