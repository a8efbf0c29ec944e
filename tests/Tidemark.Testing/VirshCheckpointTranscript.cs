using System.Text.RegularExpressions;

namespace Tidemark.Testing;

/// <summary>
/// libvirt's virsh checkpoint transcripts (<c>tests/virshtestdata/checkpoint.in/.out</c> and the
/// <c>checkpoint-redefine</c> script of <c>virshtest.c</c>), filtered as the data set's README
/// says, for every harness that replays them: the engine API, stock virsh against the daemon,
/// and Tidemark's own virsh commands. Tidemark has no snapshots, so the script's snapshot step
/// (the test driver refusing a snapshot while checkpoints exist) is left out of both sides.
/// </summary>
public static partial class VirshCheckpointTranscript
{
    /// <summary>libvirt's <c>tests/virshtestdata</c>.</summary>
    public static string Data => Path.Combine(LibvirtConformance.Tests, "virshtestdata");

    /// <summary>The test driver's disk image path, which the expected output names.</summary>
    public const string TestImage = "/guest/diskimage1";

    /// <summary>The commands of <c>checkpoint.in</c>, one a line, without the snapshot step.</summary>
    public static async Task<IReadOnlyList<string>> ScriptAsync(CancellationToken cancellationToken) =>
        [.. (await File.ReadAllLinesAsync(Path.Combine(Data, "checkpoint.in"), cancellationToken))
            .Where(l => !l.StartsWith("snapshot", StringComparison.Ordinal) && !l.StartsWith("echo snapshots", StringComparison.Ordinal))];

    /// <summary>
    /// The driver a QEMU host gives the test driver's disk, which that driver leaves out: a QEMU
    /// host takes an image whose format is not named as raw (never probed), so the domain names
    /// its qcow2 image's format, and the embedded domains show the line libvirt's QEMU driver writes.
    /// </summary>
    public const string QemuDriver = "<driver name='qemu' type='qcow2'/>";

    /// <summary><c>checkpoint.out</c> without the snapshot step, with <paramref name="image"/> for the test driver's disk and its <see cref="QemuDriver"/>.</summary>
    public static async Task<string> ExpectedAsync(string image, CancellationToken cancellationToken) =>
        (await File.ReadAllTextAsync(Path.Combine(Data, "checkpoint.out"), cancellationToken))
            .Replace("snapshots cannot be created while checkpoints exist\nerror: Operation not supported: cannot create snapshot while checkpoint exists\n\n", "", StringComparison.Ordinal)
            .Replace($"        <source file='{TestImage}'/>\n", $"        {QemuDriver}\n        <source file='{TestImage}'/>\n", StringComparison.Ordinal)
            .Replace(TestImage, image, StringComparison.Ordinal);

    /// <summary>virshtest's filter: each <c>&lt;creationTime</c> to the end of its line is deleted, the indentation stays.</summary>
    public static string Filter(string output) => CreationTime().Replace(output, "");

    /// <summary>The <c>checkpoint-redefine</c> commands, run in <see cref="Data"/>.</summary>
    public static IReadOnlyList<string> RedefineScript { get; } =
    [
        "cd " + Data,
        "echo 'Redefine must be in topological order; this will fail'",
        "checkpoint-create test --redefine checkpoint-c2.xml",
        "echo 'correct order'",
        "checkpoint-create test --redefine checkpoint-c3.xml",
        "checkpoint-create test --redefine checkpoint-c2.xml",
        "checkpoint-info test c2",
    ];

    /// <summary><c>checkpoint-redefine.out</c>.</summary>
    public static Task<string> RedefineExpectedAsync(CancellationToken cancellationToken) =>
        File.ReadAllTextAsync(Path.Combine(Data, "checkpoint-redefine.out"), cancellationToken);

    /// <summary>The test driver's <c>test</c> domain, as its checkpoints embed it, with <paramref name="image"/> for its disk and its <see cref="QemuDriver"/>.</summary>
    public static async Task<string> DomainXmlAsync(string image, CancellationToken cancellationToken)
    {
        var c2 = await File.ReadAllTextAsync(Path.Combine(Data, "checkpoint-c2.xml"), cancellationToken);
        var domain = c2[c2.IndexOf("<domain ", StringComparison.Ordinal)..(c2.IndexOf("</domain>", StringComparison.Ordinal) + "</domain>".Length)];
        return domain.Replace($"<source file='{TestImage}'/>", $"{QemuDriver}<source file='{TestImage}'/>", StringComparison.Ordinal).Replace(TestImage, image, StringComparison.Ordinal);
    }

    [GeneratedRegex("<creationTime.*")]
    private static partial Regex CreationTime();
}
