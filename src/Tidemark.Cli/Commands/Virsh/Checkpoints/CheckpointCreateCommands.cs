using System.CommandLine;
using System.Security;
using System.Text;

namespace Tidemark.Cli.Commands.Virsh.Checkpoints;

/// <summary>virsh's <c>checkpoint-create</c> (from a document) and <c>checkpoint-create-as</c> (from options).</summary>
internal static class CheckpointCreateCommands
{
    // virDomainCheckpointCreateFlags.
    private const uint Redefine = 1;
    private const uint Quiesce = 2;
    private const uint RedefineValidate = 4;

    public static IEnumerable<Command> Create(CliConsole console)
    {
        yield return FromFile(console);
        yield return FromOptions(console);
    }

    private static Command FromFile(CliConsole console)
    {
        var domain = VirshParameter.Domain();
        var file = new VirshParameter("xmlfile", "domain checkpoint XML");
        var redefine = new Option<bool>("--redefine") { Description = "redefine metadata for existing checkpoint" };
        var redefineValidate = new Option<bool>("--redefine-validate") { Description = "validate the redefined checkpoint" };
        var quiesce = new Option<bool>("--quiesce") { Description = "quiesce guest's file systems" };
        var command = new Command("checkpoint-create", "Create a checkpoint from XML.") { redefine, redefineValidate, quiesce };
        domain.AddTo(command);
        file.AddTo(command);
        VirshAction.Set(command, console, async s =>
        {
            if (s.Has(redefineValidate) && !s.Has(redefine))
            {
                throw new VirshException("Option --redefine is required by option --redefine-validate");
            }

            var d = await s.DomainAsync(domain).ConfigureAwait(false);
            var path = file.Find(s.Result);

            // Without a file virsh asks for a checkpoint of every disk with a generated name.
            var xml = path is null ? "<domaincheckpoint/>" : await s.ReadFileAsync(path).ConfigureAwait(false);
            var flags = (s.Has(redefine) ? Redefine : 0) | (s.Has(redefineValidate) ? RedefineValidate : 0) | (s.Has(quiesce) ? Quiesce : 0);
            var checkpoint = await s.Client.CreateCheckpointAsync(d, xml, flags, s.CancellationToken).ConfigureAwait(false);
            return path is null ? $"Domain checkpoint {checkpoint.Name} created" : $"Domain checkpoint {checkpoint.Name} created from '{path}'";
        });
        return command;
    }

    private static Command FromOptions(CliConsole console)
    {
        var domain = VirshParameter.Domain();
        var name = new VirshParameter("name", "name of checkpoint");
        var description = new VirshParameter("description", "description of checkpoint");
        var printXml = new Option<bool>("--print-xml") { Description = "print XML document rather than create" };
        var quiesce = new Option<bool>("--quiesce") { Description = "quiesce guest's file systems" };
        var diskspecs = new Option<string[]>("--diskspec") { Description = "disk attributes: disk[,checkpoint=type][,bitmap=name]", AllowMultipleArgumentsPerToken = false };
        var command = new Command("checkpoint-create-as", "Create a checkpoint from a set of args.") { printXml, quiesce, diskspecs };
        domain.AddTo(command);
        name.AddTo(command);
        description.AddTo(command);
        VirshAction.Set(command, console, async s =>
        {
            var d = await s.DomainAsync(domain).ConfigureAwait(false);
            var xml = Document(name.Find(s.Result), description.Find(s.Result), s.Result.GetValue(diskspecs) ?? []);
            if (s.Has(printXml))
            {
                return xml + "\n";
            }

            var checkpoint = await s.Client.CreateCheckpointAsync(d, xml, s.Has(quiesce) ? Quiesce : 0, s.CancellationToken).ConfigureAwait(false);
            return $"Domain checkpoint {checkpoint.Name} created";
        });
        return command;
    }

    /// <summary>The document checkpoint-create-as builds, laid out as virsh lays it out.</summary>
    public static string Document(string? name, string? description, IReadOnlyList<string> diskspecs)
    {
        var sb = new StringBuilder("<domaincheckpoint>\n");
        if (name is not null)
        {
            sb.Append("  <name>").Append(SecurityElement.Escape(name)).Append("</name>\n");
        }

        if (description is not null)
        {
            sb.Append("  <description>").Append(SecurityElement.Escape(description)).Append("</description>\n");
        }

        if (diskspecs.Count > 0)
        {
            sb.Append("  <disks>\n");
            foreach (var spec in diskspecs)
            {
                sb.Append("    ").Append(DiskSpec(spec)).Append('\n');
            }

            sb.Append("  </disks>\n");
        }

        return sb.Append("</domaincheckpoint>\n").ToString();
    }

    // "vda,checkpoint=bitmap,bitmap=b1" → <disk name='vda' checkpoint='bitmap' bitmap='b1'/>.
    private static string DiskSpec(string spec)
    {
        var parts = spec.Split(',');
        if (parts.Skip(1).Any(p => !p.StartsWith("checkpoint=", StringComparison.Ordinal) && !p.StartsWith("bitmap=", StringComparison.Ordinal))
            || parts.Count(p => p.StartsWith("checkpoint=", StringComparison.Ordinal)) > 1 || parts.Count(p => p.StartsWith("bitmap=", StringComparison.Ordinal)) > 1)
        {
            throw new VirshException($"unable to parse diskspec: {spec}");
        }

        var sb = new StringBuilder("<disk name='").Append(SecurityElement.Escape(parts[0])).Append('\'');
        foreach (var key in new[] { "checkpoint", "bitmap" })
        {
            foreach (var part in parts.Skip(1).Where(p => p.StartsWith(key + "=", StringComparison.Ordinal)))
            {
                sb.Append(' ').Append(key).Append("='").Append(SecurityElement.Escape(part[(key.Length + 1)..])).Append('\'');
            }
        }

        return sb.Append("/>").ToString();
    }
}
