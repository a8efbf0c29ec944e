using System.Globalization;
using System.Text;
using System.Text.Json;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Cli.Commands.Image.Info;

/// <summary>Runs <c>image info</c>: qemu-img info's layout, human or JSON.</summary>
internal sealed class InfoCommand(CliConsole console)
{
    public async Task<int> RunAsync(string file, string? format, bool json, bool backingChain, CancellationToken cancellationToken)
    {
        var infos = new List<ImageInfo>();
        // qemu-img info opens the chain only for --backing-chain: a missing backing file is
        // then an error, otherwise the image describes itself.
        var parsed = ImageArguments.ParseFormat(format);
        var image = backingChain
            ? await ImageArguments.OpenAsync(file, parsed, readOnly: true, cancellationToken).ConfigureAwait(false)
            : await ImageArguments.OpenWithoutBackingAsync(file, parsed, cancellationToken).ConfigureAwait(false);
        await using (image.ConfigureAwait(false))
        {
            var current = image;
            var path = file;
            while (current is not null)
            {
                infos.Add(await ImageInfo.DescribeAsync(current, path, cancellationToken).ConfigureAwait(false));
                if (!backingChain || current is not Qcow2Image { Backing: not null } q)
                {
                    break;
                }

                path = ImageInfo.CombineBackingName(path, q.BackingFileName!);
                current = q.Backing;
            }
        }

        if (json)
        {
            await console.Out.WriteLineAsync(ToJson(infos, backingChain)).ConfigureAwait(false);
        }
        else
        {
            var text = new StringBuilder();
            for (var i = 0; i < infos.Count; i++)
            {
                if (i > 0)
                {
                    text.AppendLine();
                }

                AppendHuman(text, infos[i]);
            }

            await console.Out.WriteAsync(text.ToString()).ConfigureAwait(false);
        }

        return 0;
    }

    private static void AppendHuman(StringBuilder text, ImageInfo info)
    {
        var c = CultureInfo.InvariantCulture;
        text.Append(c, $"image: {info.Filename}\n");
        text.Append(c, $"file format: {info.Format}\n");
        text.Append(c, $"virtual size: {ImageArguments.HumanSize(info.VirtualSize)} ({info.VirtualSize} bytes)\n");
        text.Append(c, $"disk size: {ImageArguments.HumanSize(info.ActualSize)}\n");
        if (info.ClusterSize is { } cs)
        {
            text.Append(c, $"cluster_size: {cs}\n");
        }

        if (info.BackingFilename is not null)
        {
            text.Append(c, $"backing file: {info.BackingFilename}");
            text.Append(info.FullBackingFilename != info.BackingFilename ? $" (actual path: {info.FullBackingFilename})\n" : "\n");
            if (info.BackingFormat is not null)
            {
                text.Append(c, $"backing file format: {info.BackingFormat}\n");
            }
        }

        if (info.Snapshots.Count > 0)
        {
            SnapshotList.AppendHuman(text, info.Snapshots);
        }

        if (info.Compat is not null)
        {
            text.Append("Format specific information:\n");
            text.Append(c, $"    compat: {info.Compat}\n");
            text.Append(c, $"    compression type: {info.CompressionType}\n");
            if (info.IsVersion3)
            {
                text.Append(c, $"    lazy refcounts: {Bool(info.LazyRefcounts)}\n");
            }

            if (info.Bitmaps.Count > 0)
            {
                text.Append("    bitmaps:\n");
                for (var i = 0; i < info.Bitmaps.Count; i++)
                {
                    var b = info.Bitmaps[i];
                    text.Append(c, $"        [{i}]:\n");
                    text.Append("            flags:\n");
                    var f = 0;
                    foreach (var flag in b.Flags)
                    {
                        text.Append(c, $"                [{f++}]: {flag}\n");
                    }

                    text.Append(c, $"            name: {b.Name}\n");
                    text.Append(c, $"            granularity: {b.Granularity}\n");
                }
            }

            text.Append(c, $"    refcount bits: {info.RefcountBits}\n");
            if (info.IsVersion3)
            {
                text.Append(c, $"    corrupt: {Bool(info.Corrupt)}\n");
                text.Append(c, $"    extended l2: {Bool(info.ExtendedL2)}\n");
            }
        }
    }

    private static string Bool(bool value) => value ? "true" : "false";

    private static string ToJson(List<ImageInfo> infos, bool array)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, IndentSize = 4 }))
        {
            if (array)
            {
                w.WriteStartArray();
            }

            foreach (var info in infos)
            {
                w.WriteStartObject();

                // QEMU's JSON printer walks its dictionary in hash order: the backing format
                // comes first, the other backing names after the format-specific data.
                if (info.BackingFilename is not null && info.BackingFormat is not null)
                {
                    w.WriteString("backing-filename-format", info.BackingFormat);
                }

                if (info.Snapshots.Count > 0)
                {
                    SnapshotList.WriteJson(w, info.Snapshots);
                }

                w.WriteNumber("virtual-size", info.VirtualSize);
                w.WriteString("filename", info.Filename);
                if (info.ClusterSize is { } cs)
                {
                    w.WriteNumber("cluster-size", cs);
                }

                w.WriteString("format", info.Format);
                w.WriteNumber("actual-size", info.ActualSize);
                if (info.Compat is not null)
                {
                    w.WriteStartObject("format-specific");
                    w.WriteString("type", "qcow2");
                    w.WriteStartObject("data");
                    w.WriteString("compat", info.Compat);
                    w.WriteString("compression-type", info.CompressionType);
                    if (info.IsVersion3)
                    {
                        w.WriteBoolean("lazy-refcounts", info.LazyRefcounts);
                    }

                    if (info.Bitmaps.Count > 0)
                    {
                        w.WriteStartArray("bitmaps");
                        foreach (var b in info.Bitmaps)
                        {
                            w.WriteStartObject();
                            w.WriteStartArray("flags");
                            foreach (var flag in b.Flags)
                            {
                                w.WriteStringValue(flag);
                            }

                            w.WriteEndArray();
                            w.WriteString("name", b.Name);
                            w.WriteNumber("granularity", b.Granularity);
                            w.WriteEndObject();
                        }

                        w.WriteEndArray();
                    }

                    w.WriteNumber("refcount-bits", info.RefcountBits);
                    if (info.IsVersion3)
                    {
                        w.WriteBoolean("corrupt", info.Corrupt);
                        w.WriteBoolean("extended-l2", info.ExtendedL2);
                    }

                    w.WriteEndObject();
                    w.WriteEndObject();
                }

                if (info.BackingFilename is not null)
                {
                    w.WriteString("full-backing-filename", info.FullBackingFilename);
                    w.WriteString("backing-filename", info.BackingFilename);
                }

                w.WriteBoolean("dirty-flag", false);
                w.WriteEndObject();
            }

            if (array)
            {
                w.WriteEndArray();
            }
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }
}
