-- The CPU of each pod over one day (UTC), in cores: the average and the 95th percentile of its
-- one-minute readings. Pods the sampler could not name have no namespace and show their uid as pod.
-- The day: change the date in WHERE dt = '...'.
SELECT
  namespace, pod, pod_uid,
  readings,
  avg_cores_used,
  p95_cores_used
FROM pod_days
WHERE dt = '2026-11-27'
ORDER BY namespace NULLS LAST, pod, pod_uid;
