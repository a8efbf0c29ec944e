using System.Globalization;
using System.Xml.Linq;
using Tidemark.Formats;
using Tidemark.Formats.Backups;
using Tidemark.Formats.Checkpoints;
using Tidemark.Formats.Domains;
using Tidemark.Formats.Xml;

namespace Tidemark.Cli.Commands.Format;

/// <summary>Runs <c>tidemark format</c>.</summary>
internal static class FormatCommand
{
    public static async Task<int> RunAsync(CliConsole console, FormatSettings settings, CancellationToken cancellationToken)
    {
        var text = await DocumentFile.ReadAsync(settings.File, cancellationToken).ConfigureAwait(false);
        var domain = settings.Domain is null ? null : await ReadDomainAsync(settings.Domain, cancellationToken).ConfigureAwait(false);
        try
        {
            var document = XmlDocumentLoader.Load(text, settings.File, cancellationToken);
            var output = XmlDocumentLoader.KindOf(document) switch
            {
                DocumentKind.Checkpoint => FormatCheckpoint(document.Root!, settings, domain),
                DocumentKind.Backup => FormatBackup(document.Root!, settings, domain),
                DocumentKind.Domain => FormatDomain(document.Root!, settings),
                _ => throw new CliException($"'{settings.File}': unknown root element '{document.Root!.Name.LocalName}': expecting 'domaincheckpoint', 'domainbackup' or 'domain'"),
            };
            await console.Out.WriteAsync(output).ConfigureAwait(false);
            return 0;
        }
        catch (DocumentException e)
        {
            throw new CliException(e.Message, e);
        }
    }

    private static string FormatCheckpoint(XElement root, FormatSettings settings, DomainDefinition? domain)
    {
        Refuse(settings.Suffix is not null, "--suffix", "backup");
        Refuse(settings.Internal, "--internal", "backup");
        Refuse(settings.DriverDefaults, "--driver-defaults", "backup");
        CheckpointDefinition checkpoint;
        if (settings.Redefine)
        {
            Refuse(settings.CreationTime is not null, "--creation-time", "created checkpoint");
            checkpoint = CheckpointParser.Parse(root, CheckpointParseMode.Redefine);

            // A redefinition aligns against its embedded domain (spec §2.5); without one, it only
            // gets default bitmap names unless a domain is given here.
            var alignWith = checkpoint.Domain ?? domain;
            checkpoint = alignWith is null ? CheckpointAligner.AssignBitmapNames(checkpoint) : CheckpointAligner.Align(checkpoint, alignWith);
        }
        else
        {
            var now = settings.CreationTime ?? DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            checkpoint = CheckpointParser.Parse(root, CheckpointParseMode.Create, now);
            checkpoint = domain is null ? CheckpointAligner.AssignBitmapNames(checkpoint) : CheckpointAligner.Align(checkpoint, domain);
        }

        var flags = CheckpointFormatFlags.Secure | (settings.NoDomain ? CheckpointFormatFlags.NoDomain : CheckpointFormatFlags.None);
        return CheckpointFormatter.Format(checkpoint, flags);
    }

    private static string FormatBackup(XElement root, FormatSettings settings, DomainDefinition? domain)
    {
        Refuse(settings.Redefine, "--redefine", "checkpoint");
        Refuse(settings.NoDomain, "--no-domain", "checkpoint");
        Refuse(settings.CreationTime is not null, "--creation-time", "checkpoint");
        var mode = settings.Internal ? BackupXmlMode.Internal : BackupXmlMode.Public;
        var backup = BackupParser.Parse(root, mode);
        if (domain is not null)
        {
            var suffix = settings.Suffix ?? DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
            backup = BackupAligner.Align(backup, domain, suffix);
            if (settings.DriverDefaults)
            {
                backup = BackupDefaults.Apply(backup);
            }
        }
        else if (settings.DriverDefaults)
        {
            throw new CliException("--driver-defaults needs --domain: the defaults apply to an aligned backup");
        }
        else if (settings.Suffix is not null)
        {
            throw new CliException("--suffix needs --domain: file names are generated while aligning with the domain");
        }

        return BackupFormatter.Format(backup, mode);
    }

    private static string FormatDomain(XElement root, FormatSettings settings)
    {
        Refuse(settings.Redefine || settings.NoDomain || settings.CreationTime is not null, "--redefine, --no-domain and --creation-time", "checkpoint");
        Refuse(settings.Suffix is not null || settings.Internal || settings.DriverDefaults, "--suffix, --internal and --driver-defaults", "backup");
        Refuse(settings.Domain is not null, "--domain", "checkpoint or backup");
        return DomainFormatter.Format(DomainParser.Parse(root), DomainFormatFlags.Secure);
    }

    private static async Task<DomainDefinition> ReadDomainAsync(string path, CancellationToken cancellationToken)
    {
        var text = await DocumentFile.ReadAsync(path, cancellationToken).ConfigureAwait(false);
        try
        {
            return DomainParser.Parse(text, path, cancellationToken);
        }
        catch (DocumentException e)
        {
            throw new CliException($"--domain {path}: {e.Message}", e);
        }
    }

    private static void Refuse(bool given, string option, string kind)
    {
        if (given)
        {
            throw new CliException($"{option} applies to {kind} documents only");
        }
    }
}
