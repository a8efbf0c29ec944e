using System.Globalization;
using System.Text;
using System.Xml.Linq;

namespace Tidemark.Formats.Xml;

/// <summary>
/// Writes XML the way libvirt's <c>virBuffer</c> does, so output compares byte for byte:
/// two-space indentation per level, single-quoted attributes, <c>/&gt;</c> for empty elements,
/// one element per line, LF line ends, and <c>virBufferEscapeString</c>'s escaping (below).
/// </summary>
internal sealed class LibvirtXmlWriter
{
    private const int IndentStep = 2;
    private readonly StringBuilder _text = new();
    private int _indent;

    public LibvirtXmlWriter(int indent = 0) => _indent = indent;

    /// <summary>Opens <c>&lt;name attrs…&gt;</c> on its own line and indents what follows.</summary>
    public void Open(string name, params (string Name, string? Value)[] attributes)
    {
        StartTag(name, attributes);
        _text.Append(">\n");
        _indent += IndentStep;
    }

    /// <summary>Closes the element opened last.</summary>
    public void Close(string name)
    {
        _indent -= IndentStep;
        Indent();
        _text.Append("</").Append(name).Append(">\n");
    }

    /// <summary>An element with attributes and no content: <c>&lt;name a='v'/&gt;</c>. Null attributes are left out.</summary>
    public void Empty(string name, params (string Name, string? Value)[] attributes)
    {
        StartTag(name, attributes);
        _text.Append("/>\n");
    }

    /// <summary>A text-only element, <c>&lt;name&gt;text&lt;/name&gt;</c>; nothing when <paramref name="value"/> is null.</summary>
    public void TextElement(string name, string? value)
    {
        if (value is null)
        {
            return;
        }

        Indent();
        _text.Append('<').Append(name).Append('>');
        Escape(value);
        _text.Append("</").Append(name).Append(">\n");
    }

    /// <summary>A number as a text-only element.</summary>
    public void TextElement(string name, long value) => TextElement(name, value.ToString(CultureInfo.InvariantCulture));

    /// <summary>
    /// Writes a kept subtree (an embedded <c>&lt;domain&gt;</c>) at the current indentation, as
    /// libvirt's formatter would lay it out: whitespace-only text dropped, text-only elements on
    /// one line, attributes in document order. A subtree already in libvirt's layout comes back
    /// unchanged apart from its indentation. Text beside child elements (mixed content, which no
    /// libvirt domain element has) is not kept; comments were dropped when the document was read,
    /// as libvirt drops them.
    /// </summary>
    public void Verbatim(XElement element)
    {
        var attributes = element.Attributes()
            .Select(a => (a.IsNamespaceDeclaration ? DeclarationName(a) : QualifiedName(a.Name, element), (string?)a.Value))
            .ToArray();
        var name = QualifiedName(element.Name, element);
        var children = element.Elements().ToList();
        var text = string.Concat(element.Nodes().OfType<XText>().Select(t => t.Value));
        if (children.Count == 0)
        {
            if (text.Length == 0)
            {
                Empty(name, attributes);
                return;
            }

            StartTag(name, attributes);
            _text.Append('>');
            Escape(text);
            _text.Append("</").Append(name).Append(">\n");
            return;
        }

        Open(name, attributes);
        foreach (var child in children)
        {
            Verbatim(child);
        }

        Close(name);
    }

    public override string ToString() => _text.ToString();

    private static string DeclarationName(XAttribute declaration)
        => declaration.Name.Namespace == XNamespace.None ? "xmlns" : "xmlns:" + declaration.Name.LocalName;

    private static string QualifiedName(XName name, XElement scope)
    {
        if (name.Namespace == XNamespace.None)
        {
            return name.LocalName;
        }

        var prefix = scope.GetPrefixOfNamespace(name.Namespace);
        return prefix is null ? name.LocalName : prefix + ":" + name.LocalName;
    }

    private void StartTag(string name, (string Name, string? Value)[] attributes)
    {
        Indent();
        _text.Append('<').Append(name);
        foreach (var (attr, value) in attributes)
        {
            if (value is null)
            {
                continue;
            }

            _text.Append(' ').Append(attr).Append("='");
            Escape(value);
            _text.Append('\'');
        }
    }

    private void Indent() => _text.Append(' ', _indent);

    // virBufferEscapeString: the five XML specials become entities; control characters other
    // than TAB, LF and CR are dropped (they cannot appear in XML 1.0 at all).
    private void Escape(string value)
    {
        foreach (var c in value)
        {
            switch (c)
            {
                case '<': _text.Append("&lt;"); break;
                case '>': _text.Append("&gt;"); break;
                case '&': _text.Append("&amp;"); break;
                case '\'': _text.Append("&apos;"); break;
                case '"': _text.Append("&quot;"); break;
                case '\t' or '\n' or '\r': _text.Append(c); break;
                case < ' ': break;
                default: _text.Append(c); break;
            }
        }
    }
}
