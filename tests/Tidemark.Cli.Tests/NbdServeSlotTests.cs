using System.Diagnostics;
using System.Net.Sockets;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>
/// The reproducer of idle connections locking everyone out, run against <c>tidemark nbd serve</c>
/// and qemu-nbd side by side: four unix-socket connections that send nothing take every slot of
/// <c>-e 4</c>, and nbdinfo, queued behind them, is served once their handshake time is up.
/// </summary>
public sealed class NbdServeSlotTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("tidemark")]
    [InlineData("qemu-nbd")]
    public async Task SilentConnections_FillingEverySlot_DelayButDoNotRefuseTheNextClient(string server)
    {
        using var dir = new TempDirectory("cli-nbd-slots");
        var image = dir.File("disk.raw");
        await File.WriteAllBytesAsync(image, new byte[1 << 20], Token);
        var socket = dir.File("server.sock");
        string[] args = ["-r", "-t", "-e", "4", "-f", "raw", "-x", "vda", "-k", socket, image];
        CliProcess? tidemark = null;
        CliRun? tidemarkRun = null;
        Process? qemu = null;
        if (server == "tidemark")
        {
            tidemark = await CliProcess.StartAsync(["nbd", "serve", .. args]);
        }
        else
        {
            qemu = Process.Start(new ProcessStartInfo(Peer.Require("qemu-nbd"), args) { UseShellExecute = false, RedirectStandardError = true })!;
        }

        var silent = new List<Socket>();
        try
        {
            await UnixSocketListener.WaitAsync(socket, cancellationToken: TestContext.Current.CancellationToken);
            for (var i = 0; i < 4; i++)
            {
                silent.Add(await ConnectAsync(socket));
            }

            var nbdinfo = await Peer.RunAsync("nbdinfo", ["--size", $"nbd+unix:///vda?socket={socket}"], timeout: TimeSpan.FromSeconds(60));

            Assert.Equal((0, "1048576\n"), (nbdinfo.ExitCode, nbdinfo.Stdout));
        }
        finally
        {
            silent.ForEach(s => s.Dispose());
            if (tidemark is not null)
            {
                tidemarkRun = await tidemark.StopAsync();
                await tidemark.DisposeAsync();
            }

            if (qemu is not null)
            {
                qemu.Kill(entireProcessTree: true);
                await qemu.WaitForExitAsync(Token);
                qemu.Dispose();
            }
        }

        if (tidemarkRun is not null)
        {
            Assert.Equal(0, tidemarkRun.ExitCode);
        }
    }

    private static async Task<Socket> ConnectAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), Token);
        return socket;
    }
}
