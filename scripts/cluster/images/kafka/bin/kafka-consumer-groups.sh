#!/bin/bash
# Stand-in for Apache Kafka's bin/kafka-consumer-groups.sh (see the Dockerfile).
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@"
