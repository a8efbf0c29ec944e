using System.Text;

namespace Tidemark.Cli.Commands.Virsh.Checkpoints;

/// <summary>
/// virsh's <c>--tree</c> drawing (vshTreePrint): each root at the left margin, a "|" line above
/// the first child, children drawn as "+- NAME" under a bar that continues while siblings
/// follow, and an indented empty line after the last leaf of each branch.
/// </summary>
internal static class CheckpointTree
{
    /// <summary>Draws <paramref name="names"/> (in list order) given each one's parent (null for a root).</summary>
    public static string Draw(IReadOnlyList<string> names, IReadOnlyDictionary<string, string?> parents)
    {
        var sb = new StringBuilder();
        foreach (var root in names.Where(n => parents[n] is null))
        {
            Draw(sb, names, parents, root, isRoot: true, isLast: true, "");
        }

        return sb.ToString();
    }

    private static void Draw(StringBuilder sb, IReadOnlyList<string> names, IReadOnlyDictionary<string, string?> parents, string node, bool isRoot, bool isLast, string indent)
    {
        sb.Append(indent).Append(isRoot ? "" : "+- ").Append(node).Append('\n');
        if (!isRoot)
        {
            indent += isLast ? "  " : "| ";
        }

        var children = names.Where(n => parents[n] == node).ToList();
        if (children.Count > 0)
        {
            sb.Append(indent).Append("  |\n");
        }

        for (var i = 0; i < children.Count; i++)
        {
            Draw(sb, names, parents, children[i], isRoot: false, isLast: i == children.Count - 1, indent + "  ");
        }

        if (children.Count == 0 && isLast)
        {
            sb.Append(indent).Append('\n');
        }
    }
}
