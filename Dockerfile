# One image, both programs: `node dist/sampler.js` (the default) or `node dist/sink.js` (set the
# container's args); it also carries what the broker's and the Connect worker's pods copy out of it
# with init containers (the JMX agent, the Kafka Connect plugin of connect/). Two stages on the same Debian bookworm Node 24 base, so the Kafka client built
# in the first runs against the same libc and libraries in the second. The programs are bundled
# with esbuild at build time (schema included, packages left as imports): no transpiler at run
# time, whose loader thread alone cost about 30 MB of RSS per process.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
# librdkafka is built from source against Debian's libraries (CKJS_LINKING=dynamic; node-pre-gyp
# would otherwise fetch a prebuilt binary from GitHub where it can): the same with or without
# internet access, and OpenSSL fixes arrive with Debian's updates of the runtime stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
      zlib1g-dev libssl-dev libzstd-dev libsasl2-dev libcurl4-openssl-dev liblz4-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
ENV CKJS_LINKING=dynamic npm_config_build_from_source=@confluentinc/kafka-javascript
# The Kafka client's build leaves about 280 MB; at run time it needs only lib/, its package.json
# and types, build/Release/*.node and the librdkafka*.so.1 that the .node loads from build/deps
# (RUNPATH $ORIGIN/../deps). Sources, objects, static libraries and headers go; symbols are stripped.
RUN npm ci --omit=dev --no-audit --no-fund \
 && cd node_modules/@confluentinc/kafka-javascript \
 && rm -rf deps src build/Release/obj.target build/Release/.deps \
      build/deps/*.a build/deps/include build/deps/pkgconfig build/deps/librdkafka \
 && strip --strip-unneeded build/Release/*.node build/deps/*.so.* \
 && npm cache clean --force
# The Prometheus JMX exporter's java agent for the broker (its pod copies it from this image with an
# init container, so the same manifests work with the official apache/kafka image). From Maven
# Central, checked against its SHA-256; the version is scripts/kafka/pom.xml's jmx.exporter.version.
ARG JMX_EXPORTER_VERSION=1.0.1
ARG JMX_EXPORTER_SHA256=7d61f737fd661610ccc14aea79764faa1ea94a340cbc8f0029b3d2edea3d80c1
RUN mkdir -p /app/jmx && node --input-type=module -e " \
      const v = process.env.JMX_EXPORTER_VERSION; \
      const url = 'https://repo.maven.apache.org/maven2/io/prometheus/jmx/jmx_prometheus_javaagent/' + v + '/jmx_prometheus_javaagent-' + v + '.jar'; \
      const res = await fetch(url); if (!res.ok) throw new Error(url + ': ' + res.status); \
      const jar = Buffer.from(await res.arrayBuffer()); \
      const sum = (await import('node:crypto')).createHash('sha256').update(jar).digest('hex'); \
      if (sum !== process.env.JMX_EXPORTER_SHA256) throw new Error(url + ': SHA-256 ' + sum); \
      (await import('node:fs')).writeFileSync('/app/jmx/jmx_prometheus_javaagent.jar', jar);"
COPY sampler.ts sink.ts ./
COPY lib ./lib
COPY schema ./schema
RUN npm run build && rm -rf node_modules/tsx node_modules/esbuild node_modules/@esbuild

# The Kafka Connect S3 sink (connect/), the alternative to sink.ts: built with Maven on Debian's
# JDK into a plugin folder (the connector's jar and its own dependencies) for a Connect worker's
# plugin.path. k8s/components/connect runs the worker on the broker's image and copies the folder
# from this image with an init container, as the broker does with the JMX agent.
FROM ${NODE_IMAGE} AS connect
# man1 must exist for the JDK's update-alternatives in an image without man pages.
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless maven \
 && rm -rf /var/lib/apt/lists/*
# Certificates Node is told to trust on top of Debian's (a base made by scripts/docker-base.sh, where
# HTTPS goes through an intercepting proxy) are trusted by Java too; none in the official image.
RUN if [ -f "${NODE_EXTRA_CA_CERTS:-}" ]; then \
      csplit -s -z -f /tmp/extra-ca- "$NODE_EXTRA_CA_CERTS" "/-----BEGIN CERTIFICATE-----/" "{*}" \
      && for c in /tmp/extra-ca-*; do \
           keytool -importcert -noprompt -cacerts -storepass changeit -alias "${c#/tmp/}" -file "$c" >/dev/null 2>&1 || true; \
         done \
      && rm -f /tmp/extra-ca-*; \
    fi
WORKDIR /build
COPY connect/pom.xml connect/
# The dependencies first, in a layer of their own: a change to the sources does not fetch them again.
RUN mvn -B -ntp -q -f connect/pom.xml dependency:go-offline
COPY connect/src connect/src
COPY schema schema
# The unit tests run in CI (mvn -f connect/pom.xml test), not in every image build.
RUN mvn -B -ntp -q -f connect/pom.xml package -DskipTests \
 && ls connect/target/plugin/*/*.jar >/dev/null

FROM ${NODE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini ca-certificates \
      libssl3 libsasl2-2 libsasl2-modules libzstd1 libcurl4 liblz4-1 zlib1g \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/jmx ./jmx
COPY --from=connect /build/connect/target/plugin ./connect-plugins
COPY package.json ./
COPY schema ./schema
# The official image's unprivileged user (uid 1000); Kubernetes enforces runAsNonRoot on top.
USER node
ENTRYPOINT ["tini", "--"]
# As the sampler's DaemonSet runs it: a small young generation, since RSS is what it costs on every node.
CMD ["node", "--max-semi-space-size=1", "dist/sampler.js"]
