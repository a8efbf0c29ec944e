using System.Text.Json;
using Tidemark.Testing;

namespace Tidemark.Cli.Tests;

/// <summary>
/// <c>nbd info</c> prints what a server chose to send without letting it reach the terminal
/// raw: control characters, NUL and bytes that are not UTF-8 come out escaped, the way nbdinfo
/// escapes an export name, and a size is the unsigned number the wire carries.
/// </summary>
public sealed class NbdInfoServerStringTests
{
    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task HostileStrings_AreEscaped_AndTheLargestSizeIsUnsigned()
    {
        using var dir = new TempDirectory("cli-nbd-strings");
        byte[] name = [.. "n"u8, 0, .. "a"u8, 1, .. "b"u8, 0xff, .. "c€\"\\\n\t"u8];
        byte[] description = [.. "d"u8, 0, .. "e"u8, 0x1b, .. "f"u8, 0xc3, .. "(g"u8, 0x7f, .. "h"u8, 0xc2, 0x9b];
        await using var server = new ScriptedNbdServer(dir.File("odd.sock"), name, description, ulong.MaxValue);

        var info = await RunAsync("nbd", "info", server.Uri);
        var list = await RunAsync("nbd", "info", "--list", server.Uri);
        var json = await RunAsync("nbd", "info", "--json", server.Uri);

        Assert.Contains("export=\"n\\u0000a\\u0001b\uFFFDc€\\\"\\\\\\u000a\\u0009\":\n", info, StringComparison.Ordinal);
        Assert.Contains("\tdescription: d\\u0000e\\u001bf\uFFFD(g\\u007fh\\u009b\n", info, StringComparison.Ordinal);
        Assert.Contains("\texport-size: 18446744073709551615\n", info, StringComparison.Ordinal);
        Assert.Equal("export=\"n\\u0000a\\u0001b\uFFFDc€\\\"\\\\\\u000a\\u0009\" description=\"d\\u0000e\\u001bf\uFFFD(g\\u007fh\\u009b\"\n", list);
        foreach (var output in new[] { info, list, json })
        {
            Assert.DoesNotContain(output, c => (c < ' ' && c is not ('\n' or '\t')) || c is (>= '\u007f' and <= '\u009f'));
        }

        using var document = JsonDocument.Parse(json);
        var export = document.RootElement.GetProperty("exports")[0];
        Assert.Equal(ulong.MaxValue, export.GetProperty("export-size").GetUInt64());
        Assert.Equal("n\0a\u0001b\uFFFDc€\"\\\n\t", export.GetProperty("export-name").GetString());
    }

    [Fact]
    public async Task ExportNameLine_IsNbdinfos()
    {
        // Where nbdinfo's C strings can carry the name whole (no NUL, valid UTF-8), both print
        // the same line.
        using var dir = new TempDirectory("cli-nbd-strings");
        byte[] name = [.. "na"u8, 1, .. "b c€\"\\\n\t"u8];
        await using var server = new ScriptedNbdServer(dir.File("odd.sock"), name, "plain"u8.ToArray(), 1 << 20);

        var nbdinfo = await Peer.RunCheckedAsync("nbdinfo", server.Uri);
        var ours = await RunAsync("nbd", "info", server.Uri);

        var line = nbdinfo.Split('\n')[1];
        Assert.Equal("export=\"na\\u0001b c€\\\"\\\\\\u000a\\u0009\":", line);
        Assert.Equal(line, ours.Split('\n')[1]);
        Assert.Contains("\tdescription: plain\n", ours, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(params string[] args)
    {
        var run = await CliRun.RunAsync(args);
        Assert.True(run.ExitCode == 0, run.Stderr);
        return run.Stdout;
    }
}
