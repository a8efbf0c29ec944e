using System.Text;

namespace Tidemark.Cli.Commands.Tour;

/// <summary>The transcript of one tour step: labelled lines, then the document indented under them.</summary>
internal sealed class TourReport
{
    private const string Indent = "    ";
    private readonly StringBuilder _text = new();

    public void Line(string label, string value) => _text.Append("  ").Append((label + ":").PadRight(10)).Append(value).Append('\n');

    public void Document(string document)
    {
        foreach (var line in document.TrimEnd('\n').Split('\n'))
        {
            _text.Append(Indent).Append(line).Append('\n');
        }
    }

    public override string ToString() => _text.ToString();
}
