// A stand-in for Hadoop's EventCounter (hadoop-common): an application appender that needs no
// layout (requiresLayout() is false) and writes nothing; it counts events for Hadoop's metrics.
// On the harness's classpath so that log4j loads it as it does in a Hadoop daemon: the tests
// check that log4j prints no layout error for it, and that logbridge does not either.
package org.apache.hadoop.log.metrics;

import org.apache.log4j.AppenderSkeleton;
import org.apache.log4j.spi.LoggingEvent;

public class EventCounter extends AppenderSkeleton {
  static long count;

  @Override
  protected void append(LoggingEvent event) {
    count++;
  }

  @Override
  public void close() {}

  @Override
  public boolean requiresLayout() {
    return false;
  }
}
