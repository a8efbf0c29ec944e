using System.CommandLine;
using System.Text.Json;
using Tidemark.Remote.Protocol;

namespace Tidemark.Cli.Commands.Virsh.Backups;

/// <summary>virsh's <c>backup-begin</c>, <c>backup-dumpxml</c>, <c>domjobinfo</c> and <c>domjobabort</c>.</summary>
internal static class BackupCommands
{
    // virDomainBackupBeginFlags.
    private const uint ReuseExternal = 1;

    // virDomainGetJobStatsFlags.
    private const uint StatsCompleted = 1;
    private const uint StatsKeepCompleted = 2;

    public static IEnumerable<Command> Create(CliConsole console)
    {
        yield return Begin(console);
        yield return DumpXml(console);
        yield return JobInfo(console);
        yield return JobAbort(console);
    }

    private static Command Begin(CliConsole console)
    {
        var domain = VirshParameter.Domain();
        var backupXml = new VirshParameter("backupxml", "domain backup XML");
        var checkpointXml = new VirshParameter("checkpointxml", "domain checkpoint XML");
        var reuse = new Option<bool>("--reuse-external") { Description = "reuse files provided by caller" };
        var wait = new Option<bool>("--wait") { Description = "follow the job to its end with a progress bar, then print its statistics (Tidemark's addition)" };
        var command = new Command("backup-begin", "Start a disk backup of a live domain.") { reuse, wait };
        domain.AddTo(command);
        backupXml.AddTo(command);
        checkpointXml.AddTo(command);
        VirshAction.Set(command, console, async s =>
        {
            var d = await s.DomainAsync(domain).ConfigureAwait(false);
            var backup = backupXml.Find(s.Result) is { } b ? await s.ReadFileAsync(b).ConfigureAwait(false) : "<domainbackup/>";
            var checkpoint = checkpointXml.Find(s.Result) is { } c ? await s.ReadFileAsync(c).ConfigureAwait(false) : null;
            await s.Client.BeginBackupAsync(d, backup, checkpoint, s.Has(reuse) ? ReuseExternal : 0, s.CancellationToken).ConfigureAwait(false);
            if (!s.Has(wait))
            {
                return "Backup started\n";
            }

            await s.Console.Out.WriteLineAsync("Backup started").ConfigureAwait(false);
            return await EndAsync(s, await JobProgress.WaitAsync(s, d).ConfigureAwait(false), json: false).ConfigureAwait(false);
        });
        return command;
    }

    // A job followed to its end: its statistics, and exit 1 unless it completed.
    private static Task<string> EndAsync(VirshSession s, JobStatistics stats, bool json)
    {
        if (stats.Type is DomainJobType.Failed or DomainJobType.Cancelled)
        {
            s.ExitCode = 1;
        }

        return Task.FromResult(json ? JsonSerializer.Serialize(stats.ToJson(), VirshJsonContext.Default.JobInfoEntry) + "\n" : stats.ToString());
    }

    private static Command DumpXml(CliConsole console)
    {
        var command = new Command("backup-dumpxml", "Dump XML for an ongoing domain block backup job.");
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            return await s.Client.GetBackupXmlAsync(d, 0, s.CancellationToken).ConfigureAwait(false);
        });
        return command;
    }

    private static Command JobInfo(CliConsole console)
    {
        var completed = new Option<bool>("--completed") { Description = "return statistics of a recently completed job" };
        var keep = new Option<bool>("--keep-completed") { Description = "don't destroy statistics of a recently completed job when reading" };
        var wait = new Option<bool>("--wait") { Description = "follow a running job to its end with a progress bar (Tidemark's addition)" };
        var json = new Option<bool>("--json") { Description = "print JSON (Tidemark's addition)" };
        var command = new Command("domjobinfo", "Returns information about jobs running on a domain.") { completed, keep, wait, json };
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var flags = (s.Has(completed) ? StatsCompleted : 0) | (s.Has(keep) ? StatsKeepCompleted : 0);
            var stats = JobStatistics.From(await s.Client.GetJobStatsAsync(d, flags, s.CancellationToken).ConfigureAwait(false));
            if (s.Has(wait) && stats.Active)
            {
                stats = await JobProgress.WaitAsync(s, d).ConfigureAwait(false);
            }

            return await EndAsync(s, stats, s.Has(json)).ConfigureAwait(false);
        });
        return command;
    }

    private static Command JobAbort(CliConsole console)
    {
        var command = new Command("domjobabort", "Abort active domain job.");
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            await s.Client.AbortJobAsync(d, 0, s.CancellationToken).ConfigureAwait(false);
            return "";
        });
        return command;
    }
}
