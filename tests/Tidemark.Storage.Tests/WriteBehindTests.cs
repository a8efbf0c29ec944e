using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests;

/// <summary>
/// Images written with <see cref="Qcow2Image.WriteBehind"/> / <see cref="RawImage.WriteBehind"/>
/// (or <see cref="Qcow2Image.WriteBehindNewClusters"/>): the bytes are the same as without it
/// (also for writes that land behind the window), and what lies behind the window has left the
/// page cache, while what an existing image held before stays.
/// </summary>
public sealed class WriteBehindTests
{
    private const int Piece = 2 << 20;

    // Past the 32 MiB window by several 8 MiB steps.
    private const int Pieces = 48;

    [Fact]
    public async Task Qcow2Copy_ReadsBackAsWritten_AndChecksClean()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDirectory();
        var path = dir.File("out.qcow2");
        var reference = dir.File("reference.raw");
        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = (long)Pieces * Piece }, ct))
        {
            image.WriteBehind = true;
            await WritePiecesAsync((offset, data) => image.WriteAsync(offset, data, WriteFlags.None, ct), reference);
            await image.FlushAsync(ct);
        }

        await Peer.RunCheckedAsync("qemu-img", "check", "-f", "qcow2", path);
        await Peer.RunCheckedAsync("qemu-img", "compare", "-f", "raw", "-F", "qcow2", reference, path);
    }

    [Fact]
    public async Task RawCopy_ReadsBackAsWritten_AndLeavesThePageCacheBehindTheWindow()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDirectory();
        var path = dir.File("out.raw");
        var reference = dir.File("reference.raw");
        await using (var image = RawImage.Create(path, (long)Pieces * Piece))
        {
            image.WriteBehind = true;
            await WritePiecesAsync((offset, data) => image.WriteAsync(offset, data, WriteFlags.None, ct), reference, rewriteFirst: false);

            // tmpfs keeps every page (there is no disk to write them to); a disk file system drops them.
            if (!OnTmpfs(path))
            {
                Assert.True(ResidentFraction(path, 0, 8 << 20) < 0.5, "the first 8 MiB, written back long ago, should have left the page cache");
            }

            await image.FlushAsync(ct);
        }

        await Peer.RunCheckedAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", reference, path);
    }

    [Fact]
    public async Task Qcow2NewClusters_AreStreamed_AndWhatTheFileHeldStaysCached()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDirectory();
        var path = dir.File("grown.qcow2");
        var reference = dir.File("reference.raw");
        const long existing = 16L << 20;
        var size = existing + ((long)Pieces * Piece);
        var old = new byte[existing];
        Array.Fill(old, (byte)0x5a);
        await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = size }, ct))
        {
            await image.WriteAsync(0, old, WriteFlags.None, ct);
            await image.FlushAsync(ct);
        }

        var grownFrom = new FileInfo(path).Length;
        await using (var image = await Qcow2Image.OpenAsync(path, readOnly: false, ct))
        {
            image.WriteBehindNewClusters();
            await WritePiecesAsync((offset, data) => image.WriteAsync(existing + offset, data, WriteFlags.None, ct), reference, rewriteFirst: false);
            if (!OnTmpfs(path))
            {
                Assert.True(ResidentFraction(path, 0, (int)grownFrom) > 0.5, "the clusters the file held before should have stayed in the page cache");
                Assert.True(ResidentFraction(path, grownFrom, 8 << 20) < 0.5, "the first 8 MiB of new clusters, written back long ago, should have left the page cache");
            }

            await image.FlushAsync(ct);
        }

        await Peer.RunCheckedAsync("qemu-img", "check", "-f", "qcow2", path);
        List<string> reads = ["-f", "qcow2", "-c", $"read -P 0x5a 0 {existing}"];
        for (var i = 0; i < Pieces; i++)
        {
            reads.AddRange(["-c", $"read -P {i + 1} {existing + ((long)i * Piece)} {Piece}"]);
        }

        var read = await Peer.RunCheckedAsync("qemu-io", [.. reads, path]);
        Assert.DoesNotContain("Pattern verification failed", read, StringComparison.Ordinal);
    }

    /// <summary>
    /// Writes <see cref="Pieces"/> pieces front to back, each with its own pattern, then (when
    /// asked) rewrites the first piece, far behind the window; <paramref name="reference"/> gets
    /// the same bytes through a plain file.
    /// </summary>
    private static async Task WritePiecesAsync(Func<long, ReadOnlyMemory<byte>, ValueTask> write, string reference, bool rewriteFirst = true)
    {
        await using var plain = new FileStream(reference, FileMode.Create, FileAccess.Write);
        plain.SetLength((long)Pieces * Piece);
        var data = new byte[Piece];
        for (var i = 0; i < Pieces; i++)
        {
            Array.Fill(data, (byte)(i + 1));
            await write((long)i * Piece, data);
            RandomAccess.Write(plain.SafeFileHandle, data, (long)i * Piece);
        }

        if (rewriteFirst)
        {
            Array.Fill(data, (byte)0xee);
            await write(0, data.AsMemory(0, 64 << 10));
            RandomAccess.Write(plain.SafeFileHandle, data.AsSpan(0, 64 << 10), 0);
        }
    }

    /// <summary>Fraction of the pages of <paramref name="path"/>'s range that are in the page cache (mincore on a mapping that is never touched).</summary>
    private static double ResidentFraction(string path, long offset, int length)
    {
        using var file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        using var view = file.CreateViewAccessor(offset, length, MemoryMappedFileAccess.Read);
        var pages = new byte[length / Environment.SystemPageSize];
        var address = view.SafeMemoryMappedViewHandle.DangerousGetHandle() + (nint)view.PointerOffset;
        Assert.Equal(0, NativeMethods.mincore(address, (nuint)length, pages));
        return pages.Count(p => (p & 1) != 0) / (double)pages.Length;
    }

    private static bool OnTmpfs(string path)
    {
        var mount = new DriveInfo(Path.GetDirectoryName(path)!);
        return mount.DriveFormat is "tmpfs" or "ramfs";
    }

    private static class NativeMethods
    {
        [DllImport("libc", SetLastError = true)]
        internal static extern int mincore(nint address, nuint length, byte[] vector);
    }
}
