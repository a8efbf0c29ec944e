namespace Tidemark.Formats.Xml;

/// <summary>
/// One table between an enum and its XML strings, as libvirt's <c>VIR_ENUM_IMPL</c>. Lookup is
/// exact, as libvirt's parser is; the schema check compares after RELAX NG token normalisation
/// instead (see <see cref="SchemaTypes.Token"/>), so <c>' no '</c> passes the schema and then fails the parser,
/// exactly as with libvirt.
/// </summary>
internal sealed class XmlEnumTable<T>
    where T : struct, Enum
{
    private readonly (T Value, string Xml)[] _entries;

    public XmlEnumTable(params (T Value, string Xml)[] entries) => _entries = entries;

    /// <summary>The XML string of <paramref name="value"/>.</summary>
    public string ToXml(T value)
    {
        foreach (var (v, xml) in _entries)
        {
            if (EqualityComparer<T>.Default.Equals(v, value))
            {
                return xml;
            }
        }

        throw new ArgumentOutOfRangeException(nameof(value), value, $"no XML name for {typeof(T).Name}.{value}");
    }

    /// <summary>The value named by <paramref name="xml"/>, or null when the string names none.</summary>
    public T? Parse(string xml)
    {
        foreach (var (v, name) in _entries)
        {
            if (name == xml)
            {
                return v;
            }
        }

        return null;
    }

    /// <summary>The XML strings, in table order (for error messages).</summary>
    public IEnumerable<string> Names => _entries.Select(e => e.Xml);
}
