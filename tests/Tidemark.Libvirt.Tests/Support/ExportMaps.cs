using System.Text.Json;
using Tidemark.Nbd.Client;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests.Support;

/// <summary>An export's extents of one meta context, as Tidemark's client reads them and as libnbd's nbdinfo prints them.</summary>
internal static class ExportMaps
{
    /// <summary>Every extent of <paramref name="context"/> over the export, adjacent equal flags merged, as (offset, length, flags).</summary>
    public static async Task<List<(long Offset, long Length, uint Flags)>> ReadAsync(NbdClient client, string context, CancellationToken cancellationToken)
    {
        var map = new List<(long Offset, long Length, uint Flags)>();
        long offset = 0;
        while (offset < client.Size)
        {
            var status = await client.BlockStatusAsync(offset, (uint)Math.Min(1L << 30, client.Size - offset), cancellationToken: cancellationToken);
            Assert.NotEmpty(status[context]);
            foreach (var e in status[context])
            {
                var length = Math.Min(e.Length, client.Size - offset);
                if (map.Count > 0 && map[^1].Flags == e.Flags)
                {
                    map[^1] = map[^1] with { Length = map[^1].Length + length };
                }
                else
                {
                    map.Add((offset, length, e.Flags));
                }

                offset += length;
                if (offset >= client.Size)
                {
                    break;
                }
            }
        }

        return map;
    }

    /// <summary><c>nbdinfo --map=CONTEXT --json URI</c>, in the same shape.</summary>
    public static async Task<List<(long Offset, long Length, uint Flags)>> NbdinfoAsync(string uri, string context)
    {
        using var doc = JsonDocument.Parse(await Peer.RunCheckedAsync("nbdinfo", $"--map={context}", "--json", uri));
        return doc.RootElement.EnumerateArray()
            .Select(e => (e.GetProperty("offset").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("type").GetUInt32()))
            .ToList();
    }
}
