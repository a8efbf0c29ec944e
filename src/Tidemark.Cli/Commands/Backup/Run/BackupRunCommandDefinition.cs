using System.CommandLine;
using Tidemark.Backup.Run;

namespace Tidemark.Cli.Commands.Backup.Run;

/// <summary><c>tidemark backup run DOMAIN --repo DIR [-c URI] [--level full|inc|auto] [--disk vda ...] [--compress zstd] [--json] [--quiet]</c>.</summary>
internal static class BackupRunCommandDefinition
{
    public static Command Build(CliConsole console)
    {
        var domain = new Argument<string>("DOMAIN") { Description = "The domain to back up (it must be running)." };
        var repository = RepositoryCommand.RepositoryOption("The repository directory (created if missing).");
        var connection = new Option<string?>("--connect", "-c") { Description = $"libvirt URI (default: ${ConnectionUri.EnvironmentVariable}, else the local Tidemark daemon's socket)." };
        var level = new Option<string>("--level", "-l") { Description = "full, inc (refused where the chain cannot continue) or auto (per disk: incremental where possible, else full, saying why).", DefaultValueFactory = _ => "auto" };
        level.AcceptOnlyFromAmong("full", "inc", "auto");
        var disks = new Option<string[]>("--disk") { Description = "Back up only this disk target (repeatable; default: every qcow2 disk).", AllowMultipleArgumentsPerToken = true };
        var compress = new Option<string?>("--compress") { Description = "Compress the chain file's clusters: zstd (compression_type=zstd)." };
        compress.AcceptOnlyFromAmong("zstd");
        var json = RepositoryCommand.JsonOption("Print a JSON summary on stdout (progress lines go to stderr).");
        var quiet = new Option<bool>("--quiet", "-q") { Description = "No progress bars on a terminal (the plain lines stay)." };
        var command = new Command("run", "Back up a running domain's disks: begin a pull backup with a new checkpoint, read the exports over NBD, end the job.")
        {
            domain, repository, connection, level, disks, compress, json, quiet,
        };
        RepositoryCommand.SetAction(command, (r, ct) => BackupRunCommand.RunAsync(
            console,
            new BackupRunOptions
            {
                Domain = r.GetValue(domain)!,
                Repository = r.Repository(repository),
                ConnectionUri = ConnectionUri.Resolve(r.GetValue(connection)),
                Level = r.GetValue(level) switch { "full" => LevelRequest.Full, "inc" => LevelRequest.Incremental, _ => LevelRequest.Auto },
                Disks = r.GetValue(disks) ?? [],
                Compress = r.GetValue(compress) is not null,
            },
            r.GetValue(json),
            r.GetValue(quiet),
            ct));
        return command;
    }
}
