-- How busy each node was over one day (UTC): the average and the 95th percentile of its
-- one-minute readings of busy_percent (percent of all its cores neither idle nor waiting for I/O).
-- The day: change the date in WHERE dt = '...'; Athena then reads only that day's partitions.
SELECT
  node,
  count(*) AS readings,
  max(cores) AS cores,
  avg(busy_percent) AS avg_busy_percent,
  approx_percentile(busy_percent, 0.95) AS p95_busy_percent
FROM node_readings
WHERE dt = '2026-11-27'
GROUP BY node
ORDER BY node;
