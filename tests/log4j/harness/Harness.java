// Reference harness: configures real log4j 1.2.17 from a properties file and reports, as JSON,
// what it did. pytest compiles this once per session and compares logbridge against it.
//
// Usage: java -cp log4j-1.2.jar:. Harness SPEC OUT
// SPEC is a tab-separated text file written by tests/log4j/reference.py (fields escaped with
// \\ \t \n \r, \N = null):
//   props PATH                       the properties file (PropertyConfigurator.configure(PATH))
//   sysprop KEY VALUE                a Java system property (the ${key} substitution source)
//   starttime MILLIS                 LoggingEvent's start time, for %r
//   logger NAME                      a logger to report (level, additivity, appenders reached)
//   event LOGGER LEVEL MILLIS THREAD MESSAGE NDC CLASS METHOD FILE LINE THROWABLE [MDCKEY MDCVAL]...
// OUT receives the JSON report; stdout/stderr of log4j are captured into it.
import java.io.*;
import java.lang.reflect.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;
import org.apache.log4j.*;
import org.apache.log4j.spi.*;

public class Harness {
  static String unescape(String s) {
    if (s.equals("\\N")) return null;
    StringBuilder b = new StringBuilder();
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '\\' && i + 1 < s.length()) {
        char n = s.charAt(++i);
        switch (n) {
          case 't': b.append('\t'); break;
          case 'n': b.append('\n'); break;
          case 'r': b.append('\r'); break;
          default: b.append(n);
        }
      } else b.append(c);
    }
    return b.toString();
  }

  static String q(Object o) {
    if (o == null) return "null";
    String s = o.toString();
    StringBuilder b = new StringBuilder("\"");
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"': b.append("\\\""); break;
        case '\\': b.append("\\\\"); break;
        case '\n': b.append("\\n"); break;
        case '\r': b.append("\\r"); break;
        case '\t': b.append("\\t"); break;
        default:
          if (c < 0x20 || c > 0x7e) b.append(String.format("\\u%04x", (int) c));
          else b.append(c);
      }
    }
    return b.append('"').toString();
  }

  static void setField(Object o, String name, Object value) throws Exception {
    Field f = LoggingEvent.class.getDeclaredField(name);
    f.setAccessible(true);
    f.set(o, value);
  }

  static Object getter(Object o, String name) {
    try {
      Method m = o.getClass().getMethod(name);
      return m.invoke(o);
    } catch (Exception e) {
      return null;
    }
  }

  static String appenderJson(Appender a) {
    StringBuilder b = new StringBuilder("{");
    b.append("\"class\":").append(q(a.getClass().getName()));
    String[] props = {"getThreshold", "getFile", "getAppend", "getBufferedIO", "getBufferSize",
        "getEncoding", "getTarget", "getFollow", "getImmediateFlush", "getMaximumFileSize",
        "getMaxBackupIndex", "getDatePattern", "getSyslogHost", "getFacility", "getBlocking"};
    for (String p : props) {
      Object v = getter(a, p);
      if (v != null) b.append(",").append(q(p.substring(3))).append(":").append(q(v));
    }
    Layout l = a.getLayout();
    if (l != null) {
      b.append(",\"layout\":").append(q(l.getClass().getName()));
      Object cp = getter(l, "getConversionPattern");
      if (cp != null) b.append(",\"pattern\":").append(q(cp));
    }
    b.append(",\"filters\":[");
    Filter f = a.getFilter();
    boolean first = true;
    while (f != null) {
      if (!first) b.append(",");
      first = false;
      b.append(q(f.getClass().getName()));
      f = f.getNext();
    }
    b.append("]}");
    return b.toString();
  }

  static final PrintStream REAL_ERR = System.err;

  public static void main(String[] args) {
    try {
      run(args);
    } catch (Throwable t) {
      t.printStackTrace(REAL_ERR);
      System.exit(1);
    }
    System.exit(0);  // no lingering appender threads (AsyncAppender)
  }

  static void run(String[] args) throws Exception {
    List<String> lines = Files.readAllLines(Paths.get(args[0]), StandardCharsets.UTF_8);
    String propsPath = null;
    List<String> loggers = new ArrayList<>();
    List<String[]> events = new ArrayList<>();
    for (String line : lines) {
      if (line.isEmpty()) continue;
      String[] f = line.split("\t", -1);
      switch (f[0]) {
        case "props": propsPath = unescape(f[1]); break;
        case "sysprop": System.setProperty(unescape(f[1]), unescape(f[2])); break;
        case "starttime": {
          Field st = LoggingEvent.class.getDeclaredField("startTime");
          st.setAccessible(true);
          st.setLong(null, Long.parseLong(f[1]));
          break;
        }
        case "logger": loggers.add(unescape(f[1])); break;
        case "event": events.add(f); break;
        default: throw new IllegalArgumentException("bad spec line: " + line);
      }
    }
    PrintStream realOut = System.out;
    PrintStream realErr = System.err;
    ByteArrayOutputStream cfgOut = new ByteArrayOutputStream();
    ByteArrayOutputStream cfgErr = new ByteArrayOutputStream();
    System.setOut(new PrintStream(cfgOut, true, "UTF-8"));
    System.setErr(new PrintStream(cfgErr, true, "UTF-8"));
    // Load LogManager (its default init finds no log4j.properties on this classpath).
    LoggerRepository repo = LogManager.getLoggerRepository();
    ByteArrayOutputStream evOut = new ByteArrayOutputStream();
    ByteArrayOutputStream evErr = new ByteArrayOutputStream();
    PrintStream evOutPs = new PrintStream(evOut, true, "UTF-8");
    PrintStream evErrPs = new PrintStream(evErr, true, "UTF-8");
    // Console appenders bind System.out/err when they activate (unless Follow=true), so the
    // streams they write to are switched before configuring; LogLog's own messages, which it
    // prints at call time, are told apart by phase.
    System.setOut(evOutPs);
    System.setErr(evErrPs);
    PrintStream cfgOutPs = new PrintStream(cfgOut, true, "UTF-8");
    PrintStream cfgErrPs = new PrintStream(cfgErr, true, "UTF-8");
    // LogLog writes to whatever System.err is at call time: route configure-time output there.
    System.setOut(new TeePrintStream(cfgOutPs, evOutPs));
    System.setErr(new TeePrintStream(cfgErrPs, evErrPs));
    TeePrintStream teeOut = (TeePrintStream) System.out;
    TeePrintStream teeErr = (TeePrintStream) System.err;
    teeOut.phaseConfigure = true;
    teeErr.phaseConfigure = true;
    PropertyConfigurator.configure(propsPath);
    teeOut.phaseConfigure = false;
    teeErr.phaseConfigure = false;

    StringBuilder evJson = new StringBuilder("[");
    int idx = 0;
    for (String[] f : events) {
      String loggerName = unescape(f[1]);
      Logger logger = loggerName.equals("root") ? Logger.getRootLogger() : Logger.getLogger(loggerName);
      Level level = Level.toLevel(unescape(f[2]));
      long ts = Long.parseLong(f[3]);
      String thread = unescape(f[4]);
      String message = unescape(f[5]);
      String ndc = unescape(f[6]);
      String cls = unescape(f[7]), method = unescape(f[8]), file = unescape(f[9]), lineNo = unescape(f[10]);
      String thr = unescape(f[11]);
      // The MDC is set the way applications set it (MDC.put, in order, into log4j's per-thread
      // Hashtable), and the event reads it from there: key order then is log4j's own.
      Map<String, String> mdc = new LinkedHashMap<>();
      MDC.clear();
      for (int i = 12; i + 1 < f.length; i += 2) {
        mdc.put(unescape(f[i]), unescape(f[i + 1]));
        MDC.put(unescape(f[i]), unescape(f[i + 1]));
      }
      NDC.clear();
      if (ndc != null) NDC.push(ndc);
      ThrowableInformation ti = thr == null ? null : new ThrowableInformation(thr.split("\n", -1));
      // No line: a location log4j could not find (its parts are then all unknown together).
      LocationInfo loc = lineNo == null ? new LocationInfo(null, null) : new LocationInfo(file, cls, method, lineNo);
      // The constructor Category.forcedLog uses, so that NDC, MDC and thread name are looked up
      // lazily as in an application; the location and the throwable's text are then fixed.
      Thread.currentThread().setName(thread);
      LoggingEvent ev = new LoggingEvent("org.apache.log4j.Logger", logger, ts, level, message, null);
      setField(ev, "locationInfo", loc);
      if (ti != null) setField(ev, "throwableInfo", ti);
      // Category.log(): the repository threshold, then the logger's effective level.
      boolean enabled = !repo.isDisabled(level.toInt()) && level.isGreaterOrEqual(logger.getEffectiveLevel());
      if (enabled) logger.callAppenders(ev);
      if (idx++ > 0) evJson.append(",");
      evJson.append(enabled ? "true" : "false");
    }
    evJson.append("]");
    System.out.flush();
    System.err.flush();

    StringBuilder out = new StringBuilder("{");
    out.append("\"threshold\":").append(q(repo.getThreshold()));
    out.append(",\"loggers\":{");
    boolean first = true;
    Map<String, Appender> seen = new LinkedHashMap<>();
    for (String name : loggers) {
      Logger lg = name.equals("root") ? Logger.getRootLogger() : Logger.getLogger(name);
      if (!first) out.append(",");
      first = false;
      out.append(q(name)).append(":{");
      out.append("\"level\":").append(q(lg.getLevel()));
      out.append(",\"effective\":").append(q(lg.getEffectiveLevel()));
      out.append(",\"additivity\":").append(lg.getAdditivity());
      out.append(",\"reached\":[");
      boolean f2 = true;
      for (Category c = lg; c != null; c = c.getParent()) {
        for (Enumeration<?> e = c.getAllAppenders(); e.hasMoreElements();) {
          Appender a = (Appender) e.nextElement();
          if (!f2) out.append(",");
          f2 = false;
          out.append(q(a.getName()));
          seen.put(a.getName(), a);
        }
        if (!c.getAdditivity()) break;
      }
      out.append("]}");
    }
    out.append("},\"appenders\":{");
    first = true;
    for (Map.Entry<String, Appender> e : seen.entrySet()) {
      if (!first) out.append(",");
      first = false;
      out.append(q(e.getKey())).append(":").append(appenderJson(e.getValue()));
    }
    out.append("}");
    out.append(",\"enabled\":").append(evJson);
    out.append(",\"configure_stdout\":").append(q(cfgOut.toString("UTF-8")));
    out.append(",\"configure_stderr\":").append(q(cfgErr.toString("UTF-8")));
    LogManager.shutdown();  // closes appenders: flushes buffered files, writes footers
    System.out.flush();
    System.err.flush();
    out.append(",\"stdout\":").append(q(evOut.toString("UTF-8")));
    // The bytes themselves, for appenders writing another charset (ConsoleAppender Encoding).
    out.append(",\"stdout_b64\":").append(q(Base64.getEncoder().encodeToString(evOut.toByteArray())));
    out.append(",\"stderr\":").append(q(evErr.toString("UTF-8")));
    out.append("}");
    Files.write(Paths.get(args[1]), out.toString().getBytes(StandardCharsets.UTF_8));
    System.setOut(realOut);
    System.setErr(realErr);
  }

  /** Writes to the configure-phase stream or the event-phase stream depending on the phase. */
  static class TeePrintStream extends PrintStream {
    final PrintStream cfg, ev;
    volatile boolean phaseConfigure;
    TeePrintStream(PrintStream cfg, PrintStream ev) throws UnsupportedEncodingException {
      super(new ByteArrayOutputStream(), true, "UTF-8");
      this.cfg = cfg;
      this.ev = ev;
    }
    PrintStream target() { return phaseConfigure ? cfg : ev; }
    @Override public void write(int b) { target().write(b); }
    @Override public void write(byte[] b, int off, int len) { target().write(b, off, len); }
    @Override public void flush() { cfg.flush(); ev.flush(); }
    @Override public void print(String s) { target().print(s); }
    @Override public void println(String s) { target().println(s); }
    @Override public void println(Object o) { target().println(o); }
    @Override public void println() { target().println(); }
    @Override public void print(char[] s) { target().print(s); }
    @Override public void print(Object o) { target().print(o); }
  }
}
