using System.Text.RegularExpressions;
using Tidemark.Engine.Checkpoints;
using Tidemark.Engine.Domains;
using Tidemark.Engine.Tests.Support;
using Tidemark.Formats.Checkpoints;
using Tidemark.Formats.Domains;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// A host closed with <see cref="DomainHost.CloseKeepingDomainsAsync"/> leaves its running
/// domains to the next one, which starts them again as they were (libvirtd's restart, which QEMU
/// outlives): a guest with QEMU's <c>reconnect-delay</c> rides it out, and the checkpoints'
/// bitmaps track its writes on both sides of it.
/// </summary>
public sealed class ReconnectTests
{
    private const long Size = 8 << 20;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GuestWithReconnectDelay_RidesOutTheRestart_AndTheBitmapTracksBothSides()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("g", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        var id = domain.Id;
        var socket = domain.Running!.SocketPath;
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);

        await using var guest = QemuIoSession.OpenUnix(socket, "vda", reconnectDelay: 60);
        await guest.RunAsync("write -P 0xaa 0 64k", "wrote 65536/65536 bytes at offset 0");

        await test.Host.CloseKeepingDomainsAsync();
        Assert.False(File.Exists(socket), "the closed host still listens");
        Assert.True(File.Exists(Path.Combine(test.StateRoot, "run", "g.xml")), "no status record");

        // Sent while no host serves the disk: QEMU holds it until the reconnection.
        await guest.SendAsync("write -P 0xbb 1M 64k");
        await Task.Delay(500, Ct);

