namespace Tidemark.Testing;

/// <summary>Locations in the source tree and beside it that tests read.</summary>
public static class Repository
{
    /// <summary>The repository root (the folder that holds Tidemark.slnx).</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>The read-only shared folder next to the repository (specs and conformance data; see <see cref="LibvirtConformance"/>).</summary>
    public static string Shared => Path.GetFullPath(Path.Combine(Root, "..", "shared"));

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Tidemark.slnx")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("Tidemark.slnx not found above " + AppContext.BaseDirectory);
    }
}
