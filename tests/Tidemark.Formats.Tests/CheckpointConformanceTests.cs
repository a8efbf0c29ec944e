using Tidemark.Formats.Checkpoints;

namespace Tidemark.Formats.Tests;

/// <summary>
/// libvirt's <c>qemudomaincheckpointxml2xml</c> cases, run as its test program runs them
/// (conformance README §1): parse, harness steps, format with SECURE, compare byte for byte,
/// and validate every output with xmllint.
/// </summary>
public sealed class CheckpointConformanceTests
{
    [Flags]
    public enum Harness
    {
        None = 0,
        Parent = 1,
        VdaBitmap = 2,
        Size = 4,
    }

    // README §1 table: case, input, mode, fixed creation time, harness flags.
    public static TheoryDataRow<string, string, CheckpointParseMode, long, Harness>[] Cases =>
    [
        Case("redefine", "out", CheckpointParseMode.Redefine, 0, Harness.None),
        Case("empty", "in", CheckpointParseMode.Create, 1525889631, Harness.VdaBitmap),
        Case("disk-default", "in", CheckpointParseMode.Create, 1525889631, Harness.Parent | Harness.VdaBitmap),
        Case("sample", "in", CheckpointParseMode.Create, 1525889631, Harness.Parent | Harness.VdaBitmap),
        Case("size", "in", CheckpointParseMode.Create, 1553648510, Harness.Parent | Harness.VdaBitmap | Harness.Size),
    ];

    public static TheoryDataRow<string>[] InvalidCases =>
        [.. new[] { "disk-invalid", "name-invalid" }.Select(n => new TheoryDataRow<string>(n) { TestDisplayName = $"qemudomaincheckpointxml2xml invalid: {n}.xml" })];

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Case_FormatsLikeLibvirt(string name, string inputDirectory, CheckpointParseMode mode, long creationTime, Harness harness)
    {
        var input = inputDirectory == "in" ? Conformance.CheckpointIn(name) : Conformance.CheckpointOut(name);
        var expected = await File.ReadAllTextAsync(Conformance.CheckpointOut(name), TestContext.Current.CancellationToken);

        var checkpoint = CheckpointParser.Parse(await File.ReadAllTextAsync(input, TestContext.Current.CancellationToken), mode, creationTime);
        var flags = CheckpointFormatFlags.Secure;
        (checkpoint, flags) = ApplyHarness(checkpoint, harness, flags);
        var actual = CheckpointFormatter.Format(checkpoint, flags);

        Assert.Equal(expected, actual);
        await Xmllint.AssertValidAsync(actual, "domaincheckpoint.rng");
    }

