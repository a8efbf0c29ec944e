using System.Text;
using Tidemark.Engine.State;
using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Names at the length limits of the state directory's files: a temporary file always fits a
/// file name (cut at a character, still found as a stray), a file libvirt keeps too is refused
/// where libvirt's NAME.new would not fit, and a definition refused for its name leaves no
/// domain behind.
/// </summary>
public sealed class StateFileNameTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData(251, 1)]
    [InlineData(62, 4)]
    [InlineData(125, 2)]
    public void TemporaryPath_FitsAFileName_WholeCharacters_AndIsFoundAsAStray(int count, int bytesPerCharacter)
    {
        using var directory = new TempDirectory("tdsn");
        var name = bytesPerCharacter switch
        {
            1 => new string('a', count - 4),
            2 => string.Concat(Enumerable.Repeat("é", count)),
            _ => string.Concat(Enumerable.Repeat("\U0001F40B", count)),
        };
        var temp = AtomicFile.TemporaryPath(Path.Combine(directory.Path, name + ".xml"));
        var fileName = Path.GetFileName(temp);

        // Strict UTF-8 throws on half a surrogate pair.
        Assert.InRange(new UTF8Encoding(false, true).GetByteCount(fileName), 1, 255);
        Assert.StartsWith("." + name[..2], fileName, StringComparison.Ordinal);
        File.WriteAllText(temp, "x");
        Assert.Equal([temp], AtomicFile.RemoveStrayTemporaryFiles(directory.Path));
    }

    [Fact]
    public async Task LibvirtFile_UpTo251Bytes_IsWritten_OneMore_IsRefusedWithNothingLeft()
    {
        using var directory = new TempDirectory("tdsn");
        var longest = Path.Combine(directory.Path, new string('c', 247) + ".xml");
        await AtomicFile.WriteLibvirtFileAsync(longest, "<x/>", Ct);
        Assert.Equal("<x/>", await File.ReadAllTextAsync(longest, Ct));

        var over = Path.Combine(directory.Path, new string('c', 248) + ".xml");
        var e = await Assert.ThrowsAsync<PathTooLongException>(() => AtomicFile.WriteLibvirtFileAsync(over, "<x/>", Ct));
        Assert.Contains("is over 251 bytes, the most libvirt can keep", e.Message, StringComparison.Ordinal);
        Assert.Equal([longest], Directory.GetFiles(directory.Path));
    }

    /// <summary>
    /// An inactive domain's checkpoint needs its creation record (jobs/NAME.checkpoint): a name
    /// leaving it no room gets libvirt's answer for inactive domains and the image is unchanged;
    /// one byte shorter, the checkpoint is made offline; running, the long name takes one too.
    /// </summary>
    [Fact]
    public async Task InactiveDomainNamedBeyondItsCreationRecord_GetsLibvirtsRefusal_RunningItTakesACheckpoint()
    {
        await using var test = await TestHost.CreateAsync();
        var longest = await test.DefineAsync(new string('l', 245), 8 << 20, new TestDisk("vda"));
        var e = await Assert.ThrowsAsync<EngineException>(() => longest.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct));
        Assert.Equal((EngineErrorReason.CheckpointOfInactiveDomain, "Operation not supported: cannot create checkpoint for inactive domain"), (e.Reason, e.Message));
        Assert.Empty(await ImageBitmaps.NamesAsync(test.ImagePath(longest.Name, new TestDisk("vda"))));
        var jobs = Path.Combine(test.StateRoot, "jobs");
        Assert.Empty(Directory.Exists(jobs) ? Directory.GetFiles(jobs) : []);

        await using (var other = await TestHost.CreateAsync())
        {
            var fits = await other.DefineAsync(new string('f', 244), 8 << 20, new TestDisk("vda"));
            await fits.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
            Assert.Equal(["c1"], await ImageBitmaps.NamesAsync(other.ImagePath(fits.Name, new TestDisk("vda"))));
        }

        await longest.StartAsync(Ct);
        await longest.Checkpoints.CreateAsync("<domaincheckpoint><name>c1</name></domaincheckpoint>", cancellationToken: Ct);
        await longest.DestroyAsync(Ct);
        Assert.Equal(["c1"], await ImageBitmaps.NamesAsync(test.ImagePath(longest.Name, new TestDisk("vda"))));
    }

    [Fact]
    public async Task DefinitionRefusedForItsName_LeavesNoDomain()
    {
        await using var test = await TestHost.CreateAsync();
        var name = new string('d', 248);
        var e = await Assert.ThrowsAsync<EngineException>(() => test.Host.DefineAsync(test.DomainXml(name, new TestDisk("vda")), Ct));
        Assert.Equal(EngineErrorReason.StateWriteFailed, e.Reason);
        Assert.Empty(test.Host.ListDomains());
        var domains = Path.Combine(test.StateRoot, "domains");
        Assert.Empty(Directory.Exists(domains) ? Directory.GetFiles(domains) : []);

        // One byte shorter is defined, and is there after a restart.
        var fits = new string('d', 247);
        await test.Host.DefineAsync(test.DomainXml(fits, new TestDisk("vda")), Ct);
        await test.RestartAsync();
        Assert.Equal([fits], test.Host.ListDomains().Select(d => d.Name));
    }
}
