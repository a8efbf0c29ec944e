using System.Globalization;
using System.Text;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>
/// The real <c>tidemark</c> process reads documents from every kind of source, and from none
/// more than 10 MiB, whatever length the source claims: <c>/dev/zero</c>, a FIFO, a process
/// substitution and standard input have none.
/// </summary>
public sealed class DocumentSourceTests
{
    private const string TooLarge = "larger than 10485760 bytes, the limit for an XML document";

    private static async Task<string> CommandAsync() => $"'{await TidemarkProgram.PathAsync()}'";

    [Theory]
    [InlineData("validate")]
    [InlineData("format")]
    public async Task DevZero_IsRefusedAfterTheLimit(string verb)
    {
        var command = await CommandAsync();
        var run = await BashAsync($"{command} {verb} /dev/zero");

        var output = run.Stdout + run.Stderr;
        Assert.Contains($"failed to read file '/dev/zero': {TooLarge}", output, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", output, StringComparison.Ordinal);
        Assert.Equal(1, run.ExitCode);
    }

    [Fact]
    public async Task ProcessSubstitution_Endless_IsRefusedAfterTheLimit()
    {
        var command = await CommandAsync();
        var run = await BashAsync($"{command} validate <(yes)");

        Assert.Matches($"^/dev/fd/[0-9]+: failed to read file '/dev/fd/[0-9]+': {TooLarge}\n/dev/fd/[0-9]+ fails to validate\n$", run.Stdout);
        Assert.Equal(1, run.ExitCode);
    }

    [Fact]
    public async Task Fifo_AndStandardInput_AreRead()
    {
        using var dir = new TempDirectory("cli-sources");
        var fifo = dir.File("doc.fifo");
        var domain = Path.Combine(Repository.Root, "examples", "domain.xml");
        var command = await CommandAsync();

        // The writer's output goes to /dev/null, not to our pipe: if tidemark failed to open the
        // FIFO, a writer left blocked on it would otherwise keep the pipe open and the test waiting.
        var run = await BashAsync(
            $"mkfifo {fifo} && (cat {domain} > {fifo} &) >/dev/null 2>&1 && {command} validate {fifo} && {command} validate - < {domain} && cmp <({command} format - < {domain}) <({command} format {domain})");

        Assert.Equal($"{fifo} validates\n- validates\n", run.Stdout);
        Assert.Equal(0, run.ExitCode);
    }

    [Fact]
    public async Task StandardInput_Endless_IsRefusedAfterTheLimit()
    {
        var command = await CommandAsync();
        var run = await BashAsync($"yes '<a>' | {command} validate -");

        Assert.Equal($"-: failed to read file '-': {TooLarge}\n- fails to validate\n", run.Stdout);
        Assert.Equal(1, run.ExitCode);
    }

    /// <summary>The reproducer: 900k attributes in <c>&lt;description&gt;</c>, 8.9 MB, under the size cap.</summary>
    [Fact]
    public async Task AttributesByTheHundredThousand_AreRefusedWithOneLine()
    {
        using var dir = new TempDirectory("cli-attributes");
        var file = dir.File("attrs.xml");
        var text = new StringBuilder("<domaincheckpoint><description");
        for (var i = 0; i < 900_000; i++)
        {
            text.Append(CultureInfo.InvariantCulture, $" a{i}=\"\"");
        }

        await File.WriteAllTextAsync(file, text.Append(">x</description></domaincheckpoint>\n").ToString(), TestContext.Current.CancellationToken);

        var run = await CliRun.RunAsync("validate", file);

        Assert.Equal(
            $"{file}: XML error: failed to parse xml document '{file}': line 1: element 'description' has more than 1024 attributes\n{file} fails to validate\n",
            run.Stdout);
        Assert.Equal(1, run.ExitCode);
    }

    private static Task<PeerResult> BashAsync(string script)
        => Peer.RunAsync("bash", ["-c", script], timeout: TimeSpan.FromMinutes(2));
}
