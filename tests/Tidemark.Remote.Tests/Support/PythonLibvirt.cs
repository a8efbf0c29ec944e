using Tidemark.Testing;

namespace Tidemark.Remote.Tests.Support;

/// <summary>Debian's libvirt-python, which belongs to /usr/bin/python3 (another python3 may come first on PATH).</summary>
internal static class PythonLibvirt
{
    public const string Python = "/usr/bin/python3";

    /// <summary>Skips the test on a developer machine without it; fails it under CI, which installs it.</summary>
    public static async Task RequireAsync()
    {
        if (File.Exists(Python) && (await Peer.RunAsync(Python, ["-c", "import libvirt"])).ExitCode == 0)
        {
            return;
        }

        if (Peer.InCi)
        {
            Assert.Fail($"{Python} with the libvirt module is not installed");
        }

        Assert.Skip($"{Python} with the libvirt module is not installed");
    }
}
