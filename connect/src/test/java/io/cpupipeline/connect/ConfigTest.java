package io.cpupipeline.connect;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.InputStream;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.common.config.ConfigValue;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/** The settings: sink.ts's defaults, and a bad value refused by name. */
class ConfigTest {
  private static S3SinkConfig config(Map<String, String> props) {
    return new S3SinkConfig(props, Map.of());
  }

  @TestFactory
  List<DynamicTest> everyDefaultIsSinkTsDefault() throws Exception {
    JsonNode defaults;
    try (InputStream in = ConfigTest.class.getResourceAsStream("/sink-ts-cases.json")) {
      defaults = JsonMapper.builder().build().readTree(in).get("defaults");
    }
    S3SinkConfig c = config(Map.of());
    Map<String, Object> ours = new HashMap<>(c.values());
    ours.put(S3SinkConfig.REGION, c.region());
    List<DynamicTest> tests = new ArrayList<>();
    assertEquals(S3SinkConfig.CONFIG.names().size(), defaults.size(), "every setting has a sink.ts counterpart");
    for (JsonNode d : defaults) {
      String setting = d.get("setting").stringValue();
      tests.add(DynamicTest.dynamicTest(setting + " = sink.ts's " + d.get("env").stringValue(), () -> {
        Object value = ours.get(setting);
        JsonNode expected = d.get("value");
        if (expected.isNumber()) assertEquals(expected.doubleValue(), ((Number) value).doubleValue());
        else if (expected.isBoolean()) assertEquals(expected.booleanValue(), value);
        else assertEquals(expected.stringValue(), value);
      }));
    }
    return tests;
  }

  @Test
  @DisplayName("the region is the worker's AWS_REGION when s3.region is not set, as in sink.ts")
  void regionFromEnvironment() {
    assertEquals("ap-south-1", new S3SinkConfig(Map.of(), Map.of("AWS_REGION", "ap-south-1")).region());
    assertEquals("us-east-2", new S3SinkConfig(Map.of("s3.region", "us-east-2"), Map.of("AWS_REGION", "ap-south-1")).region());
    ConfigException e = assertThrows(ConfigException.class, () -> new S3SinkConfig(Map.of(), Map.of("AWS_REGION", "Mars")));
    assertTrue(e.getMessage().contains("AWS_REGION"), e.getMessage());
  }

  @TestFactory
  List<DynamicTest> aBadValueIsRefusedByName() {
    Object[][] cases = {
      {"s3.bucket", "Bad_Bucket", "an S3 bucket name"},
      {"s3.bucket", "ab", "an S3 bucket name"},
      {"s3.bucket", "a-bucket-name-that-is-longer-than-sixty-three-characters-is-refused", "an S3 bucket name"},
      {"s3.prefix", "/cpu", "without leading or trailing /"},
      {"s3.prefix", "cpu/", "without leading or trailing /"},
      {"s3.region", "mars", "an AWS region"},
      {"s3.endpoint", "ftp://127.0.0.1:9000", "an http(s):// URL"},
      {"s3.endpoint", "http://", "an http(s):// URL"},
      {"s3.endpoint", "http://127.0.0.1:9000/a b", "an http(s):// URL"},
      {"s3.force.path.style", "maybe", "Expected value to be either true or false"},
      {"s3.request.timeout.seconds", "0.5", "at least 1"},
      {"file.gzip", "yes please", "Expected value to be either true or false"},
      {"file.max.records", "0", "at least 1"},
      {"file.max.records", "ten", "Not a number of type INT"},
      {"file.max.bytes", "1023", "at least 1024"},
      {"file.max.bytes", String.valueOf(2L << 30), "no more than 1073741824"},
      {"file.max.age.seconds", "0", "at least 1"},
      {"file.max.age.seconds", "86401", "no more than 86400"},
      {"buffer.max.bytes", "1048576", "at least file.max.bytes (8388608)"},
      {"record.max.bytes", "63", "at least 64"},
    };
    List<DynamicTest> tests = new ArrayList<>();
    for (Object[] c : cases) {
      String name = (String) c[0];
      String value = (String) c[1];
      tests.add(DynamicTest.dynamicTest(name + "=" + value.replace("\n", "\\n"), () -> {
        ConfigException e = assertThrows(ConfigException.class, () -> config(Map.of(name, value)));
        assertTrue(e.getMessage().contains(name), e.getMessage());
        assertTrue(e.getMessage().contains((String) c[2]), e.getMessage());
      }));
    }
    return tests;
  }

