using Tidemark.Engine.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Engine.Tests;

/// <summary>
/// A backing chain the domain's definition states (<c>&lt;backingStore&gt;</c>) is what the guest
/// reads through, as libvirt hands it to QEMU in place of what the overlay's header names: another
/// backing file, no backing file at all (an empty <c>&lt;backingStore/&gt;</c>), or an unstated
/// middle layer's format, which the header alone could not give.
/// </summary>
public sealed class StatedBackingTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task StatedChain_IsWhatTheGuestReadsThrough()
    {
        await using var test = await TestHost.CreateAsync();
        string I(string name) => test.Directory.File(name);
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", I("named.raw"), "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "raw", "-c", "write -P 0x41 0 1M", I("named.raw"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", I("stated.qcow2"), "4M");
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x42 0 1M", I("stated.qcow2"));
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", "-b", I("named.raw"), "-F", "raw", I("top.qcow2"));
        await Peer.RunCheckedAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x43 64k 64k", I("top.qcow2"));

        async Task<string> ReadAsync(string backingStore, params string[] commands)
        {
            var domain = await test.Host.DefineAsync($"""
                <domain type='kvm'>
                  <name>sb</name>
                  <uuid>{TestHost.Uuid}</uuid>
                  <memory unit='KiB'>1048576</memory>
                  <devices>
                    <disk type='file' device='disk'>
                      <driver name='qemu' type='qcow2'/>
                      <source file='{I("top.qcow2")}'/>
                      {backingStore}
                      <target dev='vda' bus='virtio'/>
                    </disk>
                  </devices>
                </domain>
                """, Ct);
            await domain.StartAsync(Ct);
            try
            {
                return await Guest.RunAsync(domain.Running!.SocketPath, "vda", commands);
            }
            finally
            {
                await domain.DestroyAsync(Ct);
                await test.Host.UndefineAsync(domain, cancellationToken: Ct);
            }
        }

        // As the header names it, then as stated: another file, then none.
        await ReadAsync("", "read -P 0x41 0 64k", "read -P 0x43 64k 64k", "read -P 0x41 128k 64k");
        await ReadAsync($"<backingStore type='file'><format type='qcow2'/><source file='{I("stated.qcow2")}'/><backingStore/></backingStore>", "read -P 0x42 0 64k", "read -P 0x43 64k 64k", "read -P 0x42 128k 64k");
        await ReadAsync("<backingStore/>", "read -P 0 0 64k", "read -P 0x43 64k 64k", "read -P 0 128k 64k");

        // The overlay's header is untouched: it still names its own backing file.
        Assert.Contains($"backing file: {I("named.raw")}", await Peer.RunCheckedAsync("qemu-img", "info", "-U", I("top.qcow2")), StringComparison.Ordinal);
    }
}
