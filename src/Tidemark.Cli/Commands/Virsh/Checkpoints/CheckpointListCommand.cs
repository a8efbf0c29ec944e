using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Xml.Linq;
using Tidemark.Remote;
using Tidemark.Remote.Protocol;

namespace Tidemark.Cli.Commands.Virsh.Checkpoints;

/// <summary>
/// virsh's <c>checkpoint-list</c>: the server filters (roots, leaves, descendants of --from,
/// topological order); virsh sorts by name unless --topological and draws the table, the
/// names or the tree.
/// </summary>
internal static class CheckpointListCommand
{
    // virDomainCheckpointListFlags (DESCENDANTS shares ROOTS' bit: it applies to children lists).
    private const uint Roots = 1;
    private const uint Descendants = 1;
    private const uint Topological = 2;
    private const uint Leaves = 4;
    private const uint NoLeaves = 8;

    // virDomainCheckpointXMLFlags.
    private const uint NoDomain = 2;

    public static Command Create(CliConsole console)
    {
        var domain = VirshParameter.Domain();
        var parent = new Option<bool>("--parent") { Description = "add a column showing parent checkpoint" };
        var roots = new Option<bool>("--roots") { Description = "list only checkpoints without parents" };
        var leaves = new Option<bool>("--leaves") { Description = "list only checkpoints without children" };
        var noLeaves = new Option<bool>("--no-leaves") { Description = "list only checkpoints that are not leaves (with children)" };
        var tree = new Option<bool>("--tree") { Description = "list checkpoints in a tree" };
        var from = new Option<string?>("--from") { Description = "limit list to children of given checkpoint" };
        var descendants = new Option<bool>("--descendants") { Description = "with --from, list all descendants" };
        var name = new Option<bool>("--name") { Description = "list checkpoint names only" };
        var topological = new Option<bool>("--topological") { Description = "sort list topologically rather than by name" };
        var json = new Option<bool>("--json") { Description = "print JSON (Tidemark's addition)" };
        var command = new Command("checkpoint-list", "List checkpoints for a domain.") { parent, roots, leaves, noLeaves, tree, from, descendants, name, topological, json };
        domain.AddTo(command);
        VirshAction.Set(command, console, async s =>
        {
            Exclusive(s, (tree, name), (parent, roots), (parent, tree), (roots, tree));
            if (s.Has(roots) && s.Result.GetValue(from) is not null)
            {
                throw new VirshException("Options --roots and --from are mutually exclusive");
            }

            foreach (var filter in new[] { leaves, noLeaves }.Where(f => s.Has(f) && s.Has(tree)))
            {
                throw new VirshException($"{filter.Name} and --tree are mutually exclusive");
            }

            if (s.Has(descendants) && s.Result.GetValue(from) is null)
            {
                throw new VirshException("--descendants requires --from");
            }

            var d = await s.DomainAsync(domain).ConfigureAwait(false);
            var flags = (s.Has(leaves) ? Leaves : 0) | (s.Has(noLeaves) ? NoLeaves : 0) | (s.Has(topological) ? Topological : 0);
            IReadOnlyList<RemoteCheckpoint> list;
            RemoteCheckpoint? start = null;
            if (s.Result.GetValue(from) is { } fromName)
            {
                start = await s.Client.LookupCheckpointByNameAsync(d, fromName, cancellationToken: s.CancellationToken).ConfigureAwait(false);
                list = await s.Client.ListCheckpointChildrenAsync(start, flags | (s.Has(descendants) ? Descendants : 0), s.CancellationToken).ConfigureAwait(false);
            }
            else
            {
                list = await s.Client.ListAllCheckpointsAsync(d, flags | (s.Has(roots) ? Roots : 0), s.CancellationToken).ConfigureAwait(false);
            }

            var names = list.Select(c => c.Name).ToList();

            // The tree of --from includes the checkpoint itself, as a root.
            if (s.Has(tree) && start is not null)
            {
                names.Add(start.Name);
            }

            if (!s.Has(topological))
            {
                names.Sort(StringComparer.OrdinalIgnoreCase);
            }

            var needParents = s.Has(parent) || s.Has(tree) || s.Has(json);
            var parents = new Dictionary<string, string?>();
            foreach (var n in needParents ? names : [])
            {
                parents[n] = n == start?.Name ? null : await ParentAsync(s, new RemoteCheckpoint(n, d)).ConfigureAwait(false);
            }

            if (s.Has(tree))
            {
                return CheckpointTree.Draw(names, parents);
            }

            if (s.Has(name))
            {
                // virsh 9.0 prints the names alone, --parent or not.
                return string.Concat(names.Select(n => n + "\n"));
            }

            var times = new List<long?>();
            foreach (var n in names)
            {
                times.Add(await CreationTimeAsync(s, new RemoteCheckpoint(n, d)).ConfigureAwait(false));
            }

            if (s.Has(json))
            {
                CheckpointEntry[] entries = [.. names.Select((n, i) => new CheckpointEntry(n, times[i], parents[n]))];
                return JsonSerializer.Serialize(entries, VirshJsonContext.Default.CheckpointEntryArray) + "\n";
            }

            var table = s.Has(parent) ? new VirshTable("Name", "Creation Time", "Parent") : new VirshTable("Name", "Creation Time");
            for (var i = 0; i < names.Count; i++)
            {
                var time = times[i] is { } t ? VirshText.CreationTime(t) : "";
                if (s.Has(parent))
                {
                    table.Add(names[i], time, parents[names[i]] ?? "");
                }
                else
                {
                    table.Add(names[i], time);
                }
            }

            return table.ToString();
        });
        return command;
    }

    /// <summary>The checkpoint's parent, or null for a root (virsh tells them apart by code 103).</summary>
    public static async Task<string?> ParentAsync(VirshSession s, RemoteCheckpoint checkpoint)
    {
        try
        {
            return (await s.Client.GetCheckpointParentAsync(checkpoint, cancellationToken: s.CancellationToken).ConfigureAwait(false)).Name;
        }
        catch (LibvirtError e) when (e.Code == VirErrorNumber.NoDomainCheckpoint)
        {
            return null;
        }
    }

    private static async Task<long?> CreationTimeAsync(VirshSession s, RemoteCheckpoint checkpoint)
    {
        var xml = XDocument.Parse(await s.Client.GetCheckpointXmlAsync(checkpoint, NoDomain, s.CancellationToken).ConfigureAwait(false));
        return long.TryParse(xml.Root?.Element("creationTime")?.Value, NumberStyles.None, CultureInfo.InvariantCulture, out var t) ? t : null;
    }

    private static void Exclusive(VirshSession s, params (Option<bool> A, Option<bool> B)[] pairs)
    {
        foreach (var (a, b) in pairs)
        {
            if (s.Has(a) && s.Has(b))
            {
                throw new VirshException($"Options {a.Name} and {b.Name} are mutually exclusive");
            }
        }
    }
}
