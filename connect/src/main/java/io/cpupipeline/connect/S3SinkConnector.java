package io.cpupipeline.connect;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.Config;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigValue;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.sink.SinkConnector;

/**
 * The readings topic into S3 through Kafka Connect, writing what sink.ts writes: the same keys,
 * the same lines, the same metadata, every record exactly once (connect/README.md says how).
 * Invalid records go to Connect's dead-letter topic, so the connector needs errors.tolerance=all,
 * errors.deadletterqueue.topic.name and value.converter=ByteArrayConverter (the records' bytes as
 * they are); validate() refuses a configuration without them.
 */
public class S3SinkConnector extends SinkConnector {
  static final String VERSION = "0.1.0";
  static final String BYTE_ARRAY_CONVERTER = "org.apache.kafka.connect.converters.ByteArrayConverter";

  private Map<String, String> props;

  @Override
  public String version() {
    return VERSION;
  }

  @Override
  public void start(Map<String, String> props) {
    new S3SinkConfig(props); // a bad setting stops the connector here, by name
    this.props = Map.copyOf(props);
  }

  @Override
  public Class<? extends Task> taskClass() {
    return S3SinkTask.class;
  }

  @Override
  public List<Map<String, String>> taskConfigs(int maxTasks) {
    return Collections.nCopies(maxTasks, props);
  }

  @Override
  public void stop() {}

  @Override
  public ConfigDef config() {
    return S3SinkConfig.CONFIG;
  }

  @Override
  public Config validate(Map<String, String> connectorConfigs) {
    Config config = super.validate(connectorConfigs);
    Map<String, ConfigValue> values = new HashMap<>();
    for (ConfigValue v : config.configValues()) values.put(v.name(), v);
    ConfigValue buffer = values.get(S3SinkConfig.BUFFER_MAX_BYTES);
    ConfigValue file = values.get(S3SinkConfig.MAX_BYTES);
    if (buffer.errorMessages().isEmpty() && file.errorMessages().isEmpty()) {
      String problem = S3SinkConfig.bufferProblem((Long) buffer.value(), (Long) file.value());
      if (problem != null) buffer.addErrorMessage("Invalid value " + buffer.value() + " for configuration " + buffer.name() + ": " + problem);
    }
    List<ConfigValue> framework = new ArrayList<>();
    String tolerance = connectorConfigs.get("errors.tolerance");
    if (!"all".equals(tolerance)) {
      framework.add(error("errors.tolerance", tolerance,
          "expected all: an invalid record goes to the dead-letter topic and the connector goes on, as sink.ts does"));
    }
    String dlq = connectorConfigs.getOrDefault("errors.deadletterqueue.topic.name", "").trim();
    List<String> topics = Arrays.stream(connectorConfigs.getOrDefault("topics", "").split(",")).map(String::trim).toList();
    if (dlq.isEmpty()) {
      framework.add(error("errors.deadletterqueue.topic.name", dlq, "expected a topic for invalid records (sink.ts: KAFKA_DLQ_TOPIC, <topic>-dlq)"));
    } else if (topics.contains(dlq)) {
      framework.add(error("errors.deadletterqueue.topic.name", dlq, "expected a topic other than the ones the connector reads"));
    }
    String converter = connectorConfigs.get("value.converter");
    if (!BYTE_ARRAY_CONVERTER.equals(converter)) {
      framework.add(error("value.converter", converter, "expected " + BYTE_ARRAY_CONVERTER + ": the files hold the records' bytes as they are"));
    }
    List<ConfigValue> all = new ArrayList<>(config.configValues());
    all.addAll(framework);
    return new Config(all);
  }

  private static ConfigValue error(String name, String value, String expected) {
    return new ConfigValue(name, value, List.of(), List.of("Invalid value " + value + " for configuration " + name + ": " + expected));
  }
}
