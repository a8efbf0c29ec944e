using Tidemark.Formats.Checkpoints;

namespace Tidemark.Formats.Tests;

/// <summary>The redefinition checks that need no checkpoint tree (spec §2.5, §2.6).</summary>
public sealed class CheckpointRedefinitionTests
{
    // Read by each test, so a missing conformance data set skips the test instead of failing the class.
    private static CheckpointDefinition Redefine => CheckpointParser.Parse(
        File.ReadAllText(Path.Combine(Conformance.Tests, "qemudomaincheckpointxml2xmlout", "redefine.xml")),
        CheckpointParseMode.Redefine);

    [Fact]
    public void OwnParent_IsRefused()
    {
        var ownParent = Redefine with { Parent = "c1" };

        var e = Assert.Throws<DocumentException>(() => CheckpointRedefinition.CheckNotOwnParent(ownParent));

        Assert.Equal((DocumentErrorReason.OwnParent, "invalid argument: cannot set moment c1 as its own parent"), (e.Reason, e.Message));
    }

    [Fact]
    public void OtherParent_IsAccepted()
        => CheckpointRedefinition.CheckNotOwnParent(Redefine with { Parent = "c0" });

    [Theory]
    [InlineData("c7a5fdbd-edaf-9455-926a-d65c16db1809")]
    [InlineData("C7A5FDBDEDAF9455926AD65C16DB1809")]
    public void SameUuid_InAnyWrittenForm_IsAccepted(string uuid)
        => CheckpointRedefinition.CheckDomainUuid(Redefine, Guid.Parse(uuid));

    [Fact]
    public void OtherUuid_IsRefused()
    {
        var vm = Guid.Parse("6695eb01-f6a4-8304-79aa-97f2502e193f");
        var redefine = Redefine;

        var e = Assert.Throws<DocumentException>(() => CheckpointRedefinition.CheckDomainUuid(redefine, vm));

        Assert.Equal("invalid argument: definition for checkpoint c1 must use uuid 6695eb01-f6a4-8304-79aa-97f2502e193f", e.Message);
    }
}
