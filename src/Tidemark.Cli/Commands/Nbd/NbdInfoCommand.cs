using System.CommandLine;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Tidemark.Nbd;
using Tidemark.Nbd.Client;
using Tidemark.Nbd.Protocol;
using D = Tidemark.Cli.Commands.Nbd.NbdInfoCommandDefinition;

namespace Tidemark.Cli.Commands.Nbd;

/// <summary>Runs <c>nbd info</c>: the export's facts, the export list, or a map of one context's extents.</summary>
internal static class NbdInfoCommand
{
    // Block-status requests of at most 2 GiB at a time, as nbdinfo asks.
    private const uint MapRequestLength = 1u << 31;

    public static async Task<int> RunAsync(ParseResult result, CliConsole console, CancellationToken cancellationToken)
    {
        var (text, context) = UriAndContext(result);
        NbdUri uri;
        NbdConnectOptions options;
        try
        {
            uri = NbdUri.Parse(text);
            options = NbdConnectOptions.FromUri(uri, tlsCertificates: result.GetValue(D.TlsCertificates));
        }
        catch (NbdException e)
        {
            throw new CliException(e.Message, e);
        }

        var json = result.GetValue(D.Json);
        try
        {
            if (result.GetValue(D.List))
            {
                await ListAsync(options, json, console, cancellationToken).ConfigureAwait(false);
            }
            else if (context is not null)
            {
                await MapAsync(options, context, json, console, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await InfoAsync(options, json, console, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (NbdException e)
        {
            // The message may quote the server's own error text.
            throw new CliException(ServerText.Escape(e.Message, quoted: false), e);
        }
        catch (SocketException e)
        {
            throw new CliException($"cannot connect to {uri.EndPoint}: {e.Message}", e);
        }

        return 0;
    }

    /// <summary>The URI, and the context to map (null without --map): "--map URI" means base:allocation.</summary>
    private static (string Uri, string? Context) UriAndContext(ParseResult result)
    {
        var uri = result.GetValue(D.Uri);
        var map = result.GetResult(D.Map) is null ? null : result.GetValue(D.Map) ?? string.Empty;
        if (uri is null && map is not null && map.Contains("://", StringComparison.Ordinal))
        {
            (uri, map) = (map, string.Empty);
        }

        if (uri is null)
        {
            throw new CliException("nbd info needs a URI (nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH)");
        }

        return (uri, map is null ? null : map.Length == 0 ? MetaContext.BaseAllocationName : map);
    }

    private static async Task ListAsync(NbdConnectOptions options, bool json, CliConsole console, CancellationToken cancellationToken)
    {
        var exports = await NbdClient.ListExportsAsync(options, cancellationToken).ConfigureAwait(false);
        if (json)
        {
            await WriteJsonAsync(console, w =>
            {
                w.WriteStartObject();
                w.WriteStartArray("exports");
                foreach (var e in exports)
                {
                    w.WriteStartObject();
                    w.WriteString("export-name", e.Name);
                    if (!string.IsNullOrEmpty(e.Description))
                    {
                        w.WriteString("description", e.Description);
                    }

                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteEndObject();
            }).ConfigureAwait(false);
            return;
        }

        foreach (var e in exports)
        {
            var name = ServerText.Escape(e.Name, quoted: true);
            await console.Out.WriteLineAsync(string.IsNullOrEmpty(e.Description) ? $"export=\"{name}\"" : $"export=\"{name}\" description=\"{ServerText.Escape(e.Description, quoted: true)}\"").ConfigureAwait(false);
        }
    }

    private static async Task InfoAsync(NbdConnectOptions options, bool json, CliConsole console, CancellationToken cancellationToken)
    {
        var contexts = await NbdClient.ListMetaContextsAsync(options, cancellationToken).ConfigureAwait(false);
        var client = await NbdClient.ConnectAsync(options, cancellationToken).ConfigureAwait(false);
        await using (client.ConfigureAwait(false))
        {
            var flags = client.TransmissionFlags;
            (string Name, bool Value)[] facts =
            [
                ("is_rotational", (flags & NbdTransmissionFlags.Rotational) != 0),
                ("is_read_only", client.IsReadOnly),
                ("can_cache", (flags & NbdTransmissionFlags.SendCache) != 0),
                ("can_df", (flags & NbdTransmissionFlags.SendDf) != 0),
                ("can_fast_zero", (flags & NbdTransmissionFlags.SendFastZero) != 0),
                ("can_flush", (flags & NbdTransmissionFlags.SendFlush) != 0),
                ("can_fua", (flags & NbdTransmissionFlags.SendFua) != 0),
                ("can_multi_conn", client.CanMultiConn),
                ("can_trim", (flags & NbdTransmissionFlags.SendTrim) != 0),
                ("can_zero", (flags & NbdTransmissionFlags.SendWriteZeroes) != 0),
            ];
            var protocol = "newstyle-fixed";
            if (json)
            {
                await WriteJsonAsync(console, w =>
                {
                    w.WriteStartObject();
                    w.WriteString("protocol", protocol);
                    w.WriteBoolean("TLS", client.IsTls);
                    w.WriteBoolean("structured", client.Structured);
                    w.WriteStartArray("exports");
                    w.WriteStartObject();
                    w.WriteString("export-name", client.ExportName);
                    if (client.Description is not null)
                    {
                        w.WriteString("description", client.Description);
                    }

                    w.WriteStartArray("contexts");
                    foreach (var c in contexts)
                    {
                        w.WriteStringValue(c);
                    }

                    w.WriteEndArray();
                    foreach (var (name, value) in facts)
                    {
                        w.WriteBoolean(name, value);
                    }

                    w.WriteNumber("block_size_minimum", client.MinimumBlockSize);
                    w.WriteNumber("block_size_preferred", client.PreferredBlockSize);
                    w.WriteNumber("block_size_maximum", client.MaximumBlockSize);
                    w.WriteNumber("export-size", (ulong)client.Size);
                    w.WriteEndObject();
                    w.WriteEndArray();
                    w.WriteEndObject();
                }).ConfigureAwait(false);
                return;
            }

            var text = new StringBuilder();
            text.Append(CultureInfo.InvariantCulture, $"protocol: {protocol} {(client.IsTls ? "with" : "without")} TLS{(client.Structured ? ", using structured packets" : string.Empty)}\n");
            text.Append(CultureInfo.InvariantCulture, $"export=\"{ServerText.Escape(client.ExportName, quoted: true)}\":\n");
            if (client.Description is not null)
            {
                text.Append(CultureInfo.InvariantCulture, $"\tdescription: {ServerText.Escape(client.Description, quoted: false)}\n");
            }

            // The size is an unsigned 64-bit number on the wire (NBD_INFO_EXPORT).
            text.Append(CultureInfo.InvariantCulture, $"\texport-size: {(ulong)client.Size}\n");
            text.Append("\tcontexts:\n");
            foreach (var c in contexts)
            {
                text.Append(CultureInfo.InvariantCulture, $"\t\t{ServerText.Escape(c, quoted: false)}\n");
            }

            foreach (var (name, value) in facts)
            {
                text.Append(CultureInfo.InvariantCulture, $"\t{name}: {(value ? "true" : "false")}\n");
            }

            text.Append(CultureInfo.InvariantCulture, $"\tblock_size_minimum: {client.MinimumBlockSize}\n");
            text.Append(CultureInfo.InvariantCulture, $"\tblock_size_preferred: {client.PreferredBlockSize}\n");
            text.Append(CultureInfo.InvariantCulture, $"\tblock_size_maximum: {client.MaximumBlockSize}\n");
            await console.Out.WriteAsync(text.ToString()).ConfigureAwait(false);
        }
    }

    private static async Task MapAsync(NbdConnectOptions baseOptions, string context, bool json, CliConsole console, CancellationToken cancellationToken)
    {
        var options = new NbdConnectOptions
        {
            EndPoint = baseOptions.EndPoint,
            ExportName = baseOptions.ExportName,
            Tls = baseOptions.Tls,
            TlsHostName = baseOptions.TlsHostName,
            MetaContexts = [context],
        };
        var client = await NbdClient.ConnectAsync(options, cancellationToken).ConfigureAwait(false);
        await using (client.ConfigureAwait(false))
        {
            if (client.Size < 0)
            {
                throw new CliException($"export size {(ulong)client.Size} is larger than 2^63-1 bytes, the largest export Tidemark maps");
            }

            if (!client.MetaContexts.ContainsKey(context))
            {
                throw new CliException($"the server does not offer meta context '{context}' for export '{ServerText.Escape(options.ExportName, quoted: false)}'");
            }

            // Coalesce adjacent extents with the same flags, as nbdinfo prints them.
            var map = new List<(long Offset, long Length, uint Flags)>();
            long offset = 0;
            while (offset < client.Size)
            {
                var length = (uint)Math.Min(MapRequestLength, client.Size - offset);
                var status = await client.BlockStatusAsync(offset, length, cancellationToken: cancellationToken).ConfigureAwait(false);
                if (!status.TryGetValue(context, out var extents) || extents.Count == 0)
                {
                    throw new CliException($"the server sent no extents for '{context}' at offset {offset}");
                }

                foreach (var e in extents)
                {
                    var len = Math.Min(e.Length, client.Size - offset);
                    if (len <= 0)
                    {
                        break;
                    }

                    if (map.Count > 0 && map[^1].Flags == e.Flags)
                    {
                        map[^1] = map[^1] with { Length = map[^1].Length + len };
                    }
                    else
                    {
                        map.Add((offset, len, e.Flags));
                    }

                    offset += len;
                }
            }

            if (json)
            {
                await WriteJsonAsync(console, w =>
                {
                    w.WriteStartArray();
                    foreach (var (o, l, f) in map)
                    {
                        w.WriteStartObject();
                        w.WriteNumber("offset", o);
                        w.WriteNumber("length", l);
                        w.WriteNumber("type", f);
                        w.WriteString("description", DescribeFlags(context, f));
                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                }).ConfigureAwait(false);
                return;
            }

            var text = new StringBuilder();
            foreach (var (o, l, f) in map)
            {
                text.Append(CultureInfo.InvariantCulture, $"{o,10}  {l,10}  {f,3}  {DescribeFlags(context, f)}\n");
            }

            await console.Out.WriteAsync(text.ToString()).ConfigureAwait(false);
        }
    }

    /// <summary>The words nbdinfo uses for each context's flags (formats.md §4.10, §7).</summary>
    private static string DescribeFlags(string context, uint flags)
    {
        if (context == MetaContext.BaseAllocationName)
        {
            return flags switch
            {
                0 => "data",
                1 => "hole",
                2 => "zero",
                3 => "hole,zero",
                _ => $"unknown ({flags})",
            };
        }

        if (context.StartsWith(MetaContext.DirtyBitmapPrefix, StringComparison.Ordinal))
        {
            return flags switch
            {
                0 => "clean",
                1 => "dirty",
                _ => $"unknown ({flags})",
            };
        }

        if (context == MetaContext.AllocationDepthName)
        {
            return flags switch
            {
                0 => "absent",
                1 => "local",
                _ => $"backing depth {flags}",
            };
        }

        return string.Empty;
    }

    private static async Task WriteJsonAsync(CliConsole console, Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            write(writer);
        }

        await console.Out.WriteLineAsync(Encoding.UTF8.GetString(buffer.ToArray())).ConfigureAwait(false);
    }
}
