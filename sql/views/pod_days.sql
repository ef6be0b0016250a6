-- One row a pod a day (UTC): what the pod queries of sql/queries/ select from. Filter it on dt:
-- dt is a grouping key, so the filter reaches the partitions and Athena reads only that day.
--
-- A pod is its pod_uid: a pod deleted and created again under the same name (a StatefulSet's) is
-- two rows. Its name is the one any of its readings had that day, and its uid where none had one.
-- avg_request_percent averages the readings that had a request; NULL: never had one.
CREATE OR REPLACE VIEW pod_days AS
SELECT
  dt,
  pod_uid,
  max(namespace) AS namespace,
  coalesce(max(pod), pod_uid) AS pod,
  max(qos_class) AS qos_class,
  count(*) AS readings,
  avg(cores_used) AS avg_cores_used,
  approx_percentile(cores_used, 0.95) AS p95_cores_used,
  max(cores_used) AS max_cores_used,
  max(request_cores) AS request_cores,
  avg(request_percent) AS avg_request_percent
FROM pod_readings
GROUP BY dt, pod_uid;
