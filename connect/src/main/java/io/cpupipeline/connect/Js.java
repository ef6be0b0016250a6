package io.cpupipeline.connect;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import tools.jackson.core.io.schubfach.DoubleToDecimal;
import tools.jackson.databind.JsonNode;

/**
 * What sink.ts gets from JavaScript itself, done the same way here: JSON.stringify of a parsed
 * record (numbers as Number::toString writes them, strings escaped as ES2019 escapes them, object
 * members in JavaScript's property order). sink.ts writes a record through JSON.stringify when its
 * bytes hold a line break, so these decide the bytes of such a line.
 */
final class Js {
  private Js() {}

  /** JSON.stringify(JSON.parse(text)) for a value Jackson parsed from that text. */
  static String stringify(JsonNode node) {
    StringBuilder out = new StringBuilder();
    write(node, out);
    return out.toString();
  }

  private static void write(JsonNode node, StringBuilder out) {
    if (node.isObject()) {
      out.append('{');
      boolean first = true;
      for (Map.Entry<String, JsonNode> e : propertyOrder(node)) {
        if (!first) out.append(',');
        first = false;
        quote(e.getKey(), out);
        out.append(':');
        write(e.getValue(), out);
      }
      out.append('}');
    } else if (node.isArray()) {
      out.append('[');
      for (int i = 0; i < node.size(); i++) {
        if (i > 0) out.append(',');
        write(node.get(i), out);
      }
      out.append(']');
    } else if (node.isString()) {
      quote(node.stringValue(), out);
    } else if (node.isNumber()) {
      out.append(numberToString(number(node)));
    } else if (node.isBoolean()) {
      out.append(node.booleanValue());
    } else {
      out.append("null");
    }
  }

  /** The double JSON.parse makes of a number: the nearest one, infinite when too large. */
  static double number(JsonNode node) {
    if (node.isBigInteger()) return node.bigIntegerValue().doubleValue();
    if (node.isBigDecimal()) return node.decimalValue().doubleValue();
    return node.doubleValue();
  }

  /**
   * OrdinaryOwnPropertyKeys: keys that are array indices (canonical integers below 2^32 - 1)
   * first, ascending, then every other key in the order it was first given.
   */
  private static List<Map.Entry<String, JsonNode>> propertyOrder(JsonNode object) {
    List<Map.Entry<String, JsonNode>> indices = new ArrayList<>();
    List<Map.Entry<String, JsonNode>> others = new ArrayList<>();
    for (Map.Entry<String, JsonNode> e : object.properties()) (arrayIndex(e.getKey()) >= 0 ? indices : others).add(e);
    if (indices.isEmpty()) return others;
    indices.sort(Comparator.comparingLong(e -> arrayIndex(e.getKey())));
    indices.addAll(others);
    return indices;
  }

  private static long arrayIndex(String key) {
    if (key.isEmpty() || key.length() > 10 || (key.length() > 1 && key.charAt(0) == '0')) return -1;
    long n = 0;
    for (int i = 0; i < key.length(); i++) {
      char c = key.charAt(i);
      if (c < '0' || c > '9') return -1;
      n = n * 10 + (c - '0');
    }
    return n < 4_294_967_295L ? n : -1;
  }

  /** QuoteJSONString (ES2019): the short escapes, \\u00xx below 0x20, lone surrogates as \\udxxx. */
  static void quote(String s, StringBuilder out) {
    out.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        case '\b' -> out.append("\\b");
        case '\f' -> out.append("\\f");
        case '\n' -> out.append("\\n");
        case '\r' -> out.append("\\r");
        case '\t' -> out.append("\\t");
        default -> {
          boolean lone = Character.isHighSurrogate(c)
              ? !(i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1)))
              : Character.isLowSurrogate(c) && !(i > 0 && Character.isHighSurrogate(s.charAt(i - 1)));
          if (c < 0x20 || lone) out.append(String.format("\\u%04x", (int) c));
          else out.append(c);
        }
      }
    }
    out.append('"');
  }

  /**
   * Number::toString as JSON.stringify uses it: the shortest digits that read back as the same
   * double (Schubfach, as in jackson-core), written plain from 1e-7 to below 1e21 and as
   * d.ddde+n outside; -0 is "0"; NaN and the infinities are "null".
   */
  static String numberToString(double v) {
    if (Double.isNaN(v) || Double.isInfinite(v)) return "null";
    if (v == 0) return "0";
    String s = DoubleToDecimal.toString(Math.abs(v)); // "123.45", "1.0E21", "1.0E-7"
    int e = s.indexOf('E');
    String mantissa = e < 0 ? s : s.substring(0, e);
    int exponent = e < 0 ? 0 : Integer.parseInt(s.substring(e + 1));
    int dot = mantissa.indexOf('.');
    String digits = dot < 0 ? mantissa : mantissa.substring(0, dot) + mantissa.substring(dot + 1);
    int q = exponent - (dot < 0 ? 0 : mantissa.length() - dot - 1); // value = digits * 10^q
    int from = 0;
    while (from < digits.length() - 1 && digits.charAt(from) == '0') from++;
    int to = digits.length();
    while (to > from + 1 && digits.charAt(to - 1) == '0') {
      to--;
      q++;
    }
    digits = digits.substring(from, to);
    if (digits.length() == 2) {
      // Java's shortest form keeps two digits where one would do (Double.MIN_VALUE is 4.9E-324,
      // JavaScript's is 5e-324): take the nearest one-digit decimal that reads back as v, if any.
      BigDecimal exact = new BigDecimal(Math.abs(v));
      BigDecimal one = exact.round(new MathContext(1, RoundingMode.HALF_EVEN));
      BigDecimal step = BigDecimal.ONE.scaleByPowerOfTen(-one.scale());
      BigDecimal best = null;
      for (BigDecimal c : new BigDecimal[] {one, one.subtract(step), one.add(step)}) {
        if (c.signum() <= 0 || c.doubleValue() != Math.abs(v)) continue;
        if (best == null || c.subtract(exact).abs().compareTo(best.subtract(exact).abs()) < 0) best = c;
      }
      if (best != null) {
        best = best.stripTrailingZeros();
        digits = best.unscaledValue().toString();
        q = -best.scale();
      }
    }
    int k = digits.length();
    int n = k + q; // value = 0.digits * 10^n
    StringBuilder out = new StringBuilder(v < 0 ? "-" : "");
    if (k <= n && n <= 21) {
      out.append(digits).append("0".repeat(n - k));
    } else if (0 < n && n <= 21) {
      out.append(digits, 0, n).append('.').append(digits, n, k);
    } else if (-6 < n && n <= 0) {
      out.append("0.").append("0".repeat(-n)).append(digits);
    } else {
      out.append(digits.charAt(0));
      if (k > 1) out.append('.').append(digits, 1, k);
      out.append('e').append(n - 1 >= 0 ? "+" : "-").append(Math.abs(n - 1));
    }
    return out.toString();
  }
}
