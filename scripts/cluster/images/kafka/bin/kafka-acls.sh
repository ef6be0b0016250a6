#!/bin/bash
# Stand-in for Apache Kafka's bin/kafka-acls.sh (see the Dockerfile).
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.AclCommand "$@"
