using System.Text.Json;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>What the tests compare: whole image contents and qemu-img's verdicts.</summary>
internal static class ImageContent
{
    public static async Task<byte[]> ReadAllAsync(IBlockImage image)
    {
        var bytes = new byte[image.VirtualSize];
        const int Chunk = 1 << 20;
        for (long at = 0; at < bytes.Length; at += Chunk)
        {
            var n = (int)Math.Min(Chunk, bytes.Length - at);
            await image.ReadAsync(at, bytes.AsMemory((int)at, n), TestContext.Current.CancellationToken);
        }

        return bytes;
    }

    /// <summary>The guest content as QEMU reads it (qemu-img convert to raw).</summary>
    public static async Task<byte[]> QemuReadAllAsync(string path, TempDirectory dir, string format = "qcow2")
    {
        var raw = dir.File($"qemu-view-{Guid.NewGuid():N}.raw");
        await Peer.RunCheckedAsync("qemu-img", "convert", "-f", format, "-O", "raw", path, raw);
        var bytes = await File.ReadAllBytesAsync(raw);
        File.Delete(raw);
        return bytes;
    }

    /// <summary>Asserts that <c>qemu-img check</c> finds no corruption and no leak.</summary>
    public static async Task<JsonElement> AssertCleanAsync(string path, bool allowLeaks = false)
    {
        var result = await Peer.RunAsync("qemu-img", ["check", "--output=json", "-f", "qcow2", path]);

        // A lock refusal right after the image was closed here can be a child process that
        // another test forked at that moment: until it execs, it holds a copy of the closed
        // descriptor and so its OFD lock. That passes within milliseconds; an image this process
        // really left open keeps refusing, and still fails below.
        for (var attempt = 0; attempt < 10 && result.ExitCode == 1 && result.Stderr.Contains("Failed to get shared \"write\" lock", StringComparison.Ordinal); attempt++)
        {
            await Task.Delay(100, TestContext.Current.CancellationToken);
            result = await Peer.RunAsync("qemu-img", ["check", "--output=json", "-f", "qcow2", path]);
        }

        Assert.True(result.ExitCode == 0 || (allowLeaks && result.ExitCode == 3), $"qemu-img check exited {result.ExitCode}: {result.Stdout} {result.Stderr}");
        var json = JsonDocument.Parse(result.Stdout).RootElement;
        Assert.False(json.TryGetProperty("corruptions", out var c) && c.GetInt64() != 0, result.Stdout + result.Stderr);
        Assert.Equal(0, json.GetProperty("check-errors").GetInt64());
        if (!allowLeaks)
        {
            Assert.False(json.TryGetProperty("leaks", out var l) && l.GetInt64() != 0, result.Stdout + result.Stderr);
        }

        return json;
    }

    /// <summary>Asserts that two byte arrays are equal, naming the first differing offset.</summary>
    public static void AssertSame(byte[] expected, byte[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        var at = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(at == expected.Length, $"content differs at offset {at}: expected 0x{(at < expected.Length ? expected[at] : 0):x2}, got 0x{(at < actual.Length ? actual[at] : 0):x2}");
    }
}
