using Tidemark.Backup.Repository;
using Tidemark.Remote;
using Tidemark.Remote.Client;
using Tidemark.Remote.Protocol;

namespace Tidemark.Backup.Run;

/// <summary>
/// Tells why a pull export went away under the copy when the reason is that the domain
/// stopped (<c>virsh destroy</c>, a shutdown, a crash): the host ends a backup job with its
/// domain (libvirt: the job belongs to the QEMU process; Tidemark's daemon: to the running
/// domain), and the NBD client only sees its connection die. The host is asked after the
/// fact, with virDomainGetState.
/// </summary>
internal static class StoppedDomain
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The error to report for <paramref name="lost"/> when the domain no longer runs, or null
    /// when it still runs (or the host cannot say): then the lost connection is the whole story.
    /// </summary>
    public static async Task<BackupException?> ExplainAsync(LibvirtClient client, RemoteDomain domain, IReadOnlyList<BackupManifest> history, Exception lost)
    {
        DomainStateInfo state;
        try
        {
            using var timeout = new CancellationTokenSource(AskTimeout);
            state = await client.GetDomainStateAsync(domain, 0, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is LibvirtError or RemoteProtocolException or OperationCanceledException)
        {
            return null;
        }

        if (state.State is DomainState.Running or DomainState.Paused or DomainState.Blocked or DomainState.PmSuspended)
        {
            return null;
        }

        var next = history.Count == 0
            ? "a full backup, the repository holding none yet"
            : $"an incremental since checkpoint '{history[^1].Checkpoint}', the last complete backup (or a full of any disk whose bitmap the host lost when the domain stopped)";
        return new BackupException(
            BackupErrorReason.HostFailed,
            $"the backup job of domain '{domain.Name}' ended on the host: the domain stopped ({Describe(state)}) while its disks were being copied, and its NBD export went with it ({lost.Message}); nothing of this backup was stored. Once the domain runs again, the next run makes {next}",
            lost);
    }

    /// <summary>The state in virsh's words (<c>virsh domstate --reason</c>).</summary>
    private static string Describe(DomainStateInfo state) => state.State switch
    {
        DomainState.Shutoff => "shut off" + state.Reason switch
        {
            1 => ", shutdown",
            2 => ", destroyed",
            3 => ", crashed",
            4 => ", migrated",
            5 => ", saved",
            6 => ", failed",
            8 => ", daemon",
            _ => "",
        },
        DomainState.Shutdown => "in shutdown",
        DomainState.Crashed => "crashed",
        _ => $"state {(int)state.State}",
    };
}
