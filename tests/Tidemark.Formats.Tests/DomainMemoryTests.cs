namespace Tidemark.Formats.Tests;

/// <summary>
/// A domain's sizes are <c>scaledInteger</c>s (basictypes.rng): Tidemark takes exactly what
/// <c>xmllint --relaxng domain.rng</c> takes.
/// </summary>
public sealed class DomainMemoryTests
{
    [Theory]
    [InlineData("memory", "", "-1", false)]
    [InlineData("memory", "", "0x10", false)]
    [InlineData("memory", "", "\u0663", false)]
    [InlineData("memory", "", "18446744073709551616", false)]
    [InlineData("memory", "", "99999999999999999999", false)]
    [InlineData("memory", "", "", false)]
    [InlineData("memory", "", " 1024", false)]
    [InlineData("memory", " unit='KiB'", "1048576", true)]
    [InlineData("memory", " unit='bytes'", "18446744073709551615", true)]
    [InlineData("memory", " unit='GB' dumpCore='on'", "0", true)]
    [InlineData("memory", " unit='kibibytes'", "1", false)]
    [InlineData("maxMemory", " slots='16' unit='G'", "64", true)]
    [InlineData("currentMemory", "", "+5", false)]
    public async Task Memory_AsLibvirtsSchema(string element, string attributes, string value, bool valid)
    {
        var xml = $"<domain type='kvm'><name>d</name><{element}{attributes}>{value}</{element}></domain>";

        var (xmllintValid, output) = await Xmllint.ValidateAsync(xml, "domain.rng");
        var refusal = Record.Exception(() => DocumentValidator.Validate(xml, cancellationToken: TestContext.Current.CancellationToken));

        Assert.True(valid == xmllintValid, $"xmllint: {output}");
        if (valid)
        {
            Assert.Null(refusal);
        }
        else
        {
            var e = Assert.IsType<DocumentException>(refusal);
            Assert.Equal(DocumentErrorReason.SchemaViolation, e.Reason);
            Assert.Contains(e.Problems, p => p.StartsWith($"line 1: element '{element}'", StringComparison.Ordinal));
        }
    }
}
