// A stand-in for DSS's JSONAuditLayout so that log4j can load DSS-style audit configurations in
// the reference tests. It is not the reference for the envelope (DESIGN.md section 2.1 is): the
// tests use it to check what log4j does *around* the layout (which loggers reach which audit
// appender, additivity, rolling), comparing lines as parsed JSON.
package com.dataiku.dip.logging;

import java.text.SimpleDateFormat;
import java.util.*;
import org.apache.log4j.Layout;
import org.apache.log4j.spi.LoggingEvent;

public class JSONAuditLayout extends Layout {
  private final SimpleDateFormat iso = new SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss.SSSZ");

  static String q(Object o) {
    String s = String.valueOf(o);
    StringBuilder b = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      if (c == '"' || c == '\\') b.append('\\').append(c);
      else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
      else b.append(c);
    }
    return b.append('"').toString();
  }

  public String format(LoggingEvent e) {
    StringBuilder b = new StringBuilder("{");
    b.append("\"severity\":").append(q(e.getLevel()));
    b.append(",\"logger\":").append(q(e.getLoggerName()));
    b.append(",\"message\":").append(q(e.getRenderedMessage()));
    b.append(",\"mdc\":{");
    Map<?, ?> props = e.getProperties();
    List<String> keys = new ArrayList<>();
    for (Object k : props.keySet()) keys.add(String.valueOf(k));
    Collections.sort(keys);
    for (int i = 0; i < keys.size(); i++) {
      if (i > 0) b.append(",");
      b.append(q(keys.get(i))).append(":").append(q(props.get(keys.get(i))));
    }
    b.append("}");
    b.append(",\"timestamp\":").append(q(iso.format(new Date(e.timeStamp))));
    String[] thr = e.getThrowableStrRep();
    if (thr != null) b.append(",\"exception\":").append(q(String.join("\n", thr)));
    return b.append("}").append(LINE_SEP).toString();
  }

  public boolean ignoresThrowable() { return false; }
  public void activateOptions() {}
}
