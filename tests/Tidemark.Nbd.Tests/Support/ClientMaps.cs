using System.Text.Json;
using Tidemark.Nbd.Client;

namespace Tidemark.Nbd.Tests.Support;

/// <summary>Whole-export maps read through Tidemark's client, and the same maps as peers print them.</summary>
public static class ClientMaps
{
    /// <summary>Every extent of <paramref name="context"/> over the export, adjacent equal flags merged, as (offset, length, flags).</summary>
    public static async Task<List<(long Offset, long Length, uint Flags)>> MapAsync(NbdClient client, string context)
    {
        var map = new List<(long Offset, long Length, uint Flags)>();
        long offset = 0;
        while (offset < client.Size)
        {
            var length = (uint)Math.Min(1L << 30, client.Size - offset);
            var status = await client.BlockStatusAsync(offset, length);
            Assert.True(status[context].Count > 0);
            foreach (var e in status[context])
            {
                var len = Math.Min(e.Length, client.Size - offset);
                if (map.Count > 0 && map[^1].Flags == e.Flags)
                {
                    map[^1] = map[^1] with { Length = map[^1].Length + len };
                }
                else
                {
                    map.Add((offset, len, e.Flags));
                }

                offset += len;
                if (offset >= client.Size)
                {
                    break;
                }
            }
        }

        return map;
    }

    /// <summary>Parses <c>nbdinfo --map=CONTEXT --json</c> output into the same shape.</summary>
    public static List<(long Offset, long Length, uint Flags)> FromNbdinfoJson(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.EnumerateArray()
            .Select(e => (e.GetProperty("offset").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("type").GetUInt32()))
            .ToList();
    }
}
