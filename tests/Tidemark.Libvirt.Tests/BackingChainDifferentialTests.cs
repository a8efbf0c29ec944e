using System.Text;
using System.Text.Json;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Checkpoints and backups of disks that are qcow2 overlays over qcow2 backing files, with
/// checkpoint bitmaps in more than one layer, as an external disk-only snapshot leaves them
/// (libvirt copies every recording bitmap into the new overlay) or as <c>qemu-img bitmap
/// --add</c> on each layer makes them (spec §6.4–§6.8). Stock virsh runs one script against
/// the real libvirtd (QEMU) and against Tidemark's daemon with the same prepared images:
/// <c>--redefine-validate</c> of a bitmap in both layers, in the overlay only, in the base only,
/// with the base's copy IN_USE or disabled, across a gap, at other granularities;
/// <c>checkpoint-dumpxml --size</c> counted across the chain; incremental pull backups from
/// each (the export's <c>qemu:dirty-bitmap:backup-DISK</c> as nbdinfo maps it) and push
/// backups (the targets as qemu-img describes them); a checkpoint created over the chain (the
/// top alone gets the bitmap, and a same-named bitmap left in the base counts); deletion, plain,
/// <c>--metadata</c> and <c>--children</c>, of bitmaps the read-only base holds; and every
/// layer's bitmaps and <c>qemu-img check</c> while running and after the domain is gone.
/// </summary>
public sealed class BackingChainDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private const string Domain = "bc";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task BitmapsInSeveralLayers_AreValidatedMergedAndDeletedAsOnLibvirt()
    {
        var libvirtd = await fixture.GetAsync();
        var (real, ours) = await BothHosts.RunAsync(fixture, "tdb", (uri, directory, write) => RunAsync(uri, directory, write, uri == libvirtd.Uri ? libvirtd : null), Ct);
        Assert.Equal(real.Main, ours.Main);

        // What libvirt says of this chain: validity needs the top's copy and an unbroken run of
        // recording, consistent copies (qemuBlockBitmapChainIsValid); sizes and dirty maps are
        // the run merged (qemuBackupDiskPrepareOneBitmapsChain), at the top's granularity; a
        // delete removes every layer's copy (qemuCheckpointDiscardBitmaps); a new bitmap goes to
        // the top only (qemuCheckpointAddActions).
        Assert.Contains("$ virsh checkpoint-create bc DIR/bc/c1.xml --redefine --redefine-validate\nDomain checkpoint c1 created from 'DIR/bc/c1.xml'\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("error: checkpoint inconsistent: missing or broken bitmap 'cb' for disk 'vda'\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("error: checkpoint inconsistent: missing or broken bitmap 'ci' for disk 'vda'\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("error: checkpoint inconsistent: missing or broken bitmap 'cd' for disk 'vda'\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("error: checkpoint inconsistent: missing or broken bitmap 'cg' for disk 'vdb'\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='c1' size='327680'/>", real.Main, StringComparison.Ordinal);
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='cr' size='917504'/>", real.Main, StringComparison.Ordinal);
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='cf' size='655360'/>", real.Main, StringComparison.Ordinal);
        Assert.Contains("<disk name='vda' checkpoint='bitmap' bitmap='cb' size='65536'/>", real.Main, StringComparison.Ordinal);
        Assert.Contains("$ virsh checkpoint-delete bc ci\nDomain checkpoint ci deleted\n", real.Main, StringComparison.Ordinal);
        Assert.Contains(
            "$ qemu-img info (shut off)\nvda.qcow2 c2[auto]/65536 c4[auto]/65536 cf[auto]/131072 cr[auto]/65536\nvda-base.qcow2 cf[auto]/16384 cr[auto]/262144\nvdb.qcow2 c4[auto]/65536\nvdb-mid.qcow2 none\nvdb-base.qcow2 none\n",
            real.Main,
            StringComparison.Ordinal);

        // A layer of another size (the top grown past its backing file): QEMU refuses to merge
        // bitmaps of different sizes (bdrv_merge_dirty_bitmap), so libvirt can neither size nor
        // back up from such a checkpoint. Tidemark deliberately merges the smaller layer's bits
        // into the top's range (nothing beyond a layer's end was written while it was the top),
        // so both work and give what the layers record.
        const string Refused = "error: internal error: unable to execute QEMU command 'transaction': Bitmaps are of different sizes (destination size is 33554432, source size is 16777216) and can't be merged\n";
        Assert.Equal(4, real.Resized.Split(Refused).Length - 1);
        Assert.DoesNotContain("error:", ours.Resized, StringComparison.Ordinal);
        Assert.Contains("<disk name='vdb' checkpoint='bitmap' bitmap='cs' size='131072'/>", ours.Resized, StringComparison.Ordinal);
        Assert.Contains("<disk name='vdb' checkpoint='bitmap' bitmap='cs' size='196608'/>", ours.Resized, StringComparison.Ordinal);
        Assert.Contains("0 +2097152: 0\n2097152 +65536: 1\n2162688 +18808832: 0\n20971520 +65536: 1\n21037056 +4128768: 0\n25165824 +65536: 1\n", ours.Resized, StringComparison.Ordinal);

        // Shut off, libvirt deletes no checkpoint's bitmaps (it needs QEMU); Tidemark removes
        // them offline from every layer that holds them, and leaves both layers clean.
        Assert.Contains("error: Operation not supported: cannot delete checkpoint for inactive domain\n", real.Offline, StringComparison.Ordinal);
        Assert.Contains("vda.qcow2 c2[auto]/65536 c4[auto]/65536 cf[auto]/131072 cr[auto]/65536\nvda-base.qcow2 cf[auto]/16384 cr[auto]/262144\n", real.Offline, StringComparison.Ordinal);
        Assert.Contains("$ virsh checkpoint-delete bc cr\nDomain checkpoint cr deleted\n", ours.Offline, StringComparison.Ordinal);
        Assert.Contains("vda.qcow2 c2[auto]/65536 c4[auto]/65536 cf[auto]/131072\nvda-base.qcow2 cf[auto]/16384\n", ours.Offline, StringComparison.Ordinal);
        Assert.Contains("\nvda.qcow2 exit 0 total-clusters 256 check-errors 0 ", ours.Offline, StringComparison.Ordinal);
        Assert.Contains("\nvda-base.qcow2 exit 0 total-clusters 256 check-errors 0 ", ours.Offline, StringComparison.Ordinal);

        // The pull export's base:allocation where a data cluster of the base holds a hole of
        // the host file (a 4 KiB write at the end of a fresh cluster): QEMU asks the file under
        // the cluster (the image passes qcow2_detect_metadata_preallocation, its bitmap clusters
        // being mostly holes) and reports that part allocated and zero (2); so does Tidemark's
        // point-in-time view, which keeps data, allocated zeroes and holes as they were at the
        // instant.
        Assert.Contains("3211264 +983040: 3\n4194304 +61440: 2\n4255744 +4096: 0\n", real.Allocation, StringComparison.Ordinal);
        Assert.Equal(real.Allocation, ours.Allocation);
    }

    private sealed record Run(string Main, string Resized, string Offline, string Allocation);

    private static async Task<Run> RunAsync(string uri, string directory, GuestWrite write, PrivateLibvirtd? libvirtd)
    {
        var virsh = new VirshTranscript(uri);
        var resized = new VirshTranscript(uri);
        var allocationMap = "";
        var images = Path.Combine(directory, Domain);
        var (xml, layers) = await CreateDomainAsync(images);
        var socket = Path.Combine(images, "nbd.sock");
        string Doc(string name, string text)
        {
            var path = Path.Combine(images, name);
            File.WriteAllText(path, text.Replace("D/", images + "/", StringComparison.Ordinal));
            return path;
        }

        // Every checkpoint a child of c2 (c1 <- c2 <- the rest), each on one disk.
        var checkpoints = new (string Name, string Disk)[] { ("c1", "vda"), ("c2", "vda"), ("cb", "vda"), ("ci", "vda"), ("cd", "vda"), ("cr", "vda"), ("cf", "vda"), ("cg", "vdb"), ("cs", "vdb") };
        var created = 1_700_000_000;
        foreach (var (name, disk) in checkpoints)
        {
            var parent = name switch { "c1" => "", "c2" => "<parent><name>c1</name></parent>", _ => "<parent><name>c2</name></parent>" };
            var other = disk == "vda" ? "vdb" : "vda";
            Doc(name + ".xml", $"""
                <domaincheckpoint>
                  <name>{name}</name>
                  {parent}
                  <creationTime>{created++}</creationTime>
                  <disks><disk name='{disk}' checkpoint='bitmap' bitmap='{name}'/><disk name='{other}' checkpoint='no'/></disks>
                </domaincheckpoint>
                """);
        }

        string DiskOf(string from) => checkpoints.FirstOrDefault(c => c.Name == from).Disk ?? "vda";
        string Pull(string from) => Doc($"pull-{from}.xml", $"""
            <domainbackup mode='pull'><incremental>{from}</incremental><server transport='unix' socket='{socket}'/>
              <disks><disk name='{DiskOf(from)}' backup='yes' type='file'><scratch file='D/scratch-{from}.qcow2'/></disk><disk name='{(DiskOf(from) == "vda" ? "vdb" : "vda")}' backup='no'/></disks>
            </domainbackup>
            """);
        string Push(string from) => Doc($"push-{from}.xml", $"""
            <domainbackup><incremental>{from}</incremental>
              <disks><disk name='{DiskOf(from)}' type='file'><target file='D/push-{from}.qcow2'/></disk><disk name='{(DiskOf(from) == "vda" ? "vdb" : "vda")}' backup='no'/></disks>
            </domainbackup>
            """);

        async Task PullAsync(string from, params string[] checkpoint)
        {
            var record = from == "cs" ? resized : virsh;
            var begun = await record.RunAsync(["backup-begin", Domain, Pull(from), .. checkpoint]);
            if (begun.ExitCode != 0)
            {
                return;
            }

            var disk = DiskOf(from);
            var map = await ExportMaps.NbdinfoAsync($"nbd+unix:///{disk}?socket={socket}", $"qemu:dirty-bitmap:backup-{disk}");
            record.Note($"nbdinfo --map=qemu:dirty-bitmap:backup-{disk} (from {from})", string.Concat(map.Select(e => $"{e.Offset} +{e.Length}: {e.Flags}\n")));
            if (from == "c1")
            {
                var allocation = await ExportMaps.NbdinfoAsync($"nbd+unix:///{disk}?socket={socket}", "base:allocation");
                allocationMap = string.Concat(allocation.Select(e => $"{e.Offset} +{e.Length}: {e.Flags}\n"));
            }

            await record.RunAsync("domjobabort", Domain);
            await record.WaitForNoJobAsync(Domain);
        }

        var targets = new List<PushTarget>();
        async Task PushAsync(string from)
        {
            var record = from == "cs" ? resized : virsh;
            var begun = await record.RunAsync("backup-begin", Domain, Push(from));
            if (begun.ExitCode == 0)
            {
                await record.WaitForNoJobAsync(Domain);
                await record.RunAsync("domjobinfo", Domain, "--completed");
                var target = new PushTarget(Path.Combine(images, $"push-{from}.qcow2"), "qcow2");
                if (from == "cs")
                {
                    resized.Note("push target", await target.DescribeAsync(directory, asQemuWroteIt: libvirtd is not null));
                }
                else
                {
                    targets.Add(target);
                }
            }
        }

        async Task SizesAsync(params string[] names)
        {
            foreach (var name in names)
            {
                await (name == "cs" ? resized : virsh).RunAsync("checkpoint-dumpxml", Domain, name, "--no-domain", "--size");
            }
        }

        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("start", Domain);

        // Redefinition: validated where the chain is valid, refused where it is not; then the
        // refused ones redefined without validation.
        foreach (var (name, _) in checkpoints)
        {
            await virsh.RunAsync("checkpoint-create", Domain, Path.Combine(images, name + ".xml"), "--redefine", "--redefine-validate");
        }

        foreach (var (name, _) in checkpoints)
        {
            await virsh.RunAsync("checkpoint-create", Domain, Path.Combine(images, name + ".xml"), "--redefine");
        }

        await virsh.RunAsync("checkpoint-list", Domain, "--tree");
        await SizesAsync([.. checkpoints.Select(c => c.Name)]);
        virsh.Note("qemu-img info (running)", await LayersAsync(layers));

        // The guest writes; an incremental pull from each, the first one creating c3 over the chain.
        await write(Domain, "vda", "write -P 0x51 9M 64k");
        await write(Domain, "vdb", "write -P 0x52 24M 64k");
        await PullAsync("c1", Doc("c3.xml", "<domaincheckpoint><name>c3</name></domaincheckpoint>"));
        await write(Domain, "vda", "write -P 0x53 10M 64k");
        foreach (var (name, _) in checkpoints.Skip(1))
        {
            await PullAsync(name);
        }

        await PullAsync("c3");
        foreach (var name in new[] { "c1", "c2", "cb", "cr", "cf", "cs" })
        {
            await PushAsync(name);
        }

        await SizesAsync([.. checkpoints.Select(c => c.Name), "c3"]);

        // Deletion: in both layers while the base also holds an IN_USE bitmap (the base is
        // reopened read-write for the removal), a base copy disabled, across a gap, from a
        // layer of another size, the base copy IN_USE.
        await virsh.RunAsync("checkpoint-delete", Domain, "c1");
        virsh.Note("qemu-img info (running, after c1)", await LayersAsync(layers));
        foreach (var name in new[] { "cd", "cg", "cs", "ci" })
        {
            await virsh.RunAsync("checkpoint-delete", Domain, name);
        }

        await virsh.RunAsync("checkpoint-delete", Domain, "ci", "--metadata");

        // A checkpoint created over a base-only bitmap of its name (its metadata deleted, the
        // bitmap left): the new bitmap goes to the top, and the chain below it counts.
        await virsh.RunAsync("checkpoint-delete", Domain, "cb", "--metadata");
        await virsh.RunAsync("checkpoint-create-as", Domain, "cb");
        await SizesAsync("cb");
        await virsh.RunAsync("checkpoint-delete", Domain, "c3", "--children");
        await virsh.RunAsync("checkpoint-create-as", Domain, "c4");
        await virsh.RunAsync("checkpoint-list", Domain, "--tree");
        virsh.Note("qemu-img info (running, after deletion)", await LayersAsync(layers));
        await SizesAsync("c2", "cr", "c4");

        await virsh.RunAsync("destroy", Domain);
        virsh.Note("qemu-img info (shut off)", await LayersAsync(layers));
        virsh.Note("qemu-img check", string.Concat(await Task.WhenAll(layers.Select(CheckAsync))));

        // Shut off: libvirt deletes no bitmap, Tidemark does (see the test).
        var offline = new VirshTranscript(uri);
        await offline.RunAsync("checkpoint-delete", Domain, "cr");
        offline.Note("qemu-img info", await LayersAsync(layers));
        offline.Note("qemu-img check", string.Concat(await Task.WhenAll(layers.Select(CheckAsync))));
        await virsh.RunAsync("undefine", Domain, "--checkpoints-metadata");

        var described = new StringBuilder();
        foreach (var target in targets)
        {
            described.Append(await target.DescribeAsync(directory, asQemuWroteIt: libvirtd is not null));
        }

        virsh.Note("push targets", described.ToString());
        return new Run(virsh.Mask(directory), resized.Mask(directory), offline.Mask(directory), allocationMap);
    }

    /// <summary>
    /// The images, written before the domain is defined. vda: a base with data and bitmaps c1,
    /// ci (marked IN_USE by hand), cd (disabled), cr (256 KiB granularity), cf (16 KiB), all
    /// dirty at 2 MiB, 3 MiB and 4 KiB at 4 MiB + 60 KiB, and cb (only there, dirty from 3 MiB);
    /// an overlay with c1, ci, cd, cr and cf (128 KiB granularity), dirty at 5 MiB, then c2
    /// (dirty at 6 MiB). vdb: a base with cg (dirty at 1 MiB), a middle layer
    /// with cs (dirty at 2 MiB), a top of twice the size with cg and cs (dirty at 20 MiB).
    /// </summary>
    private static async Task<(string Xml, string[] Layers)> CreateDomainAsync(string images)
    {
        Directory.CreateDirectory(images);
        string[] layers = [.. new[] { "vda.qcow2", "vda-base.qcow2", "vdb.qcow2", "vdb-mid.qcow2", "vdb-base.qcow2" }.Select(n => Path.Combine(images, n))];
        var (vda, vdaBase, vdb, vdbMid, vdbBase) = (layers[0], layers[1], layers[2], layers[3], layers[4]);
        Task Img(params string[] arguments) => Peer.RunCheckedAsync("qemu-img", arguments);
        Task Io(string image, string command) => Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", command, image);

        await Img("create", "-q", "-f", "qcow2", vdaBase, "16M");
        await Io(vdaBase, "write -P 0x41 0 1M");
        await Img("bitmap", "--add", vdaBase, "c1");
        await Img("bitmap", "--add", vdaBase, "ci");
        await Img("bitmap", "--add", vdaBase, "cd");
        await Img("bitmap", "--add", "--granularity", "262144", vdaBase, "cr");
        await Img("bitmap", "--add", "--granularity", "16384", vdaBase, "cf");
        await Io(vdaBase, "write -P 0x42 2M 64k");
        await Io(vdaBase, "write -P 0x49 4255744 4k");
        await Img("bitmap", "--add", vdaBase, "cb");
        await Io(vdaBase, "write -P 0x43 3M 64k");
        await Img("bitmap", "--disable", vdaBase, "cd");
        await Qcow2BitmapFlags.SetAsync(vdaBase, "ci", Qcow2BitmapFlags.InUse);
        await Img("create", "-q", "-f", "qcow2", "-b", vdaBase, "-F", "qcow2", vda);
        foreach (var name in new[] { "c1", "ci", "cd", "cr" })
        {
            await Img("bitmap", "--add", vda, name);
        }

        await Img("bitmap", "--add", "--granularity", "131072", vda, "cf");

        await Io(vda, "write -P 0x44 5M 64k");
        await Img("bitmap", "--add", vda, "c2");
        await Io(vda, "write -P 0x45 6M 64k");

        await Img("create", "-q", "-f", "qcow2", vdbBase, "16M");
        await Img("bitmap", "--add", vdbBase, "cg");
        await Io(vdbBase, "write -P 0x46 1M 64k");
        await Img("create", "-q", "-f", "qcow2", "-b", vdbBase, "-F", "qcow2", vdbMid);
        await Img("bitmap", "--add", vdbMid, "cs");
        await Io(vdbMid, "write -P 0x47 2M 64k");
        await Img("create", "-q", "-f", "qcow2", "-b", vdbMid, "-F", "qcow2", vdb, "32M");
        await Img("bitmap", "--add", vdb, "cg");
        await Img("bitmap", "--add", vdb, "cs");
        await Io(vdb, "write -P 0x48 20M 64k");

        var xml = Path.Combine(images, Domain + ".xml");
        await File.WriteAllTextAsync(xml, new LibvirtdDomain(Domain, [new LibvirtdDisk("vda", vda), new LibvirtdDisk("vdb", vdb)]).Xml(), Ct);
        return (xml, layers);
    }

    // Each layer's bitmaps as qemu-img reports them (name, flags, granularity): which layer
    // got or lost a bitmap, and which were left IN_USE.
    private static async Task<string> LayersAsync(string[] layers)
    {
        var text = new StringBuilder();
        foreach (var layer in layers)
        {
            text.Append(Path.GetFileName(layer)).Append(' ').Append(await ImageBitmapList.DescribeAsync(layer)).Append('\n');
        }

        return text.ToString();
    }

    // qemu-img check of one layer by itself: its verdict and counts, without what the layout
    // of the data decides (end offset, fragmentation).
    private static async Task<string> CheckAsync(string image)
    {
        var check = await Peer.RunAsync("qemu-img", ["check", "--output=json", "-f", "qcow2", image]);
        using var json = JsonDocument.Parse(check.Stdout);
        var text = new StringBuilder($"{Path.GetFileName(image)} exit {check.ExitCode}");
        foreach (var property in json.RootElement.EnumerateObject())
        {
            if (property.Name is "check-errors" or "corruptions" or "leaks" or "total-clusters" or "allocated-clusters")
            {
                text.Append($" {property.Name} {property.Value}");
            }
        }

        return text.Append('\n').ToString();
    }
}
