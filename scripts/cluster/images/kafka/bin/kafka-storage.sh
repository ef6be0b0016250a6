#!/bin/bash
# Stand-in for Apache Kafka's bin/kafka-storage.sh (see the Dockerfile).
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
