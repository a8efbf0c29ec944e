using Tidemark.Formats;
using Tidemark.Formats.Backups;
using Tidemark.Formats.Checkpoints;
using Tidemark.Formats.Domains;

namespace Tidemark.Cli.Commands.Tour;

/// <summary>
/// Runs <c>tidemark tour</c>: every step of <see cref="TourStep.All"/>, printing the document kind,
/// the validation result and the aligned document as libvirt would format it, then a summary.
/// </summary>
internal static class TourCommand
{
    /// <summary>
    /// The creation time and backup suffix the tour uses instead of "now", so that its output is
    /// the same on every run (libvirt would use the current Unix time for both).
    /// </summary>
    public const long FixedTime = 1700000000;

    public static async Task<int> RunAsync(CliConsole console, string? examples, CancellationToken cancellationToken)
    {
        var folder = examples ?? FindExamples()
            ?? throw new CliException("examples/ not found: run the tour from the Tidemark checkout, or pass --examples DIR");
        var output = console.Out;
        await output.WriteLineAsync("Tidemark tour: libvirt's checkpoint and backup documents, validated, aligned with their domain and").ConfigureAwait(false);
        await output.WriteLineAsync($"formatted exactly as libvirt would. Creation time and file-name suffix are fixed at {FixedTime}.").ConfigureAwait(false);

        DomainDefinition? domain = null;
        var expected = 0;
        var outcomes = new List<string>();
        for (var i = 0; i < TourStep.All.Length; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var step = TourStep.All[i];
            await output.WriteLineAsync($"\n[{i + 1}/{TourStep.All.Length}] examples/{step.File}: {step.Purpose}").ConfigureAwait(false);
            var text = await DocumentFile.ReadAsync(Path.Combine(folder, step.File), cancellationToken).ConfigureAwait(false);
            var report = Run(step, text, ref domain);
            await output.WriteAsync(report.Text).ConfigureAwait(false);
            expected += report.AsExpected ? 1 : 0;
            outcomes.Add($"  {(report.AsExpected ? "ok  " : "FAIL")}  {step.File,-28} {step.Purpose}");
        }

        var all = TourStep.All.Length;
        await output.WriteLineAsync("\nSummary:").ConfigureAwait(false);
        foreach (var outcome in outcomes)
        {
            await output.WriteLineAsync(outcome).ConfigureAwait(false);
        }

        await output.WriteLineAsync($"{expected} of {all} steps went as expected{(expected == all ? "." : $"; {all - expected} did not.")}").ConfigureAwait(false);
        return expected == all ? 0 : 1;
    }

    private static (string Text, bool AsExpected) Run(TourStep step, string text, ref DomainDefinition? domain)
    {
        var report = new TourReport();
        try
        {
            var kind = DocumentValidator.Validate(text, step.File);
            report.Line("kind", step.Action switch
            {
                TourAction.CreateCheckpoint => "checkpoint, read in create mode",
                TourAction.RedefineCheckpoint => "checkpoint, read in redefine mode",
                _ => kind.ToString().ToLowerInvariant(),
            });
            report.Line("validate", "ok");
            if (step.Action == TourAction.Refuse)
            {
                report.Line("result", "NOT AS EXPECTED: this document should have been refused");
                return (report.ToString(), false);
            }

            string formatted;
            switch (step.Action)
            {
                case TourAction.Domain:
                    domain = DomainParser.Parse(text, step.File);
                    report.Line("disks", string.Join(", ", domain.Disks.Select(d => $"{d.TargetDev} ({d.DriverType ?? "?"}, {d.SourcePath ?? "no media"})")));
                    formatted = DomainFormatter.Format(domain, DomainFormatFlags.Secure);
                    break;
                case TourAction.CreateCheckpoint:
                    var created = CheckpointAligner.Align(CheckpointParser.Parse(text, CheckpointParseMode.Create, FixedTime, step.File), domain);
                    report.Line("align", $"with domain '{domain!.Name}': " + Describe(created));
                    formatted = CheckpointFormatter.Format(created);
                    break;
                case TourAction.RedefineCheckpoint:
                    var redefined = CheckpointParser.Parse(text, CheckpointParseMode.Redefine, source: step.File);
                    redefined = CheckpointAligner.Align(redefined, redefined.Domain);
                    report.Line("align", $"with its embedded domain '{redefined.Domain!.Name}': " + Describe(redefined));
                    report.Line("note", "the embedded <domain> is left out below, as with --no-domain");
                    formatted = CheckpointFormatter.Format(redefined, CheckpointFormatFlags.Secure | CheckpointFormatFlags.NoDomain);
                    break;
                default:
                    var backup = BackupAligner.Align(BackupParser.Parse(text, source: step.File), domain!, FixedTime.ToString(System.Globalization.CultureInfo.InvariantCulture));
                    report.Line("align", $"with domain '{domain!.Name}': " + Describe(backup));
                    formatted = BackupFormatter.Format(backup);
                    break;
            }

            report.Line("output", "as libvirt formats it:");
            report.Document(formatted);
            return (report.ToString(), true);
        }
        catch (DocumentException e)
        {
            report.Line("validate", step.Action == TourAction.Refuse ? "refused, as expected:" : "REFUSED, NOT AS EXPECTED:");
            report.Document(e.Message + "\n");
            return (report.ToString(), step.Action == TourAction.Refuse);
        }
    }

    private static string Describe(CheckpointDefinition checkpoint)
        => string.Join(", ", checkpoint.Disks.Select(d => d.Type == CheckpointType.Bitmap ? $"{d.Name} bitmap '{d.Bitmap}'" : $"{d.Name} no bitmap"));

    private static string Describe(BackupDefinition backup)
        => string.Join(", ", backup.Disks.Select(d => d.Backup
            ? $"{d.Name} {BackupNames.Of(d.Mode)}{(d.Incremental is null ? string.Empty : $" since '{d.Incremental}'")}"
            : $"{d.Name} not backed up"));

    // examples/ beside Tidemark.slnx, above the current directory or above the program.
    private static string? FindExamples()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "examples");
                if (File.Exists(Path.Combine(dir.FullName, "Tidemark.slnx")) && File.Exists(Path.Combine(candidate, "domain.xml")))
                {
                    return candidate;
                }
            }
        }

        return null;
    }
}
