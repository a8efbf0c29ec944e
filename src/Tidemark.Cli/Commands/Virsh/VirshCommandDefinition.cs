using System.CommandLine;
using Tidemark.Cli.Commands.Virsh.Backups;
using Tidemark.Cli.Commands.Virsh.Checkpoints;
using Tidemark.Cli.Commands.Virsh.Domains;

namespace Tidemark.Cli.Commands.Virsh;

/// <summary>
/// virsh's commands for domains, checkpoints, backups and jobs, with virsh's names, options and
/// output text, as a client of libvirt's remote protocol (Tidemark's daemon or libvirtd): a
/// machine without virsh needs nothing else. <c>domnbd</c> and the <c>--json</c> and
/// <c>--wait</c> options are Tidemark's additions.
/// </summary>
internal static class VirshCommandDefinition
{
    /// <summary>Every virsh verb, each a top-level command.</summary>
    public static IEnumerable<Command> Create(CliConsole console) =>
        DomainCommands.Create(console)
            .Concat(DomainQueryCommands.Create(console))
            .Concat(DiskCommands.Create(console))
            .Append(EventCommand.Create(console))
            .Concat(CheckpointCommands.Create(console))
            .Concat(BackupCommands.Create(console));
}
