using System.Text.RegularExpressions;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Virsh;

/// <summary>
/// Two daemons in the same state, one driven by stock virsh and one by <c>tidemark</c>'s virsh
/// commands: every command line runs on both and must print the same text, on the same
/// streams, with the same exit code. <c>{dir}</c> in an argument is each daemon's directory;
/// in the output each directory reads <c>{dir}</c> again, and times that differ between two
/// runs (a checkpoint's creation second, a job's milliseconds) are masked.
/// </summary>
internal sealed partial class VirshTwins : IAsyncDisposable
{
    private VirshTwins(DaemonUnderTest virsh, DaemonUnderTest tidemark)
    {
        Virsh = virsh;
        Tidemark = tidemark;
    }

    /// <summary>The daemon stock virsh drives.</summary>
    public DaemonUnderTest Virsh { get; }

    /// <summary>The daemon tidemark drives.</summary>
    public DaemonUnderTest Tidemark { get; }

    public static async Task<VirshTwins> StartAsync()
    {
        Peer.Require("virsh");
        var virsh = await DaemonUnderTest.StartAsync("vv");
        try
        {
            return new VirshTwins(virsh, await DaemonUnderTest.StartAsync("vt"));
        }
        catch
        {
            await virsh.DisposeAsync();
            throw;
        }
    }

    /// <summary>Does <paramref name="setup"/> on both daemons' directories (write a document, create an image).</summary>
    public async Task OnBothAsync(Func<DaemonUnderTest, Task> setup)
    {
        await setup(Virsh);
        await setup(Tidemark);
    }

    /// <summary>Runs the command with both programs, asserts they agree, and returns the (normalized) run.</summary>
    public async Task<CliRun> RunAsync(params string[] args)
    {
        var expected = await RunVirshAsync(args);
        var actual = await RunTidemarkAsync(args);
        var line = string.Join(' ', args);
        Assert.True(expected == actual, $"""
            virsh and tidemark differ on `{line}`:
            --- virsh (exit {expected.ExitCode})
            {expected.Stdout}{expected.Stderr}
            --- tidemark (exit {actual.ExitCode})
            {actual.Stdout}{actual.Stderr}
            """);
        return actual;
    }

    /// <summary>Stock virsh alone, on its daemon.</summary>
    public async Task<CliRun> RunVirshAsync(params string[] args)
    {
        var r = await Peer.RunAsync("virsh", ["-c", Virsh.Uri, .. args.Select(a => a.Replace("{dir}", Virsh.Directory.Path, StringComparison.Ordinal))], timeout: TimeSpan.FromMinutes(1));
        return Normalize(new CliRun(r.ExitCode, r.Stdout, r.Stderr), Virsh);
    }

    /// <summary>tidemark alone, on its daemon.</summary>
    public async Task<CliRun> RunTidemarkAsync(params string[] args)
    {
        var r = await CliRun.RunAsync(["-c", Tidemark.Uri, .. args.Select(a => a.Replace("{dir}", Tidemark.Directory.Path, StringComparison.Ordinal))]);
        return Normalize(r, Tidemark);
    }

    /// <summary>Waits on both daemons until the domain's job has ended (domjobinfo, which does not consume the completed job's statistics).</summary>
    public async Task WaitForJobEndAsync(string domain)
    {
        for (var i = 0; i < 600; i++)
        {
            var a = await Peer.RunAsync("virsh", ["-c", Virsh.Uri, "domjobinfo", domain]);
            var b = await Peer.RunAsync("virsh", ["-c", Tidemark.Uri, "domjobinfo", domain]);
            if (a.Stdout.StartsWith("Job type:         None", StringComparison.Ordinal) && b.Stdout.StartsWith("Job type:         None", StringComparison.Ordinal))
            {
                return;
            }

            await Task.Delay(100, TestContext.Current.CancellationToken);
        }

        Assert.Fail($"the job of {domain} did not end");
    }

    private static CliRun Normalize(CliRun run, DaemonUnderTest daemon)
    {
        string Clean(string text)
        {
            text = text.Replace(daemon.Directory.Path, "{dir}", StringComparison.Ordinal);
            text = Timestamp().Replace(text, "YYYY-MM-DD HH:MM:SS +ZZZZ");
            text = CreationTime().Replace(text, "<creationTime>T</creationTime>");
            return Elapsed().Replace(text, "Time elapsed: N ms");
        }

        return new CliRun(run.ExitCode, Clean(run.Stdout), Clean(run.Stderr));
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Virsh.DisposeAsync();
        }
        finally
        {
            await Tidemark.DisposeAsync();
        }
    }

    [GeneratedRegex(@"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}")]
    private static partial Regex Timestamp();

    [GeneratedRegex(@"<creationTime>\d+</creationTime>")]
    private static partial Regex CreationTime();

    [GeneratedRegex(@"Time elapsed: +\d+ +ms")]
    private static partial Regex Elapsed();
}
