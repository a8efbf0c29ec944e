using System.CommandLine;
using Tidemark.Remote.Protocol;

namespace Tidemark.Cli.Commands.Virsh.Domains;

/// <summary>virsh's domain life-cycle verbs: define, undefine, domrename, start, destroy, shutdown, suspend, resume, autostart, dumpxml.</summary>
internal static class DomainCommands
{
    // virDomainUndefineFlagsValues.
    private const uint UndefineCheckpointsMetadata = 1 << 4;

    // virDomainXMLFlags.
    private const uint XmlSecure = 1;
    private const uint XmlInactive = 2;

    public static IEnumerable<Command> Create(CliConsole console)
    {
        yield return Define(console);
        yield return Undefine(console);
        yield return Rename(console);
        yield return Start(console);
        yield return Simple(console, "destroy", "Destroy (stop) a domain.", async (s, d) =>
        {
            await VirshAction.Failing($"Failed to destroy domain '{d.Name}'", s.Client.DestroyDomainAsync(d, cancellationToken: s.CancellationToken)).ConfigureAwait(false);
            return $"Domain '{d.Name}' destroyed\n";
        });
        yield return Simple(console, "shutdown", "Gracefully shutdown a domain.", async (s, d) =>
        {
            await VirshAction.Failing($"Failed to shutdown domain '{d.Name}'", s.Client.ShutdownDomainAsync(d, cancellationToken: s.CancellationToken)).ConfigureAwait(false);
            return $"Domain '{d.Name}' is being shutdown\n";
        });
        yield return Simple(console, "suspend", "Suspend a domain.", async (s, d) =>
        {
            await VirshAction.Failing($"Failed to suspend domain '{d.Name}'", s.Client.SuspendDomainAsync(d, s.CancellationToken)).ConfigureAwait(false);
            return $"Domain '{d.Name}' suspended\n";
        });
        yield return Simple(console, "resume", "Resume a domain.", async (s, d) =>
        {
            await VirshAction.Failing($"Failed to resume domain '{d.Name}'", s.Client.ResumeDomainAsync(d, s.CancellationToken)).ConfigureAwait(false);
            return $"Domain '{d.Name}' resumed\n";
        });
        yield return Autostart(console);
        yield return DumpXml(console);
    }

    private static Command Simple(CliConsole console, string name, string description, Func<VirshSession, RemoteDomain, Task<string>> body)
    {
        var command = new Command(name, description);
        VirshAction.SetOnDomain(command, console, body);
        return command;
    }

    private static Command Start(CliConsole console)
    {
        var guestTcp = new Option<bool>("--guest-tcp") { Description = "serve the disks on 127.0.0.1 too (Tidemark's addition; see domnbd)" };
        var paused = new Option<bool>("--paused") { Description = "leave the guest paused after start" };
        var command = new Command("start", "Start a (previously defined) inactive domain.") { paused, guestTcp };
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            // virsh looks before it asks: a domain with an id is running.
            if (d.Id != RemoteDomain.InactiveId)
            {
                throw new VirshException("Domain is already active");
            }

            var flags = (s.Has(paused) ? Tidemark.Daemon.DomainCreateFlags.Paused : 0)
                | (s.Has(guestTcp) ? Tidemark.Daemon.DomainCreateFlags.GuestTcp : 0);
            await VirshAction.Failing($"Failed to start domain '{d.Name}'", s.Client.StartDomainAsync(d, flags, s.CancellationToken)).ConfigureAwait(false);
            return $"Domain '{d.Name}' started\n";
        });
        return command;
    }

    private static Command Define(CliConsole console)
    {
        var file = new VirshParameter("file", "file containing an XML domain description");
        var validate = new Option<bool>("--validate") { Description = "validate the XML against the schema" };
        var command = new Command("define", "Define (but don't start) a domain from an XML file.") { validate };
        file.AddTo(command);
        VirshAction.Set(command, console, async s =>
        {
            var path = file.Get(s.Result);
            var xml = await s.ReadFileAsync(path).ConfigureAwait(false);
            var define = s.Client.DefineDomainAsync(xml, s.Has(validate) ? 1u : 0u, s.CancellationToken);
            await VirshAction.Failing($"Failed to define domain from {path}", define).ConfigureAwait(false);
            var d = await define.ConfigureAwait(false);
            return $"Domain '{d.Name}' defined from {path}\n";
        });
        return command;
    }

    private static Command Undefine(CliConsole console)
    {
        var checkpoints = new Option<bool>("--checkpoints-metadata") { Description = "remove all domain checkpoint metadata (vm must be inactive)" };
        var command = new Command("undefine", "Undefine a domain.") { checkpoints };
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            await VirshAction.Failing($"Failed to undefine domain '{d.Name}'", s.Client.UndefineDomainAsync(d, s.Has(checkpoints) ? UndefineCheckpointsMetadata : 0, s.CancellationToken)).ConfigureAwait(false);
            return $"Domain '{d.Name}' has been undefined\n";
        });
        return command;
    }

    private static Command Rename(CliConsole console)
    {
        var command = new Command("domrename", "Rename an inactive domain.");
        var newName = new VirshParameter("new-name", "new domain name");
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var name = newName.Get(s.Result);
            if (name.Length == 0)
            {
                throw new VirshException(["Failed to get option 'new-name': Option argument is empty"]);
            }

            // virsh reports a refusal with libvirt's error alone, no line of its own.
            await s.Client.RenameDomainAsync(d, name, s.CancellationToken).ConfigureAwait(false);
            return "Domain successfully renamed\n";
        });
        newName.AddTo(command);
        return command;
    }

    private static Command Autostart(CliConsole console)
    {
        var disable = new Option<bool>("--disable") { Description = "disable autostarting" };
        var command = new Command("autostart", "Configure a domain to be automatically started at boot.") { disable };
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var off = s.Has(disable);
            await VirshAction.Failing(off ? $"Failed to unmark domain '{d.Name}' as autostarted" : $"Failed to mark domain '{d.Name}' as autostarted", s.Client.SetAutostartAsync(d, !off, s.CancellationToken)).ConfigureAwait(false);
            return off ? $"Domain '{d.Name}' unmarked as autostarted\n" : $"Domain '{d.Name}' marked as autostarted\n";
        });
        return command;
    }

    private static Command DumpXml(CliConsole console)
    {
        var inactive = new Option<bool>("--inactive") { Description = "show inactive defined XML" };
        var security = new Option<bool>("--security-info") { Description = "include security sensitive information in XML dump" };
        var command = new Command("dumpxml", "Output the domain information as an XML dump to stdout.") { inactive, security };
        VirshAction.SetOnDomain(command, console, async (s, d) =>
        {
            var flags = (s.Has(inactive) ? XmlInactive : 0) | (s.Has(security) ? XmlSecure : 0);
            return await s.Client.GetDomainXmlAsync(d, flags, s.CancellationToken).ConfigureAwait(false);
        });
        return command;
    }
}
