using System.Buffers.Binary;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Images whose format nobody stated, queried shut off (<c>domblkinfo</c>) and started through
/// stock virsh on the real libvirtd and on Tidemark's daemon. libvirt never probes a disk's format (a guest can write any header into
/// a raw disk) but for a backing file an old qcow2 names without its format: that one is probed
/// only if what the probe finds has no backing file of its own
/// (virStorageSourceGetMetadataRecurse). Cases: a qcow2 over a raw base and over a qcow2 base,
/// neither format stored (probed, the domain starts); a qcow2 over a middle layer whose format is
/// not stored and which has a base of its own (refused, as a guest-written header naming a host
/// file would be); a missing backing file; backing files named "../" from an overlay (the path
/// shown joined, not tidied); a loop; chains of 200 images (the deepest libvirt
/// walks) and of 201; a disk stated raw whose contents are a qcow2 header; a disk that names no
/// format; chains the definition states (<c>&lt;backingStore&gt;</c>: over the unstated layer,
/// none at all, another file than the header names, a missing one); the refused chains and a
/// probed one hot-plugged into a running domain. The transcripts
/// must be equal.
/// </summary>
public sealed class ChainWalkDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task UnstatedFormats_AreProbedOnlyWhereLibvirtProbesThem()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tfp", RunAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains("error: Requested operation is not valid: format of backing image 'mid.qcow2' of image 'DIR/fp/over-mid.qcow2' was not specified in the image metadata (See https://libvirt.org/kbase/backing_chains.html for troubleshooting)\n", real, StringComparison.Ordinal);
        Assert.Contains("<backingStore type='file' index='2'>\n        <format type='raw'/>\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Cannot access backing file 'DIR/fp/gone.qcow2' of storage file 'DIR/fp/over-gone.qcow2' (as uid:0, gid:0): No such file or directory\n", real, StringComparison.Ordinal);
        Assert.Contains("<source file='DIR/fp/sub/../plain.qcow2'/>\n", real, StringComparison.Ordinal);
        Assert.Contains("<source file='DIR/fp/over-raw.qcow2' index='1'/>\n      <backingStore type='file' index='2'>\n        <format type='qcow2'/>\n        <source file='DIR/fp/plain.qcow2'/>\n", real, StringComparison.Ordinal);
        Assert.Contains("<source file='DIR/fp/over-plain.qcow2' index='1'/>\n      <backingStore/>\n", real, StringComparison.Ordinal);
        Assert.Contains("error: Cannot access storage file 'DIR/fp/gone.qcow2' (as uid:0, gid:0): No such file or directory\n", real, StringComparison.Ordinal);
        Assert.Contains("error: internal error: backing store for DIR/fp/loop-a.qcow2 is self-referential or too deeply nested\n", real, StringComparison.Ordinal);
        Assert.Contains("error: internal error: backing store for DIR/fp/deep-0.qcow2 is self-referential or too deeply nested\n", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        var images = Path.Combine(directory, "fp");
        Directory.CreateDirectory(images);
        string I(string name) => Path.Combine(images, name);
        async Task QemuImgAsync(params string[] arguments) => await Peer.RunCheckedAsync("qemu-img", ["create", "-q", .. arguments]);

        await QemuImgAsync("-f", "raw", I("base.raw"), "4M");
        await QemuImgAsync("-f", "raw", I("solo.raw"), "4M");
        await QemuImgAsync("-f", "qcow2", I("plain.qcow2"), "4M");
        await QemuImgAsync("-f", "qcow2", "-b", "base.raw", "-F", "raw", I("over-raw.qcow2"));
        await QemuImgAsync("-f", "qcow2", "-b", "plain.qcow2", "-F", "qcow2", I("over-plain.qcow2"));
        await QemuImgAsync("-f", "qcow2", "-b", "base.raw", "-F", "raw", I("mid.qcow2"));
        await QemuImgAsync("-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", I("over-mid.qcow2"));
        await QemuImgAsync("-f", "qcow2", "-b", "gone.qcow2", "-F", "qcow2", "-u", I("over-gone.qcow2"), "4M");
        await QemuImgAsync("-f", "qcow2", "-b", "loop-b.qcow2", "-F", "qcow2", "-u", I("loop-a.qcow2"), "4M");
        await QemuImgAsync("-f", "qcow2", "-b", "loop-a.qcow2", "-F", "qcow2", "-u", I("loop-b.qcow2"), "4M");
        // Backing files named relative to an overlay in another directory.
        Directory.CreateDirectory(I("sub"));
        await QemuImgAsync("-f", "qcow2", "-b", "../plain.qcow2", "-F", "qcow2", I("sub/up.qcow2"));
        await QemuImgAsync("-f", "qcow2", "-b", "../gone.qcow2", "-F", "qcow2", "-u", I("sub/up-gone.qcow2"), "4M");

        // Chains of 200 images (as deep as libvirt goes) and of 201.
        await QemuImgAsync("-f", "qcow2", I("deep-0.qcow2"), "4M");
        for (var i = 1; i <= 200; i++)
        {
            await QemuImgAsync("-f", "qcow2", "-b", $"deep-{i - 1}.qcow2", "-F", "qcow2", "-u", I($"deep-{i}.qcow2"), "4M");
        }

        // What a guest could write into its raw disk: a qcow2 header naming a host file.
        await QemuImgAsync("-f", "qcow2", "-b", I("base.raw"), "-F", "raw", I("looks-qcow2.raw"));
        foreach (var image in new[] { "over-raw.qcow2", "over-plain.qcow2", "over-mid.qcow2", "over-gone.qcow2" })
        {
            // As images written before qemu-img insisted on -F are: the backing file's name alone.
            await WithoutBackingFormatAsync(I(image));
        }

        async Task StartAsync(string name, string disk, bool dump = true, Func<Task>? whileRunning = null)
        {
            var xml = I(name + ".xml");
            await File.WriteAllTextAsync(xml, $"""
                <domain type='qemu'>
                  <name>fp</name>
                  <memory unit='MiB'>64</memory>
                  <vcpu placement='static'>1</vcpu>
                  <os><type arch='x86_64' machine='pc'>hvm</type></os>
                  <features><acpi/></features>
                  <devices>
                    <emulator>/usr/bin/qemu-system-x86_64</emulator>
                    {disk}
                  </devices>
                </domain>
                """, Ct);
            await virsh.RunAsync("define", xml);
            await virsh.RunAsync("domblkinfo", "fp", "vda");
            if ((await virsh.RunAsync("start", "fp", "--paused")).ExitCode == 0)
            {
                if (dump)
                {
                    virsh.Note("virsh dumpxml fp", await LiveDisks.DumpAsync(uri, "fp"));
                }

                await virsh.RunAsync("domblkinfo", "fp", "vda");
                if (whileRunning is not null)
                {
                    await whileRunning();
                }

                await virsh.RunAsync("destroy", "fp");
            }

            await virsh.RunAsync("undefine", "fp");
        }

        string Disk(string image, string? format = "qcow2", string backingStore = "")
            => $"<disk type='file' device='disk'>{(format is null ? "" : $"<driver name='qemu' type='{format}'/>")}<source file='{I(image)}'/>{backingStore}<target dev='vda' bus='virtio'/></disk>";
        string Store(string image, string format, string below = "")
            => $"<backingStore type='file'><format type='{format}'/><source file='{I(image)}'/>{below}</backingStore>";

        await StartAsync("over-raw", Disk("over-raw.qcow2"));
        await StartAsync("over-plain", Disk("over-plain.qcow2"));
        await StartAsync("over-mid", Disk("over-mid.qcow2"));
        await StartAsync("over-gone", Disk("over-gone.qcow2"));
        await StartAsync("loop", Disk("loop-a.qcow2"));
        await StartAsync("up", Disk("sub/up.qcow2"));
        await StartAsync("up-gone", Disk("sub/up-gone.qcow2"));
        await StartAsync("deep-200", Disk("deep-199.qcow2"), dump: false);
        await StartAsync("deep-201", Disk("deep-200.qcow2"), dump: false);
        // A chain the definition states is followed as stated: the unstated middle layer, no
        // backing file at all, another backing file than the header names.
        await StartAsync("xml-mid", Disk("over-mid.qcow2", backingStore: Store("mid.qcow2", "qcow2")));
        await StartAsync("xml-none", Disk("over-plain.qcow2", backingStore: "<backingStore/>"));
        await StartAsync("xml-other", Disk("over-raw.qcow2", backingStore: Store("plain.qcow2", "qcow2", "<backingStore/>")));
        await StartAsync("xml-gone", Disk("over-raw.qcow2", backingStore: Store("gone.qcow2", "qcow2")));
        await StartAsync("stated-raw", Disk("looks-qcow2.raw", "raw"));
        await StartAsync("unstated", Disk("looks-qcow2.raw", null));

        // The same walk when a disk is hot-plugged.
        await StartAsync("hotplug", Disk("solo.raw", "raw"), whileRunning: async () =>
        {
            await virsh.RunAsync("attach-disk", "fp", I("over-mid.qcow2"), "vdb", "--subdriver", "qcow2");
            await virsh.RunAsync("attach-disk", "fp", I("loop-a.qcow2"), "vdb", "--subdriver", "qcow2");
            await virsh.RunAsync("attach-disk", "fp", I("sub/up-gone.qcow2"), "vdb", "--subdriver", "qcow2");
            await virsh.RunAsync("attach-disk", "fp", I("over-raw.qcow2"), "vdb", "--subdriver", "qcow2");
            virsh.Note("virsh dumpxml fp", await LiveDisks.DumpAsync(uri, "fp"));
        });
        return virsh.Mask(directory);
    }

    /// <summary>
    /// Takes the backing format header extension (0xe2792aca) out of a qcow2 image's header
    /// (qcow2.txt, "Header extensions"), the rest moved up in its place.
    /// </summary>
    private static async Task WithoutBackingFormatAsync(string path)
    {
        const uint backingFormat = 0xe2792aca;
        var bytes = await File.ReadAllBytesAsync(path, Ct);
        var headerLength = (int)BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(100));
        var kept = new List<byte>();
        var offset = headerLength;
        while (true)
        {
            var type = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(offset));
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(offset + 4));
            var whole = 8 + ((length + 7) & ~7);
            if (type == 0)
            {
                break;
            }

            if (type != backingFormat)
            {
                kept.AddRange(bytes.AsSpan(offset, whole));
            }

            offset += whole;
        }

        Assert.NotEqual(offset - headerLength, kept.Count);
        var extensions = bytes.AsSpan(headerLength, offset + 8 - headerLength);
        extensions.Clear();
        kept.ToArray().CopyTo(extensions);
        await File.WriteAllBytesAsync(path, bytes, Ct);
    }
}
