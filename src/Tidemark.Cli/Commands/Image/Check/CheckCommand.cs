using System.Globalization;
using System.Text;
using System.Text.Json;
using Tidemark.Storage;
using Tidemark.Storage.Qcow2;

namespace Tidemark.Cli.Commands.Image.Check;

/// <summary>Runs <c>image check</c>: problems on standard error, the summary on standard output.</summary>
internal sealed class CheckCommand(CliConsole console)
{
    /// <summary>qemu-img check's status for a format that has no check (raw).</summary>
    private const int NotSupported = 63;

    private const int CheckFailed = 1;

    public async Task<int> RunAsync(string file, string? formatName, bool json, Qcow2RepairMode repair, CancellationToken cancellationToken)
    {
        if (!File.Exists(file))
        {
            throw new CliException($"Could not open '{file}': No such file or directory");
        }

        var format = ImageArguments.ParseFormat(formatName) ?? await DiskImage.ProbeAsync(file, cancellationToken).ConfigureAwait(false);
        if (format == ImageFormat.Raw)
        {
            await console.Error.WriteLineAsync("This image format does not support checks").ConfigureAwait(false);
            return NotSupported;
        }

        Qcow2CheckResult result;
        try
        {
            result = repair == Qcow2RepairMode.None
                ? await Qcow2Check.RunAsync(file, cancellationToken).ConfigureAwait(false)
                : await Qcow2Repair.RunAsync(file, repair, cancellationToken).ConfigureAwait(false);
            await WriteMessagesAsync(result).ConfigureAwait(false);
            if (result.Failure is not null)
            {
                await console.Error.WriteLineAsync($"error: Check failed: {result.Failure}").ConfigureAwait(false);
                return CheckFailed;
            }

            // qemu-img check: after a repair, the image is checked again and that second result
            // is shown, with the counts of what was fixed.
            if (result.LeaksFixed > 0 || result.CorruptionsFixed > 0)
            {
                if (!json)
                {
                    await console.Out.WriteAsync(string.Create(CultureInfo.InvariantCulture, $"The following inconsistencies were found and repaired:\n\n    {result.LeaksFixed} leaked clusters\n    {result.CorruptionsFixed} corruptions\n\nDouble checking the fixed image now...\n")).ConfigureAwait(false);
                }

                var again = await Qcow2Check.RunAsync(file, cancellationToken).ConfigureAwait(false);
                await WriteMessagesAsync(again).ConfigureAwait(false);
                result = again with { LeaksFixed = result.LeaksFixed, CorruptionsFixed = result.CorruptionsFixed };
            }
        }
        catch (StorageException e)
        {
            // qemu-img check opens the image first; what fails that fails the check the same way.
            await console.Error.WriteLineAsync($"error: Could not open '{file}': {e.Message}").ConfigureAwait(false);
            return CheckFailed;
        }

        await console.Out.WriteAsync(json ? ToJson(result) + "\n" : ToHuman(result)).ConfigureAwait(false);
        if (result.CheckErrors > 0)
        {
            await console.Error.WriteLineAsync("error: Check failed").ConfigureAwait(false);
        }

        return result.ExitCode;
    }

    private async Task WriteMessagesAsync(Qcow2CheckResult result)
    {
        foreach (var message in result.Messages)
        {
            await console.Error.WriteLineAsync(message).ConfigureAwait(false);
        }
    }

    private static string ToHuman(Qcow2CheckResult r)
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        if (r.Corruptions == 0 && r.Leaks == 0)
        {
            text.Append("No errors were found on the image.\n");
        }

        if (r.Leaks > 0)
        {
            text.Append(c, $"\n{r.Leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n");
        }

        if (r.Corruptions > 0)
        {
            text.Append(c, $"\n{r.Corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n");
        }

        if (r.CheckErrors > 0)
        {
            text.Append(c, $"\n{r.CheckErrors} internal errors have occurred during the check.\n");
        }

        // qemu-img prints the allocation line only when something is allocated.
        if (r.TotalClusters > 0 && r.AllocatedClusters > 0)
        {
            double total = r.TotalClusters;
            double allocated = Math.Max(1, r.AllocatedClusters);
            text.Append(c, $"{r.AllocatedClusters}/{r.TotalClusters} = {r.AllocatedClusters * 100.0 / total:F2}% allocated, {(r.AllocatedClusters == 0 ? 0 : r.FragmentedClusters * 100.0 / allocated):F2}% fragmented, {(r.AllocatedClusters == 0 ? 0 : r.CompressedClusters * 100.0 / allocated):F2}% compressed clusters\n");
        }

        text.Append(c, $"Image end offset: {r.ImageEndOffset}\n");
        return text.ToString();
    }

    private static string ToJson(Qcow2CheckResult r)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, IndentSize = 4 }))
        {
            // qemu-img's order: that of its QDict's hash table, not of the QAPI schema.
            w.WriteStartObject();
            w.WriteNumber("image-end-offset", r.ImageEndOffset);
            WriteIfAny(w, "compressed-clusters", r.CompressedClusters);
            w.WriteNumber("total-clusters", r.TotalClusters);
            WriteIfAny(w, "corruptions", r.Corruptions);
            WriteIfAny(w, "corruptions-fixed", r.CorruptionsFixed);
            w.WriteNumber("check-errors", r.CheckErrors);
            WriteIfAny(w, "leaks", r.Leaks);
            WriteIfAny(w, "leaks-fixed", r.LeaksFixed);
            w.WriteNumber("allocated-clusters", r.AllocatedClusters);
            w.WriteString("filename", r.Path);
            w.WriteString("format", "qcow2");
            WriteIfAny(w, "fragmented-clusters", r.FragmentedClusters);
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteIfAny(Utf8JsonWriter w, string name, long value)
    {
        if (value > 0)
        {
            w.WriteNumber(name, value);
        }
    }
}
