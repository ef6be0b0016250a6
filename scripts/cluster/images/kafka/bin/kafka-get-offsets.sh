#!/bin/bash
# Stand-in for Apache Kafka's bin/kafka-get-offsets.sh (see the Dockerfile).
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.GetOffsetShell "$@"
