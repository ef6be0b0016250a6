package io.cpupipeline.connect;

import java.net.URI;
import java.net.URISyntaxException;
import java.util.Map;
import java.util.function.Function;
import java.util.regex.Pattern;
import org.apache.kafka.common.config.AbstractConfig;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigDef.Importance;
import org.apache.kafka.common.config.ConfigDef.Range;
import org.apache.kafka.common.config.ConfigDef.Type;
import org.apache.kafka.common.config.ConfigException;

/**
 * The connector's settings: sink.ts's, named the Connect way, with its defaults and its checks (a
 * bad value is refused with a message that names the setting, the value and what was expected).
 * Kafka settings (topics, group, dead-letter topic, converters) are Connect's own.
 */
final class S3SinkConfig extends AbstractConfig {
  static final String BUCKET = "s3.bucket";
  static final String PREFIX = "s3.prefix";
  static final String REGION = "s3.region";
  static final String ENDPOINT = "s3.endpoint";
  static final String FORCE_PATH_STYLE = "s3.force.path.style";
  static final String REQUEST_TIMEOUT_SECONDS = "s3.request.timeout.seconds";
  static final String GZIP = "file.gzip";
  static final String MAX_RECORDS = "file.max.records";
  static final String MAX_BYTES = "file.max.bytes";
  static final String MAX_AGE_SECONDS = "file.max.age.seconds";
  static final String BUFFER_MAX_BYTES = "buffer.max.bytes";
  static final String RECORD_MAX_BYTES = "record.max.bytes";

  /** The region when s3.region is not set: the SDK's own AWS_REGION, as sink.ts does, else eu-west-1. */
  static String defaultRegion(Map<String, String> env) {
    String region = env.get("AWS_REGION");
    return region == null || region.isBlank() ? "eu-west-1" : region.trim();
  }

  private static final ConfigDef.Validator REGION_NAME = matching("[a-z]{2}(-[a-z]+)+-\\d+", "an AWS region such as eu-west-1");