        await test.ReopenAfterCrashAsync();
        domain = test.Host.LookupByName("g");
        Assert.Equal(DomainState.Running, domain.State);
        Assert.Equal(id, domain.Id);
        Assert.Equal(socket, domain.Running!.SocketPath);
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "run", "g.xml")), "the status record outlived the reconnection");

        await guest.WaitForReplyAsync("wrote 65536/65536 bytes at offset 1048576");
        await guest.RunAsync("read -P 0xaa 0 64k", "read 65536/65536 bytes at offset 0");
        await guest.RunAsync("read -P 0xbb 1M 64k", "read 65536/65536 bytes at offset 1048576");
        await guest.RunAsync("write -P 0xcc 2M 64k", "wrote 65536/65536 bytes at offset 2097152");
        await guest.QuitAsync();

        // The bitmap was stored at the hand-over and goes on recording: all three writes, and
        // consistent (validation reads it from the image).
        Assert.Equal("c1", domain.Checkpoints.CurrentName);
        Assert.Contains("bitmap='c1' size='196608'", await domain.Checkpoints.GetXmlAsync("c1", CheckpointFormatFlags.Size | CheckpointFormatFlags.NoDomain, Ct), StringComparison.Ordinal);
        await domain.Checkpoints.CreateAsync(await domain.Checkpoints.GetXmlAsync("c1", cancellationToken: Ct), CheckpointCreateFlags.Redefine | CheckpointCreateFlags.RedefineValidate, Ct);

        // A new start takes the next id after the one kept.
        await domain.DestroyAsync(Ct);
        await Peer.RunCheckedAsync("qemu-img", "check", test.ImagePath("g", new TestDisk("vda")));
        await domain.StartAsync(Ct);
        Assert.Equal(id + 1, domain.Id);
    }

    [Fact]
    public async Task TransientPausedOnTcp_ComesBackAsItWas_WithItsCheckpoints()
    {
        await using var test = await TestHost.CreateAsync();
        var image = test.ImagePath("t", new TestDisk("vda"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, Size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var domain = await test.Host.CreateAsync(DomainParser.Parse(test.DomainXml("t", new TestDisk("vda")), cancellationToken: Ct), DomainStartFlags.GuestTcp, Ct);
        await domain.Checkpoints.CreateAsync("<domaincheckpoint><name>k1</name></domaincheckpoint>", cancellationToken: Ct);
        Assert.True(await domain.SuspendAsync(Ct));
        var port = domain.Running!.TcpEndPoint!.Port;
        var id = domain.Id;

        await test.Host.CloseKeepingDomainsAsync();
        await test.ReopenAfterCrashAsync();

        domain = test.Host.LookupByName("t");
        Assert.False(domain.IsPersistent);
        Assert.Equal(DomainState.Paused, domain.State);
        Assert.Equal(id, domain.Id);
        Assert.Equal(port, domain.Running!.TcpEndPoint!.Port);
        Assert.Equal(["k1"], await domain.Checkpoints.ListAsync(CheckpointListFlags.None, Ct));

        // Resumed, its guest writes over TCP; at its stop it disappears with its metadata.
        await domain.ResumeAsync(Ct);
        var written = await Peer.RunAsync("qemu-io", ["-f", "raw", "-c", "write -P 0x61 0 64k", "-c", "flush", $"nbd://127.0.0.1:{port}/vda"]);
        written.EnsureSuccess();
        Assert.Contains("bitmap='k1' size='65536'", await domain.Checkpoints.GetXmlAsync("k1", CheckpointFormatFlags.Size | CheckpointFormatFlags.NoDomain, Ct), StringComparison.Ordinal);
        await domain.DestroyAsync(Ct);
        Assert.Empty(test.Host.ListDomains());
        Assert.False(Directory.Exists(Path.Combine(test.StateRoot, "checkpoint", "t")), "the transient domain's checkpoint metadata outlived it");
    }

    [Fact]
    public async Task GuestTcpPortTakenMeanwhile_TheDisksAreServedOnAnother()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("p", Size, new TestDisk("vda"));
        await domain.StartAsync(DomainStartFlags.GuestTcp, Ct);
        var port = domain.Running!.TcpEndPoint!.Port;
        await test.Host.CloseKeepingDomainsAsync();

        using var squatter = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, port);
        squatter.Start();
        await test.ReopenAfterCrashAsync();

        domain = test.Host.LookupByName("p");
        Assert.Equal(DomainState.Running, domain.State);
        Assert.NotEqual(port, domain.Running!.TcpEndPoint!.Port);
        Assert.True(File.Exists(domain.Running.SocketPath), "the unix socket is not served again");
        await Guest.RunAsync(domain.Running.SocketPath, "vda", "write -P 0x62 0 4k");
    }

    [Fact]
    public async Task NodeCounter_GoesOnAcrossTheRestart()
    {
        // libvirtd keeps its node counter in the status file (<nodename index='N'/>): a store
        // begun after its restart is numbered after those begun before, never again from the
        // disks' count.
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("n", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        async Task<string> PullIndexAsync(string socket)
        {
            var job = await domain.BeginBackupAsync($"<domainbackup mode='pull'><server transport='unix' socket='{test.Directory.File(socket)}'/></domainbackup>", null, cancellationToken: Ct);
            var index = Regex.Match(domain.GetBackupXml(), "index='([0-9]+)'").Groups[1].Value;
            domain.AbortBackup();
            await job.Completion;
            return index;
        }

        Assert.Equal("2", await PullIndexAsync("p1.sock"));
        Assert.Equal("3", await PullIndexAsync("p2.sock"));
        await test.Host.CloseKeepingDomainsAsync();
        Assert.Contains("<nodename index=\"3\" />", await File.ReadAllTextAsync(Path.Combine(test.StateRoot, "run", "n.xml"), Ct), StringComparison.Ordinal);

        await test.ReopenAfterCrashAsync();
        domain = test.Host.LookupByName("n");
        Assert.Equal("4", await PullIndexAsync("p3.sock"));

        // A new start numbers from the disks again.
        await domain.DestroyAsync(Ct);
        await domain.StartAsync(Ct);
        Assert.Equal("2", await PullIndexAsync("p4.sock"));
    }

    [Fact]
    public async Task DisksNodeIndexes_GoOnAcrossTheRestart()
    {
        // libvirtd's status file keeps each disk's index: a disk hot-plugged before its restart
        // keeps the index it took then, which a start would have given another disk.
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("x", Size, new TestDisk("vda"));
        var vdb = test.Directory.File("vdb.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", vdb, "8M");
        await domain.StartAsync(Ct);
        await domain.AttachDeviceAsync($"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{vdb}'/><target dev='vdb' bus='virtio'/></disk>", DeviceModifyFlags.Live, Ct);
        Assert.Equal([1u], domain.DiskNodeIndexes["vda"]);
        Assert.Equal([2u], domain.DiskNodeIndexes["vdb"]);

        await test.Host.CloseKeepingDomainsAsync();
        Assert.Contains("<disk-nodes target=\"vdb\" indexes=\"2\" />", await File.ReadAllTextAsync(Path.Combine(test.StateRoot, "run", "x.xml"), Ct), StringComparison.Ordinal);
        await test.ReopenAfterCrashAsync();
        domain = test.Host.LookupByName("x");
        Assert.Equal([1u], domain.DiskNodeIndexes["vda"]);
        Assert.Equal([2u], domain.DiskNodeIndexes["vdb"]);

        // A new start numbers the disks it has from the last.
        await domain.DestroyAsync(Ct);
        await domain.StartAsync(Ct);
        Assert.Equal([1u], domain.DiskNodeIndexes["vda"]);
        Assert.False(domain.DiskNodeIndexes.ContainsKey("vdb"));
    }

    [Fact]
    public async Task RunningDefinition_StaysUntilTheStop_ThenThePersistentOneTakesOver()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("d", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        var running = DomainFormatter.Format(domain.Definition, DomainFormatFlags.Secure);

        // Redefined while running: the new definition waits for the next start.
        var next = test.DomainXml("d", new TestDisk("vda")).Replace("<memory unit='KiB'>1048576</memory>", "<memory unit='KiB'>2097152</memory>", StringComparison.Ordinal);
        await test.Host.DefineAsync(next, Ct);
        var inactive = domain.GetXml(DomainFormatFlags.Secure);
        Assert.NotEqual(running, inactive);

        await test.Host.CloseKeepingDomainsAsync();
        await test.ReopenAfterCrashAsync();
        domain = test.Host.LookupByName("d");
        Assert.True(domain.IsActive);
        Assert.Equal(running, DomainFormatter.Format(domain.Definition, DomainFormatFlags.Secure));
        Assert.Equal(inactive, domain.GetXml(DomainFormatFlags.Secure));

        await domain.DestroyAsync(Ct);
        Assert.Equal(inactive, DomainFormatter.Format(domain.Definition, DomainFormatFlags.Secure));
    }

    [Fact]
    public async Task DiskGoneMeanwhile_DomainStaysShutOff_TheOthersComeBack()
    {
        await using var test = await TestHost.CreateAsync();
        var gone = await test.DefineAsync("a", Size, new TestDisk("vda"));
        await gone.StartAsync(Ct);
        var transient = await test.Host.CreateAsync(DomainParser.Parse(await DomainWithUuidAsync(test, "b", "7795eb01-f6a4-8304-79aa-97f2502e193f"), cancellationToken: Ct), cancellationToken: Ct);
        await transient.Checkpoints.CreateAsync("<domaincheckpoint><name>k1</name></domaincheckpoint>", cancellationToken: Ct);
        var kept = await test.Host.DefineAsync(await DomainWithUuidAsync(test, "c", "8895eb01-f6a4-8304-79aa-97f2502e193f"), Ct);
        await kept.StartAsync(Ct);
        await test.Host.CloseKeepingDomainsAsync();

        // Meanwhile a's image is removed and b's is held by another process (QEMU's locks).
        File.Delete(test.ImagePath("a", new TestDisk("vda")));
        await using (await QemuIoHolder.HoldAsync(test.ImagePath("b", new TestDisk("vda"))))
        {
            await test.ReopenAfterCrashAsync();
        }

        var a = test.Host.LookupByName("a");
        Assert.Equal(DomainState.ShutOff, a.State);
        Assert.True(a.EndedAtReconnect);
        Assert.False(a.EndedByHostCrash);
        Assert.DoesNotContain(test.Host.ListDomains(), d => d.Name == "b");
        Assert.False(Directory.Exists(Path.Combine(test.StateRoot, "checkpoint", "b")), "the transient domain that could not come back left its checkpoint metadata");
        Assert.Equal(DomainState.Running, test.Host.LookupByName("c").State);
        Assert.Empty(Directory.GetFiles(Path.Combine(test.StateRoot, "run"), "*.xml"));

        // Started again, a's reason is gone.
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", test.ImagePath("a", new TestDisk("vda")), Size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await a.StartAsync(Ct);
        Assert.False(a.EndedAtReconnect);
    }

    /// <summary>The test domain's document under another name and UUID, its image made.</summary>
    private static async Task<string> DomainWithUuidAsync(TestHost test, string name, string uuid)
    {
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", test.ImagePath(name, new TestDisk("vda")), Size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return test.DomainXml(name, new TestDisk("vda")).Replace(TestHost.Uuid, uuid, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnreadableStatusRecord_IsRemoved_TheDomainStaysShutOff()
    {
        await using var test = await TestHost.CreateAsync();
        await test.DefineAsync("u", Size, new TestDisk("vda"));
        var run = Path.Combine(test.StateRoot, "run");
        Directory.CreateDirectory(run);
        string[] records =
        [
            "<domstatus state='running' handover='done'>",
            "<domstatus state='elsewhere' handover='done'><domain type='kvm' id='1'><name>u</name></domain></domstatus>",
            "<domstatus state='running' handover='done'><domain type='kvm'><name>u</name></domain></domstatus>",
            "<domstatus state='running' handover='done'><guest tcp-port='70000'/><domain type='kvm' id='1'><name>u</name></domain></domstatus>",
            "<domstatus state='running'><domain type='kvm' id='1'><name>u</name></domain></domstatus>",
        ];
        foreach (var record in records)
        {
            await File.WriteAllTextAsync(Path.Combine(run, "u.xml"), record, Ct);
            await test.ReopenAfterCrashAsync();
            Assert.Equal(DomainState.ShutOff, test.Host.LookupByName("u").State);
            Assert.False(File.Exists(Path.Combine(run, "u.xml")), record);
        }
    }

    [Fact]
    public async Task HandOverCutShort_IsACrash()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("s", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        var definition = domain.Definition;
        await test.Host.CloseKeepingDomainsAsync();
        var record = Path.Combine(test.StateRoot, "run", "s.xml");
        Assert.Contains("handover=\"done\"", await File.ReadAllTextAsync(record, Ct), StringComparison.Ordinal);

        // As the record reads when a kill comes before the images are flushed.
        await new State.DomainStatus(definition, 1, Paused: false, TcpPort: null, HandedOver: false).WriteAsync(record, Ct);
        await test.ReopenAfterCrashAsync();

        domain = test.Host.LookupByName("s");
        Assert.Equal(DomainState.ShutOff, domain.State);
        Assert.True(domain.EndedByHostCrash);
        Assert.False(File.Exists(record));
    }

    [Fact]
    public async Task KilledAfterTheReconnection_IsACrash_NotAnotherReconnection()
    {
        await using var test = await TestHost.CreateAsync();
        var domain = await test.DefineAsync("k", Size, new TestDisk("vda"));
        await domain.StartAsync(Ct);
        await test.Host.CloseKeepingDomainsAsync();
        await test.ReopenAfterCrashAsync();
        var killed = test.Host;
        Assert.True(killed.LookupByName("k").IsActive);

        // The host that took the domain over is "killed" in the middle of handing it over
        // again: its status record is written, its socket still there.
        var status = new State.DomainStatus(domain.Definition, 1, Paused: false, TcpPort: null, HandedOver: true);
        await status.WriteAsync(Path.Combine(test.StateRoot, "run", "k.xml"), Ct);

        await test.ReopenAfterCrashAsync();
        domain = test.Host.LookupByName("k");
        Assert.Equal(DomainState.ShutOff, domain.State);
        Assert.True(domain.EndedByHostCrash);
        Assert.False(domain.EndedAtReconnect);
        Assert.False(File.Exists(Path.Combine(test.StateRoot, "run", "k.xml")));
        await killed.DisposeAsync();
    }
}
