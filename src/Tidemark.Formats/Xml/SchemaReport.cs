using System.Globalization;
using System.Xml;
using System.Xml.Linq;

namespace Tidemark.Formats.Xml;

/// <summary>
/// Collects what libvirt's RELAX NG schema would refuse in one document, so that all problems
/// are reported at once, each naming its line, element and attribute. Tidemark enforces the
/// schema rules itself in C#; it never loads the .rng files.
/// </summary>
internal sealed class SchemaReport
{
    /// <summary>
    /// The most problems reported one by one: 100. A hostile document can break a rule a million
    /// times (one unknown attribute after another); the first hundred say what is wrong, and
    /// the rest are only counted, so the message stays small. (xmllint stops sooner: one
    /// error per refused element.)
    /// </summary>
    public const int MaxReported = 100;

    private readonly List<string> _problems = [];
    private readonly string _schema;
    private int _unreported;

    public SchemaReport(string schema) => _schema = schema;

    public bool HasProblems => _problems.Count > 0;

    /// <summary>Records a problem at <paramref name="at"/>.</summary>
    public void Add(XObject at, string problem)
    {
        if (_problems.Count < MaxReported)
        {
            _problems.Add(string.Create(CultureInfo.InvariantCulture, $"line {LineOf(at)}: {Describe(at)}: {problem}"));
        }
        else
        {
            _unreported++;
        }
    }

    /// <summary>Throws the collected problems as one <see cref="DocumentErrorReason.SchemaViolation"/>.</summary>
    public void ThrowIfAny()
    {
        if (_problems.Count > 0)
        {
            var problems = _unreported == 0
                ? _problems.ToArray()
                : [.. _problems, string.Create(CultureInfo.InvariantCulture, $"and {_unreported} more problems")];
            throw new DocumentException(DocumentErrorReason.SchemaViolation, $"Unable to validate doc against {_schema}", problems);
        }
    }

    /// <summary>Reports attributes of <paramref name="element"/> not in <paramref name="allowed"/>.</summary>
    public void AllowAttributes(XElement element, params string[] allowed)
    {
        foreach (var attribute in element.Attributes())
        {
            if (attribute.IsNamespaceDeclaration)
            {
                continue;
            }

            if (attribute.Name.Namespace != XNamespace.None || Array.IndexOf(allowed, attribute.Name.LocalName) < 0)
            {
                Add(attribute, "attribute not allowed here");
            }
        }
    }

    /// <summary>
    /// Reports child elements not in <paramref name="allowed"/>, and text other than whitespace
    /// (RELAX NG ignores whitespace between elements, nothing else).
    /// </summary>
    public void AllowChildren(XElement element, params string[] allowed)
    {
        foreach (var node in element.Nodes())
        {
            switch (node)
            {
                case XElement child when child.Name.Namespace != XNamespace.None || Array.IndexOf(allowed, child.Name.LocalName) < 0:
                    Add(child, $"element not allowed in <{element.Name.LocalName}>");
                    break;
                case XText text when !string.IsNullOrWhiteSpace(text.Value):
                    Add(element, "text not allowed here");
                    break;
            }
        }
    }

    /// <summary>A child element allowed at most once: reports the extra copies and returns the first.</summary>
    public XElement? AtMostOne(XElement parent, string name)
    {
        XElement? first = null;
        foreach (var child in parent.Elements(name))
        {
            if (first is null)
            {
                first = child;
            }
            else
            {
                Add(child, $"element may appear only once in <{parent.Name.LocalName}>");
            }
        }

        return first;
    }

    /// <summary>An element whose content is text only (data or text pattern): no child elements.</summary>
    public string TextOnly(XElement element)
    {
        AllowAttributes(element);
        foreach (var child in element.Elements())
        {
            Add(child, $"element not allowed in <{element.Name.LocalName}>, which holds text only");
        }

        return element.Value;
    }

    /// <summary>A required attribute: reports its absence.</summary>
    public XAttribute? Required(XElement element, string name)
    {
        var attribute = element.Attribute(name);
        if (attribute is null)
        {
            Add(element, $"missing required attribute '{name}'");
        }

        return attribute;
    }

    /// <summary>Checks a value against a schema data type; <paramref name="type"/> names it in the message.</summary>
    public void Check(XObject at, string value, Func<string, bool> isValid, string type)
    {
        if (!isValid(value))
        {
            Add(at, $"value '{value}' is not a valid {type}");
        }
    }

    /// <summary>Checks a value against a fixed list of tokens.</summary>
    public void OneOf(XAttribute attribute, params string[] allowed)
    {
        var token = SchemaTypes.Token(attribute.Value);
        if (Array.IndexOf(allowed, token) < 0)
        {
            Add(attribute, $"value '{attribute.Value}' is not one of {string.Join(", ", allowed.Select(a => $"'{a}'"))}");
        }
    }

    private static int LineOf(XObject at) => at is IXmlLineInfo info && info.HasLineInfo() ? info.LineNumber : 0;

    private static string Describe(XObject at) => at switch
    {
        XAttribute a => $"element '{a.Parent?.Name.LocalName}': attribute '{a.Name.LocalName}'",
        XElement e => $"element '{e.Name.LocalName}'",
        _ => "document",
    };
}
