using System.Diagnostics;
using System.Net.Sockets;
using System.Text.Json;

namespace Tidemark.Testing;

/// <summary>One run of a <c>qemu:dirty-bitmap:NAME</c> map as nbdinfo reports it.</summary>
public readonly record struct DirtyRun(long Offset, long Length, bool Dirty)
{
    public long End => Offset + Length;
}

/// <summary>
/// A <c>qemu-nbd</c> export named <c>vda</c> on a unix socket. <see cref="StartAsync"/> serves
/// an image read-only with some bitmaps (<c>-B NAME</c>), read through
/// <c>nbdinfo --map=qemu:dirty-bitmap:NAME</c>: QEMU's own view of a bitmap's content.
/// <see cref="LaunchAsync"/> serves it as its arguments say. The server process is killed on dispose.
/// </summary>
public sealed class QemuNbdExport : IAsyncDisposable
{
    private readonly Process _server;
    private readonly string _socket;

    private QemuNbdExport(Process server, string socket)
    {
        _server = server;
        _socket = socket;
    }

    public static Task<QemuNbdExport> StartAsync(string image, string socket, params string[] bitmaps)
        => LaunchAsync(socket, ["-r", "-f", "qcow2", .. bitmaps.SelectMany(b => (string[])["-B", b]), image]);

    /// <summary>
    /// Starts <c>qemu-nbd -t -e 4 -x vda -k SOCKET</c> with <paramref name="arguments"/> (the
    /// format, cache and other options, then the image) and waits until it accepts connections.
    /// </summary>
    public static async Task<QemuNbdExport> LaunchAsync(string socket, IEnumerable<string> arguments)
    {
        var info = new ProcessStartInfo(Peer.Require("qemu-nbd"))
        {
            UseShellExecute = false,
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        foreach (var a in ((string[])["-t", "-e", "4", "-x", "vda", "-k", socket]).Concat(arguments))
        {
            info.ArgumentList.Add(a);
        }

        var server = Process.Start(info) ?? throw new InvalidOperationException("qemu-nbd did not start");
        var export = new QemuNbdExport(server, socket);
        var deadline = Stopwatch.StartNew();
        // The socket file appears at bind(), a moment before qemu-nbd listens: wait for a connection.
        while (!await AcceptsAsync(socket))
        {
            if (server.HasExited)
            {
                var error = await server.StandardError.ReadToEndAsync();
                await export.DisposeAsync();
                Assert.Fail($"qemu-nbd exited {server.ExitCode}: {error}");
            }

            if (deadline.Elapsed > TimeSpan.FromSeconds(30))
            {
                await export.DisposeAsync();
                Assert.Fail("qemu-nbd did not create its socket");
            }

            await Task.Delay(20);
        }

        return export;
    }

    public string Uri => $"nbd+unix:///vda?socket={_socket}";

    private static async Task<bool> AcceptsAsync(string socket)
    {
        if (!File.Exists(socket))
        {
            return false;
        }

        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await probe.ConnectAsync(new UnixDomainSocketEndPoint(socket));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>The bitmap's extents as QEMU serves them, adjacent runs of one state joined.</summary>
    public async Task<List<DirtyRun>> DirtyMapAsync(string bitmap)
    {
        var json = await Peer.RunCheckedAsync("nbdinfo", "--json", $"--map=qemu:dirty-bitmap:{bitmap}", Uri);
        var extents = JsonDocument.Parse(json).RootElement.EnumerateArray()
            .Select(e => new DirtyRun(e.GetProperty("offset").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("type").GetInt32() == 1));
        return Coalesce(extents);
    }

    /// <summary>A whole disk of <paramref name="size"/> bytes as runs: <paramref name="dirty"/> dirty, the rest clean, joined as <see cref="Coalesce"/> joins them.</summary>
    public static List<DirtyRun> Covering(long size, params (long Offset, long Length)[] dirty)
    {
        var all = new List<DirtyRun>();
        long at = 0;
        foreach (var (offset, length) in dirty.OrderBy(r => r.Offset))
        {
            if (offset > at)
            {
                all.Add(new DirtyRun(at, offset - at, false));
            }

            all.Add(new DirtyRun(offset, length, true));
            at = offset + length;
        }

        if (at < size)
        {
            all.Add(new DirtyRun(at, size - at, false));
        }

        return Coalesce(all);
    }

    /// <summary>Joins adjacent extents of the same state, so two producers that split runs differently compare equal.</summary>
    public static List<DirtyRun> Coalesce(IEnumerable<DirtyRun> extents)
    {
        var result = new List<DirtyRun>();
        foreach (var e in extents)
        {
            if (result.Count > 0 && result[^1].Dirty == e.Dirty && result[^1].End == e.Offset)
            {
                result[^1] = result[^1] with { Length = result[^1].Length + e.Length };
            }
            else
            {
                result.Add(e);
            }
        }

        return result;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_server.HasExited)
        {
            _server.Kill(entireProcessTree: true);
            await _server.WaitForExitAsync();
        }

        _server.Dispose();
    }
}
