namespace Tidemark.Cli.Tests;

/// <summary>One in-process run of the <c>tidemark</c> command line and what it printed.</summary>
internal sealed record CliRun(int ExitCode, string Stdout, string Stderr)
{
    public static async Task<CliRun> RunAsync(params string[] args)
    {
        var stdout = new StringWriter { NewLine = "\n" };
        var stderr = new StringWriter { NewLine = "\n" };
        var code = await TidemarkCommandLine.RunAsync(args, stdout, stderr, TestContext.Current.CancellationToken);
        return new CliRun(code, stdout.ToString(), stderr.ToString());
    }
}
