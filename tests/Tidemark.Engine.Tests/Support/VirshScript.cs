using System.Globalization;
using System.Text;
using Tidemark.Engine.Checkpoints;
using Tidemark.Engine.Domains;
using Tidemark.Formats;

namespace Tidemark.Engine.Tests.Support;

/// <summary>
/// Replays virsh checkpoint commands (libvirt <c>tests/virshtestdata/checkpoint*.in</c>) on the
/// engine API and prints what virsh prints: each command's output followed by virsh's
/// separator newline, errors as <c>error: MESSAGE</c>. The client-side parts (sorting, the
/// tree, info lines) follow virsh's <c>tools/virsh-checkpoint.c</c> as spec §5 describes it.
/// </summary>
public sealed class VirshScript(Domain domain, string directory)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async Task<string> RunAsync(IEnumerable<string> lines)
    {
        var output = new StringBuilder();
        foreach (var line in lines.Where(l => l.Length > 0))
        {
            string text;
            try
            {
                text = await RunCommandAsync(line);
            }
            catch (Exception e) when (e is EngineException or DocumentException)
            {
                text = $"error: {e.Message}\n";
            }

            output.Append(text).Append('\n');
        }

        return output.ToString();
    }

    private async Task<string> RunCommandAsync(string line)
    {
        if (line.StartsWith("echo ", StringComparison.Ordinal))
        {
            return line["echo ".Length..].Trim('\'');
        }

        var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var options = words.Skip(1).Where(w => w.StartsWith("--", StringComparison.Ordinal)).ToHashSet();
        var positional = words.Skip(1).Where(w => !w.StartsWith("--", StringComparison.Ordinal)).ToList();
        string? Value(string option)
        {
            var i = Array.IndexOf(words, option);
            return i >= 0 && i + 1 < words.Length ? words[i + 1] : null;
        }

        if (words[0] == "cd")
        {
            return "";
        }

        Assert.Equal(domain.Name, positional[0]);
        switch (words[0])
        {
            case "checkpoint-create-as":
                {
                    var name = positional[1];
                    await domain.Checkpoints.CreateAsync($"<domaincheckpoint>\n  <name>{name}</name>\n</domaincheckpoint>\n", cancellationToken: Ct);
                    return $"Domain checkpoint {name} created";
                }

            case "checkpoint-create":
                {
                    var file = positional[1];
                    var flags = options.Contains("--redefine") ? CheckpointCreateFlags.Redefine : CheckpointCreateFlags.None;
                    var name = await domain.Checkpoints.CreateAsync(await File.ReadAllTextAsync(Path.Combine(directory, file), Ct), flags, Ct);
                    return $"Domain checkpoint {name} created from '{file}'";
                }

            case "checkpoint-delete":
                {
                    var flags = options.Contains("--children") ? CheckpointDeleteFlags.Children
                        : options.Contains("--children-only") ? CheckpointDeleteFlags.ChildrenOnly
                        : CheckpointDeleteFlags.None;
                    await domain.Checkpoints.DeleteAsync(positional[1], flags, Ct);
                    return flags == CheckpointDeleteFlags.ChildrenOnly
                        ? $"Domain checkpoint {positional[1]} children deleted\n"
                        : $"Domain checkpoint {positional[1]} deleted\n";
                }

            case "checkpoint-dumpxml":
                return await domain.Checkpoints.GetXmlAsync(positional[1], cancellationToken: Ct);
            case "checkpoint-info":
                {
                    var name = positional[1];
                    string parent;
                    try
                    {
                        parent = await domain.Checkpoints.GetParentAsync(name, Ct);
                    }
                    catch (EngineException e) when (e.Code == LibvirtErrorCode.NoDomainCheckpoint)
                    {
                        parent = "-";
                    }

                    var children = (await domain.Checkpoints.ListChildrenAsync(name, cancellationToken: Ct)).Count;
                    var descendants = (await domain.Checkpoints.ListChildrenAsync(name, CheckpointListFlags.Descendants, Ct)).Count;
                    return string.Create(CultureInfo.InvariantCulture, $"{"Name:",-15} {name}\n{"Domain:",-15} {domain.Name}\n{"Parent:",-15} {parent}\n{"Children:",-15} {children}\n{"Descendants:",-15} {descendants}\n");
                }

            case "checkpoint-list":
                return await ListAsync(options, Value("--from"));
            default:
                throw new InvalidOperationException($"the script uses an unknown command: {line}");
        }
    }

    private async Task<string> ListAsync(HashSet<string> options, string? from)
    {
        var flags = CheckpointListFlags.None;
        if (options.Contains("--roots") || options.Contains("--descendants"))
        {
            flags |= CheckpointListFlags.Roots;
        }

        if (options.Contains("--leaves"))
        {
            flags |= CheckpointListFlags.Leaves;
        }

        if (options.Contains("--no-leaves"))
        {
            flags |= CheckpointListFlags.NoLeaves;
        }

        var topological = options.Contains("--topological");
        if (topological)
        {
            flags |= CheckpointListFlags.Topological;
        }

        var names = from is null
            ? await domain.Checkpoints.ListAsync(flags, Ct)
            : await domain.Checkpoints.ListChildrenAsync(from, flags, Ct);
        if (!topological)
        {
            names = [.. names.Order(StringComparer.OrdinalIgnoreCase)];
        }

        var parents = new Dictionary<string, string?>();
        foreach (var name in names)
        {
            try
            {
                parents[name] = await domain.Checkpoints.GetParentAsync(name, Ct);
            }
            catch (EngineException e) when (e.Code == LibvirtErrorCode.NoDomainCheckpoint)
            {
                // virsh tells "no parent" apart from other failures by this code.
                parents[name] = null;
            }
        }

        var sb = new StringBuilder();
        if (options.Contains("--tree"))
        {
            foreach (var root in names.Where(n => parents[n] is null))
            {
                Render(sb, names, parents, root, isRoot: true, isLast: true, "");
            }

            return sb.ToString();
        }

        foreach (var name in names)
        {
            sb.Append(name);
            if (options.Contains("--parent") && parents[name] is { } parent)
            {
                sb.Append('\t').Append(parent);
            }

            sb.Append('\n');
        }

        return sb.ToString();
    }

    private static void Render(StringBuilder sb, IReadOnlyList<string> names, Dictionary<string, string?> parents, string node, bool isRoot, bool isLast, string prefix)
    {
        sb.Append(prefix).Append(isRoot ? "" : "+- ").Append(node).Append('\n');
        if (!isRoot)
        {
            prefix += (isLast ? " " : "|") + " ";
        }

        var kids = names.Where(n => parents[n] == node).ToList();
        if (kids.Count > 0)
        {
            sb.Append(prefix).Append("  |\n");
        }

        for (var i = 0; i < kids.Count; i++)
        {
            Render(sb, names, parents, kids[i], isRoot: false, isLast: i == kids.Count - 1, prefix + "  ");
        }

        if (kids.Count == 0 && isLast)
        {
            sb.Append(prefix).Append('\n');
        }
    }
}