  @Test
  @DisplayName("Connect trims a value before it is checked")
  void trimmed() {
    assertEquals("bucket", config(Map.of("s3.bucket", " bucket\n")).bucket());
  }

  @Test
  @DisplayName("sink.ts's limits are accepted at their edges")
  void edges() {
    S3SinkConfig c = config(Map.of("s3.prefix", "", "file.max.records", "10000000", "file.max.age.seconds", "1.5", "s3.endpoint", "https://s3.example:9000"));
    assertEquals(1500, c.limits().maxAgeMs());
    assertEquals("", c.prefix());
  }

  // ---------------------------------------------------------------- the connector's validate()

  private static Map<String, String> goodConnectorConfig() {
    Map<String, String> props = new HashMap<>();
    props.put("connector.class", S3SinkConnector.class.getName());
    props.put("topics", "cpu-levels");
    props.put("errors.tolerance", "all");
    props.put("errors.deadletterqueue.topic.name", "cpu-levels-dlq");
    props.put("value.converter", S3SinkConnector.BYTE_ARRAY_CONVERTER);
    return props;
  }

  private static Map<String, List<String>> errors(Map<String, String> props) {
    return new S3SinkConnector().validate(props).configValues().stream()
        .filter(v -> !v.errorMessages().isEmpty())
        .collect(Collectors.toMap(ConfigValue::name, ConfigValue::errorMessages));
  }

  @Test
  @DisplayName("validate() accepts a configuration with a dead-letter topic, errors.tolerance=all and byte values")
  void validConnectorConfig() {
    assertEquals(Map.of(), errors(goodConnectorConfig()));
  }

  @Test
  @DisplayName("validate() refuses a connector that would stop at the first invalid record, or lose it")
  void invalidRecordsNeedADeadLetterTopic() {
    Map<String, String> props = goodConnectorConfig();
    props.remove("errors.tolerance");
    props.remove("errors.deadletterqueue.topic.name");
    Map<String, List<String>> errors = errors(props);
    assertTrue(errors.get("errors.tolerance").get(0).contains("expected all"), errors.toString());
    assertTrue(errors.get("errors.deadletterqueue.topic.name").get(0).contains("expected a topic"), errors.toString());
    props.putAll(goodConnectorConfig());
    props.put("errors.deadletterqueue.topic.name", "cpu-levels");
    assertTrue(errors(props).get("errors.deadletterqueue.topic.name").get(0).contains("other than"));
  }

  @Test
  @DisplayName("validate() refuses a value converter other than ByteArrayConverter")
  void converter() {
    Map<String, String> props = goodConnectorConfig();
    props.put("value.converter", "org.apache.kafka.connect.json.JsonConverter");
    assertTrue(errors(props).get("value.converter").get(0).contains("ByteArrayConverter"));
  }

  @Test
  @DisplayName("validate() names a bad setting of the connector's own, and a buffer smaller than a file")
  void ownSettings() {
    Map<String, String> props = goodConnectorConfig();
    props.put("s3.bucket", "Bad_Bucket");
    props.put("buffer.max.bytes", "2048");
    Map<String, List<String>> errors = errors(props);
    assertTrue(errors.get("s3.bucket").get(0).contains("an S3 bucket name"), errors.toString());
    assertTrue(errors.get("buffer.max.bytes").get(0).contains("at least file.max.bytes"), errors.toString());
  }
}
