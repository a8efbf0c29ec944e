using Tidemark.Cli.Commands.Image.Create;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Cli.Commands.Image.Convert;

/// <summary>Runs <c>image convert</c>.</summary>
internal sealed class ConvertCommand(CliConsole console)
{
    public async Task<int> RunAsync(string sourcePath, string? sourceFormat, string targetPath, string targetFormatName, bool compress, CacheMode cache, IReadOnlyList<string> options, CancellationToken cancellationToken)
    {
        var targetFormat = ImageArguments.ParseFormat(targetFormatName)!.Value;
        if (compress && targetFormat != ImageFormat.Qcow2)
        {
            throw new CliException("Compression is only supported for qcow2 targets (-O qcow2)");
        }

        if (Path.GetFullPath(sourcePath) == Path.GetFullPath(targetPath))
        {
            throw new CliException("The source and the target are the same file");
        }

        var source = await ImageArguments.OpenAsync(sourcePath, ImageArguments.ParseFormat(sourceFormat), readOnly: true, cancellationToken).ConfigureAwait(false);
        await using (source.ConfigureAwait(false))
        {
            var created = await new CreateCommand(new CliConsole(TextWriter.Null, console.Error)).RunAsync(
                new CreateSettings { Format = targetFormat.ToName(), Options = options, File = targetPath, Size = source.VirtualSize.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                cancellationToken).ConfigureAwait(false);
            if (created != 0)
            {
                return created;
            }

            var target = await ImageArguments.OpenAsync(targetPath, targetFormat, readOnly: false, cancellationToken).ConfigureAwait(false);
            // -t writeback fsyncs the target at the end: stream it to the disk meanwhile. The
            // default (unsafe, as qemu-img) leaves the data to the page cache and never waits for it.
            var writeBehind = cache == CacheMode.Writeback;
            switch (target)
            {
                case Qcow2Image q:
                    q.CacheMode = cache;
                    q.WriteBehind = writeBehind;
                    break;
                case RawImage r:
                    r.CacheMode = cache;
                    r.WriteBehind = writeBehind;
                    break;
            }

            await using (target.ConfigureAwait(false))
            {
                try
                {
                    await SparseCopy.CopyAsync(source, target, compress, cancellationToken).ConfigureAwait(false);
                    await target.FlushAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (StorageException e)
                {
                    throw new CliException($"error while converting {targetFormat.ToName()}: {e.Message}", e);
                }
            }
        }

        return 0;
    }
}
