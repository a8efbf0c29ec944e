using Tidemark.Formats;
using Tidemark.Formats.Xml;

namespace Tidemark.Fuzz;

/// <summary>
/// The XML documents: bytes decoded as <c>validate</c> decodes a file, then validated by root
/// element (checkpoint, backup, domain). The corpus holds libvirt's conformance documents and
/// Tidemark's examples.
/// </summary>
internal sealed class DocumentTarget : FuzzTarget
{
    public override void Run(byte[] input)
    {
        try
        {
            var text = DocumentText.Decode(input, "input");
            DocumentValidator.Validate(text, "input");
        }
        catch (DocumentException)
        {
        }
    }
}
