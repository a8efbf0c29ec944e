using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Fuzz;

/// <summary>
/// qcow2 image files: the input is written to a file and opened read-only (reads of a few
/// ranges, the extent map, <c>check</c>, the bitmap list), then a copy is opened read-write
/// for one bitmap add and remove. An image Tidemark refuses with <see cref="StorageException"/>
/// is a pass, wherever it is refused, closing included; any other exception is a finding.
/// </summary>
internal sealed class Qcow2ImageTarget : FuzzTarget, IDisposable
{
    // Reads and maps stop here so one execution stays small whatever virtual size the header
    // claims; the seeds are images of a few 512-byte clusters.
    private const long MaxBytesExamined = 256 << 10;

    private readonly string _directory = Directory.CreateTempSubdirectory("tidemark-fuzz-").FullName;

    public override void Run(byte[] input) => RunAsync(input).AsTask().GetAwaiter().GetResult();

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>One input end to end; also the body of the corpus replay tests.</summary>
    public static async ValueTask ExamineAsync(string directory, byte[] input, CancellationToken cancellationToken)
    {
        var path = Path.Combine(directory, "image.qcow2");
        var copy = Path.Combine(directory, "copy.qcow2");
        await File.WriteAllBytesAsync(path, input, cancellationToken).ConfigureAwait(false);
        await File.WriteAllBytesAsync(copy, input, cancellationToken).ConfigureAwait(false);
        try
        {
            await ReadAsync(path, cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException)
        {
        }

        try
        {
            await Qcow2Check.RunAsync(path, cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException)
        {
        }

        try
        {
            await using var image = await Qcow2Image.OpenAsync(copy, readOnly: false, cancellationToken).ConfigureAwait(false);
            await image.Bitmaps.AddAsync("fuzz", cancellationToken: cancellationToken).ConfigureAwait(false);
            await image.Bitmaps.RemoveAsync("fuzz", cancellationToken).ConfigureAwait(false);
        }
        catch (StorageException)
        {
        }
    }

    private static async ValueTask ReadAsync(string path, CancellationToken cancellationToken)
    {
        await using var image = await Qcow2Image.OpenAsync(path, readOnly: true, cancellationToken).ConfigureAwait(false);
        var length = Math.Min(image.VirtualSize, MaxBytesExamined);
        var buffer = new byte[Math.Min(length, 4096)];
        foreach (var offset in new[] { 0, (length - buffer.Length) / 2, length - buffer.Length })
        {
            await image.ReadAsync(offset, buffer, cancellationToken).ConfigureAwait(false);
        }

        _ = await image.GetExtentsAsync(0, length, cancellationToken).ConfigureAwait(false);
        if (length > 0)
        {
            // A range past the end is the caller's error (ArgumentOutOfRangeException), not the image's.
            _ = await image.GetHostOffsetAsync(0, cancellationToken).ConfigureAwait(false);
        }
        foreach (var bitmap in image.Bitmaps.Bitmaps)
        {
            _ = bitmap.Name;
        }
    }

    private async ValueTask RunAsync(byte[] input)
        => await ExamineAsync(_directory, input, CancellationToken.None).ConfigureAwait(false);
}
