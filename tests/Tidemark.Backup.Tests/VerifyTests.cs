using System.Text.RegularExpressions;
using Tidemark.Backup.Tests.Support;
using Tidemark.Backup.Verify;
using Tidemark.Testing;

namespace Tidemark.Backup.Tests;

/// <summary>verify re-reads every extent: a flipped byte and a truncated chain file are named with the file and the offset.</summary>
public sealed class VerifyTests
{
    private static CancellationToken Ct => BackupHost.Ct;

    [Fact]
    public async Task FlippedByte_AndTruncatedFile_AreNamed()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x61 0 1M", "write -P 0x62 8M 1M");
        var full = await host.BackupAsync();
        await host.GuestWriteAsync("vda", "write -P 0x63 12M 1M");
        var inc = await host.BackupAsync();
        Assert.True((await RepositoryVerifier.RunAsync(host.Repository, null, null, Ct)).Passed);

        // Flip one byte of guest offset 8M + 100 where the full stores it.
        await FlipByteAsync(host, full);

        var flipped = await RepositoryVerifier.RunAsync(host.Repository, "dom", null, Ct);
        var finding = Assert.Single(flipped.Findings);
        Assert.Equal($"dom/{full.Disks.Single().File}", finding.File);
        Assert.Equal(8L << 20, finding.Offset);
        Assert.Contains("checksum", finding.Problem, StringComparison.Ordinal);

        // Cut the incremental's file in half.
        var incFile = host.Repository.PathOf("dom", inc.Disks.Single().File);
        await using (var stream = new FileStream(incFile, FileMode.Open, FileAccess.ReadWrite))
        {
            stream.SetLength(stream.Length / 2);
        }

        var truncated = await RepositoryVerifier.RunAsync(host.Repository, "dom", inc.Checkpoint, Ct);
        Assert.Contains(truncated.Findings, f => f.File == $"dom/{inc.Disks.Single().File}");
        Assert.False(truncated.Passed);

