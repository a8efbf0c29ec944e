using System.Text.RegularExpressions;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Checkpoint and domain names with characters that need care, on the real libvirtd and on
/// Tidemark's daemon: checkpoints named with a space, XML's special characters or letters
/// outside ASCII (refused by the schema), a leading dash, dots inside and at the end (taken);
/// they are listed, shown, one is an incremental backup's base and one is deleted, in a domain
/// whose own name has a space and letters outside ASCII. The transcripts, and the bitmap names
/// the image holds afterwards, must be the same.
/// </summary>
public sealed partial class SpecialNameDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    // The first three break the schema's checkpointName ([a-zA-Z0-9_-][a-zA-Z0-9_.-]*).
    private static readonly string[] Names = ["a b", "x&y<z>'q\"", "é☃\U0001F40B", "-lead", "v1.2", "_9.x-"];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task OddNames_AreKeptShownAndUsedAsLibvirtdDoes()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tds", RunAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains("$ virsh checkpoint-list dom é☃ --name\n-lead\n_9.x-\nv1.2\n", real, StringComparison.Ordinal);
        Assert.Contains("<name>v1.2</name>\n  <description>v1.2</description>\n  <parent>\n    <name>-lead</name>", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh checkpoint-list dom é☃ --name --topological\nv1.2\n_9.x-\n", real, StringComparison.Ordinal);
        Assert.Contains("$ qemu-img info vda.qcow2 | bitmap names\n_9.x-\nv1.2\n", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        const string domain = "dom é☃";
        var xml = await TwoDiskDomain.CreateAsync(directory, "dl");
        await File.WriteAllTextAsync(xml, (await File.ReadAllTextAsync(xml, Ct)).Replace("<name>dl</name>", $"<name>{domain}</name>", StringComparison.Ordinal), Ct);
        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("start", domain, "--paused");
        foreach (var name in Names)
        {
            await virsh.RunAsync("checkpoint-create-as", domain, "--name", name, "--description", name);
        }

        await virsh.RunAsync("checkpoint-list", domain, "--name");
        await virsh.RunAsync("checkpoint-list", domain, "--tree");
        foreach (var name in Names)
        {
            await virsh.RunAsync("checkpoint-dumpxml", domain, "--checkpointname", name, "--no-domain");
            await virsh.RunAsync("checkpoint-parent", domain, "--checkpointname", name);
        }

        var target = Path.Combine(directory, "inc.qcow2");
        var backup = Path.Combine(directory, "backup.xml");
        await File.WriteAllTextAsync(backup, $"<domainbackup><incremental>{Names[4]}</incremental><disks><disk name='vda' type='file'><target file='{target}'/><driver type='qcow2'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>", Ct);
        await virsh.RunAsync("backup-begin", domain, backup);
        await virsh.WaitForNoJobAsync(domain);
        await virsh.RunAsync("domjobinfo", domain, "--completed");
        await virsh.RunAsync("checkpoint-delete", domain, "--checkpointname", Names[3]);
        await virsh.RunAsync("checkpoint-list", domain, "--name", "--topological");
        await virsh.RunAsync("destroy", domain);
        var info = await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", Path.Combine(directory, "dl", "vda.qcow2"));
        virsh.Note("qemu-img info vda.qcow2 | bitmap names", string.Concat(BitmapName().Matches(info).Select(m => Regex.Unescape(m.Groups[1].Value) + "\n").Order(StringComparer.Ordinal)));
        await virsh.RunAsync("undefine", domain, "--checkpoints-metadata");
        return VirshTranscript.MaskSchemaDetails(virsh.Mask(directory));
    }

    [GeneratedRegex("\"name\": \"((?:[^\"\\\\]|\\\\.)*)\"")]
    private static partial Regex BitmapName();
}
