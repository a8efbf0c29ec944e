using Tidemark.Remote;
using Tidemark.Remote.Client;
using Tidemark.Remote.Protocol;

namespace Tidemark.Backup.Run;

/// <summary>
/// Ends a pull backup job on the host, as virtnbdbackup does, with virDomainAbortJob (an
/// aborted pull job counts as completed, checkpoint-backup.md §6.11), then waits until the host
/// has let go of it, so the checkpoint can be deleted and the next backup can begin.
/// </summary>
internal static class PullJob
{
    private static readonly TimeSpan EndTimeout = TimeSpan.FromMinutes(1);

    /// <summary>Aborts the domain's backup job if one runs and waits for its end; true if there was one.</summary>
    public static async Task<bool> EndAsync(LibvirtClient client, RemoteDomain domain, CancellationToken cancellationToken)
    {
        try
        {
            await client.AbortJobAsync(domain, 0, cancellationToken).ConfigureAwait(false);
        }
        catch (LibvirtError e) when (e.Code is VirErrorNumber.OperationInvalid or VirErrorNumber.NoDomainBackup)
        {
            // "no job is active on the domain": it already ended.
            return false;
        }

        var deadline = DateTime.UtcNow + EndTimeout;
        var delay = TimeSpan.FromMilliseconds(20);
        while (await IsRunningAsync(client, domain, cancellationToken).ConfigureAwait(false))
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new BackupException(BackupErrorReason.HostFailed, $"the backup job of domain '{domain.Name}' did not end within {EndTimeout.TotalSeconds} s of its abort");
            }

            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
            delay = TimeSpan.FromMilliseconds(Math.Min(500, delay.TotalMilliseconds * 2));
        }

        return true;
    }

    /// <summary>The domain has a backup job (virDomainBackupGetXMLDesc answers rather than failing with NO_DOMAIN_BACKUP).</summary>
    public static async Task<bool> IsRunningAsync(LibvirtClient client, RemoteDomain domain, CancellationToken cancellationToken) =>
        await BackupXmlAsync(client, domain, cancellationToken).ConfigureAwait(false) is not null;

    /// <summary>The running backup's XML, or null when the domain has none.</summary>
    public static async Task<string?> BackupXmlAsync(LibvirtClient client, RemoteDomain domain, CancellationToken cancellationToken)
    {
        try
        {
            return await client.GetBackupXmlAsync(domain, 0, cancellationToken).ConfigureAwait(false);
        }
        catch (LibvirtError e) when (e.Code == VirErrorNumber.NoDomainBackup)
        {
            return null;
        }
    }
}
