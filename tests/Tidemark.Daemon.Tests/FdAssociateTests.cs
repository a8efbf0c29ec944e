using Tidemark.Daemon.Tests.Support;
using Tidemark.Testing;

namespace Tidemark.Daemon.Tests;

/// <summary>
/// File descriptors passed over libvirt's protocol (CALL_WITH_FDS, SCM_RIGHTS) by stock
/// clients: libvirt-python's <c>virDomain.FDAssociate</c> and virsh's <c>dom-fd-associate
/// --pass-fds</c>, then a pull backup served on the client's own socket
/// (<c>&lt;server transport='fd' fdgroup='NAME'/&gt;</c>) and read by nbdinfo and nbdcopy. The
/// group lives as long as the connection that passed it, as with libvirtd.
/// </summary>
public sealed class FdAssociateTests
{
    private const string Script = """
        import os, socket, subprocess, sys, time, libvirt

        uri, name, work = sys.argv[1], sys.argv[2], sys.argv[3]
        pull = "<domainbackup mode='pull'><server transport='fd' fdgroup='%s'/><disks><disk name='vda' type='file'><scratch file='" + work + "/scratch.qcow2'/></disk></disks></domainbackup>"

        def bound(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            return s

        def ended(dom):
            for _ in range(200):
                if dom.jobInfo()[0] == 0:
                    return
                time.sleep(0.05)
            raise Exception("the job did not end")

        def nbdinfo(path, *args):
            r = subprocess.run(["nbdinfo", *args, "nbd+unix:///vda?socket=" + path], capture_output=True, text=True)
            return r.stdout.strip() if r.returncode == 0 else "failed: " + r.stderr.strip()

        conn = libvirt.open(uri)
        dom = conn.lookupByName(name)
        mine = bound(work + "/py.sock")
        dom.FDAssociate("nbd", [mine.fileno()], libvirt.VIR_DOMAIN_FD_ASSOCIATE_SECLABEL_RESTORE)
        mine.close()
        dom.backupBegin(pull % "nbd", None)
        print("xml", "<server transport='fd' fdgroup='nbd'/>" in dom.backupGetXMLDesc())
        print("size", nbdinfo(work + "/py.sock", "--size"))
        r = subprocess.run(["nbdcopy", "nbd+unix:///vda?socket=" + work + "/py.sock", work + "/copy.raw"], capture_output=True, text=True)
        print("copy", r.returncode, r.stderr.strip())
        dom.abortJob()
        ended(dom)

        try:
            dom.backupBegin(pull % "none", None)
        except libvirt.libvirtError as e:
            print("missing", e.get_error_code(), e.get_error_message())
        two = [bound(work + "/a.sock"), bound(work + "/b.sock")]
        dom.FDAssociate("two", [s.fileno() for s in two], 0)
        try:
            dom.backupBegin(pull % "two", None)
        except libvirt.libvirtError as e:
            print("two", e.get_error_code(), e.get_error_message())
        try:
            dom.FDAssociate("flags", [two[0].fileno()], 4)
        except libvirt.libvirtError as e:
            print("flags", e.get_error_code(), e.get_error_message())
        conn.close()

        # A new connection: the groups of the closed one are gone.
        conn = libvirt.open(uri)
        dom = conn.lookupByName(name)
        try:
            dom.backupBegin(pull % "nbd", None)
        except libvirt.libvirtError as e:
            print("closed", e.get_error_code(), e.get_error_message())

        # virsh passes a descriptor it inherited, in one session with the backup it serves; the
        # job keeps serving after virsh (and its group) are gone.
        v = bound(work + "/virsh.sock")
        open(work + "/pull.xml", "w").write(pull % "v")
        r = subprocess.run(["virsh", "-c", uri, "dom-fd-associate %s --name v --pass-fds %d; backup-begin %s %s/pull.xml" % (name, v.fileno(), name, work)],
                           pass_fds=[v.fileno()], capture_output=True, text=True)
        print("virsh", r.returncode, r.stdout.strip(), r.stderr.strip())
        v.close()
        print("after virsh", nbdinfo(work + "/virsh.sock", "--size"))
        dom.abortJob()
        ended(dom)
        conn.close()
        """;

    [Fact]
    public async Task PythonAndVirsh_PassTheirSocket_AndThePullBackupIsServedOnIt()
    {
        await using var test = await TestDaemon.StartAsync();
        var image = await test.StartDomainAsync("fd", "write -P 0x66 0 3M");
        var instant = await test.CaptureAsync(image, "instant.raw");
        var script = test.Directory.File("fd.py");
        await File.WriteAllTextAsync(script, Script, TestDaemon.Ct);

        var result = await Peer.RunAsync("/usr/bin/python3", [script, test.Uri, "fd", test.Directory.Path], timeout: TimeSpan.FromMinutes(2));

        Assert.True(result.ExitCode == 0, result.Stdout + result.Stderr);
        Assert.Equal(
            """
            xml True
            size 16777216
            copy 0 
            missing 8 invalid argument: file descriptor group 'none' was not associated with the domain
            two 8 invalid argument: file descriptor group 'two' must contain only 1 file descriptor for NBD server
            flags 8 unsupported flags (0x4) in function qemuDomainFDAssociate
            closed 8 invalid argument: file descriptor group 'nbd' was not associated with the domain
            virsh 0 Backup started 
            after virsh 16777216

            """.ReplaceLineEndings("\n"),
            result.Stdout);
        var compare = await Peer.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", test.Directory.File("copy.raw"), instant]);
        Assert.True(compare.ExitCode == 0, compare.Stdout + compare.Stderr);
    }
}
