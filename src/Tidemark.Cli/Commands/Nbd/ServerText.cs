using System.Globalization;
using System.Text;

namespace Tidemark.Cli.Commands.Nbd;

/// <summary>
/// Strings a server chose (export names, descriptions, context names), made safe to print: a
/// server must not be able to write terminal escape sequences, fake lines or cut the output
/// short through them.
/// </summary>
/// <remarks>
/// nbdinfo 1.14 prints an export name as a JSON string (<c>"</c> and <c>\</c> escaped, C0
/// controls as <c>\u00XX</c>, even <c>\n</c> and <c>\t</c>) and does the same here. It prints
/// descriptions raw and ends every string at a NUL (C strings); Tidemark escapes descriptions
/// too, and shows a NUL as <c>\u0000</c> instead of hiding what follows it. DEL and the C1
/// controls (U+0080–U+009F, which include a one-byte CSI) are escaped as well. Bytes that are
/// not UTF-8 arrive from the client already replaced by U+FFFD, so the output stays UTF-8.
/// </remarks>
internal static class ServerText
{
    /// <summary>
    /// <paramref name="value"/> escaped; when <paramref name="quoted"/> it goes between double
    /// quotes, so quotes are escaped too.
    /// </summary>
    public static string Escape(string? value, bool quoted)
    {
        if (string.IsNullOrEmpty(value))
        {
            return string.Empty;
        }

        StringBuilder? escaped = null;
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            string? replacement = c switch
            {
                '\\' => "\\\\",
                '"' when quoted => "\\\"",
                < ' ' or '\u007f' or (>= '\u0080' and <= '\u009f') => string.Create(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}"),
                _ => null,
            };
            if (replacement is null)
            {
                escaped?.Append(c);
                continue;
            }

            escaped ??= new StringBuilder(value, 0, i, value.Length + 16);
            escaped.Append(replacement);
        }

        return escaped?.ToString() ?? value;
    }
}
