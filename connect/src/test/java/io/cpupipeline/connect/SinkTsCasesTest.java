package io.cpupipeline.connect;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * The connector against sink.ts itself: every case in sink-ts-cases.json (written from sink.ts by
 * scripts/connect-cases.ts) must come out here as it does there.
 */
class SinkTsCasesTest {
  private static JsonNode cases() throws Exception {
    try (InputStream in = SinkTsCasesTest.class.getResourceAsStream("/sink-ts-cases.json")) {
      return JsonMapper.builder().build().readTree(in);
    }
  }

  private static String text(JsonNode n) {
    return n == null || n.isNull() ? null : n.stringValue();
  }

  /** Details that are sink.ts's own words (the parser's and ajv's messages are their libraries'). */
  private static boolean sameWords(String reason, String detail) {
    return !Set.of("not-json", "schema").contains(reason) || "not valid UTF-8".equals(detail);
  }

  /** Where a schema detail says the record is wrong: the instance path it starts with. */
  private static String place(String detail) {
    return detail.substring(0, detail.indexOf(' '));
  }

  @TestFactory
  List<DynamicTest> checkRecordGivesSinkTsVerdictForEveryRecord() throws Exception {
    List<DynamicTest> tests = new ArrayList<>();
    JsonNode records = cases().get("records");
    assertTrue(records.size() > 100, "the cases file holds the records");
    for (JsonNode c : records) {
      tests.add(DynamicTest.dynamicTest(c.get("name").stringValue(), () -> {
        byte[] value = c.get("value").isNull() ? null : Base64.getDecoder().decode(c.get("value").stringValue());
        Readings.Checked got = Readings.check(value, c.get("maxBytes").longValue());
        if (c.get("ok").booleanValue()) {
          assertTrue(got.ok(), () -> "sink.ts accepts it; here: " + got.reason() + ": " + got.detail());
          assertEquals(text(c.get("hour")), got.hour());
          assertEquals(text(c.get("windowStart")), got.windowStart());
          byte[] line = Base64.getDecoder().decode(c.get("line").stringValue());
          assertArrayEquals(line, got.line(),
              () -> "line\n  sink.ts: " + new String(line, StandardCharsets.UTF_8) + "\n  here:    " + new String(got.line(), StandardCharsets.UTF_8));
        } else {
          String reason = c.get("reason").stringValue();
          String detail = c.get("detail").stringValue();
          assertEquals(reason, got.reason(), () -> "reason (sink.ts: " + detail + "; here: " + got.detail() + ")");
          if (sameWords(reason, detail)) assertEquals(detail, got.detail());
          // A schema's verdict in other words still names the same place (a JSON pointer), so a
          // reading checked against the wrong schema (a node's for a pod's) fails here too.
          if (reason.equals("schema")) {
            assertEquals(place(detail), place(got.detail()), () -> "where (sink.ts: " + detail + "; here: " + got.detail() + ")");
          }
        }
      }));
    }
    return tests;
  }

  @TestFactory
  List<DynamicTest> numbersAreWrittenAsJavaScriptWritesThem() throws Exception {
    List<DynamicTest> tests = new ArrayList<>();
    JsonNode numbers = cases().get("numbers");
    assertTrue(numbers.size() > 400, "the cases file holds the numbers");
    for (JsonNode c : numbers) {
      String js = c.stringValue();
      tests.add(DynamicTest.dynamicTest(js, () -> assertEquals(js, Js.numberToString(Double.parseDouble(js)))));
    }
    return tests;
  }

  @TestFactory
  List<DynamicTest> timePartitionGivesSinkTsHourForEveryTime() throws Exception {
    List<DynamicTest> tests = new ArrayList<>();
    for (JsonNode c : cases().get("timePartitions")) {
      String start = c.get("windowStart").stringValue();
      tests.add(DynamicTest.dynamicTest(start, () -> assertEquals(text(c.get("hour")), Readings.timePartition(start))));
    }
    return tests;
  }

  @TestFactory
  List<DynamicTest> objectKeyGivesSinkTsKeyForEveryFile() throws Exception {
    List<DynamicTest> tests = new ArrayList<>();
    for (JsonNode c : cases().get("objectKeys")) {
      String key = c.get("key").stringValue();
      tests.add(DynamicTest.dynamicTest(key, () -> assertEquals(key, Readings.objectKey(
          c.get("prefix").stringValue(),
          c.get("hour").stringValue(),
          c.get("topic").stringValue(),
          c.get("partition").intValue(),
          c.get("startOffset").longValue(),
          c.get("gzip").booleanValue()))));
    }
    return tests;
  }
}
