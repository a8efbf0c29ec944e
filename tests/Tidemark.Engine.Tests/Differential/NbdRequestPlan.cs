using System.Text.Json;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests.Differential;

/// <summary>
/// A sequence of NBD requests that libnbd sends, one at a time or many in flight, to one
/// export (<c>nbd_requests.py</c> under the system python3, strict mode off so that the server,
/// not libnbd, judges every request). Each step gives one line of outcome: success with a
/// digest of what was read, the chunks it came in or the extents; or the errno the server
/// replied with. The same plan against two servers must give the same lines.
/// </summary>
public sealed class NbdRequestPlan
{
    private readonly List<object[]> _steps = [];

    // Steps where Tidemark deliberately answers otherwise than qemu-nbd: each side's outcome.
    // A null qemu-nbd outcome is not compared (a qemu-nbd quirk that does not always end alike).
    private readonly Dictionary<int, (string? Qemu, string Tidemark)> _deliberate = [];

    public int Count => _steps.Count;

    /// <summary>Export size, block size constraints and transmission flags as libnbd saw them.</summary>
    public NbdRequestPlan Handshake() => Add("handshake");

    public NbdRequestPlan Read(long offset, long length, params string[] flags) => Add(["read", offset, length, .. flags]);

    public NbdRequestPlan Write(long offset, long length, byte pattern, params string[] flags) => Add(["write", offset, length, pattern, .. flags]);

    public NbdRequestPlan Zero(long offset, long length, params string[] flags) => Add(["zero", offset, length, .. flags]);

    public NbdRequestPlan Trim(long offset, long length, params string[] flags) => Add(["trim", offset, length, .. flags]);

    public NbdRequestPlan Cache(long offset, long length) => Add("cache", offset, length);

    public NbdRequestPlan Flush() => Add("flush");

    /// <summary>base:allocation from <paramref name="offset"/>, as the server chose to split and extend it.</summary>
    public NbdRequestPlan Status(long offset, long length, params string[] flags) => Add(["status", offset, length, .. flags]);

    /// <summary>Every write sent before any reply is awaited.</summary>
    public NbdRequestPlan WritesInFlight(params (long Offset, long Length, byte Pattern)[] writes)
        => Add("writes_in_flight", writes.Select(w => new object[] { w.Offset, w.Length, w.Pattern }).ToArray());

    /// <summary>Every read sent before any reply is awaited; the outcome digests all the data in order.</summary>
    public NbdRequestPlan ReadsInFlight(params (long Offset, long Length)[] reads)
        => Add("reads_in_flight", reads.Select(r => new object[] { r.Offset, r.Length }).ToArray());

    /// <summary>Writes queued, then NBD_CMD_DISC without waiting for their replies; ends the plan.</summary>
    public NbdRequestPlan DisconnectInFlight(params (long Offset, long Length, byte Pattern)[] writes)
        => Add("disconnect_in_flight", writes.Select(w => new object[] { w.Offset, w.Length, w.Pattern }).ToArray());

    /// <summary>
    /// The last step is answered differently on purpose: qemu-nbd must answer
    /// <paramref name="qemu"/> and Tidemark <paramref name="tidemark"/> (outcomes as the script
    /// prints them, e.g. "error EINVAL"), or anything when <paramref name="qemu"/> is null. The
    /// caller says why in a comment.
    /// </summary>
    public NbdRequestPlan Deliberately(string? qemu, string tidemark)
    {
        _deliberate[_steps.Count - 1] = (qemu, tidemark);
        return this;
    }

    /// <summary>Fails with every step whose outcomes differ (other than as <see cref="Deliberately"/> allows), qemu-nbd's line first.</summary>
    public void AssertSame(IReadOnlyList<string> qemu, IReadOnlyList<string> tidemark)
    {
        var differences = new List<string>();
        for (var i = 0; i < Math.Max(qemu.Count, tidemark.Count); i++)
        {
            var q = i < qemu.Count ? qemu[i] : "(no line)";
            var t = i < tidemark.Count ? tidemark[i] : "(no line)";
            if (_deliberate.TryGetValue(i, out var expected))
            {
                if ((expected.Qemu is not null && Outcome(q) != expected.Qemu) || Outcome(t) != expected.Tidemark)
                {
                    differences.Add($"qemu-nbd: {q} (expected {expected.Qemu ?? "anything"})\ntidemark: {t} (expected {expected.Tidemark})");
                }
            }
            else if (q != t && !AllocationAgreement.Agrees(Step(q), Outcome(q), Outcome(t)))
            {
                differences.Add($"qemu-nbd: {q}\ntidemark: {t}");
            }
        }

        Assert.True(differences.Count == 0, "replies differ:\n" + string.Join("\n\n", differences));
    }

    // A line is "<index> <step as JSON>: <outcome>"; a step's JSON is a list, with no ": " in it.
    private static string Outcome(string line)
    {
        var at = line.IndexOf(": ", StringComparison.Ordinal);
        return at < 0 ? line : line[(at + 2)..];
    }

    private static string Step(string line)
    {
        var space = line.IndexOf(' ', StringComparison.Ordinal);
        var at = line.IndexOf(": ", StringComparison.Ordinal);
        return space < 0 || at < space ? line : line[(space + 1)..at];
    }

    /// <summary>Writes queued, then the connection dropped without NBD_CMD_DISC or waiting for replies; ends the plan.</summary>
    public NbdRequestPlan AbandonInFlight(params (long Offset, long Length, byte Pattern)[] writes)
        => Add("abandon_in_flight", writes.Select(w => new object[] { w.Offset, w.Length, w.Pattern }).ToArray());

    private NbdRequestPlan Add(params object[] step)
    {
        _steps.Add(step);
        return this;
    }

    /// <summary>Runs the plan against <paramref name="uri"/>; one line per step.</summary>
    public async Task<IReadOnlyList<string>> RunAsync(string uri)
    {
        Peer.Require("nbdsh");
        var python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        var script = Path.Combine(AppContext.BaseDirectory, "Differential", "nbd_requests.py");
        var result = await Peer.RunAsync(python, [script, uri], stdin: JsonSerializer.Serialize(_steps));
        Assert.True(result.ExitCode == 0, $"nbd_requests.py {uri}: exit {result.ExitCode}\n{result.Stdout}{result.Stderr}");
        return result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }
}