    [Theory]
    [MemberData(nameof(InvalidCases))]
    public void InvalidCase_IsRefused(string name)
    {
        var xml = File.ReadAllText(Conformance.CheckpointIn(name));

        var e = Assert.Throws<DocumentException>(() => CheckpointParser.Parse(xml, CheckpointParseMode.Create));

        Assert.Equal(DocumentErrorReason.SchemaViolation, e.Reason);
        Assert.StartsWith("XML document failed to validate against schema: Unable to validate doc against domaincheckpoint.rng\n", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void InvalidCase_DiskInvalid_NamesTheMissingAttribute()
    {
        var xml = File.ReadAllText(Conformance.CheckpointIn("disk-invalid"));

        var e = Assert.Throws<DocumentException>(() => CheckpointParser.Parse(xml, CheckpointParseMode.Create));

        Assert.Equal(["line 6: element 'disk': missing required attribute 'name'"], e.Problems);
    }

    [Fact]
    public void InvalidCase_NameInvalid_NamesTheValue()
    {
        var xml = File.ReadAllText(Conformance.CheckpointIn("name-invalid"));

        var e = Assert.Throws<DocumentException>(() => CheckpointParser.Parse(xml, CheckpointParseMode.Create));

        Assert.Equal(["line 3: element 'name': value '../escape' is not a valid checkpoint name"], e.Problems);
    }

    [Theory]
    [InlineData("internal-active-invalid")]
    [InlineData("internal-inactive-invalid")]
    public void LegacyActiveElement_IsRefused(string name)
    {
        var xml = File.ReadAllText(Conformance.CheckpointOut(name));

        var e = Assert.Throws<DocumentException>(() => CheckpointParser.Parse(xml, CheckpointParseMode.Redefine));

        Assert.Contains(e.Problems, p => p.Contains("element 'active': element not allowed in <domaincheckpoint>", StringComparison.Ordinal));
    }

    // Every expected output read back as a redefinition formats to itself (size.xml needs the
    // SIZE flag and a computed size, which input never carries, so it is left out).
    [Theory]
    [InlineData("disk-default")]
    [InlineData("empty")]
    [InlineData("redefine")]
    [InlineData("sample")]
    public void Output_RedefinedAndFormatted_IsUnchanged(string name)
    {
        var xml = File.ReadAllText(Conformance.CheckpointOut(name));

        var checkpoint = CheckpointAligner.AssignBitmapNames(CheckpointParser.Parse(xml, CheckpointParseMode.Redefine));

        Assert.Equal(xml, CheckpointFormatter.Format(checkpoint));
    }

    /// <summary>The checkpoints virsh's redefine test feeds back (README §4): each formats to itself after alignment with its embedded domain.</summary>
    [Theory]
    [InlineData("checkpoint-c2.xml")]
    [InlineData("checkpoint-c3.xml")]
    public void VirshRedefineInput_AlignedWithItsDomain_IsUnchanged(string file)
    {
        var xml = File.ReadAllText(Path.Combine(Conformance.Tests, "virshtestdata", file));

        var checkpoint = CheckpointParser.Parse(xml, CheckpointParseMode.Redefine);

        Assert.Equal(xml, CheckpointFormatter.Format(CheckpointAligner.Align(checkpoint, checkpoint.Domain)));
        Assert.Equal("6695eb01-f6a4-8304-79aa-97f2502e193f", checkpoint.Domain!.Uuid);
    }

    [Fact]
    public void Redefine_WithEmbeddedDomain_AlignsAgainstIt()
    {
        var checkpoint = CheckpointParser.Parse(File.ReadAllText(Conformance.CheckpointOut("redefine")), CheckpointParseMode.Redefine);

        var aligned = CheckpointAligner.Align(checkpoint, checkpoint.Domain);

        Assert.Equal(File.ReadAllText(Conformance.CheckpointOut("redefine")), CheckpointFormatter.Format(aligned));
        Assert.Equal(["hda", "hdc", "vda", "vdb"], aligned.Disks.Select(d => d.Name));
    }

    [Fact]
    public void NoDomainFlag_LeavesTheDomainOut()
    {
        var checkpoint = CheckpointParser.Parse(File.ReadAllText(Conformance.CheckpointOut("redefine")), CheckpointParseMode.Redefine);

        var text = CheckpointFormatter.Format(checkpoint, CheckpointFormatFlags.Secure | CheckpointFormatFlags.NoDomain);

        Assert.DoesNotContain("<domain", text.Replace("<domaincheckpoint>", string.Empty, StringComparison.Ordinal), StringComparison.Ordinal);
        Assert.EndsWith("  </disks>\n</domaincheckpoint>\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownFormatFlag_IsRefused()
        => Assert.Throws<ArgumentOutOfRangeException>(() => CheckpointFormatter.Format(new CheckpointDefinition("c", null, null, 1, []), (CheckpointFormatFlags)8));

    private static TheoryDataRow<string, string, CheckpointParseMode, long, Harness> Case(string name, string input, CheckpointParseMode mode, long time, Harness harness)
        => new(name, input, mode, time, harness) { TestDisplayName = $"qemudomaincheckpointxml2xml {input}->out: {name}.xml ({mode}, T={time}, {harness})" };

    // The harness steps of libvirt's test program (README §1 step 3). VDA_BITMAP appends a blank
    // disk and works on entry 0; the blank entry has no name and the formatter skips it, so it
    // is only materialised here when it becomes entry 0 (the input had no disks).
    private static (CheckpointDefinition, CheckpointFormatFlags) ApplyHarness(CheckpointDefinition checkpoint, Harness harness, CheckpointFormatFlags flags)
    {
        if (harness.HasFlag(Harness.Parent))
        {
            Assert.Null(checkpoint.Parent);
            checkpoint = checkpoint with { Parent = "1525111885" };
        }

        if (harness.HasFlag(Harness.VdaBitmap))
        {
            var disks = checkpoint.Disks.ToList();
            if (disks.Count == 0)
            {
                disks.Add(new CheckpointDisk("vda", CheckpointType.Bitmap));
            }

            Assert.Null(disks[0].Bitmap);
            Assert.Equal("vda", disks[0].Name);
            disks[0] = disks[0] with { Bitmap = checkpoint.Name };
            checkpoint = checkpoint with { Disks = disks };
        }

        if (harness.HasFlag(Harness.Size))
        {
            var disks = checkpoint.Disks.ToList();
            disks[0] = disks[0] with { Size = 1048576 };
            checkpoint = checkpoint with { Disks = disks };
            flags |= CheckpointFormatFlags.Size;
        }

        return (checkpoint, flags);
    }
}
