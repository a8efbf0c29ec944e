using System.Text;

namespace Tidemark.Engine.State;

/// <summary>
/// The checkpoint an inactive domain is being given, written down before its bitmaps are added
/// to the qcow2 files (design.md, "Crash"): <c>jobs/&lt;domain&gt;.checkpoint</c> names the
/// checkpoint and the disks that get its bitmap, and is removed once the checkpoint's metadata
/// is saved. A record found at the next start means a crash cut the creation short: if the
/// metadata exists the checkpoint was created and only the record is dropped; otherwise any
/// bitmap of that name on those disks is a stray of the creation and is removed, as the
/// creation itself would have removed it on failure.
/// </summary>
/// <remarks>
/// Offline, each image stores its new bitmap when it is closed, one file after another, before
/// the metadata is written; a kill in between leaves the bitmap in some files and no
/// checkpoint, and a later create of the same name would fail on the stray bitmap. A running
/// domain's creation needs no record: its bitmaps exist only in memory until the domain stops
/// cleanly, by which time the metadata has long been saved, so a kill leaves none behind.
/// Each line is one URI-escaped value (checkpoint name, then the disk targets), so no name can
/// break the format.
/// </remarks>
internal sealed class CheckpointCreationRecord
{
    private const string Extension = ".checkpoint";

    private CheckpointCreationRecord(string path, string domain, string checkpoint, IReadOnlyList<string> targets)
    {
        Path = path;
        Domain = domain;
        Checkpoint = checkpoint;
        Targets = targets;
    }

    /// <summary>The record file.</summary>
    public string Path { get; }

    /// <summary>The domain whose checkpoint is being created.</summary>
    public string Domain { get; }

    /// <summary>The checkpoint's name, which is also its bitmaps' name.</summary>
    public string Checkpoint { get; }

    /// <summary>The disks that get the checkpoint's bitmap.</summary>
    public IReadOnlyList<string> Targets { get; }

    /// <summary>Whether the record of <paramref name="domain"/> fits a file name (255 bytes), which a name over 244 bytes leaves no room for.</summary>
    public static bool FitsFileName(string domain) => System.Text.Encoding.UTF8.GetByteCount(domain) + Extension.Length <= 255;

    /// <summary>Writes the record durably; change the images only after this returns.</summary>
    public static async Task<CheckpointCreationRecord> WriteAsync(StateDirectory state, string domain, string checkpoint, IReadOnlyList<string> targets, CancellationToken cancellationToken)
    {
        var path = System.IO.Path.Combine(state.JobsDirectory, domain + Extension);
        var content = new StringBuilder();
        foreach (var value in (IEnumerable<string>)[checkpoint, .. targets])
        {
            content.Append(Uri.EscapeDataString(value)).Append('\n');
        }

        await AtomicFile.WriteAsync(path, content.ToString(), cancellationToken).ConfigureAwait(false);
        return new CheckpointCreationRecord(path, domain, checkpoint, targets);
    }

    /// <summary>Drops the record: the creation has ended, with its metadata saved or its bitmaps removed.</summary>
    public void Complete() => AtomicFile.Delete(Path);

    /// <summary>The records a crash left in <paramref name="jobsDirectory"/>; an unreadable one is dropped and reported through <paramref name="unreadable"/>.</summary>
    public static IReadOnlyList<CheckpointCreationRecord> Pending(string jobsDirectory, Action<string> unreadable)
    {
        var records = new List<CheckpointCreationRecord>();
        if (!Directory.Exists(jobsDirectory))
        {
            return records;
        }

        foreach (var path in Directory.EnumerateFiles(jobsDirectory, "*" + Extension).Order(StringComparer.Ordinal).ToList())
        {
            var lines = File.ReadAllLines(path);
            if (lines.Length == 0 || lines.Any(l => l.Length == 0))
            {
                // An atomic write leaves the whole record or none: this one is not ours.
                unreadable(path);
                AtomicFile.Delete(path);
                continue;
            }

            var values = lines.Select(Uri.UnescapeDataString).ToList();
            var domain = System.IO.Path.GetFileNameWithoutExtension(path);
            records.Add(new CheckpointCreationRecord(path, domain, values[0], values.Skip(1).ToList()));
        }

        return records;
    }
}
