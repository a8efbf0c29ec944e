using System.Net;
using System.Net.Sockets;

namespace Tidemark.Testing;

/// <summary>TCP ports on 127.0.0.1 for servers a test starts.</summary>
public static class LoopbackPort
{
    /// <summary>A port nothing listens on now (the kernel's choice for an ephemeral bind, released at once).</summary>
    public static int Free()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
