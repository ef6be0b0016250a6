package io.cpupipeline.connect;

import com.networknt.schema.ExecutionContext;
import com.networknt.schema.format.Format;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The schema's "date-time" format exactly as sink.ts checks it (ajv-formats 3, full mode): a date
 * and a time split at one T, t or whitespace; real calendar days; a time zone required; a leap
 * second only at 23:59:60 UTC. The validator's own date-time check differs at the edges (which
 * separators, which leap seconds), and a record must be valid here exactly when it is for sink.ts.
 */
final class DateTimeFormat implements Format {
  private static final Pattern DATE = Pattern.compile("(\\d\\d\\d\\d)-(\\d\\d)-(\\d\\d)");
  private static final Pattern TIME =
      Pattern.compile("(\\d\\d):(\\d\\d):(\\d\\d(?:\\.\\d+)?)(z|([+-])(\\d\\d)(?::?(\\d\\d))?)?", Pattern.CASE_INSENSITIVE);
  private static final int[] DAYS = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  /** JavaScript's \s (and t, T): the separators `str.split(/t|\s/i)` splits at. */
  private static final String SEPARATORS =
      "tT\t\n\u000b\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff";

  @Override
  public String getName() {
    return "date-time";
  }

  @Override
  public boolean matches(ExecutionContext executionContext, String value) {
    return valid(value);
  }

  static boolean valid(String s) {
    int split = -1;
    for (int i = 0; i < s.length(); i++) {
      if (SEPARATORS.indexOf(s.charAt(i)) >= 0) {
        if (split >= 0) return false; // three parts or more
        split = i;
      }
    }
    return split >= 0 && date(s.substring(0, split)) && time(s.substring(split + 1));
  }

  private static boolean date(String s) {
    Matcher m = DATE.matcher(s);
    if (!m.matches()) return false;
    int year = Integer.parseInt(m.group(1));
    int month = Integer.parseInt(m.group(2));
    int day = Integer.parseInt(m.group(3));
    boolean leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    return month >= 1 && month <= 12 && day >= 1 && day <= (month == 2 && leap ? 29 : DAYS[month]);
  }

  private static boolean time(String s) {
    Matcher m = TIME.matcher(s);
    if (!m.matches()) return false;
    int hr = Integer.parseInt(m.group(1));
    int min = Integer.parseInt(m.group(2));
    double sec = Double.parseDouble(m.group(3));
    int tzSign = "-".equals(m.group(5)) ? -1 : 1;
    int tzH = m.group(6) == null ? 0 : Integer.parseInt(m.group(6));
    int tzM = m.group(7) == null ? 0 : Integer.parseInt(m.group(7));
    if (tzH > 23 || tzM > 59 || m.group(4) == null) return false;
    if (hr <= 23 && min <= 59 && sec < 60) return true;
    int utcMin = min - tzM * tzSign;
    int utcHr = hr - tzH * tzSign - (utcMin < 0 ? 1 : 0);
    return (utcHr == 23 || utcHr == -1) && (utcMin == 59 || utcMin == -1) && sec < 61;
  }
}
