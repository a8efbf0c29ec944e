using System.Text.RegularExpressions;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Names at the limits of what stores them, on the real libvirtd and on Tidemark's daemon.
/// Checkpoints of 247 bytes (the metadata's temporary file, NAME.xml.new, just fits a file
/// name), 251 and 252 (it no longer does), 1023 (the longest bitmap name qcow2 allows) and 1024.
/// Domains of 200 and 247 bytes, started (a name too long for a socket's path), then a 248-byte
/// one whose definition libvirt cannot write; a pull backup on a socket path too long for one.
/// What each host answers and what it lists must be the same. The bitmaps left in the image
/// differ on purpose: libvirtd 9.0 leaves the bitmap of a checkpoint whose metadata it could
/// not save, an orphan no checkpoint owns; Tidemark takes it back.
/// </summary>
public sealed partial class LongNameDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task NamesAtTheLimits_AreTakenOrRefusedAsLibvirtdTakesThem()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tdl", RunAsync, Ct);
        Assert.Equal(real.Transcript, ours.Transcript);
        var name = new string('k', 1024);
        Assert.Contains($"error: internal error: unable to execute QEMU command 'transaction': Can't make bitmap '{name}' persistent in 'libvirt-2-format': Name length exceeds maximum (1023 characters)\n", real.Transcript, StringComparison.Ordinal);
        Assert.Contains($"error: internal error: unable to save metadata for checkpoint {new string('k', 251)}\n", real.Transcript, StringComparison.Ordinal);
        Assert.Contains($"$ virsh checkpoint-list ln --name\n{new string('k', 247)}\n", real.Transcript, StringComparison.Ordinal);
        Assert.Contains($"$ virsh start {new string('d', 200)}\nDomain '{new string('d', 200)}' started\n", real.Transcript, StringComparison.Ordinal);
        Assert.Contains($"error: internal error: unable to execute QEMU command 'nbd-server-start': UNIX socket path 'DIR/{new string('s', 120)}.sock' is too long\n", real.Transcript, StringComparison.Ordinal);
        Assert.Contains("$ virsh define (a 248-byte name)\n[exit 1]\n$ virsh list --all --name\n\n[exit 0]\n", real.Transcript, StringComparison.Ordinal);
        Assert.Equal([247, 251, 252, 1023], real.Bitmaps.Order());
        Assert.Equal([247], ours.Bitmaps);
    }

    private static async Task<(string Transcript, IReadOnlyList<int> Bitmaps)> RunAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        await virsh.RunAsync("define", await TwoDiskDomain.CreateAsync(directory, "ln"));
        await virsh.RunAsync("start", "ln", "--paused");
        foreach (var length in new[] { 247, 251, 252, 1023, 1024 })
        {
            await virsh.RunAsync("checkpoint-create-as", "ln", new string('k', length));
        }

        await virsh.RunAsync("checkpoint-list", "ln", "--name");
        await virsh.RunAsync("destroy", "ln");
        await virsh.RunAsync("checkpoint-list", "ln", "--name");
        var info = await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", Path.Combine(directory, "ln", "vda.qcow2"));
        var bitmaps = BitmapName().Matches(info).Select(m => m.Groups[1].Value.Length).ToList();
        await virsh.RunAsync("undefine", "ln", "--checkpoints-metadata");
        foreach (var length in new[] { 200, 247 })
        {
            var name = new string('d', length);
            await virsh.RunAsync("define", await NamedDomainAsync(directory, name));
            await virsh.RunAsync("start", name);
            await virsh.RunAsync("domstate", name);
            await virsh.RunAsync("backup-begin", name, await PullBackupAsync(directory));
            await virsh.RunAsync("domjobinfo", name);
            await virsh.RunAsync("destroy", name);
            await virsh.RunAsync("undefine", name);
        }

        // A name whose definition file libvirt cannot write (virFileRewrite's NAME.xml.new is
        // over 255 bytes): the definition is refused and no domain is left. The words differ,
        // since each names its own state directory.
        var tooLong = new string('d', 248);
        var refused = await Peer.RunAsync("virsh", ["-c", uri, "define", await NamedDomainAsync(directory, tooLong)]);
        virsh.Note("virsh define (a 248-byte name)", $"[exit {refused.ExitCode}]\n");
        await virsh.RunAsync("list", "--all", "--name");
        return (virsh.Mask(directory), bitmaps);
    }

    private static async Task<string> NamedDomainAsync(string directory, string name)
    {
        var xml = await TwoDiskDomain.CreateAsync(directory, "dl");
        await File.WriteAllTextAsync(xml, (await File.ReadAllTextAsync(xml, Ct)).Replace("<name>dl</name>", $"<name>{name}</name>", StringComparison.Ordinal), Ct);
        return xml;
    }

    /// <summary>A pull backup served on a socket whose path is too long for one.</summary>
    private static async Task<string> PullBackupAsync(string directory)
    {
        var xml = Path.Combine(directory, "pull.xml");
        var socket = Path.Combine(directory, new string('s', 120) + ".sock");
        await File.WriteAllTextAsync(xml, $"<domainbackup mode='pull'><server transport='unix' socket='{socket}'/></domainbackup>", Ct);
        return xml;
    }

    [GeneratedRegex("\"name\": \"(k*)\"")]
    private static partial Regex BitmapName();
}
