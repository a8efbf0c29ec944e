using System.Text;
using System.Text.RegularExpressions;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests.Support;

/// <summary>
/// What stock virsh printed for a sequence of commands against one URI: each command, its
/// stdout, stderr and exit code. Two transcripts are compared after <see cref="Mask"/>.
/// </summary>
internal sealed partial class VirshTranscript(string uri)
{
    private readonly StringBuilder _text = new();

    public string Text => _text.ToString();

    public async Task<PeerResult> RunAsync(params string[] arguments)
    {
        var r = await Peer.RunAsync("virsh", ["-c", uri, .. arguments], timeout: TimeSpan.FromMinutes(1));
        _text.Append("$ virsh ").AppendJoin(' ', arguments).Append('\n')
            .Append(r.Stdout)
            .Append(r.Stderr.Length > 0 ? "[stderr]\n" + r.Stderr : "")
            .Append("[exit ").Append(r.ExitCode).Append("]\n");
        return r;
    }

    /// <summary>Adds what another peer printed (<paramref name="command"/>, its output) to the record.</summary>
    public void Note(string command, string output) => _text.Append("$ ").Append(command).Append('\n').Append(output);

    /// <summary>Waits, off the record, until the domain has no job (libvirt ends an aborted backup asynchronously).</summary>
    public async Task WaitForNoJobAsync(string domain)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!(await Peer.RunAsync("virsh", ["-c", uri, "domjobinfo", domain])).Stdout.StartsWith("Job type:         None", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, $"{domain}'s job did not end");
            await Task.Delay(100);
        }
    }

    /// <summary>
    /// Only what must differ between two hosts is masked: <paramref name="directory"/> (where the
    /// images are), UUIDs, creation times (seconds and virsh's local-time rendering) and domain
    /// ids. dominfo's lines about the host rather than the domain are dropped: "CPU time"
    /// (virsh prints it only when non-zero, and Tidemark runs no vCPU), "Security model/DOI/label"
    /// (the security driver a host is configured with: the private libvirtd has
    /// <c>security_driver="none"</c>, Tidemark none at all) and "Messages" (the private libvirtd
    /// runs QEMU as root, which libvirt marks as a taint).
    /// </summary>
    public string Mask(string directory)
    {
        var text = HostLines().Replace(Text, "");
        text = text.Replace(directory, "DIR", StringComparison.Ordinal);
        text = Uuid().Replace(text, "UUID");
        text = LocalTime().Replace(text, "TIME");
        text = CreationTime().Replace(text, "<creationTime>SECONDS</creationTime>");
        text = IdLine().Replace(text, "${label}ID");
        text = ListRowId().Replace(text, " ID");
        text = Elapsed().Replace(text, "${label}MS ");
        return text;
    }

    /// <summary>
    /// <paramref name="text"/> with each schema violation's details replaced. They are libxml2's
    /// RELAX NG validator's words after the path of the .rng file libvirt loaded
    /// (/usr/share/libvirt/schemas on this host); Tidemark checks the same rules in C# and words
    /// each problem itself (line, element, attribute), naming the schema by file name. Only the
    /// error's code and first words are compared.
    /// </summary>
    public static string MaskSchemaDetails(string text) => SchemaDetails().Replace(text, "${head}${schema}\nSCHEMA DETAILS\n");

    [GeneratedRegex(@"(?<head>Unable to validate doc against )(?:\S*/)?(?<schema>\w+\.rng)\n(?:(?!\[exit ).*\n)*")]
    private static partial Regex SchemaDetails();

    [GeneratedRegex("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")]
    private static partial Regex Uuid();

    [GeneratedRegex(@"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}")]
    private static partial Regex LocalTime();

    [GeneratedRegex(@"<creationTime>\d+</creationTime>")]
    private static partial Regex CreationTime();

    [GeneratedRegex(@"(?m)^(?<label>Id:\s+)\d+")]
    private static partial Regex IdLine();

    // virsh list's rows: a host numbers running domains in start order, so the id depends on
    // what else that host ran before (another test of the same libvirtd).
    [GeneratedRegex(@"(?m)^ \d+(?= +\S+ +(?:running|paused|shut off))")]
    private static partial Regex ListRowId();

    [GeneratedRegex(@"(?m)^(?<label>Time elapsed:\s+)\d+ +")]
    private static partial Regex Elapsed();

    [GeneratedRegex(@"(?m)^(CPU time|Security model|Security DOI|Security label|Messages):.*\n")]
    private static partial Regex HostLines();
}
