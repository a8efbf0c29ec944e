using System.CommandLine;

namespace Tidemark.Cli.Commands.Backup.Serve;

/// <summary><c>tidemark backup serve --repo DIR --domain D [--checkpoint NAME] (-k SOCKET | --port N [--bind ADDR])</c>.</summary>
internal static class BackupServeCommandDefinition
{
    public static readonly Option<string> Repository = RepositoryCommand.RepositoryOption();
    public static readonly Option<string> Domain = new("--domain") { Description = "The domain whose disks to serve.", Required = true };
    public static readonly Option<string?> Checkpoint = new("--checkpoint") { Description = "The backup to serve (default: the latest)." };
    public static readonly Option<string?> Socket = new("--socket", "-k") { Description = "Serve on this unix socket." };
    public static readonly Option<int?> Port = new("--port", "-p") { Description = "Serve on this TCP port." };
    public static readonly Option<string> Bind = new("--bind", "-b") { Description = "The address to listen on with --port (default 127.0.0.1).", DefaultValueFactory = _ => "127.0.0.1" };
    public static readonly Option<string?> OverlayDirectory = new("--overlay-dir") { Description = "Where the temporary writable overlays go (default: a new temporary directory); they are deleted on exit." };

    public static Command Build(CliConsole console)
    {
        var command = new Command("serve", "Serve a backup's disks over NBD at once (one export per disk target) through writable temporary overlays: a VM can boot from them while the repository stays untouched. Runs until interrupted.")
        {
            Repository, Domain, Checkpoint, Socket, Port, Bind, OverlayDirectory,
        };
        command.Validators.Add(r =>
        {
            if ((r.GetValue(Socket) is null) == (r.GetValue(Port) is null))
            {
                r.AddError("give exactly one of --socket and --port");
            }
        });
        RepositoryCommand.SetAction(command, (r, ct) => BackupServeCommand.RunAsync(r, console, ct));
        return command;
    }
}
