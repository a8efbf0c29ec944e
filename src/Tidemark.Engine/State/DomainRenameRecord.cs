namespace Tidemark.Engine.State;

/// <summary>
/// A rename of an inactive domain in progress: <c>jobs/&lt;old name&gt;.rename</c> holds the
/// new name (URI-escaped, one line). A rename touches three things that cannot change in one
/// step: the definition file, the checkpoint metadata directory and the old definition file.
/// The record is written first, then the new definition; <see cref="Finish"/> moves the
/// checkpoint directory, removes the old definition and then the record. A kill anywhere in
/// between leaves the record, and the next host finishes the rename when the new definition
/// was written, or forgets it when not: never two definitions with one UUID, never checkpoint
/// metadata under a name no domain has (which the host would remove as a dead transient
/// domain's).
/// </summary>
internal static class DomainRenameRecord
{
    private const string Extension = ".rename";

    /// <summary>Writes the record durably; write the new definition only after this returns.</summary>
    public static Task WriteAsync(StateDirectory state, string oldName, string newName, CancellationToken cancellationToken)
        => AtomicFile.WriteAsync(PathOf(state, oldName), Uri.EscapeDataString(newName) + "\n", cancellationToken);

    /// <summary>
    /// Completes the rename from <paramref name="oldName"/> to <paramref name="newName"/> if its
    /// new definition exists, and drops the record either way. Every step may already have
    /// been done by the run a kill cut short.
    /// </summary>
    public static void Finish(StateDirectory state, string oldName, string newName)
    {
        if (File.Exists(state.DomainFile(newName)))
        {
            var from = state.CheckpointDirectory(oldName);
            if (Directory.Exists(from))
            {
                // Metadata under the new name belongs to no domain (the name was free):
                // libvirt clears what a new name's paths hold before a rename too.
                state.DeleteCheckpointDirectory(newName);
                Directory.Move(from, state.CheckpointDirectory(newName));
                AtomicFile.SyncDirectory(Path.GetDirectoryName(from) ?? ".");
            }

            AtomicFile.Delete(state.DomainFile(oldName));
        }

        AtomicFile.Delete(PathOf(state, oldName));
    }

    /// <summary>The renames a kill cut short, as (old name, new name); an unreadable record is dropped and reported through <paramref name="unreadable"/>.</summary>
    public static IReadOnlyList<(string OldName, string NewName)> Pending(StateDirectory state, Action<string> unreadable)
    {
        var renames = new List<(string, string)>();
        if (!Directory.Exists(state.JobsDirectory))
        {
            return renames;
        }

        foreach (var path in Directory.EnumerateFiles(state.JobsDirectory, "*" + Extension).Order(StringComparer.Ordinal).ToList())
        {
            var lines = File.ReadAllLines(path);
            if (lines.Length != 1 || lines[0].Length == 0)
            {
                // An atomic write leaves the whole record or none: this one is not ours.
                unreadable(path);
                AtomicFile.Delete(path);
                continue;
            }

            renames.Add((Path.GetFileNameWithoutExtension(path), Uri.UnescapeDataString(lines[0])));
        }

        return renames;
    }

    private static string PathOf(StateDirectory state, string domain) => Path.Combine(state.JobsDirectory, domain + Extension);
}
