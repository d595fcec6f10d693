// Loads each file with java.util.Properties.load(InputStream) (what PropertyConfigurator uses)
// and writes a JSON array: one object of key -> value per file, or {"!error": message}.
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;

public class PropsDump {
  public static void main(String[] args) throws Exception {
    StringBuilder out = new StringBuilder("[");
    for (int i = 1; i < args.length; i++) {
      if (i > 1) out.append(",");
      Properties p = new Properties();
      try (InputStream in = new FileInputStream(args[i])) {
        p.load(in);
        out.append("{");
        boolean first = true;
        for (String k : new TreeSet<>(p.stringPropertyNames())) {
          if (!first) out.append(",");
          first = false;
          out.append(Harness.q(k)).append(":").append(Harness.q(p.getProperty(k)));
        }
        out.append("}");
      } catch (IllegalArgumentException e) {
        out.append("{\"!error\":").append(Harness.q(e.getMessage())).append("}");
      }
    }
    out.append("]");
    Files.write(Paths.get(args[0]), out.toString().getBytes(StandardCharsets.UTF_8));
  }
}
