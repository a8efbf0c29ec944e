using System.Text.RegularExpressions;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// libvirt's virsh checkpoint transcripts (<c>tests/virshtestdata/checkpoint.in/.out</c> and
/// the <c>checkpoint-redefine</c> script of <c>virshtest.c</c>) replayed through the engine API
/// on a running domain with a real qcow2 disk: names that sort differently by topology than by
/// name, list filters, the tree, delete with children, redefine order, and the error lines.
/// </summary>
public sealed partial class VirshTranscriptTests
{
    private static string Data => Path.Combine(LibvirtConformance.Tests, "virshtestdata");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task CheckpointScript_ReproducesVirshOutput()
    {
        await using var test = await TestHost.CreateAsync();
        var (domain, image) = await DefineTestDomainAsync(test);
        await domain.StartAsync(Ct);

        // Tidemark has no snapshots: the script's snapshot step (the test driver refusing a
        // snapshot while checkpoints exist) is left out of both sides.
        var script = (await File.ReadAllLinesAsync(Path.Combine(Data, "checkpoint.in"), Ct))
            .Where(l => !l.StartsWith("snapshot", StringComparison.Ordinal) && !l.StartsWith("echo snapshots", StringComparison.Ordinal));
        var expected = (await File.ReadAllTextAsync(Path.Combine(Data, "checkpoint.out"), Ct))
            .Replace("snapshots cannot be created while checkpoints exist\nerror: Operation not supported: cannot create snapshot while checkpoint exists\n\n", "", StringComparison.Ordinal)
            .Replace("/guest/diskimage1", image, StringComparison.Ordinal);

        var actual = await new VirshScript(domain, Data).RunAsync(script);

        // virshtest filters each "<creationTime" to the end of its line, leaving the indentation.
        Assert.Equal(expected, CreationTime().Replace(actual, ""));
    }

    [Fact]
    public async Task RedefineScript_ReproducesVirshOutput()
    {
        await using var test = await TestHost.CreateAsync();
        var (domain, _) = await DefineTestDomainAsync(test);
        await domain.StartAsync(Ct);
        string[] script =
        [
            "cd " + Data,
            "echo 'Redefine must be in topological order; this will fail'",
            "checkpoint-create test --redefine checkpoint-c2.xml",
            "echo 'correct order'",
            "checkpoint-create test --redefine checkpoint-c3.xml",
            "checkpoint-create test --redefine checkpoint-c2.xml",
            "checkpoint-info test c2",
        ];

        var actual = await new VirshScript(domain, Data).RunAsync(script);

        Assert.Equal(await File.ReadAllTextAsync(Path.Combine(Data, "checkpoint-redefine.out"), Ct), actual);

        // A redefinition creates no bitmap, and c2 (child of the current c3) became current.
        Assert.Equal("c2", domain.Checkpoints.CurrentName);
        Assert.DoesNotContain("bitmaps", await Peer.RunCheckedAsync("qemu-img", "info", "-U", domain.Running!.Disks[0].Definition.SourcePath!), StringComparison.Ordinal);
    }

    // The test driver's "test" domain, as its checkpoints embed it, with a real image in place of /guest/diskimage1.
    private static async Task<(Domains.Domain Domain, string Image)> DefineTestDomainAsync(TestHost test)
    {
        var image = test.Directory.File("diskimage1");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "16M");
        var c2 = await File.ReadAllTextAsync(Path.Combine(Data, "checkpoint-c2.xml"), Ct);
        var domainXml = c2[c2.IndexOf("<domain ", StringComparison.Ordinal)..(c2.IndexOf("</domain>", StringComparison.Ordinal) + "</domain>".Length)];
        var domain = await test.Host.DefineAsync(domainXml.Replace("/guest/diskimage1", image, StringComparison.Ordinal), Ct);
        return (domain, image);
    }

    [GeneratedRegex("<creationTime.*")]
    private static partial Regex CreationTime();
}
