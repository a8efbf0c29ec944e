using Tidemark.Testing;

namespace Tidemark.Nbd.Tests.Support;

/// <summary>
/// libnbd's scripted client. It must run under the system python3 that python3-libnbd is built
/// for, whatever python3 comes first on PATH.
/// </summary>
public static class Nbdsh
{
    /// <summary>Runs <paramref name="commands"/> with <c>h</c> connected to <paramref name="uri"/>, or unconnected when it is null.</summary>
    public static Task<PeerResult> RunAsync(string? uri, params string[] commands)
    {
        // /usr/bin/nbdsh is "exec python3 -mnbd"; run the module with the system python directly.
        Peer.Require("nbdsh");
        var python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        var args = new List<string> { "-mnbd" };
        if (uri is not null)
        {
            args.Add("-u");
            args.Add(uri);
        }

        foreach (var c in commands)
        {
            args.Add("-c");
            args.Add(c);
        }

        return Peer.RunAsync(python, args);
    }
}
