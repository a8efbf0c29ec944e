using System.Text;

namespace Tidemark.Cli.Commands.Virsh;

/// <summary>
/// virsh's tables (tools/vsh-table.c): a header, a rule of dashes two longer than the widest
/// line, and rows; every line starts with a space, cells are padded to their column's width
/// and joined by three spaces, and the last cell is not padded.
/// </summary>
internal sealed class VirshTable(params string[] header)
{
    private readonly List<string[]> _rows = [header];

    public void Add(params string[] row) => _rows.Add(row);

    public override string ToString()
    {
        var widths = new int[_rows[0].Length];
        foreach (var row in _rows)
        {
            for (var i = 0; i < row.Length; i++)
            {
                widths[i] = Math.Max(widths[i], row[i].Length);
            }
        }

        var sb = new StringBuilder();
        for (var r = 0; r < _rows.Count; r++)
        {
            var row = _rows[r];
            sb.Append(' ');
            for (var i = 0; i < row.Length; i++)
            {
                sb.Append(i == row.Length - 1 ? row[i] : row[i].PadRight(widths[i] + 3));
            }

            sb.Append('\n');
            if (r == 0)
            {
                // The header's length as padded to full width, plus two.
                sb.Append('-', 1 + widths.Sum() + (3 * (widths.Length - 1)) + 2).Append('\n');
            }
        }

        return sb.ToString();
    }
}
