using System.CommandLine;
using Tidemark.Backup;
using Tidemark.Backup.Repository;
using Tidemark.Nbd;
using Tidemark.Remote;
using Tidemark.Storage;

namespace Tidemark.Cli.Commands.Backup;

/// <summary>
/// What every command on a backup repository shares (<c>backup …</c>, <c>restore</c>,
/// <c>verify</c>): the <c>--repo</c> and <c>--json</c> options, and an action whose library
/// failures become user errors, each one <c>error: …</c> line naming the repository file, disk
/// or checkpoint (the library's message), exit status 1.
/// </summary>
internal static class RepositoryCommand
{
    public static Option<string> RepositoryOption(string description = "The repository directory.") =>
        new("--repo") { Description = description, Required = true };

    public static Option<bool> JsonOption(string description) => new("--json") { Description = description };

    /// <summary>The repository <paramref name="option"/> names.</summary>
    public static BackupRepository Repository(this ParseResult result, Option<string> option) => new(result.GetValue(option)!);

    /// <summary>Sets <paramref name="command"/>'s action to <paramref name="action"/>, with the backup client's failures as user errors.</summary>
    public static void SetAction(Command command, Func<ParseResult, CancellationToken, Task<int>> action) =>
        command.SetAction((r, ct) => RunAsync(() => action(r, ct)));

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
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Net.Sockets.SocketException)
        {
            // The host's refusal (an output in a missing directory or under /proc, a port in
            // use): one error line with the system's words, not a crash.
            throw new CliException(e.Message, e);
        }
    }

    /// <summary>Refuses a repository that does not exist (a reading command creates nothing).</summary>
    public static void RequireExisting(BackupRepository repository)
    {
        if (!Directory.Exists(repository.Root))
        {
            throw new CliException($"repository '{repository.Root}' does not exist");
        }
    }
}
