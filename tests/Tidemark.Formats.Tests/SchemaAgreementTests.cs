using System.Xml.Linq;
using Tidemark.Testing;

namespace Tidemark.Formats.Tests;

/// <summary>
/// Tidemark's verdict on every XML file of the conformance folder agrees with
/// <c>xmllint --relaxng</c> and libvirt's schemas, the schema chosen by root element as
/// virt-xml-validate chooses it (a root without a schema, like status XML's domstatus, is
/// refused by both).
/// </summary>
public sealed class SchemaAgreementTests
{
    public static TheoryDataRow<string>[] Files => LibvirtConformance.Rows(
        () => LibvirtConformance.XmlFiles().Select(f => new TheoryDataRow<string>(f) { TestDisplayName = $"validate agrees with xmllint: {f}" }));

    [Theory]
    [MemberData(nameof(Files))]
    public async Task Validate_AgreesWithXmllint(string file)
    {
        var path = Path.Combine(LibvirtConformance.Folder, file);
        var text = await File.ReadAllTextAsync(path, TestContext.Current.CancellationToken);
        var schema = Xmllint.SchemaFor(XDocument.Parse(text).Root!.Name.LocalName);
        var (xmllintValid, output) = schema is null ? (false, "no schema for this root element") : await Xmllint.ValidateFileAsync(path, schema);

        string? tidemarkError = null;
        try
        {
            DocumentValidator.Validate(text, file, cancellationToken: TestContext.Current.CancellationToken);
        }
        catch (DocumentException e)
        {
            tidemarkError = e.Message;
        }

        Assert.True(
            xmllintValid == (tidemarkError is null),
            $"{file}: xmllint says {(xmllintValid ? "valid" : "invalid")} ({output.Trim()}), Tidemark says {tidemarkError ?? "valid"}");

        // README "Schema-validation contract": a name containing "-invalid." must fail, every other file pass.
        if (schema is not null)
        {
            Assert.Equal(!file.Contains("-invalid.", StringComparison.Ordinal), xmllintValid);
        }
    }
}
