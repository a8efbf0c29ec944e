using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Tidemark.Remote;

namespace Tidemark.Cli.Commands.Virsh.Checkpoints;

/// <summary>virsh's <c>checkpoint-dumpxml</c>, <c>checkpoint-info</c>, <c>checkpoint-parent</c> and <c>checkpoint-delete</c>.</summary>
internal static class CheckpointCommands
{
    // virDomainCheckpointXMLFlags.
    private const uint XmlSecure = 1;
    private const uint XmlNoDomain = 2;
    private const uint XmlSize = 4;

    // virDomainCheckpointDeleteFlags.
    private const uint DeleteChildren = 1;
    private const uint DeleteMetadataOnly = 2;
    private const uint DeleteChildrenOnly = 4;

    // virDomainCheckpointListFlags for children.
    private const uint Descendants = 1;

    public static IEnumerable<Command> Create(CliConsole console)
    {
        foreach (var create in CheckpointCreateCommands.Create(console))
        {
            yield return create;
        }

        yield return CheckpointListCommand.Create(console);
        yield return DumpXml(console);
        yield return Info(console);
        yield return Parent(console);
        yield return Delete(console);
    }

    private static (VirshParameter Domain, VirshParameter Checkpoint) Parameters(Command command)
    {
        var domain = VirshParameter.Domain();
        var checkpoint = new VirshParameter("checkpointname", "checkpoint name");
        domain.AddTo(command);
        checkpoint.AddTo(command);
        return (domain, checkpoint);
    }

    private static Command DumpXml(CliConsole console)
    {
        var security = new Option<bool>("--security-info") { Description = "include security sensitive information in XML dump" };
        var noDomain = new Option<bool>("--no-domain") { Description = "exclude <domain> from XML" };
        var size = new Option<bool>("--size") { Description = "include backup size estimate in XML dump" };
        var command = new Command("checkpoint-dumpxml", "Dump XML for a domain checkpoint.") { security, noDomain, size };
        var (domain, name) = Parameters(command);
        VirshAction.Set(command, console, async s =>
        {
            var d = await s.DomainAsync(domain).ConfigureAwait(false);
            var checkpoint = await s.CheckpointAsync(d, name).ConfigureAwait(false);
            var flags = (s.Has(security) ? XmlSecure : 0) | (s.Has(noDomain) ? XmlNoDomain : 0) | (s.Has(size) ? XmlSize : 0);
            return await s.Client.GetCheckpointXmlAsync(checkpoint, flags, s.CancellationToken).ConfigureAwait(false);
        });
        return command;
    }

    private static Command Info(CliConsole console)
    {
        var json = new Option<bool>("--json") { Description = "print JSON (Tidemark's addition)" };
        var command = new Command("checkpoint-info", "Domain checkpoint information.") { json };
        var (domain, name) = Parameters(command);
        VirshAction.Set(command, console, async s =>
        {
            var d = await s.DomainAsync(domain).ConfigureAwait(false);
            var checkpoint = await s.CheckpointAsync(d, name).ConfigureAwait(false);
            var parent = await CheckpointListCommand.ParentAsync(s, checkpoint).ConfigureAwait(false);
            var children = (await s.Client.ListCheckpointChildrenAsync(checkpoint, 0, s.CancellationToken).ConfigureAwait(false)).Count;
            var descendants = (await s.Client.ListCheckpointChildrenAsync(checkpoint, Descendants, s.CancellationToken).ConfigureAwait(false)).Count;
            if (s.Has(json))
            {
                return JsonSerializer.Serialize(new CheckpointInfoEntry(checkpoint.Name, d.Name, parent, children, descendants), VirshJsonContext.Default.CheckpointInfoEntry) + "\n";
            }

            return string.Create(CultureInfo.InvariantCulture, $"{"Name:",-15} {checkpoint.Name}\n{"Domain:",-15} {d.Name}\n{"Parent:",-15} {parent ?? "-"}\n{"Children:",-15} {children}\n{"Descendants:",-15} {descendants}\n");
        });
        return command;
    }

    private static Command Parent(CliConsole console)
    {
        var command = new Command("checkpoint-parent", "Get the name of the parent of a checkpoint.");
        var (domain, name) = Parameters(command);
        VirshAction.Set(command, console, async s =>
        {
            var d = await s.DomainAsync(domain).ConfigureAwait(false);
            var checkpoint = await s.CheckpointAsync(d, name).ConfigureAwait(false);
            return await CheckpointListCommand.ParentAsync(s, checkpoint).ConfigureAwait(false)
                ?? throw new VirshException($"checkpoint '{checkpoint.Name}' has no parent");
        });
        return command;
    }

    private static Command Delete(CliConsole console)
    {
        var children = new Option<bool>("--children") { Description = "delete checkpoint and all children" };
        var childrenOnly = new Option<bool>("--children-only") { Description = "delete children but not checkpoint" };
        var metadata = new Option<bool>("--metadata") { Description = "delete only libvirt metadata, leaving bitmaps behind" };
        var command = new Command("checkpoint-delete", "Delete a domain checkpoint.") { children, childrenOnly, metadata };
        var (domain, name) = Parameters(command);
        VirshAction.Set(command, console, async s =>
        {
            var d = await s.DomainAsync(domain).ConfigureAwait(false);
            var checkpoint = await s.CheckpointAsync(d, name).ConfigureAwait(false);
            var flags = (s.Has(children) ? DeleteChildren : 0) | (s.Has(childrenOnly) ? DeleteChildrenOnly : 0) | (s.Has(metadata) ? DeleteMetadataOnly : 0);
            try
            {
                await s.Client.DeleteCheckpointAsync(checkpoint, flags, s.CancellationToken).ConfigureAwait(false);
            }
            catch (LibvirtError e)
            {
                throw new VirshException([$"Failed to delete checkpoint {checkpoint.Name}", e.Message]);
            }

            return s.Has(childrenOnly) ? $"Domain checkpoint {checkpoint.Name} children deleted\n" : $"Domain checkpoint {checkpoint.Name} deleted\n";
        });
        return command;
    }
}
