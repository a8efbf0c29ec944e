using System.Globalization;
using Tidemark.Storage;

namespace Tidemark.Cli.Commands.Image.Compare;

/// <summary>
/// Runs <c>image compare</c>. Like qemu-img compare, images of different sizes compare equal
/// when the larger one reads as zeroes past the end of the smaller.
/// </summary>
internal sealed class CompareCommand(CliConsole console)
{
    private const int Different = 1;
    private const int Error = 2;
    private const int ChunkSize = 1 << 20;

    public async Task<int> RunAsync(string pathA, string? formatA, string pathB, string? formatB, CancellationToken cancellationToken)
    {
        IBlockImage a, b;
        try
        {
            a = await ImageArguments.OpenAsync(pathA, ImageArguments.ParseFormat(formatA), readOnly: true, cancellationToken).ConfigureAwait(false);
        }
        catch (CliException e)
        {
            throw new CliException(e.Message, e, Error);
        }

        await using (a.ConfigureAwait(false))
        {
            try
            {
                b = await ImageArguments.OpenAsync(pathB, ImageArguments.ParseFormat(formatB), readOnly: true, cancellationToken).ConfigureAwait(false);
            }
            catch (CliException e)
            {
                throw new CliException(e.Message, e, Error);
            }

            await using (b.ConfigureAwait(false))
            {
                long? mismatch;
                try
                {
                    mismatch = await FirstMismatchAsync(a, b, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is StorageException or IOException)
                {
                    // qemu-img compare: 2 on an error reading either image, never a crash.
                    throw new CliException($"Error while reading: {e.Message}", e, Error);
                }

                if (a.VirtualSize != b.VirtualSize)
                {
                    await console.Out.WriteLineAsync("Warning: Image size mismatch!").ConfigureAwait(false);
                }

                if (mismatch is { } at)
                {
                    await console.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"Content mismatch at offset {at}!")).ConfigureAwait(false);
                    return Different;
                }

                await console.Out.WriteLineAsync("Images are identical.").ConfigureAwait(false);
                return 0;
            }
        }
    }

    private static async Task<long?> FirstMismatchAsync(IBlockImage a, IBlockImage b, CancellationToken cancellationToken)
    {
        var size = Math.Max(a.VirtualSize, b.VirtualSize);
        var bufferA = new byte[ChunkSize];
        var bufferB = new byte[ChunkSize];
        for (long at = 0; at < size; at += ChunkSize)
        {
            var n = (int)Math.Min(ChunkSize, size - at);
            await ReadPaddedAsync(a, at, bufferA.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
            await ReadPaddedAsync(b, at, bufferB.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
            var same = bufferA.AsSpan(0, n).CommonPrefixLength(bufferB.AsSpan(0, n));
            if (same < n)
            {
                // qemu-img reports the start of the first differing 512-byte sector.
                return (at + same) & ~511L;
            }
        }

        return null;
    }

    private static async Task ReadPaddedAsync(IBlockImage image, long at, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var inside = (int)Math.Clamp(image.VirtualSize - at, 0, buffer.Length);
        if (inside > 0)
        {
            await image.ReadAsync(at, buffer[..inside], cancellationToken).ConfigureAwait(false);
        }

        buffer.Span[inside..].Clear();
    }
}
