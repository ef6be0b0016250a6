-- The sink's files as one Athena table: s3://<bucket>/<prefix>/dt=YYYY-MM-DD/hour=HH/*.jsonl.gz,
-- one reading a line, a node's (no kind) or a pod's (kind 'pod') mixed in the same files.
--
-- Columns: every property of schema/cpu-reading.v1.schema.json and schema/cpu-pod-reading.v1.schema.json,
-- so each line fills the columns of its kind and leaves the others NULL; host and container are
-- structs as in the JSON. window_start and window_end stay ISO 8601 strings (they sort as time;
-- from_iso8601_timestamp() makes timestamps of them).
--
-- Partitions: projected, not stored. Athena computes dt and hour from the table properties below,
-- so there is no crawler, no MSCK REPAIR TABLE and no ALTER TABLE ADD PARTITION, and a new hour is
-- queryable as soon as the sink writes its first file. A query that filters on dt (and hour) reads
-- only those folders. dt is the day and hour the hour (UTC) of each reading's window_start, as the
-- sink names the folders (sink.ts: timePartition, objectKey); both are strings: dt = '2026-11-27',
-- hour = '05'. Data before the first day of projection.dt.range is not seen: move it back if
-- older files are added.
--
-- The Hive JSON SerDe, not the OpenX one: Athena's documentation warns that the OpenX SerDe can
-- return non-deterministic results. Gzip is read by the files' .gz suffix.
--
-- Another bucket or prefix (S3_BUCKET, S3_PREFIX of the sink): change LOCATION and
-- storage.location.template alike.
CREATE EXTERNAL TABLE IF NOT EXISTS cpu_readings (
  kind string,
  schema_version int,
  window_start string,
  window_end string,
  window_seconds double,
  node string,
  pod string,
  namespace string,
  host struct<
    cores: int,
    busy_percent: double,
    user_percent: double,
    system_percent: double,
    iowait_percent: double,
    steal_percent: double,
    idle_percent: double
  >,
  container struct<
    cgroup_version: int,
    cpu_percent: double,
    cores_used: double,
    limit_cores: double,
    relative_to: string
  >,
  container_unavailable_reason string,
  pod_uid string,
  qos_class string,
  cgroup_version int,
  cores_used double,
  request_cores double,
  limit_cores double,
  request_percent double,
  limit_percent double,
  throttled_seconds double
)
PARTITIONED BY (dt string, hour string)
ROW FORMAT SERDE 'org.apache.hive.hcatalog.data.JsonSerDe'
LOCATION 's3://elementor-data-candidates-bucket/cpu-levels/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2026-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'projection.hour.type' = 'integer',
  'projection.hour.range' = '0,23',
  'projection.hour.digits' = '2',
  'storage.location.template' = 's3://elementor-data-candidates-bucket/cpu-levels/dt=${dt}/hour=${hour}/'
);
