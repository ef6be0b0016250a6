package io.cpupipeline.connect;

import com.networknt.schema.Error;
import com.networknt.schema.Schema;
import com.networknt.schema.SchemaRegistry;
import com.networknt.schema.SchemaRegistryConfig;
import com.networknt.schema.dialect.Dialect;
import com.networknt.schema.dialect.Dialects;
import com.networknt.schema.path.PathType;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.time.LocalDateTime;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import tools.jackson.core.JacksonException;
import tools.jackson.core.StreamReadConstraints;
import tools.jackson.core.StreamReadFeature;
import tools.jackson.core.json.JsonFactory;
import tools.jackson.databind.DeserializationFeature;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * Records and keys, exactly as sink.ts has them (checkRecord, timePartition, objectKey): which
 * record is a valid reading and why not (the dead-letter reason), which hour it belongs to, the
 * line it becomes in a file, and the object key of a file. Pure functions; connect/README.md
 * states the contract and test/unit/connect-cases.test.ts keeps the shared cases in step.
 */
final class Readings {
  private Readings() {}

  /** sink.ts's dead-letter reasons, in the order it checks them. */
  static final List<String> REASONS = List.of("empty", "oversize", "not-json", "duplicate-key", "not-object", "schema-version", "schema");

  /** What checkRecord says of a record: a line for the file of its hour, or why it is dead-lettered. */
  record Checked(boolean ok, String reason, String detail, String windowStart, String hour, byte[] line) {
    static Checked invalid(String reason, String detail) {
      return new Checked(false, reason, detail, null, null, null);
    }
  }

  // JSON as JSON.parse reads it: no comments, no trailing commas or tokens, no size or depth
  // limits of the parser's own (the record's size is checked before), and a key given twice kept
  // as the last value (the member count below finds it).
  private static final JsonMapper JSON = JsonMapper.builder(
          JsonFactory.builder()
              .streamReadConstraints(StreamReadConstraints.builder()
                  .maxNestingDepth(Integer.MAX_VALUE)
                  .maxNumberLength(Integer.MAX_VALUE)
                  .maxStringLength(Integer.MAX_VALUE)
                  .maxNameLength(Integer.MAX_VALUE)
                  .maxDocumentLength(-1)
                  .maxTokenCount(-1)
                  .build())
              .disable(StreamReadFeature.INCLUDE_SOURCE_IN_LOCATION)
              .build())
      .disable(DeserializationFeature.FAIL_ON_READING_DUP_TREE_KEY)
      .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
      .build();

  // A node's reading has no kind; a pod's says so (kind "pod"), and each has a schema of its own.
  private static final SchemaRegistry REGISTRY = registry();
  private static final Schema NODE_SCHEMA = loadSchema("cpu-reading.v1.schema.json");
  private static final Schema POD_SCHEMA = loadSchema("cpu-pod-reading.v1.schema.json");

  private static SchemaRegistry registry() {
    Dialect dialect = Dialect.builder(Dialects.getDraft202012()).format(new DateTimeFormat()).build();
    SchemaRegistryConfig config =
        SchemaRegistryConfig.builder().formatAssertionsEnabled(true).pathType(PathType.JSON_POINTER).build();
    return SchemaRegistry.withDialect(dialect, b -> b.schemaRegistryConfig(config));
  }

