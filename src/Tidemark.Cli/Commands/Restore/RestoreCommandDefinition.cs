using System.CommandLine;
using Tidemark.Backup.Restore;
using Tidemark.Cli.Commands.Backup;
using Tidemark.Storage;

namespace Tidemark.Cli.Commands.Restore;

/// <summary><c>tidemark restore --repo DIR --domain D [--disk vda] [--checkpoint NAME] --output FILE|DIR [-O raw|qcow2] [--force] [--define [-c URI] [--name NAME]] [--json] [--quiet]</c>.</summary>
internal static class RestoreCommandDefinition
{
    public static Command Create(CliConsole console)
    {
        var repository = RepositoryCommand.RepositoryOption();
        var domain = new Option<string>("--domain") { Description = "The domain whose disks to restore.", Required = true };
        var disks = new Option<string[]>("--disk") { Description = "Restore only this disk target (repeatable; default: every disk of the backup).", AllowMultipleArgumentsPerToken = true };
        var checkpoint = new Option<string?>("--checkpoint") { Description = "The backup to restore (default: the latest)." };
        var output = new Option<string>("--output", "-o") { Description = "The output file (one disk) or directory (DISK.raw / DISK.qcow2 per disk).", Required = true };
        var format = new Option<string>("-O") { Description = "Output format: raw (default) or qcow2.", DefaultValueFactory = _ => "raw" };
        format.AcceptOnlyFromAmong("raw", "qcow2");
        var force = new Option<bool>("--force") { Description = "Replace outputs that exist." };
        var noVerify = new Option<bool>("--no-verify") { Description = "Skip checking the chain files against their manifests' checksums first (reads the chain once instead of twice; a damaged chain then restores wrong data)." };
        var json = RepositoryCommand.JsonOption("Print a JSON summary.");
        var quiet = new Option<bool>("--quiet", "-q") { Description = "No progress bars on a terminal (the plain lines stay)." };
        var define = new Option<bool>("--define") { Description = "Also define the domain on the host (-c) from the domain XML saved with the backup, its disks' sources the restored files; it is not started." };
        var connection = new Option<string?>("--connect", "-c") { Description = $"libvirt URI for --define (default: ${ConnectionUri.EnvironmentVariable}, else the local Tidemark daemon's socket)." };
        var name = new Option<string?>("--name") { Description = "Define the domain under this name (with a new uuid) instead of the backup's; a name the host already uses is refused." };
        var command = new Command("restore", "Restore a domain's disks exactly as they were at a backup, sparse (holes and trimmed areas stay holes).")
        {
            repository, domain, disks, checkpoint, output, format, force, noVerify, json, quiet, define, connection, name,
        };
        command.Validators.Add(r =>
        {
            if (!r.GetValue(define) && (r.GetValue(connection) is not null || r.GetValue(name) is not null))
            {
                r.AddError("--connect and --name go with --define");
            }
        });
        RepositoryCommand.SetAction(command, (r, ct) => RestoreCommand.RunAsync(
            console,
            new RestoreOptions
            {
                Repository = r.Repository(repository),
                Domain = r.GetValue(domain)!,
                Disks = r.GetValue(disks) ?? [],
                Checkpoint = r.GetValue(checkpoint),
                Output = r.GetValue(output)!,
                Format = r.GetValue(format) == "qcow2" ? ImageFormat.Qcow2 : ImageFormat.Raw,
                Force = r.GetValue(force),
                SkipVerify = r.GetValue(noVerify),
                DefineUri = r.GetValue(define) ? ConnectionUri.Resolve(r.GetValue(connection)) : null,
                DefineName = r.GetValue(name),
            },
            r.GetValue(json),
            r.GetValue(quiet),
            ct));
        return command;
    }
}
