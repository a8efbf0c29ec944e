using System.Security.Cryptography;
using System.Text;
using Tidemark.Storage;

namespace Tidemark.Engine.State;

/// <summary>
/// Where the engine keeps what must survive a restart (design.md, "Where things live on disk"):
/// <list type="bullet">
/// <item><c>domains/&lt;name&gt;.xml</c>: each persistent domain's definition;</item>
/// <item><c>checkpoint/&lt;domain&gt;/&lt;name&gt;.xml</c>: each checkpoint's metadata with the
/// embedded domain, as libvirt keeps it (spec §6.1);</item>
/// <item><c>jobs/&lt;domain&gt;.files</c>: the files a running job has created or is about to
/// create (<see cref="JobRecord"/>), so that a start after a crash removes exactly those;</item>
/// <item><c>jobs/&lt;domain&gt;.checkpoint</c>: the checkpoint an inactive domain is being given
/// (<see cref="CheckpointCreationRecord"/>), so that a start after a crash removes its stray bitmaps;</item>
/// <item><c>run/&lt;domain&gt;.sock</c>: the unix socket a running domain's disks are served on
/// (a name too long for a socket's path shortened, <see cref="SocketPath"/>);</item>
/// <item><c>run/&lt;domain&gt;.xml</c>: a running domain a closed host left to the next one (<see cref="DomainStatus"/>).</item>
/// </list>
/// Every metadata file is replaced atomically (<see cref="AtomicFile"/>). The truth about what
/// is dirty is in the qcow2 files' bitmaps, never here.
/// </summary>
public sealed class StateDirectory
{
    private const string XmlExtension = ".xml";

    // virDomainDefGetShortName's length.
    private const int ShortNameLength = 20;

    /// <param name="root">The directory; created when missing.</param>
    public StateDirectory(string root)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        Root = Path.GetFullPath(root);
        Directory.CreateDirectory(Root);
    }

    /// <summary>The state directory's absolute path.</summary>
    public string Root { get; }

    /// <summary>
    /// The default location: <c>/var/lib/tidemark</c> as root, else <c>$XDG_STATE_HOME/tidemark</c>
    /// (<c>~/.local/state/tidemark</c> when XDG_STATE_HOME is unset).
    /// </summary>
    public static string DefaultRoot()
    {
        if (Environment.UserName == "root")
        {
            return "/var/lib/tidemark";
        }

        var xdg = Environment.GetEnvironmentVariable("XDG_STATE_HOME");
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return Path.Combine(string.IsNullOrEmpty(xdg) ? Path.Combine(home, ".local", "state") : xdg, "tidemark");
    }

    internal string DomainsDirectory => Path.Combine(Root, "domains");

    internal string JobsDirectory => Path.Combine(Root, "jobs");

    internal string RunDirectory => Path.Combine(Root, "run");

    internal string DomainFile(string domain) => Path.Combine(DomainsDirectory, domain + XmlExtension);

    internal string CheckpointDirectory(string domain) => Path.Combine(Root, "checkpoint", domain);

    internal string CheckpointFile(string domain, string checkpoint) => Path.Combine(CheckpointDirectory(domain), checkpoint + XmlExtension);

    internal string JobRecordFile(string domain) => Path.Combine(JobsDirectory, domain + ".files");

    /// <summary>
    /// The unix socket a running domain's disks are served on: <c>run/&lt;name&gt;.sock</c>, or,
    /// when that is too long for a socket's path, <c>run/&lt;the name's first 20
    /// characters&gt;-&lt;16 hex digits of its SHA-256&gt;.sock</c>, as libvirt shortens a domain's
    /// name in its QEMU's paths (virDomainDefGetShortName). Clients find it in the running
    /// domain's XML either way.
    /// </summary>
    internal string SocketPath(string domain)
    {
        var path = Path.Combine(RunDirectory, domain + ".sock");
        if (UnixSocketPath.Fits(path))
        {
            return path;
        }

        var prefix = domain.Length > ShortNameLength && char.IsHighSurrogate(domain[ShortNameLength - 1])
            ? domain[..(ShortNameLength - 1)]
            : domain[..Math.Min(ShortNameLength, domain.Length)];
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(domain)))[..16];
        return Path.Combine(RunDirectory, $"{prefix}-{hash}.sock");
    }

    internal string StatusFile(string domain) => Path.Combine(RunDirectory, domain + XmlExtension);

    internal IEnumerable<string> StatusFiles() => ListXml(RunDirectory);

    internal IEnumerable<string> DomainFiles() => ListXml(DomainsDirectory);

    internal IEnumerable<string> CheckpointFiles(string domain) => ListXml(CheckpointDirectory(domain));

    /// <summary>
    /// Removes the temporary files of metadata writes that a kill cut short (<see cref="AtomicFile"/>)
    /// from <c>domains/</c>, every <c>checkpoint/&lt;domain&gt;/</c> (including those of domains
    /// no longer defined), <c>jobs/</c> and <c>run/</c>; nothing else. Returns the removed paths.
    /// </summary>
    internal IReadOnlyList<string> RemoveStrayTemporaryFiles()
    {
        var checkpoints = Path.Combine(Root, "checkpoint");
        IEnumerable<string> directories = [DomainsDirectory, JobsDirectory, RunDirectory];
        if (Directory.Exists(checkpoints))
        {
            directories = directories.Concat(Directory.EnumerateDirectories(checkpoints).Order(StringComparer.Ordinal));
        }

        return [.. directories.SelectMany(AtomicFile.RemoveStrayTemporaryFiles)];
    }

    /// <summary>
    /// The domains that have a <c>checkpoint/&lt;domain&gt;/</c> directory but no definition file
    /// at all (one that fails to parse still counts as there) and no status record: transient
    /// domains a kill ended, whose checkpoint metadata would otherwise outlive them.
    /// </summary>
    internal IReadOnlyList<string> CheckpointDirectoriesWithoutDomain()
    {
        var checkpoints = Path.Combine(Root, "checkpoint");
        return Directory.Exists(checkpoints)
            ? [.. Directory.EnumerateDirectories(checkpoints).Select(d => Path.GetFileName(d)).Where(d => !File.Exists(DomainFile(d)) && !File.Exists(StatusFile(d))).Order(StringComparer.Ordinal)]
            : [];
    }

    internal void DeleteCheckpointDirectory(string domain)
    {
        var directory = CheckpointDirectory(domain);
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static IEnumerable<string> ListXml(string directory)
        => Directory.Exists(directory)
            ? Directory.EnumerateFiles(directory, "*" + XmlExtension).Order(StringComparer.Ordinal)
            : [];
}
