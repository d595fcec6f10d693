// Loads each file with java.util.Properties.load(InputStream) (what PropertyConfigurator uses)
// and writes a JSON array, one entry per file: the key -> value object (or {"!error": message});
// with --order first, {"keys": [...], "names": [...]}, the order of keys() (what log4j's
// parseAppenderFilters walks) and of propertyNames() (what it walks to configure loggers and set
// options).
// Usage: PropsDump [--order] OUT FILE...
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;

public class PropsDump {
  static String list(Enumeration<?> e) {
    StringBuilder b = new StringBuilder("[");
    boolean first = true;
    while (e.hasMoreElements()) {
      if (!first) b.append(",");
      first = false;
      b.append(Harness.q(e.nextElement()));
    }
    return b.append("]").toString();
  }

  static String entries(Properties p) {
    StringBuilder b = new StringBuilder("{");
    boolean first = true;
    for (String k : new TreeSet<>(p.stringPropertyNames())) {
      if (!first) b.append(",");
      first = false;
      b.append(Harness.q(k)).append(":").append(Harness.q(p.getProperty(k)));
    }
    return b.append("}").toString();
  }

  public static void main(String[] args) throws Exception {
    boolean order = args[0].equals("--order");
    int start = order ? 2 : 1;
    StringBuilder out = new StringBuilder("[");
    for (int i = start; i < args.length; i++) {
      if (i > start) out.append(",");
      Properties p = new Properties();
      try (InputStream in = new FileInputStream(args[i])) {
        p.load(in);
        out.append(order ? "{\"keys\":" + list(p.keys()) + ",\"names\":" + list(p.propertyNames()) + "}" : entries(p));
      } catch (IllegalArgumentException e) {
        out.append("{\"!error\":").append(Harness.q(e.getMessage())).append("}");
      }
    }
    out.append("]");
    Files.write(Paths.get(args[start - 1]), out.toString().getBytes(StandardCharsets.UTF_8));
  }
}
