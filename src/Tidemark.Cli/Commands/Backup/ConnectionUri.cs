using Tidemark.Daemon;

namespace Tidemark.Cli.Commands.Backup;

/// <summary>The libvirt URI a command uses without <c>-c</c>: <c>TIDEMARK_DEFAULT_URI</c> if set, else the local daemon's default socket.</summary>
internal static class ConnectionUri
{
    public const string EnvironmentVariable = "TIDEMARK_DEFAULT_URI";

    public static string Resolve(string? given) =>
        given
        ?? (Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } fromEnvironment
            ? fromEnvironment
            : $"qemu+unix:///system?socket={new DaemonOptions().EffectiveSocketPath}");
}
