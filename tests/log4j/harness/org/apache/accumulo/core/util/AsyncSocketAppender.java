// A stand-in for Accumulo's AsyncSocketAppender: an application appender that needs no layout
// (it ships serialized events to a monitor) and takes options of its own (RemoteHost, Port,
// LocationInfo, ...). Here it sends nothing; the tests check what log4j prints while configuring
// it: no layout error, no "No such property" for the options it has.
package org.apache.accumulo.core.util;

import org.apache.log4j.AppenderSkeleton;
import org.apache.log4j.spi.LoggingEvent;

public class AsyncSocketAppender extends AppenderSkeleton {
  private String remoteHost = "localhost";
  private int port = 4560;
  private boolean locationInfo;
  private int bufferSize = 128;

  public void setRemoteHost(String host) { remoteHost = host; }
  public String getRemoteHost() { return remoteHost; }
  public void setPort(int p) { port = p; }
  public int getPort() { return port; }
  public void setLocationInfo(boolean b) { locationInfo = b; }
  public boolean getLocationInfo() { return locationInfo; }
  public void setBufferSize(int n) { bufferSize = n; }
  public int getBufferSize() { return bufferSize; }

  @Override
  protected void append(LoggingEvent event) {}

  @Override
  public void close() {}

  @Override
  public boolean requiresLayout() {
    return false;
  }
}
