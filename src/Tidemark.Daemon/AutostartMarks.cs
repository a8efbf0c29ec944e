namespace Tidemark.Daemon;

/// <summary>
/// Which domains start with the daemon: one empty file <c>autostart/&lt;name&gt;</c> in the
/// state directory per domain, as libvirt keeps one symlink per domain in its
/// <c>autostart/</c> directory. The file system is the only state, so the mark survives
/// restarts and needs no rewrite of the domain's definition.
/// </summary>
internal sealed class AutostartMarks
{
    private readonly string _directory;

    public AutostartMarks(string stateRoot)
    {
        _directory = Path.Combine(stateRoot, "autostart");
    }

    /// <summary>True when domain <paramref name="name"/> is marked.</summary>
    public bool Get(string name) => File.Exists(PathOf(name));

    /// <summary>Marks or unmarks domain <paramref name="name"/>.</summary>
    public void Set(string name, bool autostart)
    {
        var path = PathOf(name);
        if (autostart)
        {
            Directory.CreateDirectory(_directory);
            using (File.Create(path))
            {
            }
        }
        else if (File.Exists(path))
        {
            File.Delete(path);
        }
    }

    // Domain names never hold '/' (libvirt refuses them), so the name is the file name.
    private string PathOf(string name) => Path.Combine(_directory, name);
}
