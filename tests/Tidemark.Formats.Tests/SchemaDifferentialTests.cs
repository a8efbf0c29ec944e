using System.Xml;
using System.Xml.Linq;
using FsCheck;
using FsCheck.Fluent;
using Tidemark.Testing;

namespace Tidemark.Formats.Tests;

/// <summary>
/// Differential test against the real xmllint: on mutated checkpoint and backup inputs, Tidemark
/// refuses every document that libvirt's schema refuses, and reports a schema violation only
/// when xmllint does too (Tidemark may refuse more, with libvirt's parser errors, e.g. a port
/// over 65535). Inputs with an embedded &lt;domain&gt; are left out: Tidemark checks only the
/// modelled part of a domain (see DomainSchema).
/// </summary>
public sealed class SchemaDifferentialTests
{
    // Read on first use, inside a test, so a missing data set skips the test (LibvirtConformance).
    private static readonly Lazy<string[]> Inputs = new(() =>
    [
        .. LibvirtConformance.TestFiles("qemudomaincheckpointxml2xmlin"),
        .. LibvirtConformance.TestFiles("qemudomaincheckpointxml2xmlout")
            .Where(f => !File.ReadAllText(f).Contains("<domain ", StringComparison.Ordinal)),
        .. LibvirtConformance.TestFiles("domainbackupxml2xmlin"),
        .. LibvirtConformance.TestFiles("domainbackupxml2xmlout"),
    ]);

    private static readonly Lazy<Dictionary<string, string>> Texts = new(() => Inputs.Value.ToDictionary(f => f, File.ReadAllText));

    // A fact that runs the property (see MutationPropertyTests): a missing data set skips it.
    [Fact]
    public void MutatedInput_SchemaVerdictAgreesWithXmllint()
    {
        var texts = Texts.Value;
        Peer.Require("xmllint");
        Prop.ForAll(MutationPropertyTests.Mutants(Inputs.Value), async mutant =>
        {
            var text = mutant.Apply(texts[mutant.File]);
            XDocument document;
            try
            {
                document = XDocument.Parse(text);
            }
            catch (XmlException)
            {
                return; // Not well-formed: not a schema question (the mutation property covers it).
            }

            var schema = Xmllint.SchemaFor(document.Root!.Name.LocalName);
            if (schema is null || document.Descendants("domain").Any())
            {
                return;
            }

            var (xmllintValid, output) = await Xmllint.ValidateAsync(text, schema);
            DocumentException? refusal = null;
            try
            {
                DocumentValidator.Validate(text);
            }
            catch (DocumentException e)
            {
                refusal = e;
            }

            if (!xmllintValid)
            {
                Assert.True(refusal is not null, $"xmllint refuses, Tidemark accepts:\n{text}\n{output}");
            }

            if (refusal?.Reason == DocumentErrorReason.SchemaViolation)
            {
                Assert.False(xmllintValid, $"Tidemark reports a schema violation that xmllint does not see:\n{text}\n{refusal.Message}");
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(1000));
    }
}
