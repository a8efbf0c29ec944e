using System.Diagnostics;
using System.Text;

namespace Tidemark.Testing;

/// <summary>
/// A real peer program (qemu-img, nbdinfo, xmllint …) that tests run against. A missing peer
/// skips the test on a developer machine and fails it in CI, where the README's test command
/// has installed every peer (CI sets the <c>CI</c> environment variable).
/// </summary>
public static class Peer
{
    private static readonly string[] SearchPath =
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin")
        .Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Concat(["/usr/sbin", "/usr/bin", "/sbin"])
        .ToArray();

    /// <summary>True when running under CI.</summary>
    public static bool InCi => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CI"));

    /// <summary>Returns the full path of <paramref name="program"/>, or skips/fails the test.</summary>
    public static string Require(string program)
    {
        var path = Find(program);
        if (path is not null)
        {
            return path;
        }

        if (InCi)
        {
            throw new InvalidOperationException($"peer '{program}' is not installed: the README's test command must install it");
        }

        Assert.Skip($"peer '{program}' is not installed (run the README's test command to install it)");
        return null!;
    }

    /// <summary>The full path of <paramref name="program"/> on PATH, or null.</summary>
    public static string? Find(string program)
    {
        foreach (var dir in SearchPath)
        {
            var candidate = Path.Combine(dir, program);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>Runs a peer to completion and returns what it printed.</summary>
    public static async Task<PeerResult> RunAsync(string program, IEnumerable<string> arguments, string? stdin = null, TimeSpan? timeout = null, string? workingDirectory = null)
    {
        var path = Require(program);
        var info = new ProcessStartInfo(path)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        info.Environment["LANG"] = "C";
        info.Environment["LC_ALL"] = "C";
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {path}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
            process.StandardInput.Close();
        }

        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(2));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', info.ArgumentList)} did not finish in time");
        }

        return new PeerResult(program, info.ArgumentList.ToArray(), process.ExitCode, await stdout, await stderr);
    }

    /// <summary>Runs a peer and fails the test unless it exits 0.</summary>
    public static async Task<string> RunCheckedAsync(string program, params string[] arguments)
    {
        var result = await RunAsync(program, arguments);
        result.EnsureSuccess();
        return result.Stdout;
    }
}

/// <summary>What a peer program printed and how it exited.</summary>
public sealed record PeerResult(string Program, string[] Arguments, int ExitCode, string Stdout, string Stderr)
{
    public PeerResult EnsureSuccess()
    {
        if (ExitCode != 0)
        {
            var sb = new StringBuilder();
            sb.Append(Program).Append(' ').AppendJoin(' ', Arguments).Append(" exited ").Append(ExitCode).AppendLine();
            sb.AppendLine(Stdout).AppendLine(Stderr);
            Assert.Fail(sb.ToString());
        }

        return this;
    }
}
