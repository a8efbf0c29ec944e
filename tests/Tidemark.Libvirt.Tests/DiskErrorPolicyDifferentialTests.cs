using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Daemon;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// The host's file system fills up under a running guest's writes, through stock virsh on the
/// real libvirtd and on Tidemark's daemon. A disk with no error_policy has QEMU's
/// <c>werror=enospc</c>: the domain pauses with the write held ("paused (I/O error)", the
/// io-error and io-error-reason events, <c>domblkerror</c> "no space"), a resume while still full
/// pauses it again, and once space is freed a resume completes the write the guest never saw
/// fail. The image is then whole and equal to what the guest wrote, with no cluster leaked. The
/// transcripts, the events among them, must be the same.
/// </summary>
/// <remarks>
/// libvirtd's guest is a 512-byte boot sector that SeaBIOS boots, which writes 3 MiB through the
/// BIOS disk service (INT 13h, AH=43h, 32 KiB at a time) and halts: QEMU's device applies its
/// error policy to those writes, which a qemu-io command on the monitor would bypass. Tidemark's
/// guest writes the same bytes with qemu-io over the domain's NBD socket. The small tmpfs is
/// mounted inside libvirtd's mount namespace for its QEMU, outside for Tidemark.
/// </remarks>
public sealed class DiskErrorPolicyDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private const int WriteStart = 1 << 20;
    private const int WriteLength = 3 << 20;

    // The boot sector's code (GNU as, .code16, linked at 0x7c00):
    //   cli; xor %ax,%ax; mov %ax,%ds; mov %ax,%ss; mov $0x7c00,%sp; sti; mov %dl,drive
    //   mov $0x1000,%ax; mov %ax,%es; xor %di,%di; mov $0x4000,%cx; mov $0xa55a,%ax; cld; rep stosw
    // again: mov $0x4300,%ax; mov drive,%dl; mov $dap,%si; int $0x13
    //   addl $64,lba; cmpl $8192,lba; jb again
    // done: hlt; jmp done
    // drive: .byte 0; .align 4; dap: .byte 0x10,0; .word 64; .word 0,0x1000; lba: .long 2048,0
    // The words 0xa55a fill 32 KiB at 0x10000, written to sectors 2048 to 8191 (1 MiB to 4 MiB).
    private const string BootCode = "fa31c08ed88ed0bc007cfb88163f7cb800108ec031ffb90040b85aa5fcf3abb800438a163f7cbe407ccd13668306487c4066813e487c0020000072e3f4ebfd0010004000000000100008";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Runs a command where the host's QEMU (or Tidemark) sees the small file system.</summary>
    private delegate Task<PeerResult> HostShell(params string[] command);

    [Fact]
    public async Task FullHostFileSystem_PausesTheDomain_AndTheResumeCompletesTheWrite_AsOnLibvirtd()
    {
        var libvirtd = await fixture.GetAsync();
        using var tidemarkDir = new TempDirectory("tep");
        var state = tidemarkDir.File("state");
        await using var daemon = new TidemarkDaemon(new DaemonOptions { StateDirectory = state }, NullLoggerFactory.Instance);
        await daemon.StartAsync(Ct);

        var real = await RunAsync(libvirtd.Uri, libvirtd.Directory.Path, libvirtd.InNamespaceAsync, guest: null);
        var socket = Path.Combine(state, "run", "ep.sock");
        var ours = await RunAsync($"qemu+unix:///system?socket={daemon.SocketPath}", tidemarkDir.Path, command => Peer.RunAsync(command[0], command[1..]), pattern =>
            Peer.RunAsync("qemu-io", ["-f", "raw", "-c", $"write -s {pattern} {WriteStart} {WriteLength}", "-c", "flush", $"nbd+unix:///vda?socket={socket}"], timeout: TimeSpan.FromMinutes(3)));
        Assert.Equal(real, ours);

        // What the comparison rests on, as libvirtd printed it.
        Assert.Contains("$ virsh domstate ep --reason\npaused (I/O error)\n", real, StringComparison.Ordinal);
        Assert.Contains("$ virsh domblkerror ep\nvda: no space\n", real, StringComparison.Ordinal);
        Assert.Contains("event 'io-error-reason' for domain 'ep': DIR/errpol/ep.qcow2 (ua-vda) pause due to enospc\nevent 'lifecycle' for domain 'ep': Suspended I/O Error\n", real, StringComparison.Ordinal);
        Assert.Contains("$ qemu-img compare\nImages are identical.\n", real, StringComparison.Ordinal);
        Assert.Contains("$ qemu-img check\nNo errors were found on the image.\n", real, StringComparison.Ordinal);
    }

    /// <param name="guest">Tidemark's guest: writes the pattern file's bytes at 1 MiB and returns when done; null where the boot sector is the guest.</param>
    private static async Task<string> RunAsync(string uri, string directory, HostShell shell, Func<string, Task<PeerResult>>? guest)
    {
        var virsh = new VirshTranscript(uri);
        string I(string name) => Path.Combine(directory, name);
        var small = I("errpol");
        var image = Path.Combine(small, "ep.qcow2");

        var sector = new byte[512];
        Convert.FromHexString(BootCode).CopyTo(sector, 0);
        sector[510] = 0x55;
        sector[511] = 0xaa;
        await File.WriteAllBytesAsync(I("boot.bin"), sector, Ct);
        var pattern = new byte[WriteLength];
        for (var i = 0; i < pattern.Length; i += 2)
        {
            (pattern[i], pattern[i + 1]) = (0x5a, 0xa5);
        }

        await File.WriteAllBytesAsync(I("pattern.bin"), pattern, Ct);
        await using (var expected = File.Create(I("expected.raw")))
        {
            expected.SetLength(16 << 20);
            await expected.WriteAsync(sector, Ct);
            expected.Position = WriteStart;
            await expected.WriteAsync(pattern, Ct);
        }

        // 8 MiB with 6 MiB taken: the image cannot take the 3 MiB the guest writes.
        (await shell("mkdir", "-p", small)).EnsureSuccess();
        (await shell("mount", "-t", "tmpfs", "-o", "size=8m", "tidemark-test", small)).EnsureSuccess();
        try
        {
            (await shell("qemu-img", "create", "-q", "-f", "qcow2", image, "16M")).EnsureSuccess();
            (await shell("qemu-io", "-f", "qcow2", "-c", $"write -s {I("boot.bin")} 0 512", image)).EnsureSuccess();
            (await shell("sh", "-c", $"head -c {6 << 20} /dev/zero > {Path.Combine(small, "filler")}")).EnsureSuccess();
            await File.WriteAllTextAsync(I("ep.xml"), BareDomain.Xml("ep", BareDomain.FileDisk(image, "vda", "qcow2")), Ct);

            // The watcher registers in its own time: define until it reports the definition
            // (undoing each definition it missed, off the record).
            await using var events = FollowedProcess.Start("virsh", ["-c", uri, "event", "--all", "--loop"]);
            const string defined = "event 'lifecycle' for domain 'ep': Defined Added";
            for (var attempt = 0; ; attempt++)
            {
                (await Peer.RunAsync("virsh", ["-c", uri, "define", I("ep.xml")])).EnsureSuccess();
                if (await events.TryWaitForLineAsync(defined, TimeSpan.FromSeconds(3)) is not null)
                {
                    break;
                }

                Assert.True(attempt < 20, "virsh event reported no definition of ep");
                (await Peer.RunAsync("virsh", ["-c", uri, "undefine", "ep"])).EnsureSuccess();
            }

            const string pausedByError = "event 'lifecycle' for domain 'ep': Suspended I/O Error";
            await virsh.RunAsync("start", "ep");
            var written = guest?.Invoke(I("pattern.bin"));
            var first = await events.WaitForLineAsync(0, l => l == pausedByError, TimeSpan.FromSeconds(60));
            Assert.True(first >= 0, $"the full file system did not pause ep: {events.Output()}");
            await virsh.RunAsync("domstate", "ep", "--reason");
            await virsh.RunAsync("domblkerror", "ep");
            await virsh.RunAsync("domstats", "ep", "--state");

            // A suspend of a domain paused by an error changes nothing; a resume while the file
            // system is still full meets the same error.
            await virsh.RunAsync("suspend", "ep");
            await virsh.RunAsync("domstate", "ep", "--reason");
            await virsh.RunAsync("resume", "ep");
            Assert.True(await events.WaitForLineAsync(first + 1, l => l == pausedByError, TimeSpan.FromSeconds(60)) >= 0, $"the retry did not pause ep again: {events.Output()}");
            await virsh.RunAsync("domstate", "ep", "--reason");

            (await shell("rm", Path.Combine(small, "filler"))).EnsureSuccess();
            await virsh.RunAsync("resume", "ep");
            await WaitForWrittenAsync(uri);
            if (written is not null)
            {
                (await written).EnsureSuccess();
            }

            await virsh.RunAsync("domstate", "ep", "--reason");
            await virsh.RunAsync("domblkerror", "ep");
            await virsh.RunAsync("destroy", "ep");
            await events.WaitForLineAsync("event 'lifecycle' for domain 'ep': Stopped Destroyed");
            await events.KillAsync();
            virsh.Note("virsh event --all --loop", string.Concat(events.LinesFromLast(defined).Select(l => l + "\n")));

            var check = await shell("qemu-img", "check", image);
            virsh.Note("qemu-img check", check.Stdout.Split('\n')[0] + "\n");
            var compare = await shell("qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, I("expected.raw"));
            virsh.Note("qemu-img compare", compare.Stdout);
            await virsh.RunAsync("undefine", "ep");
        }
        finally
        {
            await shell("umount", "-l", small);
        }

        return virsh.Mask(directory);
    }

    // The guest's 3 MiB are in once the disk's statistics count them (the failed tries are not counted).
    private static async Task WaitForWrittenAsync(string uri)
    {
        var expected = string.Create(CultureInfo.InvariantCulture, $"block.0.wr.bytes={WriteLength}");
        for (var attempt = 0; attempt < 600; attempt++)
        {
            var stats = await Peer.RunAsync("virsh", ["-c", uri, "domstats", "ep", "--block"]);
            if (stats.Stdout.Contains(expected, StringComparison.Ordinal))
            {
                return;
            }

            await Task.Delay(100, Ct);
        }

        Assert.Fail($"the guest's write did not complete after the resume: {(await Peer.RunAsync("virsh", ["-c", uri, "domstats", "ep", "--block"])).Stdout}");
    }
}
