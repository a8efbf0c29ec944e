using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// libvirt's virsh checkpoint transcripts (<c>tests/virshtestdata/checkpoint.in/.out</c> and
/// the <c>checkpoint-redefine</c> script of <c>virshtest.c</c>) replayed through the engine API
/// on a running domain with a real qcow2 disk: names that sort differently by topology than by
/// name, list filters, the tree, delete with children, redefine order, and the error lines.
/// </summary>
public sealed class VirshTranscriptTests
{
    private static string Data => VirshCheckpointTranscript.Data;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task CheckpointScript_ReproducesVirshOutput()
    {
        await using var test = await TestHost.CreateAsync();
        var (domain, image) = await DefineTestDomainAsync(test);
        await domain.StartAsync(Ct);

        var script = await VirshCheckpointTranscript.ScriptAsync(Ct);
        var expected = await VirshCheckpointTranscript.ExpectedAsync(image, Ct);

        var actual = await new VirshScript(domain, Data).RunAsync(script);

        Assert.Equal(expected, VirshCheckpointTranscript.Filter(actual));
    }

    [Fact]
    public async Task RedefineScript_ReproducesVirshOutput()
    {
        await using var test = await TestHost.CreateAsync();
        var (domain, _) = await DefineTestDomainAsync(test);
        await domain.StartAsync(Ct);
        var actual = await new VirshScript(domain, Data).RunAsync(VirshCheckpointTranscript.RedefineScript);

        Assert.Equal(await VirshCheckpointTranscript.RedefineExpectedAsync(Ct), actual);

        // A redefinition creates no bitmap, and c2 (child of the current c3) became current.
        Assert.Equal("c2", domain.Checkpoints.CurrentName);
        Assert.DoesNotContain("bitmaps", await Peer.RunCheckedAsync("qemu-img", "info", "-U", domain.Running!.Disks[0].Definition.SourcePath!), StringComparison.Ordinal);
    }

    // The test driver's "test" domain, as its checkpoints embed it, with a real image in place of /guest/diskimage1.
    private static async Task<(Domains.Domain Domain, string Image)> DefineTestDomainAsync(TestHost test)
    {
        var image = test.Directory.File("diskimage1");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "16M");
        var domain = await test.Host.DefineAsync(await VirshCheckpointTranscript.DomainXmlAsync(image, Ct), Ct);
        return (domain, image);
    }
}
