using Spectre.Console;
using Tidemark.Backup.Run;

namespace Tidemark.Cli.Commands.Backup;

/// <summary>
/// The bars of <c>backup run</c> and <c>restore</c> on a terminal: one per disk with bytes,
/// rate and ETA, indeterminate until the disk's bytes to copy are known (a backup's export map,
/// a restore's chain). Disks and connections report from many threads at once; one lock keeps
/// the tasks' table and values whole.
/// </summary>
internal sealed class TerminalCopyProgress(ProgressContext context) : IBackupProgress
{
    private readonly Dictionary<string, ProgressTask> _tasks = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <summary>
    /// Whether a command draws bars: only when its output is a terminal, and neither
    /// <c>--json</c> nor <c>--quiet</c> was given; otherwise the plain lines scripts read are
    /// all it prints.
    /// </summary>
    public static bool Shown(CliConsole console, bool json, bool quiet) => !json && !quiet && console.IsTerminal;

    /// <summary>Starts a display on <paramref name="console"/>'s output and runs <paramref name="body"/> under it.</summary>
    public static async Task<T> ShowAsync<T>(CliConsole console, Func<TerminalCopyProgress, IAnsiConsole, Task<T>> body)
    {
        var ansi = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(console.Out) });
        return await ansi.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .StartAsync(async context =>
            {
                var display = new TerminalCopyProgress(context);
                var result = await body(display, ansi).ConfigureAwait(false);
                display.Complete();
                return result;
            }).ConfigureAwait(false);
    }

    public void Planned(string disk, long bytes)
    {
        lock (_lock)
        {
            var task = Task(disk);
            task.MaxValue = Math.Max(1, bytes);
            task.IsIndeterminate = false;
        }
    }

    public void Copied(string disk, long bytes)
    {
        lock (_lock)
        {
            Task(disk).Increment(bytes);
        }
    }

    private void Complete()
    {
        lock (_lock)
        {
            foreach (var task in _tasks.Values)
            {
                task.Value = task.MaxValue;
                task.StopTask();
            }
        }
    }

    private ProgressTask Task(string disk)
    {
        if (!_tasks.TryGetValue(disk, out var task))
        {
            task = context.AddTask(disk);
            task.IsIndeterminate = true;
            _tasks[disk] = task;
        }

        return task;
    }
}
