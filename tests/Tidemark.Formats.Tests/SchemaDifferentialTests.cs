using System.Xml;
using System.Xml.Linq;
using FsCheck;
using FsCheck.Fluent;

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
    private static readonly string[] Inputs =
    [
        .. Directory.EnumerateFiles(Path.Combine(Conformance.Tests, "qemudomaincheckpointxml2xmlin"), "*.xml"),
        .. Directory.EnumerateFiles(Path.Combine(Conformance.Tests, "qemudomaincheckpointxml2xmlout"), "*.xml")
            .Where(f => !File.ReadAllText(f).Contains("<domain ", StringComparison.Ordinal)),
        .. Directory.EnumerateFiles(Path.Combine(Conformance.Tests, "domainbackupxml2xmlin"), "*.xml"),
        .. Directory.EnumerateFiles(Path.Combine(Conformance.Tests, "domainbackupxml2xmlout"), "*.xml"),
    ];

    private static readonly Dictionary<string, string> Texts = Inputs.ToDictionary(f => f, File.ReadAllText);

    [FsCheck.Xunit.Property(MaxTest = 1000)]
    public Property MutatedInput_SchemaVerdictAgreesWithXmllint()
        => Prop.ForAll(MutationPropertyTests.Mutants(Inputs), async mutant =>
        {
            var text = mutant.Apply(Texts[mutant.File]);
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
        });
}
