using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Checkpoint error paths, redefinition and deletion: stock virsh runs the same commands against
/// the real libvirtd (QEMU) and Tidemark's daemon, each with an equivalent domain, and the
/// transcripts must be equal once masked (<see cref="VirshTranscript.Mask"/>), and so must the
/// bitmaps the images end with (<c>qemu-img info</c>: names, flags, granularity).
/// </summary>
public sealed partial class CheckpointDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task CreateErrors_Redefinition_AndDeletion_AreTheSameOnBoth()
    {
        var ((real, realOffline), (ours, oursOffline)) = await BothHosts.RunAsync(fixture, "tdc", RunCheckpointsAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains("error: unsupported configuration: no disk named 'vdz'\n", real, StringComparison.Ordinal);
        Assert.Contains("error: unsupported configuration: disk 'vda' specified twice\n", real, StringComparison.Ordinal);
        Assert.Contains("error: internal error: unable to execute QEMU command 'transaction': Bitmap already exists: clash\n", real, StringComparison.Ordinal);
        Assert.Contains("error: unsupported flags (0x2) in function qemuCheckpointCreateXML\n", real, StringComparison.Ordinal);
        Assert.Contains("error: invalid argument: parent c1 for moment c2 not found\n", real, StringComparison.Ordinal);
        Assert.Contains("error: checkpoint inconsistent: missing or broken bitmap 'c2' for disk 'vdb'\n", real, StringComparison.Ordinal);
        Assert.Contains("error: internal error: bitmap 'c3' not found in backing chain of 'vda'\n", real, StringComparison.Ordinal);
        Assert.Contains("\nflags delete 8 10 unsupported flags (0x80) in function qemuCheckpointDelete\n", real, StringComparison.Ordinal);
        Assert.EndsWith("vda c5[auto]/65536 c7[auto]/65536 clash[auto]/65536\nvdb c3[in-use,auto]/65536 c5[auto]/65536 c7[auto]/65536\n", real, StringComparison.Ordinal);

        // Shut off, libvirt's QEMU driver refuses to create or delete a checkpoint (it needs
        // QEMU's monitor for the bitmaps). Tidemark deliberately does both, offline, as
        // qemu-img bitmap --add/--remove would (design.md), and the bitmap it adds has the
        // flags and granularity of one QEMU adds.
        Assert.Equal(
            """
            $ virsh checkpoint-create-as ck off1

            [stderr]
            error: Operation not supported: cannot create checkpoint for inactive domain
            [exit 1]
            vda c5[auto]/65536 c7[auto]/65536 clash[auto]/65536
            $ virsh checkpoint-delete ck off1

            [stderr]
            error: Domain checkpoint not found: no domain checkpoint with matching name 'off1'
            [exit 1]
            $ virsh checkpoint-delete ck e3

            [stderr]
            error: Failed to delete checkpoint e3
            error: Operation not supported: cannot delete checkpoint for inactive domain
            [exit 1]
            $ virsh checkpoint-list ck --name
            c1
            e3

            [exit 0]

            """,
            realOffline);
        Assert.Equal(
            """
            $ virsh checkpoint-create-as ck off1
            Domain checkpoint off1 created
            [exit 0]
            vda c5[auto]/65536 c7[auto]/65536 clash[auto]/65536 off1[auto]/65536
            $ virsh checkpoint-delete ck off1
            Domain checkpoint off1 deleted

            [exit 0]
            $ virsh checkpoint-delete ck e3
            Domain checkpoint e3 deleted

            [exit 0]
            $ virsh checkpoint-list ck --name
            c1

            [exit 0]

            """,
            oursOffline);
    }

    [Fact]
    public async Task RawAndReadOnlyDisks_AreRefusedTheSameOnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tdr", RunRawAndReadOnlyAsync, Ct);
        Assert.Equal(real, ours);
        Assert.Contains("checkpoint for disk vdb unsupported for storage type raw\n", real, StringComparison.Ordinal);
    }

    private static async Task<(string Compared, string Offline)> RunCheckpointsAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        var images = Path.Combine(directory, "ck");
        var (xml, vda, vdb) = await CreateDomainAsync(images);
        string File(string name) => Path.Combine(images, name);
        async Task<string> WriteAsync(string name, string text)
        {
            await System.IO.File.WriteAllTextAsync(File(name), text, Ct);
            return File(name);
        }

        // A bitmap the image already has when the domain is defined (qemu-img bitmap --add).
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", vda, "clash");
        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("start", "ck");

        // Creation from documents that libvirt refuses.
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("unknown.xml", "<domaincheckpoint><name>e1</name><disks><disk name='vdz'/></disks></domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("twice.xml", "<domaincheckpoint><name>e2</name><disks><disk name='vda'/><disk name='vda' checkpoint='no'/></disks></domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("allno.xml", "<domaincheckpoint><name>e3</name><disks><disk name='vda' checkpoint='no'/><disk name='vdb' checkpoint='no'/></disks></domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("other.xml", "<domaincheckpoint><name>e4</name><disks><disk name='vda' checkpoint='bitmap' bitmap='other'/></disks></domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("clash.xml", "<domaincheckpoint><name>clash</name><disks><disk name='vda' checkpoint='bitmap' bitmap='clash'/></disks></domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create-as", "ck", "clash");
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("slash.xml", "<domaincheckpoint><name>a/b</name></domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("dot.xml", "<domaincheckpoint><name>.hidden</name></domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("empty.xml", "<domaincheckpoint><name></name></domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("element.xml", "<domaincheckpoint><name>e5</name><bogus/></domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("attribute.xml", "<domaincheckpoint><name>e6</name><disks><disk name='vda' colour='red'/></disks></domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("type.xml", "<domaincheckpoint><name>e7</name><disks><disk name='vda' checkpoint='external'/></disks></domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("malformed.xml", "<domaincheckpoint><name>e8</domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("root.xml", "<domainsnapshot><name>e9</name></domainsnapshot>"));
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("quiesce.xml", "<domaincheckpoint><name>e10</name></domaincheckpoint>"), "--quiesce");
        await virsh.RunAsync("checkpoint-list", "ck", "--name");

        // A description, a disk left out, then the same name again.
        var c1 = await WriteAsync("c1-new.xml", "<domaincheckpoint><name>c1</name><description>first one</description><disks><disk name='vda' checkpoint='bitmap' bitmap='c1'/></disks></domaincheckpoint>");
        await virsh.RunAsync("checkpoint-create", "ck", c1);
        await virsh.RunAsync("checkpoint-dumpxml", "ck", "c1", "--no-domain");
        await virsh.RunAsync("checkpoint-create", "ck", c1);
        await virsh.RunAsync("checkpoint-create-as", "ck", "c1");
        await virsh.RunAsync("checkpoint-create-as", "ck", "c2");
        await virsh.RunAsync("checkpoint-create-as", "ck", "c3");

        // Redefinition from checkpoint-dumpxml's output after the metadata went.
        foreach (var name in new[] { "c1", "c2", "c3" })
        {
            var dumped = await Peer.RunCheckedAsync("virsh", "-c", uri, "checkpoint-dumpxml", "ck", name);
            await WriteAsync(name + ".xml", dumped);
        }

        await virsh.RunAsync("checkpoint-delete", "ck", "c1", "--children", "--metadata");
        await virsh.RunAsync("checkpoint-list", "ck", "--name");
        await virsh.RunAsync("checkpoint-create", "ck", File("c2.xml"), "--redefine");
        await virsh.RunAsync("checkpoint-create", "ck", File("c1.xml"), "--redefine");
        await virsh.RunAsync("checkpoint-create", "ck", File("c3.xml"), "--redefine");
        await virsh.RunAsync("checkpoint-create", "ck", File("c2.xml"), "--redefine");
        await virsh.RunAsync("checkpoint-list", "ck", "--tree");
        await virsh.RunAsync("checkpoint-info", "ck", "c2");
        await virsh.RunAsync("checkpoint-dumpxml", "ck", "c1", "--no-domain");

        // Redefining an existing name updates it; a domain with another UUID is refused, a
        // domain otherwise different is not looked at.
        var c2 = await System.IO.File.ReadAllTextAsync(File("c2.xml"), Ct);
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("c2-described.xml", c2.Replace("<name>c2</name>", "<name>c2</name>\n  <description>second</description>", StringComparison.Ordinal)), "--redefine");
        await virsh.RunAsync("checkpoint-dumpxml", "ck", "c2", "--no-domain");
        var uuid = System.Text.RegularExpressions.Regex.Match(c2, "<uuid>([^<]+)</uuid>").Groups[1].Value;
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("c2-uuid.xml", c2.Replace(uuid, "00000000-0000-0000-0000-000000000001", StringComparison.Ordinal)), "--redefine");
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("c2-renamed.xml", c2.Replace("<name>ck</name>", "<name>other</name>", StringComparison.Ordinal)), "--redefine");
        await virsh.RunAsync("checkpoint-create", "ck", await WriteAsync("c2-own.xml", c2.Replace("<name>c1</name>", "<name>c2</name>", StringComparison.Ordinal)), "--redefine");
        await virsh.RunAsync("checkpoint-create", "ck", File("c2.xml"), "--redefine-validate");
        await virsh.RunAsync("checkpoint-create", "ck", File("c3.xml"), "--redefine", "--redefine-validate");
        await virsh.RunAsync("checkpoint-create-as", "ck", "c4");
        await virsh.RunAsync("checkpoint-parent", "ck", "c4");

        // Bitmaps gone or left IN_USE while the domain was off.
        await virsh.RunAsync("destroy", "ck");
        await virsh.RunAsync("checkpoint-create", "ck", File("c3.xml"), "--redefine", "--redefine-validate");
        await virsh.RunAsync("checkpoint-dumpxml", "ck", "c3", "--no-domain", "--size");
        await Peer.RunCheckedAsync("qemu-img", "bitmap", "--remove", vda, "c3");
        await Peer.RunAsync("qemu-io", ["-f", "qcow2", "-c", "write 0 64k", "-c", "abort", vdb]);
        await virsh.RunAsync("start", "ck");
        await virsh.RunAsync("checkpoint-create", "ck", File("c3.xml"), "--redefine", "--redefine-validate");
        await virsh.RunAsync("checkpoint-create", "ck", File("c2.xml"), "--redefine", "--redefine-validate");
        await virsh.RunAsync("checkpoint-create", "ck", File("c1.xml"), "--redefine", "--redefine-validate");
        await virsh.RunAsync("checkpoint-dumpxml", "ck", "c2", "--no-domain", "--size");
        foreach (var (from, disk) in new[] { ("c3", "vda"), ("c2", "vdb") })
        {
            var backup = await WriteAsync($"inc-{from}.xml", $"<domainbackup><incremental>{from}</incremental><disks><disk name='{disk}' type='file'><target file='{File($"inc-{from}.qcow2")}'/><driver type='qcow2'/></disk></disks></domainbackup>");
            await virsh.RunAsync("backup-begin", "ck", backup);
        }

        await virsh.RunAsync("domjobinfo", "ck");

        // Deletion: a bitmap gone from its image, children only, the current checkpoint,
        // metadata only.
        await virsh.RunAsync("checkpoint-delete", "ck", "c3");
        await virsh.RunAsync("checkpoint-list", "ck", "--tree");
        await virsh.RunAsync("checkpoint-delete", "ck", "c3", "--metadata");
        await virsh.RunAsync("checkpoint-delete", "ck", "c1", "--children-only");
        await virsh.RunAsync("checkpoint-list", "ck", "--tree");
        await virsh.RunAsync("checkpoint-create-as", "ck", "c5");
        await virsh.RunAsync("checkpoint-parent", "ck", "c5");
        await virsh.RunAsync("checkpoint-create-as", "ck", "c6");
        await virsh.RunAsync("checkpoint-delete", "ck", "c6");
        await virsh.RunAsync("checkpoint-create-as", "ck", "c7");
        await virsh.RunAsync("checkpoint-parent", "ck", "c7");
        await virsh.RunAsync("checkpoint-delete", "ck", "c5", "--metadata");
        await virsh.RunAsync("checkpoint-parent", "ck", "c7");
        await virsh.RunAsync("checkpoint-delete", "ck", "c1", "--children-only", "--children");
        await virsh.RunAsync("checkpoint-delete", "ck", "c1");
        await virsh.RunAsync("checkpoint-parent", "ck", "c7");
        await virsh.RunAsync("checkpoint-info", "ck", "c7");
        var flags = await FlagsAsync(uri);
        await virsh.RunAsync("destroy", "ck");

        // Shut off: metadata-only deletion and redefinition are the same on both.
        await virsh.RunAsync("checkpoint-delete", "ck", "c7", "--metadata");
        await virsh.RunAsync("checkpoint-create", "ck", File("c1.xml"), "--redefine");
        await virsh.RunAsync("checkpoint-create", "ck", File("c1.xml"), "--redefine", "--redefine-validate");
        await virsh.RunAsync("checkpoint-dumpxml", "ck", "c1", "--no-domain", "--size");
        await virsh.RunAsync("checkpoint-list", "ck", "--name");
        var bitmaps = $"vda {await ImageBitmapList.DescribeAsync(vda)}\nvdb {await ImageBitmapList.DescribeAsync(vdb)}\n";

        // Where the two differ on purpose (see the test).
        var offline = new VirshTranscript(uri);
        await offline.RunAsync("checkpoint-create-as", "ck", "off1");
        var offlineBitmaps = $"vda {await ImageBitmapList.DescribeAsync(vda)}\n";
        await offline.RunAsync("checkpoint-delete", "ck", "off1");
        await offline.RunAsync("checkpoint-delete", "ck", "e3");
        await offline.RunAsync("checkpoint-list", "ck", "--name");
        await virsh.RunAsync("undefine", "ck", "--checkpoints-metadata");
        var offlineText = offline.Mask(directory);
        var split = offlineText.IndexOf("$ virsh checkpoint-delete", StringComparison.Ordinal);
        return (
            VirshTranscript.MaskSchemaDetails(ParserDetails().Replace(virsh.Mask(directory), "error: ${source}: PARSER DETAILS\n")) + flags + bitmaps,
            offlineText[..split] + offlineBitmaps + offlineText[split..]);
    }

    /// <summary>
    /// An unknown flag bit on each checkpoint call, made with libvirt-python: the error's code,
    /// domain and message (virCheckFlags names the function that checks).
    /// </summary>
    private static async Task<string> FlagsAsync(string uri)
    {
        var script = """
            import sys, libvirt
            libvirt.registerErrorHandler(lambda ctx, err: None, None)
            conn = libvirt.open(sys.argv[1])
            dom = conn.lookupByName('ck')
            chk = dom.checkpointLookupByName('c7')
            calls = [
                ('create', lambda: dom.checkpointCreateXML('<domaincheckpoint><name>f1</name></domaincheckpoint>', 0x80)),
                ('lookup', lambda: dom.checkpointLookupByName('c7', 0x80)),
                ('dumpxml', lambda: chk.getXMLDesc(0x80)),
                ('parent', lambda: chk.getParent(0x80)),
                ('list', lambda: dom.listAllCheckpoints(0x80)),
                ('children', lambda: chk.listAllChildren(0x80)),
                ('delete', lambda: chk.delete(0x80)),
            ]
            for name, call in calls:
                try:
                    call()
                    print('flags', name, 'accepted')
                except libvirt.libvirtError as e:
                    print('flags', name, e.get_error_code(), e.get_error_domain(), e.get_error_message())
            """;
        var result = await Peer.RunAsync("/usr/bin/python3", ["-c", script, uri], timeout: TimeSpan.FromMinutes(1));
        Assert.True(result.ExitCode == 0, result.Stderr);
        return result.Stdout;
    }

    private static async Task<string> RunRawAndReadOnlyAsync(string uri, string directory)
    {
        var virsh = new VirshTranscript(uri);
        var images = Path.Combine(directory, "cr");
        Directory.CreateDirectory(images);
        var disks = new List<LibvirtdDisk>
        {
            new("vda", Path.Combine(images, "vda.qcow2")),
            new("vdb", Path.Combine(images, "vdb.raw"), Format: "raw"),
            new("vdc", Path.Combine(images, "vdc.qcow2"), ReadOnly: true),
        };
        foreach (var disk in disks)
        {
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", disk.Format, disk.Image, "16M");
        }

        var xml = Path.Combine(images, "cr.xml");
        await File.WriteAllTextAsync(xml, new LibvirtdDomain("cr", disks).Xml(), Ct);
        async Task<string> WriteAsync(string name, string text)
        {
            await File.WriteAllTextAsync(Path.Combine(images, name), text, Ct);
            return Path.Combine(images, name);
        }

        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("start", "cr");
        await virsh.RunAsync("checkpoint-create-as", "cr", "r1");
        await virsh.RunAsync("checkpoint-create", "cr", await WriteAsync("raw.xml", "<domaincheckpoint><name>r2</name><disks><disk name='vda'/><disk name='vdb' checkpoint='bitmap'/></disks></domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create", "cr", await WriteAsync("ro.xml", "<domaincheckpoint><name>r3</name><disks><disk name='vdc' checkpoint='bitmap'/></disks></domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create", "cr", await WriteAsync("ro-no.xml", "<domaincheckpoint><name>r4</name><disks><disk name='vdc' checkpoint='no'/><disk name='vda'/></disks></domaincheckpoint>"));
        await virsh.RunAsync("checkpoint-create-as", "cr", "r5", "--diskspec", "vdb,checkpoint=no");
        await virsh.RunAsync("checkpoint-dumpxml", "cr", "r4", "--no-domain");
        await virsh.RunAsync("checkpoint-dumpxml", "cr", "r5", "--no-domain");
        await virsh.RunAsync("destroy", "cr");
        var bitmaps = string.Concat(await Task.WhenAll(disks.Where(d => d.Format == "qcow2").Select(async d => $"{d.Target} {await ImageBitmapList.DescribeAsync(d.Image)}\n")));
        await virsh.RunAsync("undefine", "cr", "--checkpoints-metadata");
        return virsh.Mask(directory) + bitmaps;
    }

    private static async Task<(string Xml, string Vda, string Vdb)> CreateDomainAsync(string images)
    {
        Directory.CreateDirectory(images);
        var disks = new List<LibvirtdDisk>();
        foreach (var target in new[] { "vda", "vdb" })
        {
            var image = Path.Combine(images, target + ".qcow2");
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "16M");
            disks.Add(new LibvirtdDisk(target, image));
        }

        var xml = Path.Combine(images, "ck.xml");
        await File.WriteAllTextAsync(xml, new LibvirtdDomain("ck", disks).Xml(), Ct);
        return (xml, disks[0].Image, disks[1].Image);
    }

    // A document that is not well-formed: libvirt passes on libxml2's parser message, with the
    // line and a caret, as XML_DETAIL ("(domain_checkpoint):1: Opening and ending tag mismatch:
    // ..."); Tidemark's parser words it its own way, as XML_ERROR "failed to parse xml document
    // '(domain_checkpoint)': line 1, column 29: ...". Only that the document was refused, by
    // which source name, is compared.
    [System.Text.RegularExpressions.GeneratedRegex(@"error: (?:XML error: failed to parse xml document ')?(?<source>\(domain_checkpoint\))(?:'|:\d+):.*\n(?:(?!\[exit ).*\n)*")]
    private static partial System.Text.RegularExpressions.Regex ParserDetails();
}
