#!/bin/bash
# Stand-in for Apache Kafka's bin/kafka-configs.sh (see the Dockerfile).
exec "$(dirname "$0")/kafka-run-class.sh" kafka.admin.ConfigCommand "$@"