  static final ConfigDef CONFIG = new ConfigDef()
      .define(BUCKET, Type.STRING, "elementor-data-candidates-bucket",
          matching("[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "an S3 bucket name (3-63 of a-z 0-9 . -)"), Importance.HIGH,
          "The bucket the files go to (sink.ts: S3_BUCKET).")
      .define(PREFIX, Type.STRING, "cpu-levels",
          // JavaScript's '.' (anything but a line terminator) in sink.ts's pattern.
          matching("[^/][^\\n\\r\\u2028\\u2029]*[^/]|[^/]|", "a key prefix without leading or trailing /"), Importance.HIGH,
          "Key prefix of every object, without leading or trailing / (sink.ts: S3_PREFIX).")
      .define(REGION, Type.STRING, null, optional(REGION_NAME),
          Importance.HIGH, "The bucket's region; unset: the worker's AWS_REGION, else eu-west-1 (sink.ts: S3_REGION).")
      .define(ENDPOINT, Type.STRING, "", S3SinkConfig::checkEndpoint, Importance.MEDIUM,
          "An S3-compatible server's URL, such as http://127.0.0.1:9000; empty: AWS (sink.ts: S3_ENDPOINT).")
      .define(FORCE_PATH_STYLE, Type.BOOLEAN, false, Importance.LOW,
          "Path-style requests (bucket in the path), as S3-compatible servers often need (sink.ts: S3_FORCE_PATH_STYLE).")
      .define(REQUEST_TIMEOUT_SECONDS, Type.DOUBLE, 30.0, Range.between(1, 600), Importance.LOW,
          "Timeout of each S3 request attempt, seconds (sink.ts: S3_REQUEST_TIMEOUT_SECONDS).")
      .define(GZIP, Type.BOOLEAN, true, Importance.MEDIUM, "Gzip the files (.jsonl.gz), or not (.jsonl) (sink.ts: FILE_GZIP).")
      .define(MAX_RECORDS, Type.INT, 10_000, Range.between(1, 10_000_000), Importance.MEDIUM,
          "A file is closed when it holds this many records (sink.ts: FILE_MAX_RECORDS).")
      // sink.ts allows 4 GiB; a Java array holds 2 GiB, so files here stop at 1 GiB.
      .define(MAX_BYTES, Type.LONG, 8L << 20, Range.between(1024, 1L << 30), Importance.MEDIUM,
          "A file is closed when it holds this many bytes (before gzip) (sink.ts: FILE_MAX_BYTES).")
      .define(MAX_AGE_SECONDS, Type.DOUBLE, 300.0, Range.between(1, 86_400), Importance.MEDIUM,
          "A file is closed this long after its first record arrived, also when the topic is quiet (sink.ts: FILE_MAX_AGE_SECONDS).")
      .define(BUFFER_MAX_BYTES, Type.LONG, 32L << 20, Range.between(1024, 16L << 30), Importance.MEDIUM,
          "Bytes a task holds across its partitions before it stops taking records until S3 has taken some (sink.ts: BUFFER_MAX_BYTES).")
      .define(RECORD_MAX_BYTES, Type.INT, 65_536, Range.between(64, 100 << 20), Importance.LOW,
          "Larger records are dead-lettered (sink.ts: RECORD_MAX_BYTES).");

  private final String region;

  S3SinkConfig(Map<String, String> props) {
    this(props, System.getenv());
  }

  S3SinkConfig(Map<String, String> props, Map<String, String> env) {
    super(CONFIG, props);
    String set = getString(REGION);
    region = set != null ? set : defaultRegion(env);
    if (set == null) REGION_NAME.ensureValid("AWS_REGION", region);
    String problem = bufferProblem(getLong(BUFFER_MAX_BYTES), getLong(MAX_BYTES));
    if (problem != null) throw new ConfigException(BUFFER_MAX_BYTES, getLong(BUFFER_MAX_BYTES), problem);
  }

  /** A full file must fit in what a task may hold. */
  static String bufferProblem(long bufferMaxBytes, long fileMaxBytes) {
    return bufferMaxBytes < fileMaxBytes
        ? "expected at least " + MAX_BYTES + " (" + fileMaxBytes + "), or a full file could never be held"
        : null;
  }

  String bucket() {
    return getString(BUCKET);
  }

  String prefix() {
    return getString(PREFIX);
  }

  String region() {
    return region;
  }

  String endpoint() {
    return getString(ENDPOINT);
  }

  boolean forcePathStyle() {
    return getBoolean(FORCE_PATH_STYLE);
  }

  long requestTimeoutMs() {
    return Math.round(getDouble(REQUEST_TIMEOUT_SECONDS) * 1000);
  }

  boolean gzip() {
    return getBoolean(GZIP);
  }

  Limits limits() {
    return new Limits(getInt(MAX_RECORDS), getLong(MAX_BYTES), Math.round(getDouble(MAX_AGE_SECONDS) * 1000));
  }

  long bufferMaxBytes() {
    return getLong(BUFFER_MAX_BYTES);
  }

  int recordMaxBytes() {
    return getInt(RECORD_MAX_BYTES);
  }

  /** The whole value matches (as sink.ts's /^...$/ patterns do: no line end slips past the end). */
  private static ConfigDef.Validator matching(String regex, String expected) {
    Pattern pattern = Pattern.compile(regex);
    return check(v -> v instanceof String s && pattern.matcher(s).matches() ? null : expected);
  }

  private static ConfigDef.Validator optional(ConfigDef.Validator validator) {
    return (name, value) -> {
      if (value != null) validator.ensureValid(name, value);
    };
  }

  private static ConfigDef.Validator check(Function<Object, String> problem) {
    return (name, value) -> {
      String p = problem.apply(value);
      if (p != null) throw new ConfigException(name, value, "expected " + p);
    };
  }

  private static void checkEndpoint(String name, Object value) {
    String v = (String) value;
    if (v == null || v.isEmpty()) return;
    try {
      URI u = new URI(v);
      if (("http".equals(u.getScheme()) || "https".equals(u.getScheme())) && u.getHost() != null && !v.matches("(?s).*\\s.*")) return;
    } catch (URISyntaxException e) {
      // not a URL
    }
    throw new ConfigException(name, value, "expected an http(s):// URL such as http://127.0.0.1:9000");
  }
}
