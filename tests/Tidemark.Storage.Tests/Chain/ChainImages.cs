using System.Text.Json.Nodes;
using Tidemark.Testing;

namespace Tidemark.Storage.Tests.Chain;

/// <summary>
/// Backing chains of three qcow2 images built with qemu-img and qemu-io, with relative backing
/// names so a whole directory can be copied and each copy handed to one tool. The layers write
/// overlapping patterns, zeroes over data and discards, so a verb that reads the wrong layer or
/// drops a zero cannot give the expected content.
/// </summary>
internal static class ChainImages
{
    public const string Size = "8M";

    /// <summary>base.qcow2 &lt;- mid.qcow2 &lt;- top.qcow2 in <paramref name="dir"/>, plus other.qcow2 (unrelated, with its own data).</summary>
    public static async Task CreateAsync(string dir, string compat, int clusterSize, bool bitmaps, bool compressed)
    {
        var options = $"compat={compat},cluster_size={clusterSize}";
        string P(string name) => Path.Combine(dir, name);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, P("base.qcow2"), Size);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, "-b", "base.qcow2", "-F", "qcow2", P("mid.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, "-b", "mid.qcow2", "-F", "qcow2", P("top.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, P("other.qcow2"), Size);
        if (bitmaps)
        {
            await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", P("base.qcow2"), "b-base");
            await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", "-g", "128k", "--disable", P("base.qcow2"), "b-off");
            await Peer.RunCheckedAsync("qemu-img", "bitmap", "--add", P("top.qcow2"), "b-top");
        }

        var c = compressed ? "-c " : string.Empty;
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", $"write {c}-P 0x11 0 1M", "-c", "write -P 0x12 3M 1M", "-c", "write -P 0x13 6M 2M", P("base.qcow2"));
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x21 512k 1M", "-c", "write -z 3M 512k", "-c", "write -P 0x22 5M 4k", "-c", "write -P 0x23 6M 1536", P("mid.qcow2"));
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", $"write {c}-P 0x31 1M 1M", "-c", "write -P 0x32 3M 4k", "-c", "write -z 6M 1M", "-c", "write -P 0x33 7M 100k", P("top.qcow2"));
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x41 0 2M", "-c", "write -P 0x13 6M 2M", P("other.qcow2"));
    }

    /// <summary>Copies every file of <paramref name="from"/> into a new directory <paramref name="to"/>.</summary>
    public static string CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from))
        {
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        }

        return to;
    }

    /// <summary><c>qemu-img compare</c> exits 0: the two images read the same through their chains.</summary>
    public static async Task AssertSameContentAsync(string a, string b)
    {
        var result = await Peer.RunAsync("qemu-img", ["compare", "-f", "qcow2", "-F", "qcow2", a, b]);
        Assert.True(result.ExitCode == 0, $"qemu-img compare {a} {b} exited {result.ExitCode}: {result.Stdout}{result.Stderr}");
    }

    /// <summary><c>qemu-img check</c> exits 0 (no corruption, no leak).</summary>
    public static async Task AssertCleanAsync(string path)
    {
        var result = await Peer.RunAsync("qemu-img", ["check", path]);
        Assert.True(result.ExitCode == 0, $"qemu-img check {path} exited {result.ExitCode}: {result.Stdout}{result.Stderr}");
    }

    /// <summary>
    /// <c>qemu-img info --output=json</c> of an image without its backing chain, with the
    /// fields that name the directory or measure the host file (which two tools may lay out
    /// differently) taken out: what is left is metadata QEMU writes.
    /// </summary>
    public static async Task<string> InfoAsync(string path)
    {
        var json = JsonNode.Parse(await Peer.RunCheckedAsync("qemu-img", "info", "--output=json", "-U", path))!.AsObject();
        json.Remove("filename");
        json.Remove("actual-size");
        json.Remove("full-backing-filename");
        json.Remove("dirty-flag");
        return json.ToJsonString();
    }
}