  private static Schema loadSchema(String name) {
    try (InputStream in = Readings.class.getResourceAsStream("/schema/" + name)) {
      if (in == null) throw new IllegalStateException("schema/" + name + " is not in the connector's jar");
      Schema schema = REGISTRY.getSchema(in);
      schema.initializeValidators();
      return schema;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * Whether a record can go into a file, and if not, why: the checks of sink.ts's checkRecord, in
   * its order (size, UTF-8, JSON, a key given twice, an object, schema_version, the schema of its
   * kind, a window_start with a place in time). A valid record becomes its own bytes as the line, or, when
   * they hold a line break, the same JSON written compact (as JSON.stringify writes it).
   */
  static Checked check(byte[] value, long maxBytes) {
    if (value == null || value.length == 0) return Checked.invalid("empty", "no value");
    if (value.length > maxBytes) return Checked.invalid("oversize", value.length + " bytes > " + maxBytes);
    String text;
    try {
      text = StandardCharsets.UTF_8.newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(ByteBuffer.wrap(value))
          .toString();
    } catch (CharacterCodingException e) {
      return Checked.invalid("not-json", "not valid UTF-8");
    }
    JsonNode parsed;
    try {
      // A byte-order mark is kept as a character (TextDecoder with ignoreBOM), which JSON.parse refuses.
      if (text.startsWith("\ufeff")) return Checked.invalid("not-json", "Unexpected token '\ufeff', not valid JSON");
      parsed = JSON.readTree(text);
      if (parsed == null || parsed.isMissingNode()) return Checked.invalid("not-json", "Unexpected end of JSON input");
    } catch (JacksonException e) {
      return Checked.invalid("not-json", e.getOriginalMessage());
    }
    if (!parsed.isObject()) return Checked.invalid("not-object", "the record is " + kindOf(parsed) + ", not a JSON object");
    if (membersInText(text) != membersParsed(parsed)) return Checked.invalid("duplicate-key", "a key is given twice in one object");
    JsonNode version = parsed.get("schema_version");
    if (version == null || !version.isNumber() || Js.number(version) != 1) {
      return Checked.invalid("schema-version", "schema_version " + (version == null ? "undefined" : Js.stringify(version)) + " is not 1");
    }
    // As sink.ts picks: only the string "pod" makes a pod's reading; any other kind is a node's
    // reading with a member its schema does not have.
    JsonNode kind = parsed.get("kind");
    boolean pod = kind != null && kind.isString() && kind.stringValue().equals("pod");
    List<Error> errors = (pod ? POD_SCHEMA : NODE_SCHEMA).validate(parsed);
    if (!errors.isEmpty()) {
      Error e = errors.get(0);
      String path = e.getInstanceLocation().toString();
      return Checked.invalid("schema", (path.isEmpty() ? "/" : path) + " " + e.getMessage());
    }
    // ajv's strictNumbers: a number JSON.parse makes infinite (1e400) is no number, and every
    // member of either reading has a type or a fixed set of values (a pod's kind, qos_class,
    // cgroup_version), so such a record fails its schema wherever it is.
    String infinite = infinitePath(parsed);
    if (infinite != null) return Checked.invalid("schema", infinite + " must be number");
    String windowStart = parsed.get("window_start").stringValue();
    String hour = timePartition(windowStart);
    if (hour == null) return Checked.invalid("schema", "/window_start " + windowStart + " is not an RFC 3339 time");
    boolean breaks = false;
    for (byte b : value) breaks |= b == '\n' || b == '\r';
    byte[] line = breaks ? Js.stringify(parsed).getBytes(StandardCharsets.UTF_8) : value;
    return new Checked(true, null, null, windowStart, hour, line);
  }

  private static String kindOf(JsonNode node) {
    if (node.isNull()) return "null";
    if (node.isArray()) return "an array";
    if (node.isNumber()) return "a number";
    if (node.isString()) return "a string";
    return "a boolean";
  }

  /**
   * Object members in JSON text: each ':' outside a string is one (the text must be valid JSON).
   * Fewer members after parsing than in the text means a key was given twice.
   */
  static int membersInText(String text) {
    int n = 0;
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      if (c == ':') n++;
      else if (c == '"') {
        for (i++; i < text.length(); i++) {
          char d = text.charAt(i);
          if (d == '\\') i++;
          else if (d == '"') break;
        }
      }
    }
    return n;
  }

  /** Members of every object in a parsed value (without recursion: the nesting has no limit). */
  private static long membersParsed(JsonNode root) {
    long n = 0;
    Deque<JsonNode> todo = new ArrayDeque<>();
    todo.push(root);
    while (!todo.isEmpty()) {
      JsonNode node = todo.pop();
      if (node.isObject()) n += node.size();
      if (node.isContainer()) for (JsonNode child : node.values()) todo.push(child);
    }
    return n;
  }

  /** Where the first number too large for a double is, as a JSON pointer, or null. */
  private static String infinitePath(JsonNode node) {
    if (node.isNumber()) return Double.isFinite(Js.number(node)) ? null : "";
    if (node.isObject()) {
      for (var e : node.properties()) {
        String p = infinitePath(e.getValue());
        if (p != null) return "/" + e.getKey().replace("~", "~0").replace("/", "~1") + p;
      }
    } else if (node.isArray()) {
      for (int i = 0; i < node.size(); i++) {
        String p = infinitePath(node.get(i));
        if (p != null) return "/" + i + p;
      }
    }
    return null;
  }

  private static final Pattern RFC3339 =
      Pattern.compile("(\\d{4})-(\\d{2})-(\\d{2})[Tt ](\\d{2}):(\\d{2}):(\\d{2})(?:\\.\\d+)?(?:[Zz]|([+-])(\\d{2}):(\\d{2}))");

  /**
   * Hive-style time partition of a reading, by its own window_start (UTC), not by arrival: read from
   * the text (so 23:59:60 is in hour 23 and years 0000-0099 keep their place); a time with an offset
   * is moved to UTC the way JavaScript's Date does it (fields that overflow carry over).
   */
  static String timePartition(String windowStart) {
    Matcher m = RFC3339.matcher(windowStart);
    if (!m.matches()) return null;
    if (m.group(7) == null) return "dt=" + m.group(1) + "-" + m.group(2) + "-" + m.group(3) + "/hour=" + m.group(4);
    int offset = (m.group(7).equals("+") ? 1 : -1) * (Integer.parseInt(m.group(8)) * 60 + Integer.parseInt(m.group(9)));
    LocalDateTime t = LocalDateTime.of(Integer.parseInt(m.group(1)), 1, 1, 0, 0)
        .plusMonths(Integer.parseInt(m.group(2)) - 1)
        .plusDays(Integer.parseInt(m.group(3)) - 1)
        .plusHours(Integer.parseInt(m.group(4)))
        .plusMinutes(Integer.parseInt(m.group(5)) - offset);
    int y = t.getYear();
    String year = y >= 0 && y <= 9999 ? String.format("%04d", y) : (y < 0 ? "-" : "+") + String.format("%06d", Math.abs(y));
    return String.format("dt=%s-%02d-%02d/hour=%02d", year, t.getMonthValue(), t.getDayOfMonth(), t.getHour());
  }

  /** The object key of a file: a function of its data only, so a replay lands on the same key. */
  static String objectKey(String prefix, String hour, String topic, int partition, long startOffset, boolean gzip) {
    String name = topic + "+" + partition + "+" + String.format("%010d", startOffset) + ".jsonl" + (gzip ? ".gz" : "");
    StringBuilder key = new StringBuilder();
    for (String part : new String[] {prefix, hour, name}) {
      if (part.isEmpty()) continue;
      if (key.length() > 0) key.append('/');
      key.append(part);
    }
    return key.toString();
  }
}
