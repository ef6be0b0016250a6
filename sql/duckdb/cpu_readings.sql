-- DuckDB only: the table sql/athena/cpu_readings.sql makes in Athena, over a local copy of the
-- bucket's prefix folder instead of S3. Same column names and types (string is VARCHAR, int is
-- INTEGER, struct<...> is STRUCT(...)), dt and hour from the folder names (Hive partitioning), as
-- strings like Athena's.
--
-- Where the copy is: the variable cpu_levels, set before this file is read
-- (SET VARIABLE cpu_levels = '/path/to/cpu-levels'); without it, ./cpu-levels. The files are the
-- sink's .jsonl.gz (or .jsonl with FILE_GZIP=false); DuckDB unpacks gzip by the suffix.
CREATE OR REPLACE VIEW cpu_readings AS
SELECT *
FROM read_json(
  coalesce(getvariable('cpu_levels'), 'cpu-levels') || '/dt=*/hour=*/*.jsonl*',
  format = 'newline_delimited',
  hive_partitioning = true,
  hive_types = {'dt': 'VARCHAR', 'hour': 'VARCHAR'},
  columns = {
    kind: 'VARCHAR',
    schema_version: 'INTEGER',
    window_start: 'VARCHAR',
    window_end: 'VARCHAR',
    window_seconds: 'DOUBLE',
    node: 'VARCHAR',
    pod: 'VARCHAR',
    namespace: 'VARCHAR',
    host: 'STRUCT(cores INTEGER, busy_percent DOUBLE, user_percent DOUBLE, system_percent DOUBLE, iowait_percent DOUBLE, steal_percent DOUBLE, idle_percent DOUBLE)',
    container: 'STRUCT(cgroup_version INTEGER, cpu_percent DOUBLE, cores_used DOUBLE, limit_cores DOUBLE, relative_to VARCHAR)',
    container_unavailable_reason: 'VARCHAR',
    pod_uid: 'VARCHAR',
    qos_class: 'VARCHAR',
    cgroup_version: 'INTEGER',
    cores_used: 'DOUBLE',
    request_cores: 'DOUBLE',
    limit_cores: 'DOUBLE',
    request_percent: 'DOUBLE',
    limit_percent: 'DOUBLE',
    throttled_seconds: 'DOUBLE'
  }
);
