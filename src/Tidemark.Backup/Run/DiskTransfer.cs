using System.IO.Hashing;
using System.Net.Sockets;
using Tidemark.Backup.Repository;
using Tidemark.Nbd.Client;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Backup.Run;

/// <summary>What one disk's copy from its pull export into a new chain file needs.</summary>
internal sealed record DiskTransferRequest
{
    public required string Disk { get; init; }

    public required string Socket { get; init; }

    public required BackupLevel Level { get; init; }

    /// <summary>Where the chain file ends up; it is written under <see cref="DurableFile.TempPath"/> first.</summary>
    public required string Target { get; init; }

    /// <summary>The previous chain file's name (same directory), for an incremental.</summary>
    public string? BackingFile { get; init; }

    public bool Compress { get; init; }

    public int Connections { get; init; } = 4;

    /// <summary>Called once with the bytes the copy will read, when the export's map is known.</summary>
    public Action<long>? Planned { get; init; }
}

/// <summary>What a disk's copy wrote.</summary>
internal sealed record DiskTransferResult(long VirtualSize, long DataBytes, IReadOnlyList<ExtentRecord> Extents);

/// <summary>
/// Copies one disk of a pull backup: maps the export, then several NBD connections read chunks
/// of it in parallel into a new qcow2 chain file (a full without backing file; an incremental
/// backed by the previous chain file, with zero clusters where the guest zeroed or trimmed).
/// The file is fsynced and renamed into place only once every chunk is in it.
/// </summary>
internal static class DiskTransfer
{
    /// <summary>Bytes per read: a multiple of every cluster size, under every server's maximum request.</summary>
    private const int ChunkSize = 4 << 20;

    public static async Task<DiskTransferResult> RunAsync(DiskTransferRequest request, IProgress<long>? progress, CancellationToken cancellationToken)
    {
        var dirtyContext = request.Level == BackupLevel.Incremental ? ExportMap.DirtyBitmapContext(request.Disk) : null;
        string[] contexts = dirtyContext is null ? [ExportMap.AllocationContext] : [ExportMap.AllocationContext, dirtyContext];
        var options = new NbdConnectOptions { EndPoint = new UnixDomainSocketEndPoint(request.Socket), ExportName = request.Disk, MetaContexts = contexts };
        var clients = new List<NbdClient>();
        var temp = DurableFile.TempPath(request.Target);
        try
        {
            clients.Add(await NbdClient.ConnectAsync(options, cancellationToken).ConfigureAwait(false));
            var first = clients[0];
            foreach (var context in contexts)
            {
                if (!first.MetaContexts.ContainsKey(context))
                {
                    throw new BackupException(BackupErrorReason.HostFailed, $"export '{request.Disk}' does not offer meta context '{context}'");
                }
            }

            var size = first.Size;
            Directory.CreateDirectory(Path.GetDirectoryName(request.Target)!);
            var image = await Qcow2Image.CreateAsync(temp, new Qcow2CreateOptions
            {
                Size = size,
                BackingFile = request.BackingFile,
                BackingFormat = request.BackingFile is null ? null : ImageFormat.Qcow2,
                Zstd = request.Compress,
            }, cancellationToken).ConfigureAwait(false);
            DiskTransferResult result;
            await using (image.ConfigureAwait(false))
            {
                // The file is fsynced before it is renamed into place: stream it to the disk meanwhile.
                image.WriteBehind = true;
                var map = await ExportMap.ReadAsync(first, dirtyContext, image.ClusterSize, cancellationToken).ConfigureAwait(false);
                var chunks = map.Data.SelectMany(r => r.Split(ChunkSize)).ToList();
                request.Planned?.Invoke(chunks.Sum(c => c.Length));
                for (var i = 1; i < Math.Min(request.Connections, Math.Max(1, chunks.Count)); i++)
                {
                    clients.Add(await NbdClient.ConnectAsync(options, cancellationToken).ConfigureAwait(false));
                }

                var records = new ExtentRecord[chunks.Count];
                var incremental = request.Level == BackupLevel.Incremental;
                var next = -1;
                using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                await Task.WhenAll(clients.Select(c => Task.Run(() => CopyChunksAsync(c, failed), failed.Token))).ConfigureAwait(false);

                foreach (var zero in map.Zero)
                {
                    await image.WriteZeroesAsync(zero.Start, zero.Length, WriteFlags.None, cancellationToken).ConfigureAwait(false);
                }

                await image.FlushAsync(cancellationToken).ConfigureAwait(false);
                var extents = records.Concat(map.Zero.Select(z => new ExtentRecord(z.Start, z.Length, ExtentContent.Zero))).OrderBy(e => e.Offset).ToList();
                result = new DiskTransferResult(size, extents.Where(e => e.Content == ExtentContent.Data).Sum(e => e.Length), extents);

                async Task CopyChunksAsync(NbdClient client, CancellationTokenSource failure)
                {
                    var buffer = new byte[ChunkSize];
                    try
                    {
                        for (var i = Interlocked.Increment(ref next); i < chunks.Count; i = Interlocked.Increment(ref next))
                        {
                            var chunk = chunks[i];
                            var data = buffer.AsMemory(0, (int)chunk.Length);
                            await client.ReadAsync(chunk.Start, data, Nbd.Protocol.NbdCommandFlags.None, failure.Token).ConfigureAwait(false);
                            if (!data.Span.ContainsAnyExcept((byte)0))
                            {
                                // A full skips allocated zeroes (the new file reads as zeroes);
                                // an incremental writes them as zero clusters over the chain.
                                if (incremental)
                                {
                                    await image.WriteZeroesAsync(chunk.Start, chunk.Length, WriteFlags.None, failure.Token).ConfigureAwait(false);
                                }

                                records[i] = new ExtentRecord(chunk.Start, chunk.Length, ExtentContent.Zero);
                            }
                            else
                            {
                                await WriteAsync(image, chunk.Start, data, request.Compress, failure.Token).ConfigureAwait(false);
                                records[i] = new ExtentRecord(chunk.Start, chunk.Length, ExtentContent.Data, Checksum(data.Span));
                            }

                            progress?.Report(chunk.Length);
                        }
                    }
                    catch
                    {
                        await failure.CancelAsync().ConfigureAwait(false);
                        throw;
                    }
                }
            }

            DurableFile.Commit(temp, request.Target);
            return result;
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>The checksum the manifest records for a data extent: XxHash64, 16 hex digits.</summary>
    public static string Checksum(ReadOnlySpan<byte> data) => XxHash64.HashToUInt64(data).ToString("x16", System.Globalization.CultureInfo.InvariantCulture);

    private static async Task WriteAsync(Qcow2Image image, long offset, ReadOnlyMemory<byte> data, bool compress, CancellationToken cancellationToken)
    {
        if (!compress)
        {
            await image.WriteAsync(offset, data, WriteFlags.None, cancellationToken).ConfigureAwait(false);
            return;
        }

        // Compressed clusters are written one whole cluster at a time, as qemu-img convert -c does;
        // chunks are cluster aligned (the last one may end with the image).
        var cluster = image.ClusterSize;
        for (var at = 0; at < data.Length; at += cluster)
        {
            var piece = data[at..Math.Min(data.Length, at + cluster)];
            if (piece.Span.ContainsAnyExcept((byte)0))
            {
                await image.WriteCompressedAsync(offset + at, piece, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await image.WriteZeroesAsync(offset + at, piece.Length, WriteFlags.None, cancellationToken).ConfigureAwait(false);
            }
        }
    }
}
