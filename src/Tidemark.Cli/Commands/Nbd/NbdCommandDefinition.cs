using System.CommandLine;

namespace Tidemark.Cli.Commands.Nbd;

/// <summary>
/// <c>tidemark nbd serve|info</c>: serve an image over NBD with qemu-nbd's option names, and
/// inspect an NBD server as nbdinfo does.
/// </summary>
internal static class NbdCommandDefinition
{
    public static Command Create(CliConsole console)
    {
        var nbd = new Command("nbd", "Serve disk images over NBD and inspect NBD servers.");
        nbd.Subcommands.Add(NbdServeCommandDefinition.Create(console));
        nbd.Subcommands.Add(NbdInfoCommandDefinition.Create(console));
        return nbd;
    }
}

/// <summary>The options of <c>nbd serve</c>, named as qemu-nbd names them.</summary>
internal static class NbdServeCommandDefinition
{
    public static readonly Argument<FileInfo> Image = new("IMAGE") { Description = "The disk image to serve (raw or qcow2)." };
    public static readonly Option<string?> Format = new("--format", "-f") { Description = "The image format, raw or qcow2 (default: probed)." };
    public static readonly Option<bool> ReadOnly = new("--read-only", "-r") { Description = "Export read-only." };
    public static readonly Option<string> ExportName = new("--export-name", "-x") { Description = "The export name (default: \"\").", DefaultValueFactory = _ => string.Empty };
    public static readonly Option<string?> Description = new("--description", "-D") { Description = "Free text shown by NBD_OPT_LIST and nbdinfo." };
    public static readonly Option<string[]> Bitmaps = new("--bitmap", "-B") { Description = "Offer the image's persistent bitmap BITMAP as qemu:dirty-bitmap:BITMAP (repeatable).", AllowMultipleArgumentsPerToken = false };
    public static readonly Option<bool> AllocationDepth = new("--allocation-depth", "-A") { Description = "Offer the qemu:allocation-depth context." };
    public static readonly Option<string?> Socket = new("--socket", "-k") { Description = "Listen on this unix socket instead of TCP." };
    public static readonly Option<string> Bind = new("--bind", "-b") { Description = "The address to listen on (default 127.0.0.1).", DefaultValueFactory = _ => "127.0.0.1" };
    public static readonly Option<int> Port = new("--port", "-p") { Description = "The TCP port (default 10809).", DefaultValueFactory = _ => 10809 };
    public static readonly Option<bool> Persistent = new("--persistent", "-t") { Description = "Keep serving after the first client leaves." };
    public static readonly Option<int> Shared = new("--shared", "-e") { Description = "Clients served at once (default 1); more than 1 advertises multi-conn.", DefaultValueFactory = _ => 1 };
    public static readonly Option<string?> TlsCreds = new("--tls-creds") { Description = "Require TLS with the x509 credentials in DIR (ca-cert.pem, server-cert.pem, server-key.pem)." };
    public static readonly Option<bool> TlsNoVerifyPeer = new("--tls-no-verify-peer") { Description = "Do not require client certificates (qemu's verify-peer=off)." };
    public static readonly Option<string?> PidFile = new("--pid-file") { Description = "Write the process id to this file once listening." };
    public static readonly Option<bool> Verbose = new("--verbose", "-v") { Description = "Log each connection and request failure in detail." };

    public static Command Create(CliConsole console)
    {
        var command = new Command("serve", "Serve a disk image over NBD, with qemu-nbd's option names.")
        {
            Image, Format, ReadOnly, ExportName, Description, Bitmaps, AllocationDepth, Socket, Bind, Port, Persistent, Shared, TlsCreds, TlsNoVerifyPeer, PidFile, Verbose,
        };
        command.SetAction((result, cancellationToken) => NbdServeCommand.RunAsync(result, console, cancellationToken));
        return command;
    }
}

/// <summary>The options of <c>nbd info</c>, named as nbdinfo names them.</summary>
internal static class NbdInfoCommandDefinition
{
    // Arity 0..1 here, required in the command: "--map URI" must work as with nbdinfo, whose
    // getopt only takes an optional argument written "--map=CONTEXT". System.CommandLine gives the
    // URI to --map instead, so the command takes it back from there (NbdInfoCommand.UriAndContext).
    public static readonly Argument<string?> Uri = new("URI") { Description = "nbd://HOST[:PORT]/EXPORT, nbds://…, nbd+unix:///EXPORT?socket=PATH (tls-certificates=DIR for TLS).", Arity = ArgumentArity.ZeroOrOne };
    public static readonly Option<string?> Map = new("--map") { Description = "Print the extents of CONTEXT (default base:allocation).", Arity = ArgumentArity.ZeroOrOne };
    public static readonly Option<bool> List = new("--list", "-L") { Description = "List the server's exports." };
    public static readonly Option<bool> Json = new("--json") { Description = "Print JSON instead of text." };
    public static readonly Option<string?> TlsCertificates = new("--tls-certificates") { Description = "Directory of x509 client credentials (ca-cert.pem, client-cert.pem, client-key.pem)." };

    public static Command Create(CliConsole console)
    {
        var command = new Command("info", "Show an NBD export's size, flags and contexts, or map its extents, as nbdinfo does.")
        {
            Uri, Map, List, Json, TlsCertificates,
        };
        command.SetAction((result, cancellationToken) => NbdInfoCommand.RunAsync(result, console, cancellationToken));
        return command;
    }
}
