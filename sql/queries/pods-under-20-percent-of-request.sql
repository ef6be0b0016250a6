-- Pods that asked for much more CPU than they used over one day (UTC): on average under 20 % of
-- their CPU request. Only pods with a request; the least used first. request_cores minus
-- avg_cores_used is what a smaller request would give back to the scheduler.
-- The day: change the date in WHERE dt = '...'.
SELECT
  namespace, pod, pod_uid,
  request_cores,
  avg_cores_used,
  avg_request_percent
FROM pod_days
WHERE dt = '2026-11-27'
  AND request_cores IS NOT NULL
  AND avg_request_percent < 20
ORDER BY avg_request_percent, pod_uid;
