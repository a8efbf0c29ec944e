using System.Net.Sockets;
using Tidemark.Nbd.Client;

namespace Tidemark.Cli.Commands.Tour;

/// <summary>
/// The tour's guest: Tidemark's NBD client on a running domain's disk export, where QEMU would
/// connect. Writes fill a range with one byte value; every write is flushed before the tour
/// goes on, as a guest's acknowledged, flushed write is what a checkpoint must capture.
/// </summary>
internal sealed class TourGuest : IAsyncDisposable
{
    private readonly NbdClient _client;

    private TourGuest(NbdClient client) => _client = client;

    public long Size => _client.Size;

    public static async Task<TourGuest> ConnectAsync(string socket, string export, CancellationToken cancellationToken) =>
        new(await NbdClient.ConnectAsync(new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(socket), ExportName = export }, cancellationToken).ConfigureAwait(false));

    /// <summary>Writes <paramref name="length"/> bytes of <paramref name="value"/> at <paramref name="offset"/> and flushes.</summary>
    public async Task WriteAsync(long offset, int length, byte value, CancellationToken cancellationToken)
    {
        var chunk = (int)Math.Min(length, _client.MaximumBlockSize);
        var data = new byte[chunk];
        Array.Fill(data, value);
        for (var done = 0; done < length; done += chunk)
        {
            var n = Math.Min(chunk, length - done);
            await _client.WriteAsync(offset + done, data.AsMemory(0, n), cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        await _client.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The whole disk as the guest reads it now.</summary>
    public Task<byte[]> ReadAllAsync(CancellationToken cancellationToken) => ReadAllAsync(_client, cancellationToken);

    public static async Task<byte[]> ReadAllAsync(NbdClient client, CancellationToken cancellationToken)
    {
        var disk = new byte[client.Size];
        var chunk = (int)Math.Min(client.MaximumBlockSize, 4 << 20);
        for (long offset = 0; offset < disk.Length; offset += chunk)
        {
            var n = (int)Math.Min(chunk, disk.Length - offset);
            await client.ReadAsync(offset, disk.AsMemory((int)offset, n), cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        return disk;
    }

    public async ValueTask DisposeAsync()
    {
        await _client.DisconnectAsync().ConfigureAwait(false);
        await _client.DisposeAsync().ConfigureAwait(false);
    }
}
