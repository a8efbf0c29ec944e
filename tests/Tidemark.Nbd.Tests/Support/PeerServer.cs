using System.Diagnostics;
using Tidemark.Testing;

namespace Tidemark.Nbd.Tests.Support;

/// <summary>
/// A peer NBD server (qemu-nbd or nbdkit) run in the foreground on a unix socket or a loopback
/// port, killed when the test ends.
/// </summary>
public sealed class PeerServer : IAsyncDisposable
{
    private readonly Process _process;

    private PeerServer(Process process, string? socketPath, int port)
    {
        _process = process;
        SocketPath = socketPath;
        Port = port;
    }

    public string? SocketPath { get; }

    public int Port { get; }

    public string UnixUri(string export = "") => $"nbd+unix:///{export}?socket={SocketPath}";

    /// <summary>Starts qemu-nbd with <paramref name="arguments"/> on a new unix socket in <paramref name="dir"/>.</summary>
    public static Task<PeerServer> QemuNbdAsync(TempDirectory dir, params string[] arguments)
    {
        var socket = dir.File($"qemu-nbd-{Guid.NewGuid():N}.sock");
        return StartAsync("qemu-nbd", ["-k", socket, .. arguments], socket, 0);
    }

    /// <summary>Starts qemu-nbd on 127.0.0.1 with a free port.</summary>
    public static Task<PeerServer> QemuNbdTcpAsync(params string[] arguments)
    {
        var port = LoopbackPort.Free();
        return StartAsync("qemu-nbd", ["-b", "127.0.0.1", "-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture), .. arguments], null, port);
    }

    /// <summary>Starts nbdkit in the foreground with <paramref name="arguments"/> (plugin and parameters).</summary>
    public static Task<PeerServer> NbdkitAsync(TempDirectory dir, params string[] arguments)
    {
        var socket = dir.File($"nbdkit-{Guid.NewGuid():N}.sock");
        return StartAsync("nbdkit", ["-f", "-U", socket, .. arguments], socket, 0);
    }

    private static async Task<PeerServer> StartAsync(string program, string[] arguments, string? socket, int port)
    {
        var info = new ProcessStartInfo(Peer.Require(program))
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException($"cannot start {program}");
        var stderr = process.StandardError.ReadToEndAsync();
        _ = process.StandardOutput.ReadToEndAsync();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} exited {process.ExitCode}: {await stderr}");
            }

            if (socket is not null ? await UnixSocketOpenAsync(socket) : await PortOpenAsync(port))
            {
                return new PeerServer(process, socket, port);
            }

            if (DateTime.UtcNow > deadline)
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"{program} did not start listening");
            }

            await Task.Delay(50);
        }
    }

    // The socket file appears at bind(), before listen(): only a connection proves readiness.
    private static async Task<bool> UnixSocketOpenAsync(string path)
    {
        if (!File.Exists(path))
        {
            return false;
        }

        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return false;
        }
    }

    private static async Task<bool> PortOpenAsync(int port)
    {
        using var client = new System.Net.Sockets.TcpClient();
        try
        {
            await client.ConnectAsync(System.Net.IPAddress.Loopback, port);
            return true;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }
}
