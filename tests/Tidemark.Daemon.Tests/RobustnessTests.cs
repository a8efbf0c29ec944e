using System.Diagnostics;
using System.Net.Sockets;
using Tidemark.Daemon.Tests.Support;
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
}
