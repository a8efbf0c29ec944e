using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>
/// Writes that run out of space (ENOSPC on a small tmpfs): the write fails with the host's
/// error, everything acknowledged and flushed before it reads back, and the file QEMU opens
/// afterwards has no corruption (at most leaked clusters, which qemu-img check calls harmless).
/// </summary>
public sealed class FullFileSystemTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task WritesPastAFullFileSystem_FailAndLeaveTheImageConsistent()
    {
        using var dir = new TempDirectory();
        var mount = dir.File("small");
        Directory.CreateDirectory(mount);
        if (Environment.UserName != "root" && !Peer.InCi)
        {
            Assert.Skip("mounting a small tmpfs needs root");
        }

        await Peer.RunCheckedAsync("mount", "-t", "tmpfs", "-o", "size=2m", "tidemark-enospc", mount);
        try
        {
            var path = Path.Combine(mount, "disk.qcow2");
            var kept = new byte[64 * 1024];
            Array.Fill(kept, (byte)0x6b);
            Exception? failure = null;
            await using (var image = await Qcow2Image.CreateAsync(path, new Qcow2CreateOptions { Size = 64L << 20 }, Ct))
            {
                await image.WriteAsync(0, kept, cancellationToken: Ct);
                await image.FlushAsync(Ct);

                // 4 MiB of distinct clusters into 2 MiB of space: some write or flush fails.
                var chunk = new byte[256 * 1024];
                Array.Fill(chunk, (byte)0x33);
                try
                {
                    for (var offset = 1L << 20; offset < 5L << 20; offset += chunk.Length)
                    {
                        await image.WriteAsync(offset, chunk, cancellationToken: Ct);
                        await image.FlushAsync(Ct);
                    }
                }
                catch (IOException e)
                {
                    failure = e;
                }
                catch (StorageException e)
                {
                    failure = e;
                }

                Assert.NotNull(failure);
                Assert.Contains("space", failure.Message, StringComparison.OrdinalIgnoreCase);
            }

            // qemu-img check: no corruption (exit 0 clean or 3 leaks only).
            var check = await Peer.RunAsync("qemu-img", ["check", path]);
            Assert.True(check.ExitCode is 0 or 3, $"qemu-img check exit {check.ExitCode}: {check.Stdout}{check.Stderr}");

            // The flushed write is still there, as QEMU reads it.
            var copy = dir.File("back.raw");
            await Peer.RunCheckedAsync("qemu-img", "convert", "-f", "qcow2", "-O", "raw", path, copy);
            var back = new byte[kept.Length];
            await using (var f = File.OpenRead(copy))
            {
                await f.ReadExactlyAsync(back, Ct);
            }

            Assert.Equal(kept, back);
        }
        finally
        {
            await Peer.RunAsync("umount", ["-l", mount]);
        }
    }
}
