using System.Text;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Virsh;

/// <summary>
/// libvirt's virsh checkpoint transcripts (<see cref="VirshCheckpointTranscript"/>) against the
/// daemon, with libvirt's test domain on a real qcow2 image: through stock virsh, given the
/// whole script as one command string as virshtest gives it, and through tidemark, one process
/// per command with stdout and stderr merged as virshtest merges them.
/// </summary>
public sealed class VirshTranscriptTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // libvirt 11.3's transcript shows `checkpoint-list --parent --name` printing "NAME\tPARENT";
    // virsh 9.0, whose output Tidemark's commands follow, prints the name alone there.
    private static string AsVirsh90(string expected) => expected.Replace("c3\tc1\n", "c3\n", StringComparison.Ordinal);

    [Fact]
    public async Task CheckpointScript_ThroughStockVirsh_AndThroughTidemark()
    {
        var script = await VirshCheckpointTranscript.ScriptAsync(Ct);
        foreach (var viaTidemark in new[] { false, true })
        {
            await using var daemon = await DaemonUnderTest.StartAsync("vx");
            var image = await StartTestDomainAsync(daemon);
            var expected = AsVirsh90(await VirshCheckpointTranscript.ExpectedAsync(image, Ct));

            var actual = viaTidemark ? await RunTidemarkAsync(daemon, script) : await RunVirshAsync(daemon, script);

            Assert.Equal(expected, VirshCheckpointTranscript.Filter(actual));
        }
    }

    [Fact]
    public async Task RedefineScript_ThroughStockVirsh_AndThroughTidemark()
    {
        var expected = await VirshCheckpointTranscript.RedefineExpectedAsync(Ct);
        foreach (var viaTidemark in new[] { false, true })
        {
            await using var daemon = await DaemonUnderTest.StartAsync("vr");
            await StartTestDomainAsync(daemon);

            var actual = viaTidemark
                ? await RunTidemarkAsync(daemon, VirshCheckpointTranscript.RedefineScript)
                : await RunVirshAsync(daemon, VirshCheckpointTranscript.RedefineScript);

            Assert.Equal(expected, actual);
        }
    }

    // The test driver's running "test" domain, on a real image.
    private static async Task<string> StartTestDomainAsync(DaemonUnderTest daemon)
    {
        var image = await daemon.CreateImageAsync("diskimage1");
        var xml = daemon.Directory.File("test.xml");
        await File.WriteAllTextAsync(xml, await VirshCheckpointTranscript.DomainXmlAsync(image, Ct), Ct);
        Assert.Equal(0, (await CliRun.RunAsync("-c", daemon.Uri, "define", xml)).ExitCode);
        Assert.Equal(0, (await CliRun.RunAsync("-c", daemon.Uri, "start", "test")).ExitCode);
        return image;
    }

    // virshtest's way: one virsh, the script as one argument, stderr into stdout. virsh 9.0
    // takes cd only interactively: the script's leading cd becomes the working directory and
    // the empty line it prints.
    private static async Task<string> RunVirshAsync(DaemonUnderTest daemon, IReadOnlyList<string> script)
    {
        Peer.Require("virsh");
        var cd = script[0].StartsWith("cd ", StringComparison.Ordinal) ? script[0]["cd ".Length..] : null;
        var commands = cd is null ? script : script.Skip(1);
        var r = await Peer.RunAsync("sh", ["-c", "exec virsh -c \"$0\" \"$1\" 2>&1", daemon.Uri, string.Join('\n', commands)], workingDirectory: cd);
        var output = (cd is null ? "" : "\n") + r.Stdout;
        return r.ExitCode == 0 ? output : output + $"\n## Exit code: {r.ExitCode}\n";
    }

    // One tidemark per command; echo and cd are the harness's, as they are virsh's own.
    private static async Task<string> RunTidemarkAsync(DaemonUnderTest daemon, IReadOnlyList<string> script)
    {
        var output = new StringBuilder();
        string? directory = null;
        foreach (var line in script.Where(l => l.Length > 0))
        {
            if (line.StartsWith("echo ", StringComparison.Ordinal))
            {
                output.Append(line["echo ".Length..].Trim('\'')).Append('\n');
                continue;
            }

            if (line.StartsWith("cd ", StringComparison.Ordinal))
            {
                directory = line["cd ".Length..];
                output.Append('\n');
                continue;
            }

            var r = await CliRun.RunAsync(["-c", daemon.Uri, .. line.Split(' ', StringSplitOptions.RemoveEmptyEntries)], directory);

            // A failed command printed its error lines before the empty line that ends it.
            output.Append(r.ExitCode == 0 ? r.Stdout : r.Stderr + r.Stdout);
        }

        return output.ToString();
    }
}
