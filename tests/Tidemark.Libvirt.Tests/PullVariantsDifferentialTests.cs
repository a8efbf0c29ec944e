using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Tidemark.Libvirt.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Libvirt.Tests;

/// <summary>
/// Pull-backup variants, one virsh script against the real libvirtd 9.0 (QEMU 7.2) and against
/// Tidemark's daemon: a TCP server (<c>name='127.0.0.1' port='N'</c>, a free port on each host)
/// and one whose port another process holds; a TLS server (<c>tls='yes'</c>) with x509
/// certificates, libvirtd's from <c>backup_tls_x509_cert_dir</c> and the daemon's from
/// <see cref="Daemon.DaemonOptions.BackupTlsDirectory"/> (the same files), read by nbdinfo with a
/// client certificate and refused to a plain client; scratches made beforehand and reused
/// (<c>--reuse-external</c>: qcow2, a raw file taken as qcow2, a missing file, a raw driver),
/// an existing one without the flag, one in a directory that does not exist; no
/// <c>&lt;scratch&gt;</c> (libvirt's file beside the disk image, named after the checkpoint
/// created with the job or after the time, removed at the end); <c>exportname</c> and
/// <c>exportbitmap</c> on one disk beside <c>backup='no'</c> and beside a disk with the
/// defaults, incremental, with a checkpoint created at begin. For every running job:
/// <c>backup-dumpxml</c>, <c>domjobinfo</c>, <c>nbdinfo --list --json</c> (names, sizes,
/// flags, contexts, in the server's order) and <c>nbdinfo --map</c> of <c>base:allocation</c>
/// and the dirty bitmap of each export; then <c>domjobabort</c>, the completed job's
/// statistics and whether the scratch files are left.
/// </summary>
/// <remarks>
/// Masked besides <see cref="VirshTranscript.Mask"/>: the ports (a free one per host), the client
/// certificates' directory, the time suffix of generated scratch names, and libxml2's words
/// after a schema violation (Tidemark checks domainbackup.rng's rules in C# and words each
/// problem itself, as in <see cref="CheckpointDifferentialTests"/>).
/// </remarks>
public sealed partial class PullVariantsDifferentialTests(PrivateLibvirtdFixture fixture) : IClassFixture<PrivateLibvirtdFixture>
{
    private const string Domain = "pv";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task PullVariants_PrintAndExportTheSameOnBoth()
    {
        var libvirtd = await fixture.GetAsync();
        using var pkiDirectory = new TempDirectory("tpk");
        var pki = await X509Credentials.CreateAsync(pkiDirectory);
        foreach (var file in Directory.GetFiles(pki.ServerDirectory))
        {
            File.Copy(file, Path.Combine(libvirtd.BackupTlsDirectory, Path.GetFileName(file)), overwrite: true);
        }

        var (real, ours) = await BothHosts.RunAsync(
            fixture,
            "tpv",
            (uri, directory, write) => RunAsync(uri, directory, write, pki),
            Ct,
            options => options with { BackupTlsDirectory = pki.ServerDirectory });
        Assert.Equal(real.Main, ours.Main);

        // What libvirt and QEMU say of these variants.
        Assert.Contains("<server transport='tcp' name='127.0.0.1' port='PORT'/>", real.Main, StringComparison.Ordinal);
        Assert.Contains("\t\"export-name\": \"vdb\",\n\t\"uri\": \"nbd://127.0.0.1:PORT/vdb\",\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("$ ls\ntcp-vda.qcow2: absent\ntcp-vdb.qcow2: absent\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("error: internal error: unable to execute QEMU command 'nbd-server-start': Failed to find an available port: Address already in use\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("<server transport='tcp' tls='yes' name='127.0.0.1' port='PORT'/>", real.Main, StringComparison.Ordinal);
        Assert.Contains("\"TLS\": true,\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("$ nbdinfo --list (no TLS)\n[stderr]\n/usr/bin/nbdinfo: nbd_opt_list: server replied with error to list request: Operation not supported\n[exit 1]\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("$ ls\nreuse.qcow2: exists\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("error: internal error: unable to execute QEMU command 'blockdev-add': Image is not in qcow2 format\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("error: internal error: unable to execute QEMU command 'blockdev-add': Could not open 'DIR/pv/missing.qcow2': No such file or directory\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("error: invalid argument: store 'DIR/pv/reuse.qcow2' for backup of 'vda' exists\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("error: failed to create image file 'DIR/pv/no-such-dir/vda.qcow2': No such file or directory\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("$ ls\nvda.qcow2.c2: exists\nvdb.qcow2.c2: exists\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("$ ls\nvda.qcow2.c2: absent\nvdb.qcow2.c2: absent\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("<scratch file='DIR/pv/vdb.qcow2.SECONDS'/>", real.Main, StringComparison.Ordinal);
        Assert.Contains("exportname='whole-a' exportbitmap='dirty-a'", real.Main, StringComparison.Ordinal);
        Assert.Contains("$ nbdinfo --map qemu:dirty-bitmap:dirty-a whole-a\n         0       65536    1  dirty\n     65536     2031616    0  clean\n   2097152      131072    1  dirty\n", real.Main, StringComparison.Ordinal);
        Assert.Contains("server does not support metadata context \"qemu:dirty-bitmap:backup-vda\"", real.Main, StringComparison.Ordinal);

        // QEMU lists exports in the order libvirt added them (the document's), not by name.
        Assert.Matches("\"export-name\": \"whole-a\",(?s:.)*\"export-name\": \"vdb\",", real.Main);

        // A listed disk without <scratch>: libvirt 9.0 generates a store path only for a disk
        // that has no store at all (virDomainBackupDefAssignStore tests !disk->store, and the
        // parser gives every listed disk one, without a path), so QEMU is handed a null file
        // name. Later libvirt (and spec §3.3, step 3) generates the path for a store without
        // one too; Tidemark does, so the disk gets <disk path>.<suffix> as an unlisted one does.
        Assert.Contains("$ virsh backup-begin pv DIR/pv/listed.xml\n\n[stderr]\nerror: internal error: argument key 'filename' must not have null value\n[exit 1]\n", real.Listed, StringComparison.Ordinal);
        Assert.Contains("$ virsh backup-begin pv DIR/pv/listed.xml\nBackup started\n\n[exit 0]\n$ ls\nvda.qcow2.SECONDS\n", ours.Listed, StringComparison.Ordinal);
        Assert.Contains("<scratch file='DIR/pv/vda.qcow2.SECONDS'/>", ours.Listed, StringComparison.Ordinal);
        Assert.EndsWith("$ virsh domjobabort pv\n\n[exit 0]\n$ ls\n", ours.Listed, StringComparison.Ordinal);
    }

    private static async Task<Run> RunAsync(string uri, string directory, GuestWrite write, X509Credentials pki)
    {
        var virsh = new VirshTranscript(uri);
        var listed = new VirshTranscript(uri);
        var images = Path.Combine(directory, Domain);
        var xml = await TwoDiskDomain.CreateAsync(directory, Domain);
        var socket = Path.Combine(images, "nbd.sock");
        var ports = new List<int>();
        string Doc(string name, string text)
        {
            var path = Path.Combine(images, name);
            File.WriteAllText(path, text.Replace("D/", images + "/", StringComparison.Ordinal));
            return path;
        }

        void Exists(params string[] files) =>
            virsh.Note("ls", string.Concat(files.Select(f => $"{f}: {(File.Exists(Path.Combine(images, f)) ? "exists" : "absent")}\n")));

        async Task NbdinfoAsync(string what, params string[] arguments)
        {
            var r = await Peer.RunAsync("nbdinfo", arguments, timeout: TimeSpan.FromMinutes(1));
            virsh.Note($"nbdinfo {what}", r.Stdout + (r.Stderr.Length > 0 ? "[stderr]\n" + r.Stderr : "") + $"[exit {r.ExitCode}]\n");
        }

        // The running job as virsh and an NBD client see it: the document, the job's
        // statistics, the export list, and each export's maps.
        async Task InspectAsync(Func<string, string> exportUri, params (string Export, string? Bitmap)[] exports)
        {
            await virsh.RunAsync("backup-dumpxml", Domain);
            await virsh.RunAsync("domjobinfo", Domain);
            await NbdinfoAsync("--list --json", "--list", "--json", exportUri(""));
            foreach (var (export, bitmap) in exports)
            {
                await NbdinfoAsync($"--map --totals base:allocation {export}", "--map=base:allocation", "--totals", exportUri(export));
                await NbdinfoAsync($"--map base:allocation {export}", "--map=base:allocation", exportUri(export));
                if (bitmap is not null)
                {
                    await NbdinfoAsync($"--map qemu:dirty-bitmap:{bitmap} {export}", $"--map=qemu:dirty-bitmap:{bitmap}", exportUri(export));
                }
            }
        }

        async Task AbortAsync()
        {
            await virsh.RunAsync("domjobabort", Domain);
            await virsh.WaitForNoJobAsync(Domain);
            await virsh.RunAsync("domjobinfo", Domain, "--completed");
        }

        string Unix(string export) => $"nbd+unix:///{export}?socket={socket}";

        await virsh.RunAsync("define", xml);
        await virsh.RunAsync("start", Domain);
        await write(Domain, "vda", "write -P 0x41 0 1M");
        await write(Domain, "vdb", "write -P 0x42 4M 512K");

        // TCP, both disks, a checkpoint created at begin.
        var port = LoopbackPort.Free();
        ports.Add(port);
        Doc("c1.xml", "<domaincheckpoint><name>c1</name></domaincheckpoint>");
        Doc("tcp.xml", $"<domainbackup mode='pull'><server transport='tcp' name='127.0.0.1' port='{port}'/><disks><disk name='vda' type='file'><scratch file='D/tcp-vda.qcow2'/></disk><disk name='vdb' type='file'><scratch file='D/tcp-vdb.qcow2'/></disk></disks></domainbackup>");
        await virsh.RunAsync("backup-begin", Domain, Path.Combine(images, "tcp.xml"), Path.Combine(images, "c1.xml"));
        Exists("tcp-vda.qcow2", "tcp-vdb.qcow2");
        await InspectAsync(e => $"nbd://127.0.0.1:{port}/{e}", ("vda", null), ("vdb", null));
        await AbortAsync();
        Exists("tcp-vda.qcow2", "tcp-vdb.qcow2");

        // The port taken by another process.
        using (var taken = new TcpListener(IPAddress.Loopback, 0))
        {
            taken.Start();
            var busy = ((IPEndPoint)taken.LocalEndpoint).Port;
            ports.Add(busy);
            Doc("busy.xml", $"<domainbackup mode='pull'><server transport='tcp' name='127.0.0.1' port='{busy}'/><disks><disk name='vda' type='file'><scratch file='D/busy-vda.qcow2'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>");
            await virsh.RunAsync("backup-begin", Domain, Path.Combine(images, "busy.xml"));
            await virsh.RunAsync("domjobinfo", Domain);
            Exists("busy-vda.qcow2");
        }

        await write(Domain, "vda", "write -P 0x43 0 64K");
        await write(Domain, "vdb", "write -P 0x44 8M 128K");

        // TLS: a client with the CA and a certificate reads, a plain client is refused.
        var tlsPort = LoopbackPort.Free();
        ports.Add(tlsPort);
        Doc("tls.xml", $"<domainbackup mode='pull'><incremental>c1</incremental><server transport='tcp' name='127.0.0.1' port='{tlsPort}' tls='yes'/><disks><disk name='vda' type='file'><scratch file='D/tls-vda.qcow2'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>");
        await virsh.RunAsync("backup-begin", Domain, Path.Combine(images, "tls.xml"));
        await InspectAsync(e => $"nbds://127.0.0.1:{tlsPort}/{e}?tls-certificates={pki.ClientDirectory}", ("vda", "backup-vda"));
        await NbdinfoAsync("--list (no TLS)", "--list", "--json", $"nbd://127.0.0.1:{tlsPort}");
        await AbortAsync();
        Exists("tls-vda.qcow2");

        // Scratches made beforehand, with --reuse-external: qcow2 (kept at the end), a raw file
        // (the scratch format is qcow2 whatever the file holds), a missing file, a raw driver
        // (refused by the schema); then the existing qcow2 without the flag.
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", Path.Combine(images, "reuse.qcow2"), "16M");
        await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "raw", Path.Combine(images, "reuse.raw"), "16M");
        Doc("reuse-qcow2.xml", "<domainbackup mode='pull'><server transport='unix' socket='D/nbd.sock'/><disks><disk name='vda' type='file'><scratch file='D/reuse.qcow2'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>");
        Doc("reuse-raw.xml", "<domainbackup mode='pull'><server transport='unix' socket='D/nbd.sock'/><disks><disk name='vda' type='file'><scratch file='D/reuse.raw'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>");
        Doc("reuse-raw-driver.xml", "<domainbackup mode='pull'><server transport='unix' socket='D/nbd.sock'/><disks><disk name='vda' type='file'><driver type='raw'/><scratch file='D/reuse.raw'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>");
        await virsh.RunAsync("backup-begin", Domain, Path.Combine(images, "reuse-qcow2.xml"), "--reuse-external");
        await InspectAsync(Unix, ("vda", null));
        await AbortAsync();
        Exists("reuse.qcow2");
        await virsh.RunAsync("backup-begin", Domain, Path.Combine(images, "reuse-raw.xml"), "--reuse-external");
        await virsh.RunAsync("domjobinfo", Domain);
        await virsh.WaitForNoJobAsync(Domain);
        Doc("reuse-missing.xml", "<domainbackup mode='pull'><server transport='unix' socket='D/nbd.sock'/><disks><disk name='vda' type='file'><scratch file='D/missing.qcow2'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>");
        await virsh.RunAsync("backup-begin", Domain, Path.Combine(images, "reuse-missing.xml"), "--reuse-external");
        await virsh.RunAsync("domjobinfo", Domain);
        await virsh.WaitForNoJobAsync(Domain);
        await virsh.RunAsync("backup-begin", Domain, Path.Combine(images, "reuse-raw-driver.xml"), "--reuse-external");
        await virsh.RunAsync("domjobinfo", Domain);
        await virsh.WaitForNoJobAsync(Domain);
        Exists("reuse.raw");
        await virsh.RunAsync("backup-begin", Domain, Path.Combine(images, "reuse-qcow2.xml"));
        await virsh.RunAsync("domjobinfo", Domain);
        Exists("reuse.qcow2");

        // A scratch in a directory that does not exist.
        Doc("nowhere.xml", "<domainbackup mode='pull'><server transport='unix' socket='D/nbd.sock'/><disks><disk name='vda' type='file'><scratch file='D/no-such-dir/vda.qcow2'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>");
        await virsh.RunAsync("backup-begin", Domain, Path.Combine(images, "nowhere.xml"));
        await virsh.RunAsync("domjobinfo", Domain);

        // No <scratch>: libvirt's own file next to the disk image, named after the checkpoint
        // created with the job (or the time), removed at the end.
        Doc("c2.xml", "<domaincheckpoint><name>c2</name></domaincheckpoint>");
        Doc("default.xml", "<domainbackup mode='pull'><server transport='unix' socket='D/nbd.sock'/></domainbackup>");
        await virsh.RunAsync("backup-begin", Domain, Path.Combine(images, "default.xml"), Path.Combine(images, "c2.xml"));
        Exists("vda.qcow2.c2", "vdb.qcow2.c2");
        await InspectAsync(Unix, ("vda", null), ("vdb", null));
        await AbortAsync();
        Exists("vda.qcow2.c2", "vdb.qcow2.c2");
        await virsh.RunAsync("backup-begin", Domain, Path.Combine(images, "default.xml"));
        virsh.Note("ls", Generated(images));
        await virsh.RunAsync("backup-dumpxml", Domain);
        await AbortAsync();
        virsh.Note("ls", Generated(images));

        // A listed disk without <scratch>: a transcript of its own, where libvirt 9.0 and
        // Tidemark differ on purpose (see the test).
        Doc("listed.xml", "<domainbackup mode='pull'><server transport='unix' socket='D/nbd.sock'/><disks><disk name='vda' type='file'/><disk name='vdb' backup='no'/></disks></domainbackup>");
        await listed.RunAsync("backup-begin", Domain, Path.Combine(images, "listed.xml"));
        listed.Note("ls", Generated(images));
        await listed.RunAsync("backup-dumpxml", Domain);
        await listed.RunAsync("domjobabort", Domain);
        await listed.WaitForNoJobAsync(Domain);
        listed.Note("ls", Generated(images));

        // Export name and bitmap overrides; an incremental from c1 with c3 created at begin.
        await write(Domain, "vda", "write -P 0x45 2M 128K");
        Doc("c3.xml", "<domaincheckpoint><name>c3</name><disks><disk name='vda'/><disk name='vdb' checkpoint='no'/></disks></domaincheckpoint>");
        Doc("names.xml", "<domainbackup mode='pull'><incremental>c1</incremental><server transport='unix' socket='D/nbd.sock'/><disks><disk name='vda' type='file' exportname='whole-a' exportbitmap='dirty-a'><scratch file='D/names-vda.qcow2'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>");
        await virsh.RunAsync("backup-begin", Domain, Path.Combine(images, "names.xml"), Path.Combine(images, "c3.xml"));
        await InspectAsync(Unix, ("whole-a", "dirty-a"));
        await NbdinfoAsync("--map qemu:dirty-bitmap:backup-vda whole-a", "--map=qemu:dirty-bitmap:backup-vda", Unix("whole-a"));
        await NbdinfoAsync("vda", "--json", Unix("vda"));
        await AbortAsync();
        Exists("names-vda.qcow2");
        await virsh.RunAsync("checkpoint-list", Domain, "--name", "--topological");

        // Both disks: vda from c1 with the overrides, vdb from c2 (a disk-level base) with the
        // defaults; listed in the document's order.
        Doc("two.xml", "<domainbackup mode='pull'><incremental>c1</incremental><server transport='unix' socket='D/nbd.sock'/><disks><disk name='vda' type='file' exportname='whole-a' exportbitmap='dirty-a'><scratch file='D/two-vda.qcow2'/></disk><disk name='vdb' type='file' incremental='c2'><scratch file='D/two-vdb.qcow2'/></disk></disks></domainbackup>");
        await virsh.RunAsync("backup-begin", Domain, Path.Combine(images, "two.xml"));
        await InspectAsync(Unix, ("whole-a", "dirty-a"), ("vdb", "backup-vdb"));
        await AbortAsync();
        Exists("two-vda.qcow2", "two-vdb.qcow2");

        await virsh.RunAsync("destroy", Domain);
        await virsh.RunAsync("undefine", Domain, "--checkpoints-metadata");

        string Masked(VirshTranscript transcript)
        {
            var text = transcript.Mask(directory).Replace(pki.ClientDirectory, "PKI", StringComparison.Ordinal);
            foreach (var p in ports)
            {
                text = text.Replace($":{p}", ":PORT", StringComparison.Ordinal).Replace($"'{p}'", "'PORT'", StringComparison.Ordinal);
            }

            return VirshTranscript.MaskSchemaDetails(Suffix().Replace(text, ".qcow2.SECONDS"));
        }

        return new Run(Masked(virsh), Masked(listed));
    }

    private sealed record Run(string Main, string Listed);

    /// <summary>The scratch files named after a disk image (<c>vda.qcow2.SUFFIX</c>), one a line.</summary>
    private static string Generated(string images) =>
        string.Concat(Directory.GetFiles(images).Select(Path.GetFileName).Where(n => GeneratedName().IsMatch(n!)).Order(StringComparer.Ordinal).Select(n => n + "\n"));

    // A generated scratch's suffix when no checkpoint names it: the time in seconds.
    [GeneratedRegex(@"\.qcow2\.\d{10}\b")]
    private static partial Regex Suffix();

    [GeneratedRegex(@"^vd[a-z]\.qcow2\.")]
    private static partial Regex GeneratedName();
}
