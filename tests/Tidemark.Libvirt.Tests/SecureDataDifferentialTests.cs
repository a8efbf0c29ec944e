using System.Text;
using System.Text.RegularExpressions;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// A domain's secure data through stock virsh on the real libvirtd and on Tidemark's daemon: a
/// VNC password and a network CD-ROM's HTTP cookies appear in <c>dumpxml</c> and in a
/// checkpoint's embedded domain only with <c>--security-info</c>, which a read-only connection
/// (<c>virsh -r</c>) may not ask for. The documents themselves differ between the hosts (libvirt
/// adds its defaults: controllers, addresses, the VNC port it chose), so each output is reduced
/// to the secrets it shows; those, and virsh's refusals (a VNC password over 8 characters at
/// define among them), must be equal.
/// </summary>
public sealed partial class SecureDataDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task PasswordsAndCookies_OnlyWithSecurityInfo_OnBoth()
    {
        var (real, ours) = await BothHosts.RunAsync(fixture, "tsec", RunAsync, Ct);

        Assert.Equal(real, ours);
        Assert.Contains("$ dumpxml sec\n-\n", real, StringComparison.Ordinal);
        Assert.Contains("$ dumpxml sec --security-info\npasswd='vncpass1'\n", real, StringComparison.Ordinal);
        Assert.Contains("$ define long\nerror: unsupported configuration: VNC password is 10 characters long, only 8 permitted\n", real, StringComparison.Ordinal);
        Assert.Contains("$ -r dumpxml sec --security-info\nerror: operation forbidden: virDomainGetXMLDesc with secure flag\n", real, StringComparison.Ordinal);
        Assert.Contains("$ dumpxml netcd --inactive --security-info\n<cookie name='session'>abc123</cookie>\n", real, StringComparison.Ordinal);
        Assert.Contains("$ checkpoint-dumpxml sec c1\n-\n", real, StringComparison.Ordinal);
        Assert.Contains("$ checkpoint-dumpxml sec c1 --security-info\npasswd='vncpass1'\n", real, StringComparison.Ordinal);
    }

    private static async Task<string> RunAsync(string uri, string directory)
    {
        var images = Path.Combine(directory, "sec");
        Directory.CreateDirectory(images);
        var vda = Path.Combine(images, "vda.qcow2");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", vda, "16M");
        var secXml = Path.Combine(images, "sec.xml");
        await File.WriteAllTextAsync(secXml, $"""
            <domain type='qemu'>
              <name>sec</name>
              <memory unit='MiB'>64</memory>
              <vcpu placement='static'>1</vcpu>
              <os><type arch='x86_64' machine='pc'>hvm</type></os>
              <devices>
                <emulator>/usr/bin/qemu-system-x86_64</emulator>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{vda}'/><target dev='vda' bus='virtio'/></disk>
                <graphics type='vnc' autoport='yes' passwd='vncpass1'><listen type='address' address='127.0.0.1'/></graphics>
              </devices>
            </domain>
            """, Ct);

        // Defined only: starting it would have QEMU fetch the image.
        var netXml = Path.Combine(images, "netcd.xml");
        await File.WriteAllTextAsync(netXml, """
            <domain type='qemu'>
              <name>netcd</name>
              <memory unit='MiB'>64</memory>
              <vcpu placement='static'>1</vcpu>
              <os><type arch='x86_64' machine='pc'>hvm</type></os>
              <devices>
                <emulator>/usr/bin/qemu-system-x86_64</emulator>
                <disk type='network' device='cdrom'>
                  <driver name='qemu' type='raw'/>
                  <source protocol='https' name='/boot.iso'>
                    <host name='example.com' port='443'/>
                    <cookies><cookie name='session'>abc123</cookie></cookies>
                  </source>
                  <target dev='sdb' bus='scsi'/>
                  <readonly/>
                </disk>
              </devices>
            </domain>
            """, Ct);

        var text = new StringBuilder();
        async Task Secrets(params string[] arguments)
        {
            var readOnly = arguments[0] == "-r";
            var r = await Peer.RunAsync("virsh", readOnly ? ["-r", "-c", uri, .. arguments[1..]] : ["-c", uri, .. arguments], timeout: TimeSpan.FromMinutes(1));
            text.Append("$ ").AppendJoin(' ', arguments).Append('\n');
            if (r.ExitCode != 0)
            {
                text.Append(r.Stderr.Trim()).Append('\n');
                return;
            }

            var shown = Secret().Matches(r.Stdout).Select(m => m.Value).ToList();
            text.Append(shown.Count == 0 ? "-\n" : string.Join('\n', shown) + "\n");
        }

        // A VNC password longer than VNC's 8 characters is refused at define.
        var longXml = Path.Combine(images, "long.xml");
        await File.WriteAllTextAsync(longXml, (await File.ReadAllTextAsync(secXml, Ct)).Replace("<name>sec</name>", "<name>long</name>", StringComparison.Ordinal).Replace("passwd='vncpass1'", "passwd='vncpass123'", StringComparison.Ordinal), Ct);
        var refused = await Peer.RunAsync("virsh", ["-c", uri, "define", longXml]);
        text.Append("$ define long\n").Append(refused.Stderr.Trim().Split('\n')[^1]).Append('\n');

        (await Peer.RunAsync("virsh", ["-c", uri, "define", secXml])).EnsureSuccess();
        (await Peer.RunAsync("virsh", ["-c", uri, "define", netXml])).EnsureSuccess();
        try
        {
            await Secrets("dumpxml", "sec", "--inactive");
            await Secrets("dumpxml", "sec", "--inactive", "--security-info");
            await Secrets("dumpxml", "netcd", "--inactive");
            await Secrets("dumpxml", "netcd", "--inactive", "--security-info");
            await Secrets("-r", "dumpxml", "netcd");
            await Secrets("-r", "dumpxml", "netcd", "--security-info");

            (await Peer.RunAsync("virsh", ["-c", uri, "start", "sec"])).EnsureSuccess();
            await Secrets("dumpxml", "sec");
            await Secrets("dumpxml", "sec", "--security-info");
            await Secrets("dumpxml", "sec", "--migratable");
            await Secrets("-r", "dumpxml", "sec");
            await Secrets("-r", "dumpxml", "sec", "--security-info");

            (await Peer.RunAsync("virsh", ["-c", uri, "checkpoint-create-as", "sec", "c1"])).EnsureSuccess();
            await Secrets("checkpoint-dumpxml", "sec", "c1");
            await Secrets("checkpoint-dumpxml", "sec", "c1", "--security-info");
            await Secrets("-r", "checkpoint-dumpxml", "sec", "c1");
            await Secrets("-r", "checkpoint-dumpxml", "sec", "c1", "--security-info");
        }
        finally
        {
            await Peer.RunAsync("virsh", ["-c", uri, "destroy", "sec"]);
            await Peer.RunAsync("virsh", ["-c", uri, "checkpoint-delete", "sec", "c1", "--metadata"]);
            await Peer.RunAsync("virsh", ["-c", uri, "undefine", "sec", "--checkpoints-metadata"]);
            await Peer.RunAsync("virsh", ["-c", uri, "undefine", "netcd"]);
        }

        return text.ToString();
    }

    [GeneratedRegex(@"passwd='[^']*'|<cookie [^>]*>[^<]*</cookie>")]
    private static partial Regex Secret();
}
