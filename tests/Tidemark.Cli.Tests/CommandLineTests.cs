namespace Tidemark.Cli.Tests;

public sealed class CommandLineTests
{
    [Fact]
    public async Task UnknownVerb_IsRefusedWithNonZeroExit()
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();

        var code = await TidemarkCommandLine.RunAsync(["no-such-verb"], stdout, stderr, TestContext.Current.CancellationToken);

        Assert.NotEqual(0, code);
        Assert.Contains("no-such-verb", stderr.ToString() + stdout.ToString(), StringComparison.Ordinal);
    }
}
