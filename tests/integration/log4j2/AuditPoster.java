// A real JVM client for the collector: log4j 2's HttpAppender with JsonLayout, as a DSS-style
// node would configure it. Usage: java -cp <log4j2 + jackson jars> AuditPoster.java N
// (log4j2.configurationFile names the XML config). Logs N audit events, then shuts log4j down,
// which flushes the appender.
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import org.apache.logging.log4j.ThreadContext;

public class AuditPoster {
    public static void main(String[] args) {
        int n = Integer.parseInt(args[0]);
        Logger generic = LogManager.getLogger("dku.audit.generic");
        Logger api = LogManager.getLogger("dku.audit.apinode-query");
        ThreadContext.put("user", "admin");
        ThreadContext.put("apiCall", "/api/projects/get-summary");
        for (int i = 0; i < n; i++) {
            generic.info("{\"msgType\":\"login\",\"authUser\":\"admin\",\"seq\":" + i + "}");
            api.info("{\"msgType\":\"prediction-query\",\"routingKey\":\"churn-scoring\",\"seq\":" + i + "}");
        }
        LogManager.shutdown();
    }
}
