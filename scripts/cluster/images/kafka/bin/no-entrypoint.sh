#!/bin/bash
# The official image's entrypoint (KAFKA_* variables -> server.properties) is not reproduced here.
cat >&2 <<'MSG'
This is a local stand-in for apache/kafka (see its Dockerfile in scripts/cluster/images/kafka/).
It has no default entrypoint: give the container a command, for example
  kafka-storage.sh format --ignore-formatted -t CLUSTER_ID -c server.properties && kafka-server-start.sh server.properties
MSG
exit 64
