using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Tidemark.Storage;

namespace Tidemark.Engine.State;

/// <summary>
/// Replaces a small file so that a crash leaves either the old content or the new, never a mix
/// or an empty file (design.md, "Where things live on disk"): write a temporary file beside it,
/// fsync it, rename it over the target, then fsync the directory so the rename itself is durable.
/// </summary>
/// <remarks>
/// A kill between creating the temporary file and the rename leaves it behind, named
/// <c>.&lt;target&gt;.&lt;pid&gt;.&lt;32 hex digits&gt;.tmp</c>. Nothing else the engine or a
/// user writes has that shape; <see cref="RemoveStrayTemporaryFiles"/> removes only such files.
/// (libvirt's <c>virFileRewrite</c> uses <c>&lt;target&gt;.new</c> and never cleans it up; a
/// name that cannot be an <c>*.xml</c> of the directory is what lets us clean up safely.)
/// </remarks>
internal static partial class AtomicFile
{
    private const string TemporarySuffix = ".tmp";

    // NAME_MAX of Linux file systems, in bytes.
    private const int MaxFileNameBytes = 255;

    // What virFileRewrite appends to the file it writes first.
    private const string LibvirtRewriteSuffix = ".new";

    /// <summary>
    /// Writes <paramref name="content"/> (UTF-8, no BOM) to <paramref name="path"/> with mode
    /// 0600 whatever the umask, as libvirt's <c>virXMLSaveFile</c> does (<c>virFileRewrite</c>
    /// with <c>S_IRUSR | S_IWUSR</c> and <c>VIR_FILE_OPEN_FORCE_MODE</c>, src/util/virxml.c,
    /// src/util/virfile.c).
    /// </summary>
    public static async Task WriteAsync(string path, string content, CancellationToken cancellationToken)
    {
        var directory = Path.GetDirectoryName(path) ?? ".";
        Directory.CreateDirectory(directory);
        var temp = TemporaryPath(path);
        try
        {
            var options = new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Options = FileOptions.Asynchronous,
            };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            var stream = new FileStream(temp, options);
            await using (stream.ConfigureAwait(false))
            {
                // The create mode passes through the umask; libvirt forces the mode (fchmod).
                if (!OperatingSystem.IsWindows())
                {
                    File.SetUnixFileMode(stream.SafeFileHandle, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                }

                await stream.WriteAsync(new UTF8Encoding(false).GetBytes(content), cancellationToken).ConfigureAwait(false);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }

        SyncDirectory(directory);
    }

    /// <summary>
    /// <see cref="WriteAsync"/> for a file libvirt keeps too (a domain's definition, a
    /// checkpoint's metadata), refused where libvirt cannot keep it: libvirt writes it through
    /// NAME.new (virFileRewrite), which no file system takes for a name over 251 bytes. So a
    /// domain or checkpoint libvirt refuses for its name is refused here too, and every one
    /// kept here can move to libvirt.
    /// </summary>
    /// <exception cref="PathTooLongException">The file's name is over 251 bytes.</exception>
    public static Task WriteLibvirtFileAsync(string path, string content, CancellationToken cancellationToken)
    {
        var limit = MaxFileNameBytes - LibvirtRewriteSuffix.Length;
        return Encoding.UTF8.GetByteCount(Path.GetFileName(path)) > limit
            ? throw new PathTooLongException($"the file name of '{path}' is over {limit} bytes, the most libvirt can keep")
            : WriteAsync(path, content, cancellationToken);
    }

    /// <summary>Removes <paramref name="path"/> if it exists and makes the removal durable.</summary>
    public static void Delete(string path)
    {
        if (!File.Exists(path))
        {
            return;
        }

        File.Delete(path);
        SyncDirectory(Path.GetDirectoryName(path) ?? ".");
    }

    /// <summary>
    /// Removes the temporary files that writes cut short by a kill left in
    /// <paramref name="directory"/> (not below it), and only those: files whose name has
    /// exactly the shape <see cref="WriteAsync"/> gives them. Their targets are intact (the
    /// rename never happened), so nothing is lost. Returns the removed paths.
    /// </summary>
    /// <remarks>
    /// The engine calls it when it opens a state directory, before anything writes to it. A
    /// file whose pid names another live process is kept: that may be a writer still at work
    /// (or an unrelated process that reused the pid, whose stray the next start removes). Our
    /// own pid is no such writer: nothing has written yet, so the file is from an earlier
    /// process that had the same pid, as a daemon restarted in a container often has.
    /// </remarks>
    public static IReadOnlyList<string> RemoveStrayTemporaryFiles(string directory)
    {
        if (!Directory.Exists(directory))
        {
            return [];
        }

        var removed = new List<string>();
        foreach (var file in Directory.EnumerateFiles(directory, "*" + TemporarySuffix).Order(StringComparer.Ordinal).ToList())
        {
            if (TemporaryNamePattern().Match(Path.GetFileName(file)) is { Success: true } match
                && !IsOtherLiveProcess(match.Groups["pid"].Value))
            {
                File.Delete(file);
                removed.Add(file);
            }
        }

        if (removed.Count != 0)
        {
            SyncDirectory(directory);
        }

        return removed;
    }

    /// <summary>fsync of a directory: what makes a rename or an unlink in it durable.</summary>
    public static void SyncDirectory(string directory) => HostDirectory.Sync(directory);

    /// <summary>
    /// A fresh temporary path beside <paramref name="path"/>: ".&lt;target&gt;.&lt;pid&gt;.&lt;guid
    /// without dashes&gt;.tmp", hidden and never ending in ".xml", so no listing of a state
    /// directory (*.xml, *.files, *.checkpoint) ever picks one up. A long target name is cut
    /// (at a character) so that the whole stays a file name of at most 255 bytes.
    /// </summary>
    internal static string TemporaryPath(string path)
    {
        var tail = string.Create(CultureInfo.InvariantCulture, $".{Environment.ProcessId}.{Guid.NewGuid():N}{TemporarySuffix}");
        var target = Path.GetFileName(path);
        var room = MaxFileNameBytes - 1 - tail.Length;
        while (Encoding.UTF8.GetByteCount(target) > room)
        {
            target = target[..^(char.IsLowSurrogate(target[^1]) ? 2 : 1)];
        }

        return Path.Combine(Path.GetDirectoryName(path) ?? ".", "." + target + tail);
    }

    // /proc/<pid> exists exactly while the process does (Linux, the engine's host; elsewhere
    // every pid counts as gone).
    private static bool IsOtherLiveProcess(string pid)
        => int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out var id)
           && id != Environment.ProcessId
           && OperatingSystem.IsLinux()
           && Directory.Exists("/proc/" + id.ToString(CultureInfo.InvariantCulture));

    [GeneratedRegex(@"^\..+\.(?<pid>[0-9]+)\.[0-9a-f]{32}\.tmp\z", RegexOptions.CultureInvariant)]
    private static partial Regex TemporaryNamePattern();
}
