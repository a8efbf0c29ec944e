namespace Tidemark.Cli.Tests;

public sealed class CommandLineTests
{
    [Fact]
    public async Task UnknownVerb_IsRefusedWithNonZeroExit()
    {
        var run = await CliRun.RunAsync("no-such-verb");

        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("no-such-verb", run.Stderr + run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Version_PrintsTheInformationalVersion()
    {
        var run = await CliRun.RunAsync("--version");

        Assert.Equal((0, ""), (run.ExitCode, run.Stderr));
        Assert.Matches(@"^\d+\.\d+\.\d+\S*\n$", run.Stdout);
    }
}
