using Spectre.Console;
using Tidemark.Backup.Run;

namespace Tidemark.Cli.Commands.Backup.Run;

/// <summary>
/// <c>backup run</c>'s bars on a terminal: one per disk with bytes, rate and ETA, indeterminate
/// until the disk's export map gives the bytes to read. Disks and connections report from many
/// threads at once; one lock keeps the tasks' table and values whole.
/// </summary>
internal sealed class TerminalBackupProgress(ProgressContext context) : IBackupProgress
{
    private readonly Dictionary<string, ProgressTask> _tasks = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <summary>Starts a display on <paramref name="console"/>'s output and runs <paramref name="body"/> under it.</summary>
    public static async Task<T> ShowAsync<T>(CliConsole console, Func<TerminalBackupProgress, IAnsiConsole, Task<T>> body)
    {
        var ansi = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(console.Out) });
        return await ansi.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .StartAsync(async context =>
            {
                var display = new TerminalBackupProgress(context);
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
