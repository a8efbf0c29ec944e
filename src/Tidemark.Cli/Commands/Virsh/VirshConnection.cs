using Tidemark.Daemon;
using Tidemark.Remote;
using Tidemark.Remote.Client;

namespace Tidemark.Cli.Commands.Virsh;

/// <summary>
/// Which daemon a virsh-style command talks to, in virsh's order of precedence: <c>-c/--connect
/// URI</c>, then <c>TIDEMARK_DEFAULT_URI</c> (Tidemark's <c>LIBVIRT_DEFAULT_URI</c>), then the
/// socket <c>tidemark daemon</c> listens on by default (<see cref="DaemonOptions.EffectiveSocketPath"/>).
/// </summary>
internal static class VirshConnection
{
    /// <summary>The environment variable naming the default connection URI.</summary>
    public const string DefaultUriVariable = "TIDEMARK_DEFAULT_URI";

    /// <summary>The URI to open: the given one, the environment's, or the default daemon's socket.</summary>
    public static string Resolve(string? uri) =>
        uri is { Length: > 0 } ? uri
        : Environment.GetEnvironmentVariable(DefaultUriVariable) is { Length: > 0 } env ? env
        : "qemu+unix:///system?socket=" + Uri.EscapeDataString(new DaemonOptions().EffectiveSocketPath).Replace("%2F", "/", StringComparison.Ordinal);

    /// <summary>Opens the connection; a failure reads as virsh words it, on two error lines.</summary>
    public static async Task<LibvirtClient> OpenAsync(string? uri, CancellationToken cancellationToken)
    {
        try
        {
            return await LibvirtClient.ConnectAsync(Resolve(uri), cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is LibvirtError or RemoteProtocolException)
        {
            throw new VirshException(["failed to connect to the hypervisor", e.Message]);
        }
    }
}
