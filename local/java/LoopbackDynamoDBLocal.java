// DynamoDB Local, bound to 127.0.0.1 only.
//
// DynamoDB Local's own main() has no option for its bind address: it listens on every interface, which would
// put a developer's tenants, keys and invoices on the network. This launcher builds the server exactly as the
// jar's main() does, from the same command-line arguments, then binds its connector to loopback before it starts.
// Java runs it from source (`java LoopbackDynamoDBLocal.java ...`), so nothing is compiled or committed as binary.
import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

public final class LoopbackDynamoDBLocal {
    private LoopbackDynamoDBLocal() {}

    public static void main(String[] args) throws Exception {
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server server = (Server) field.get(proxy);
        for (Connector connector : server.getConnectors()) {
            ((ServerConnector) connector).setHost("127.0.0.1");
        }
        proxy.start();
        proxy.join();
    }
}
