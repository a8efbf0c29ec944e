using System.CommandLine;
using Tidemark.Storage;

namespace Tidemark.Cli;

/// <summary>
/// The <c>tidemark</c> command tree. Each verb lives in its own folder under <c>Commands/</c>
/// with its definition (options, help) apart from its execution.
/// </summary>
public static class TidemarkCommandLine
{
    /// <summary>Builds the root command with every verb.</summary>
    public static RootCommand Build(TextWriter stdout, TextWriter stderr)
    {
        var console = new CliConsole(stdout, stderr);
        var root = new RootCommand("Tidemark: checkpoints and full/incremental backups for virtual-machine disks, compatible with libvirt and QEMU.");
        foreach (var command in Commands(console))
        {
            root.Subcommands.Add(command);
        }

        // virsh takes -c URI before the verb too.
        root.Options.Add(Cli.Commands.Virsh.VirshAction.RootConnect);

        return root;
    }

    /// <summary>Parses and runs one command line; returns the process exit code.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken = default)
    {
        var root = Build(stdout, stderr);
        // Signals are handled once, by the process (Program.cs), not again by the parser.
        var config = new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null };
        try
        {
            return await root.Parse(args).InvokeAsync(config, cancellationToken).ConfigureAwait(false);
        }
        catch (CliException e)
        {
            await stderr.WriteLineAsync($"error: {e.Message}").ConfigureAwait(false);
            return e.ExitCode;
        }
        catch (StorageException e)
        {
            // A damaged image met part way through a command (a table read while mapping or
            // copying) is the input's fault, not a bug: one error line, as qemu-img gives. The
            // message names the file, structure and offset.
            await stderr.WriteLineAsync($"error: {e.Message}").ConfigureAwait(false);
            return 1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The host refused a file (missing, not permitted, a device that cannot do what was
            // asked): the input's fault, one line naming it, never a crash with a stack trace.
            await stderr.WriteLineAsync($"error: {e.Message}").ConfigureAwait(false);
            return 1;
        }
        catch (OperationCanceledException)
        {
            await stderr.WriteLineAsync("error: interrupted").ConfigureAwait(false);
            return 130;
        }
    }

    // One line per verb; each verb's folder owns the rest.
    private static IEnumerable<Command> Commands(CliConsole console)
    {
        yield return Tidemark.Cli.Commands.Validate.ValidateCommandDefinition.Create(console);
        yield return Tidemark.Cli.Commands.Format.FormatCommandDefinition.Create(console);
        yield return Tidemark.Cli.Commands.Tour.TourCommandDefinition.Create(console);
        yield return Cli.Commands.Image.ImageCommandDefinition.Build(console);
        yield return Cli.Commands.Nbd.NbdCommandDefinition.Create(console);
        yield return Cli.Commands.Daemon.DaemonCommandDefinition.Create(console);
        foreach (var virsh in Cli.Commands.Virsh.VirshCommandDefinition.Create(console))
        {
            yield return virsh;
        }

        yield return Cli.Commands.Backup.BackupCommandDefinition.Build(console);
        yield return Cli.Commands.Restore.RestoreCommandDefinition.Create(console);
        yield return Cli.Commands.Verify.VerifyCommandDefinition.Create(console);
    }
}
