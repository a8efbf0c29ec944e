namespace Tidemark.Testing;

/// <summary>
/// libvirt's conformance data (its checkpoint and backup test fixtures and RELAX NG schemas,
/// release 11.3.0), which the document tests compare Tidemark with. It is found in a libvirt
/// source tree named by <c>TIDEMARK_LIBVIRT_CONFORMANCE</c>, else in
/// <c>../shared/conformance/libvirt</c> beside the repository. Without it, a test that reads it
/// skips with one line saying what is missing and how to get it, on a developer machine; under
/// CI (<c>CI</c> set) a missing data set fails the test, as a missing peer does.
/// </summary>
public static class LibvirtConformance
{
    /// <summary>The environment variable that names a libvirt source tree.</summary>
    public const string Variable = "TIDEMARK_LIBVIRT_CONFORMANCE";

    // The fixtures the tests read, by folder and file pattern. A libvirt source tree holds
    // thousands of other XML files (every driver's test data); only these are the data set.
    private static readonly (string Folder, string Pattern)[] XmlSets =
    [
        ("tests/qemudomaincheckpointxml2xmlin", "*.xml"),
        ("tests/qemudomaincheckpointxml2xmlout", "*.xml"),
        ("tests/domainbackupxml2xmlin", "*.xml"),
        ("tests/domainbackupxml2xmlout", "*.xml"),
        ("tests/qemustatusxml2xmldata", "backup-pull-*.xml"),
        ("tests/virshtestdata", "checkpoint-*.xml"),
    ];

    private static readonly (string? Folder, string Missing) Location = Locate();

    /// <summary>True when the data set is present.</summary>
    public static bool Available => Location.Folder is not null;

    /// <summary>One line: what is missing and how to get it.</summary>
    public static string Missing => Location.Missing;

    /// <summary>The folder of the data set (a libvirt source tree's layout); skips or fails the test when it is missing.</summary>
    public static string Folder => Location.Folder ?? Unavailable();

    /// <summary>libvirt's <c>tests/</c> folder.</summary>
    public static string Tests => Path.Combine(Folder, "tests");

    /// <summary>libvirt's RELAX NG schemas, <c>src/conf/schemas/</c>.</summary>
    public static string Schemas => Path.Combine(Folder, "src", "conf", "schemas");

    /// <summary>The files of <c>tests/FOLDER</c> that match <paramref name="pattern"/>, sorted.</summary>
    public static string[] TestFiles(string folder, string pattern = "*.xml") =>
        [.. Directory.EnumerateFiles(Path.Combine(Tests, folder), pattern).Order(StringComparer.Ordinal)];

    /// <summary>Every XML file of the data set, relative to <see cref="Folder"/>, sorted.</summary>
    public static IEnumerable<string> XmlFiles()
    {
        var folder = Folder;
        return XmlSets
            .SelectMany(s => Directory.EnumerateFiles(Path.Combine(folder, s.Folder), s.Pattern))
            .Select(f => Path.GetRelativePath(folder, f))
            .Order(StringComparer.Ordinal);
    }

    /// <summary>
    /// Theory rows built from the data set, or, when it is missing, one row that reports the test
    /// skipped (under CI the row runs and fails on <see cref="Folder"/>), so a theory never
    /// silently has no rows.
    /// </summary>
    public static TheoryDataRow<string>[] Rows(Func<IEnumerable<TheoryDataRow<string>>> rows)
    {
        if (Available)
        {
            return [.. rows()];
        }

        return [new TheoryDataRow<string>("(libvirt conformance data)") { Skip = Peer.InCi ? null : Missing }];
    }

    private static string Unavailable()
    {
        if (Peer.InCi)
        {
            throw new InvalidOperationException(Missing);
        }

        Assert.Skip(Missing);
        return null!;
    }

    private static (string? Folder, string Missing) Locate()
    {
        const string HowToGet =
            "set " + Variable + " to a libvirt 11.3.0 source tree (git clone -b v11.3.0 https://gitlab.com/libvirt/libvirt) " +
            "or put the data set at ../shared/conformance/libvirt";
        var named = Environment.GetEnvironmentVariable(Variable);
        if (!string.IsNullOrEmpty(named))
        {
            var full = Path.GetFullPath(named);
            return HasDataSet(full)
                ? (full, "")
                : (null, $"libvirt conformance data missing: {Variable}={named} has no tests/qemudomaincheckpointxml2xmlin or src/conf/schemas/domaincheckpoint.rng; {HowToGet}");
        }

        var shared = Path.Combine(Repository.Shared, "conformance", "libvirt");
        return HasDataSet(shared)
            ? (shared, "")
            : (null, $"libvirt conformance data missing: no {shared} and {Variable} is not set; {HowToGet}");
    }

    private static bool HasDataSet(string folder) =>
        Directory.Exists(Path.Combine(folder, "tests", "qemudomaincheckpointxml2xmlin"))
        && File.Exists(Path.Combine(folder, "src", "conf", "schemas", "domaincheckpoint.rng"));
}
