using System.Globalization;
using Spectre.Console;
using Tidemark.Remote.Client;
using Tidemark.Remote.Protocol;

namespace Tidemark.Cli.Commands.Virsh.Backups;

/// <summary>
/// Follows a domain's job to its end (<c>backup-begin --wait</c>, <c>domjobinfo --wait</c>):
/// a live bar with bytes, rate and ETA on a terminal, one plain line a second otherwise. The
/// end is the job-completed event, registered before the first look at the job so that an end
/// between two polls is not missed; the completed job's statistics are then fetched once.
/// </summary>
internal static class JobProgress
{
    // virDomainGetJobStatsFlags.
    private const uint Completed = 1;

    private static readonly TimeSpan TerminalInterval = TimeSpan.FromMilliseconds(200);
    private static readonly TimeSpan PlainInterval = TimeSpan.FromSeconds(1);

    /// <summary>Waits for the job of <paramref name="domain"/> to end and returns its completed statistics.</summary>
    public static async Task<JobStatistics> WaitAsync(VirshSession s, RemoteDomain domain)
    {
        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnCompleted(object? sender, JobCompletedEventArgs e)
        {
            if (e.Domain.Uuid == domain.Uuid)
            {
                ended.TrySetResult();
            }
        }

        s.Client.JobCompleted += OnCompleted;
        var callback = await s.Client.RegisterDomainEventAsync(DomainEventId.JobCompleted, domain, s.CancellationToken).ConfigureAwait(false);
        try
        {
            if (s.Console.IsTerminal)
            {
                await FollowOnTerminalAsync(s, domain, ended.Task).ConfigureAwait(false);
            }
            else
            {
                await FollowPlainAsync(s, domain, ended.Task).ConfigureAwait(false);
            }
        }
        finally
        {
            s.Client.JobCompleted -= OnCompleted;
            await s.Client.DeregisterDomainEventAsync(callback, s.CancellationToken).ConfigureAwait(false);
        }

        return JobStatistics.From(await s.Client.GetJobStatsAsync(domain, Completed, s.CancellationToken).ConfigureAwait(false));
    }

    private static async Task<JobStatistics?> PollAsync(VirshSession s, RemoteDomain domain, Task ended)
    {
        if (ended.IsCompleted)
        {
            return null;
        }

        var stats = JobStatistics.From(await s.Client.GetJobStatsAsync(domain, 0, s.CancellationToken).ConfigureAwait(false));
        return stats.Active ? stats : null;
    }

    private static async Task FollowPlainAsync(VirshSession s, RemoteDomain domain, Task ended)
    {
        while (await PollAsync(s, domain, ended).ConfigureAwait(false) is { } stats)
        {
            var (processed, total) = stats.Progress;
            var line = total is { } t
                ? string.Create(CultureInfo.InvariantCulture, $"Job: {100.0 * processed / t:F1} % ({VirshText.Capacity(processed)} of {VirshText.Capacity(t)})")
                : $"Job: {VirshText.Capacity(processed)} read";
            await s.Console.Out.WriteLineAsync(line).ConfigureAwait(false);
            await s.Console.Out.FlushAsync(s.CancellationToken).ConfigureAwait(false);
            await Task.WhenAny(ended, Task.Delay(PlainInterval, s.CancellationToken)).ConfigureAwait(false);
            s.CancellationToken.ThrowIfCancellationRequested();
        }
    }

    private static async Task FollowOnTerminalAsync(VirshSession s, RemoteDomain domain, Task ended)
    {
        var ansi = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(s.Console.Out) });
        await ansi.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .StartAsync(async context =>
            {
                var task = context.AddTask(domain.Name + " backup");
                while (await PollAsync(s, domain, ended).ConfigureAwait(false) is { } stats)
                {
                    var (processed, total) = stats.Progress;
                    task.IsIndeterminate = total is null;
                    task.MaxValue = total ?? Math.Max(1, processed);
                    task.Value = processed;
                    await Task.WhenAny(ended, Task.Delay(TerminalInterval, s.CancellationToken)).ConfigureAwait(false);
                    s.CancellationToken.ThrowIfCancellationRequested();
                }

                task.Value = task.MaxValue;
                task.StopTask();
            }).ConfigureAwait(false);
    }
}
