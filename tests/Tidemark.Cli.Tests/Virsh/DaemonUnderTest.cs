using Tidemark.Testing;

namespace Tidemark.Cli.Tests.Virsh;

/// <summary>
/// <c>tidemark daemon</c> as a child process on its own temporary state directory and socket,
/// with qcow2 images made by qemu-img beside it; stopped with SIGTERM (domains stopped, images
/// closed) and its files removed on dispose.
/// </summary>
internal sealed class DaemonUnderTest : IAsyncDisposable
{
    private readonly CliProcess _process;

    private DaemonUnderTest(TempDirectory directory, CliProcess process)
    {
        Directory = directory;
        _process = process;
    }

    public TempDirectory Directory { get; }

    public string StateRoot => Directory.File("state");

    public string Socket => Directory.File("sock");

    /// <summary>The URI both virsh and tidemark are given.</summary>
    public string Uri => $"qemu+unix:///system?socket={Socket}";

    /// <param name="prefix">The temporary directory's name prefix.</param>
    /// <param name="options">More <c>daemon</c> options (<c>--guest-tcp</c>).</param>
    public static async Task<DaemonUnderTest> StartAsync(string prefix, params string[] options)
    {
        // Short names: every domain's unix socket lives under the state directory.
        var directory = new TempDirectory(prefix);
        var process = await CliProcess.StartAsync(["daemon", "--state-dir", directory.File("state"), "--socket", directory.File("sock"), .. options]);
        await UnixSocketListener.WaitAsync(directory.File("sock"), cancellationToken: TestContext.Current.CancellationToken);
        return new DaemonUnderTest(directory, process);
    }

    /// <summary>Creates a qcow2 image <paramref name="name"/> of <paramref name="size"/> in the directory.</summary>
    public async Task<string> CreateImageAsync(string name, string size = "16M")
    {
        var path = Directory.File(name);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", path, size);
        return path;
    }

    /// <summary>The NBD URI of a running domain's disk, where a guest connects.</summary>
    public string GuestUri(string domain, string target) => $"nbd+unix:///{target}?socket={Path.Combine(StateRoot, "run", domain + ".sock")}";

    public async ValueTask DisposeAsync()
    {
        try
        {
            var stopped = await _process.StopAsync();
            Assert.True(stopped.ExitCode == 0, $"the daemon exited {stopped.ExitCode}: {stopped.Stderr}");
        }
        finally
        {
            await _process.DisposeAsync();
            Directory.Dispose();
        }
    }
}
