// Loads each file with java.util.Properties.load(InputStream) and writes, per file, the order of
// keys() (what log4j's parseAppenderFilters walks) and of propertyNames() (what it walks to
// configure loggers and set options): a JSON array of {"keys": [...], "names": [...]}.
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;

public class PropsOrder {
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

  public static void main(String[] args) throws Exception {
    StringBuilder out = new StringBuilder("[");
    for (int i = 1; i < args.length; i++) {
      if (i > 1) out.append(",");
      Properties p = new Properties();
      try (InputStream in = new FileInputStream(args[i])) {
        p.load(in);
      }
      out.append("{\"keys\":").append(list(p.keys()));
      out.append(",\"names\":").append(list(p.propertyNames())).append("}");
    }
    out.append("]");
    Files.write(Paths.get(args[0]), out.toString().getBytes(StandardCharsets.UTF_8));
  }
}
