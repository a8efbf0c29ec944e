using Tidemark.Testing;

namespace Tidemark.Remote.Tests.Support;

/// <summary>Stock virsh against a test server, in UTC so creation times print the same everywhere.</summary>
internal static class Virsh
{
    public static Task<PeerResult> RunAsync(TestRemoteServer server, params string[] arguments) =>
        Peer.RunAsync("virsh", ["-c", server.Uri, .. arguments], timeout: TimeSpan.FromSeconds(60));
}
