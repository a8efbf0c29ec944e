using Tidemark.Storage.Qcow2;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Qcow2;

/// <summary>
/// The qcow2 fuzzing corpus (<c>bench/fuzz/corpus/qcow2</c>) and any input the fuzzer found
/// (<c>bench/fuzz/findings/qcow2</c>) replayed as the harness runs them: opened read-only
/// (reads, extents, check, bitmap list), then a copy opened read-write for a bitmap add and
/// remove. Each either works or ends in a <see cref="StorageException"/>, closing included.
/// </summary>
public sealed class FuzzCorpusReplayTests
{
    private const long MaxBytesExamined = 256 << 10;

    [Fact]
    public async Task Qcow2Inputs_WorkOrFailWithAStorageException()
    {
        var ct = TestContext.Current.CancellationToken;
        var inputs = FuzzInputs.Of("qcow2");
        using var dir = new TempDirectory("qcow2-fuzz-replay");
        var opened = 0;
        foreach (var input in inputs)
        {
            var path = dir.File("image.qcow2");
            var copy = dir.File("copy.qcow2");
            File.Copy(input, path, overwrite: true);
            File.Copy(input, copy, overwrite: true);
            try
            {
                await using var image = await Qcow2Image.OpenAsync(path, readOnly: true, ct);
                var length = Math.Min(image.VirtualSize, MaxBytesExamined);
                var buffer = new byte[Math.Min(length, 4096)];
                foreach (var offset in new[] { 0, (length - buffer.Length) / 2, length - buffer.Length })
                {
                    await image.ReadAsync(offset, buffer, ct);
                }

                _ = await image.GetExtentsAsync(0, length, ct);
                _ = image.Bitmaps.Bitmaps.Select(b => b.Name).ToList();
                opened++;
            }
            catch (StorageException)
            {
            }

            try
            {
                _ = await Qcow2Check.RunAsync(path, ct);
            }
            catch (StorageException)
            {
            }

            try
            {
                await using var image = await Qcow2Image.OpenAsync(copy, readOnly: false, ct);
                await image.Bitmaps.AddAsync("fuzz", cancellationToken: ct);
                await image.Bitmaps.RemoveAsync("fuzz", ct);
            }
            catch (StorageException)
            {
            }
        }

        Assert.True(inputs.Count >= 5, $"only {inputs.Count} inputs");
        Assert.True(opened >= 5, $"only {opened} of the seeds opened");
    }

    [Fact]
    public async Task Qcow2Seeds_AreImagesQemuImgChecksClean()
    {
        // The seeds are qemu-img's own output; if one stops being valid the corpus no longer
        // starts the fuzzer from working images. The backing seed names base.raw beside it.
        using var dir = new TempDirectory("qcow2-fuzz-seeds");
        await File.WriteAllBytesAsync(dir.File("base.raw"), new byte[64 << 10], TestContext.Current.CancellationToken);
        var seeds = Directory.GetFiles(Path.Combine(Repository.Root, "bench", "fuzz", "corpus", "qcow2"));
        foreach (var seed in seeds)
        {
            var path = dir.File(Path.GetFileName(seed));
            File.Copy(seed, path);
            var result = await Peer.RunAsync("qemu-img", ["check", "-f", "qcow2", path], workingDirectory: dir.Path);
            Assert.True(result.ExitCode == 0, $"{seed}: {result.Stderr}");
            Assert.True(new FileInfo(seed).Length <= 200 << 10, $"{seed} is over 200 KiB");
        }

        Assert.NotEmpty(seeds);
    }
}
