#!/bin/bash
# Stand-in for Apache Kafka's bin/kafka-run-class.sh: runs CLASS from /opt/kafka/libs with the
# same environment variables as the original (see the Dockerfile).
#   kafka-run-class.sh [-name NAME] [-loggc] CLASS [ARGS...]
set -e
base_dir=$(cd "$(dirname "$0")/.." && pwd)
daemon_name=
gc_log=false
while [ $# -gt 0 ]; do
  case $1 in
    -name) daemon_name=$2; shift 2 ;;
    -loggc) gc_log=true; shift ;;
    -daemon) echo "$0: -daemon is not supported here (run in the foreground)" >&2; exit 1 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "USAGE: $0 [-name servicename] [-loggc] classname [opts]" >&2; exit 1; }
LOG_DIR=${LOG_DIR:-$base_dir/logs}
mkdir -p "$LOG_DIR"
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx256M}
KAFKA_JVM_PERFORMANCE_OPTS=${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}
KAFKA_LOG4J_OPTS=${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$base_dir/config/tools-log4j2.properties}
if [ "$gc_log" = true ]; then
  KAFKA_GC_LOG_OPTS="-Xlog:gc*:file=$LOG_DIR/$daemon_name-gc.log:time,tags:filecount=10,filesize=100M"
fi
java=java
[ -z "$JAVA_HOME" ] || java=$JAVA_HOME/bin/java
# shellcheck disable=SC2086 # the *_OPTS variables are lists of options, as in the original
exec "$java" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $KAFKA_GC_LOG_OPTS $KAFKA_JMX_OPTS \
  "-Dkafka.logs.dir=$LOG_DIR" $KAFKA_LOG4J_OPTS -cp "$base_dir/libs/*" $KAFKA_OPTS "$@"
