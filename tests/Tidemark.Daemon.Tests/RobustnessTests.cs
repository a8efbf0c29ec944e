using System.Diagnostics;
using System.Net.Sockets;
using Tidemark.Daemon.Tests.Support;
using Tidemark.Remote.Client;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests;

/// <summary>
/// Clients that die half-way and bytes that are not libvirt's protocol cost their own
/// connection only: the daemon keeps serving everyone else, and a running domain keeps its disks.
/// </summary>
public sealed class RobustnessTests
{
    private static CancellationToken Ct => TestDaemon.Ct;

    [Fact]
    public async Task KilledClientsAndGarbage_OtherClientsAreServed()
    {
        await using var test = await TestDaemon.StartAsync();
        var image = await test.CreateImageAsync("r1", "vda");
        var xml = test.Directory.File("r1.xml");
        await File.WriteAllTextAsync(xml, TestDaemon.DomainXml("r1", ("vda", image)), Ct);
        await Virsh.RunOkAsync(test, "define", xml);
        await Virsh.RunOkAsync(test, "start", "r1");

        // A call cut off in its middle: the length says 64 bytes, 12 arrive, the peer resets.
        using (var cut = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            await cut.ConnectAsync(new UnixDomainSocketEndPoint(test.Daemon.SocketPath), Ct);
            await cut.SendAsync(new byte[] { 0, 0, 0, 64, 0x20, 0x00, 0x80, 0x86, 0, 0, 0, 1 }, Ct);
            cut.LingerState = new LingerOption(true, 0);
        }

        // Garbage: a length beyond the cap, then text.
        using (var garbage = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            await garbage.ConnectAsync(new UnixDomainSocketEndPoint(test.Daemon.SocketPath), Ct);
            await garbage.SendAsync("\xff\xff\xff\xffGET / HTTP/1.1\r\n\r\n"u8.ToArray(), Ct);
            var buffer = new byte[64];
            var read = await garbage.ReceiveAsync(buffer, Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(30), Ct);
            Assert.Equal(0, read);
        }

        // A client killed while it waits for events (its callbacks stay registered until the connection ends).
        using (var events = Process.Start(new ProcessStartInfo(Peer.Require("virsh"), ["-c", test.Uri, "event", "--all", "--loop"]) { RedirectStandardOutput = true, RedirectStandardError = true })!)
        {
            await Task.Delay(TimeSpan.FromSeconds(1), Ct);
            events.Kill();
            await events.WaitForExitAsync(Ct);
        }

        Assert.Equal("running\n\n", await Virsh.RunOkAsync(test, "domstate", "r1"));
        await test.GuestWriteAsync("r1", "vda", "write -P 0x61 0 64k");
        Assert.Equal("Domain checkpoint k1 created\n", await Virsh.RunOkAsync(test, "checkpoint-create-as", "r1", "k1"));
        Assert.Equal("Domain 'r1' destroyed\n\n", await Virsh.RunOkAsync(test, "destroy", "r1"));
    }

    [Fact]
    public async Task HundredConcurrentClients_CheckpointAndListCalls_WhileAPullBackupRuns()
    {
        await using var test = await TestDaemon.StartAsync();
        var image = await test.CreateImageAsync("r2", "vda");
        var xml = test.Directory.File("r2.xml");
        await File.WriteAllTextAsync(xml, TestDaemon.DomainXml("r2", ("vda", image)), Ct);
        await Virsh.RunOkAsync(test, "define", xml);
        await Virsh.RunOkAsync(test, "start", "r2");
        await test.GuestWriteAsync("r2", "vda", "write -P 0x61 0 1M");

        await using var owner = await LibvirtClient.ConnectAsync(test.Uri, cancellationToken: Ct);
        var domain = await owner.LookupDomainByNameAsync("r2", Ct);
        var socket = test.Directory.File("pull.sock");
        var backup = $"<domainbackup mode='pull'><server transport='unix' socket='{socket}'/><disks><disk name='vda' type='file'><scratch file='{test.Directory.File("scratch.qcow2")}'/></disk></disks></domainbackup>";
        await owner.BeginBackupAsync(domain, backup, "<domaincheckpoint><name>b1</name></domaincheckpoint>", 0, Ct);

        // 100 connections at once, each listing, looking up and reading checkpoints and
        // domains, and creating a checkpoint of its own, while the job's export is open.
        var clients = Enumerable.Range(0, 100).Select(async i =>
        {
            await using var client = await LibvirtClient.ConnectAsync(test.Uri, cancellationToken: Ct);
            var d = await client.LookupDomainByNameAsync("r2", Ct);
            var all = await client.ListAllCheckpointsAsync(d, 0, Ct);
            Assert.Contains(all, c => c.Name == "b1");
            var b1 = await client.LookupCheckpointByNameAsync(d, "b1", 0, Ct);
            Assert.Contains("<name>b1</name>", await client.GetCheckpointXmlAsync(b1, 0, Ct), StringComparison.Ordinal);
            Assert.Contains(await client.ListAllDomainsAsync(0, Ct), x => x.Name == "r2");
            var own = await client.CreateCheckpointAsync(d, $"<domaincheckpoint><name>k{i}</name></domaincheckpoint>", 0, Ct);
            Assert.Equal($"k{i}", own.Name);
            var parent = await client.GetCheckpointParentAsync(own, 0, Ct);
            Assert.True(parent.Name == "b1" || parent.Name.StartsWith('k'), parent.Name);
        }).ToList();
        await Task.WhenAll(clients);

        // Every checkpoint is there, the job still runs and its export still answers.
        var names = (await owner.ListAllCheckpointsAsync(domain, 0, Ct)).Select(c => c.Name).ToHashSet();
        Assert.Equal(101, names.Count);
        Assert.Contains("Job type:         Unbounded", await Virsh.RunOkAsync(test, "domjobinfo", "r2"), StringComparison.Ordinal);
        var info = await Peer.RunCheckedAsync("nbdinfo", "--map", $"nbd+unix:///vda?socket={socket}");
        Assert.Contains("data", info, StringComparison.Ordinal);
        await owner.AbortJobAsync(domain, 0, Ct);
        await test.WaitForJobEndAsync("r2");
        Assert.Equal("Domain 'r2' destroyed\n\n", await Virsh.RunOkAsync(test, "destroy", "r2"));
    }
}