        // Only the chain up to the full: the truncated incremental is not part of it.
        var upToFull = await RepositoryVerifier.RunAsync(host.Repository, "dom", full.Checkpoint, Ct);
        Assert.Equal(1, upToFull.ChainFiles);
        Assert.Single(upToFull.Findings);
    }

    /// <summary>
    /// A chain file whose data was changed after its backup still opens and reads: restore and
    /// prune check the checksums first and refuse, naming the file and the offset, so neither
    /// hands back a wrong disk nor folds the damage into a new base with fresh checksums.
    /// </summary>
    [Fact]
    public async Task FlippedByte_RestoreAndPruneRefuse_NothingWrittenOrFolded()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x61 0 1M", "write -P 0x62 8M 1M");
        var full = await host.BackupAsync();
        await host.GuestWriteAsync("vda", "write -P 0x63 12M 1M");
        var inc = await host.BackupAsync();
        await FlipByteAsync(host, full);

        var output = host.Directory.File("restored.raw");
        var refused = await Assert.ThrowsAsync<BackupException>(() => Restore.DiskRestore.RunAsync(new Restore.RestoreOptions { Repository = host.Repository, Domain = "dom", Output = output }, Ct));
        Assert.Equal(BackupErrorReason.RepositoryDamaged, refused.Reason);
        Assert.StartsWith($"backup {inc.Checkpoint} of domain 'dom' is damaged; nothing was restored: dom/{full.Disks.Single().File}: offset 8388608: ", refused.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(output));

        var pruned = await Assert.ThrowsAsync<BackupException>(() => Prune.ChainFold.PruneAsync(host.Repository, "dom", keep: 1, cancellationToken: Ct));
        Assert.StartsWith($"domain 'dom': the backups up to {inc.Checkpoint} are damaged; nothing was folded: dom/{full.Disks.Single().File}: offset 8388608: ", pruned.Message, StringComparison.Ordinal);
        Assert.Equal(2, (await host.Repository.ReadManifestsAsync("dom", Ct)).Count);
        Assert.False((await RepositoryVerifier.RunAsync(host.Repository, "dom", null, Ct)).Passed);

        // Asked to, restore skips the check and copies what is there.
        await Restore.DiskRestore.RunAsync(new Restore.RestoreOptions { Repository = host.Repository, Domain = "dom", Output = output, SkipVerify = true }, Ct);
        Assert.True(File.Exists(output));
    }

    /// <summary>
    /// A manifest's level must agree with its chain file's qcow2 backing header: a manifest
    /// edited to "full" over a file that has a backing file, an incremental whose file was
    /// rebased to none (qemu-img rebase -u), and an incremental backed by a file other than the
    /// previous point's are each named with the file and the mismatch.
    /// </summary>
    [Fact]
    public async Task ManifestLevel_DisagreesWithBackingHeader_IsNamed()
    {
        await using var host = await BackupHost.StartAsync(("vda", "16M"));
        await host.GuestWriteAsync("vda", "write -P 0x61 0 1M");
        var full = await host.BackupAsync();
        await host.GuestWriteAsync("vda", "write -P 0x62 4M 64k");
        var inc1 = await host.BackupAsync();
        await host.GuestWriteAsync("vda", "write -P 0x63 8M 64k");
        var inc2 = await host.BackupAsync();
        Assert.True((await RepositoryVerifier.RunAsync(host.Repository, "dom", null, Ct)).Passed);
        var inc1File = $"dom/{inc1.Disks.Single().File}";
        var inc2File = $"dom/{inc2.Disks.Single().File}";

        // The manifest edited to "full"; the backing name it records still agrees with the header.
        var manifest = host.Repository.ManifestPath("dom", inc1.Checkpoint);
        var original = await File.ReadAllTextAsync(manifest, Ct);
        await File.WriteAllTextAsync(manifest, original.Replace("\"level\": \"incremental\"", "\"level\": \"full\"", StringComparison.Ordinal), Ct);
        var edited = await RepositoryVerifier.RunAsync(host.Repository, "dom", null, Ct);
        var finding = Assert.Single(edited.Findings);
        Assert.Equal(inc1File, finding.File);
        Assert.Equal($"the manifest says level 'full', but the chain file has backing file '{Path.GetFileName(full.Disks.Single().File)}' (a full has none)", finding.Problem);
        await File.WriteAllTextAsync(manifest, original, Ct);

        // An incremental whose header names a file other than the previous point's.
        var inc2Path = host.Repository.PathOf("dom", inc2.Disks.Single().File);
        var fullName = Path.GetFileName(full.Disks.Single().File);
        await Peer.RunCheckedAsync("qemu-img", "rebase", "-u", "-f", "qcow2", "-b", fullName, "-F", "qcow2", inc2Path);
        var skipping = await RepositoryVerifier.RunAsync(host.Repository, "dom", null, Ct);
        Assert.Contains(new VerifyFinding(inc2File, null, $"the manifest says level 'incremental', but the chain file's backing file '{fullName}' is not the previous point's file '{Path.GetFileName(inc1.Disks.Single().File)}'"), skipping.Findings);

        // An incremental with no backing file at all.
        await Peer.RunCheckedAsync("qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "", inc2Path);
        var unbacked = await RepositoryVerifier.RunAsync(host.Repository, "dom", null, Ct);
        Assert.Contains(new VerifyFinding(inc2File, null, $"the manifest says level 'incremental', but the chain file has no backing file (an incremental is backed by the disk's previous chain file '{Path.GetFileName(inc1.Disks.Single().File)}')"), unbacked.Findings);
        Assert.DoesNotContain(unbacked.Findings, f => f.File == inc1File);
    }

    /// <summary>Flips one byte of guest offset 8M + 100 where <paramref name="backup"/>'s chain file stores it (qemu-img map's host offset).</summary>
    private static async Task FlipByteAsync(BackupHost host, Repository.BackupManifest backup)
    {
        var file = host.Repository.PathOf("dom", backup.Disks.Single().File);
        var map = await Peer.RunCheckedAsync("qemu-img", "map", "--output=json", "-f", "qcow2", file);
        var hostOffset = long.Parse(Regex.Match(map, "\"start\": 8388608, .*?\"offset\": (\\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        await using var stream = new FileStream(file, FileMode.Open, FileAccess.ReadWrite);
        stream.Position = hostOffset + 100;
        var b = stream.ReadByte();
        stream.Position = hostOffset + 100;
        stream.WriteByte((byte)(b ^ 0xff));
    }
}
