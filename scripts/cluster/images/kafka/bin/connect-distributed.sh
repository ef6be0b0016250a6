#!/bin/bash
# Stand-in for Apache Kafka's bin/connect-distributed.sh (see the Dockerfile).
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.connect.cli.ConnectDistributed "$@"
