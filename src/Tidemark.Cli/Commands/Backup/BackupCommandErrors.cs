using Tidemark.Backup;
using Tidemark.Nbd;
using Tidemark.Remote;
using Tidemark.Storage;

namespace Tidemark.Cli.Commands.Backup;

/// <summary>
/// The backup client's failures as user errors: each is one <c>error: …</c> line naming the
/// repository file, disk or checkpoint (the library's message), exit status 1.
/// </summary>
internal static class BackupCommandErrors
{
    public static async Task<int> RunAsync(Func<Task<int>> command)
    {
        try
        {
            return await command().ConfigureAwait(false);
        }
        catch (Exception e) when (e is BackupException or LibvirtError or RemoteProtocolException or NbdException or StorageException)
        {
            throw new CliException(e.Message, e);
        }
    }
}
