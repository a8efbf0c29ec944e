using System.CommandLine;

namespace Tidemark.Cli.Commands.Format;

/// <summary><c>tidemark format FILE</c>: the options and help of the verb.</summary>
internal static class FormatCommandDefinition
{
    public static readonly Argument<string> File = new("FILE")
    {
        Description = "the XML document: <domaincheckpoint>, <domainbackup> or <domain>",
    };

    public static readonly Option<bool> Redefine = new("--redefine")
    {
        Description = "checkpoint: read it as existing metadata (name and creationTime required; parent and <domain> read)",
    };

    public static readonly Option<string?> Domain = new("--domain")
    {
        Description = "align the disks with this <domain> document (a redefined checkpoint uses its embedded one); without it a created checkpoint keeps its disks as given and a backup is not aligned",
        HelpName = "DOMAIN.xml",
    };

    public static readonly Option<bool> NoDomain = new("--no-domain")
    {
        Description = "checkpoint: leave the embedded <domain> out of the output",
    };

    public static readonly Option<string?> Suffix = new("--suffix")
    {
        Description = "backup: suffix of generated target and scratch file names (default: the current Unix time, as libvirt)",
        HelpName = "S",
    };

    public static readonly Option<long?> CreationTime = new("--creation-time")
    {
        Description = "checkpoint create: the creation time in Unix seconds (default: now); also the default name",
        HelpName = "SECONDS",
    };

    public static readonly Option<bool> Internal = new("--internal")
    {
        Description = "backup: read and write the status-XML form (disk state, index, private data), without the schema check",
    };

    public static readonly Option<bool> DriverDefaults = new("--driver-defaults")
    {
        Description = "backup: also fill in what the engine sets before starting, as virDomainBackupGetXMLDesc shows it (driver qcow2, pull export name and bitmap); needs --domain",
    };

    public static Command Create(CliConsole console)
    {
        var command = new Command(
            "format",
            "Print a document as libvirt would format it after parsing: a checkpoint (created, or with --redefine) "
            + "aligned with its domain, a backup aligned with --domain, or a domain.");
        command.Arguments.Add(File);
        foreach (var option in new Option[] { Redefine, Domain, NoDomain, Suffix, CreationTime, Internal, DriverDefaults })
        {
            command.Options.Add(option);
        }

        command.SetAction((result, cancellationToken) => FormatCommand.RunAsync(
            console,
            new FormatSettings
            {
                File = result.GetValue(File)!,
                Redefine = result.GetValue(Redefine),
                Domain = result.GetValue(Domain),
                NoDomain = result.GetValue(NoDomain),
                Suffix = result.GetValue(Suffix),
                CreationTime = result.GetValue(CreationTime),
                Internal = result.GetValue(Internal),
                DriverDefaults = result.GetValue(DriverDefaults),
            },
            cancellationToken));
        return command;
    }
}

/// <summary>What <c>tidemark format</c> was asked to do.</summary>
internal sealed record FormatSettings
{
    public required string File { get; init; }

    public bool Redefine { get; init; }

    public string? Domain { get; init; }

    public bool NoDomain { get; init; }

    public string? Suffix { get; init; }

    public long? CreationTime { get; init; }

    public bool Internal { get; init; }

    public bool DriverDefaults { get; init; }
}
