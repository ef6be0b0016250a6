#!/bin/bash
# Stand-in for Apache Kafka's bin/kafka-server-start.sh (see the Dockerfile).
[ $# -ge 1 ] || { echo "USAGE: $0 server.properties [--override property=value]*" >&2; exit 1; }
base_dir=$(dirname "$0")
export KAFKA_LOG4J_OPTS=${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$base_dir/../config/log4j2.properties}
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}
EXTRA_ARGS=${EXTRA_ARGS-'-name kafkaServer -loggc'}
# shellcheck disable=SC2086 # EXTRA_ARGS is a list of options, as in the original
exec "$base_dir/kafka-run-class.sh" $EXTRA_ARGS kafka.Kafka "$@"
