using System.Diagnostics;
using System.Globalization;

namespace Tidemark.Testing;

/// <summary>
/// A real libvirtd 9.0 with its QEMU driver, private to one test class: its own configuration,
/// sockets, state, cache and logs under a temporary directory, so it never meets a system
/// libvirtd or another test's. Disposing destroys its domains and ends libvirtd and every QEMU it
/// started. A missing libvirtd, QEMU, <c>unshare</c> or <c>libvirt-qemu</c> account, or a test
/// not running as root, skips the test on a developer machine and fails it under CI.
/// </summary>
/// <remarks>
/// <para>
/// How it runs (what works on Debian 12, libvirt 9.0.0, QEMU 7.2, without KVM or systemd):
/// libvirtd runs as root, whose paths are fixed at build time (<c>/etc/libvirt</c>,
/// <c>/run/libvirt</c>, <c>/var/lib/libvirt</c>, <c>/var/cache/libvirt</c>,
/// <c>/var/log/libvirt</c>; <c>qemu.conf</c> is only ever read from <c>/etc/libvirt</c>). So it
/// is started by <c>unshare --mount --propagation private --pid --fork --mount-proc
/// --kill-child</c> running a shell that bind-mounts one temporary directory over each of those
/// paths and then starts libvirtd in the background and waits for it. The private mount
/// namespace keeps the bind mounts invisible to the rest of the machine, and they vanish with it.
/// The private PID namespace is the cleanup: the shell is its PID 1, QEMU (which libvirt
/// daemonizes) is reparented to it and reaped by its <c>wait</c>, and when the shell dies (its
/// <c>unshare</c> is killed, which <c>--kill-child</c> turns into SIGKILL for the shell) the kernel
/// kills everything left in the namespace, so no QEMU outlives the fixture. <c>--mount-proc</c>
/// gives the namespace its own <c>/proc</c>: libvirt checks QEMU's pid file against
/// <c>/proc/PID</c>, and the pids QEMU writes are the namespace's.
/// </para>
/// <para>
/// <c>qemu.conf</c>: <c>user</c>/<c>group</c> root and <c>security_driver="none"</c> (no
/// AppArmor/SELinux labelling, no chown of images in the temporary directory);
/// <c>cgroup_controllers=[]</c> (nothing under <c>/sys/fs/cgroup</c>, and no systemd or machined
/// here to ask); <c>namespaces=[]</c> (no private /dev per QEMU); <c>stdio_handler="file"</c> so
/// QEMU's output goes straight to <c>/var/log/libvirt/qemu/DOMAIN.log</c> without virtlogd;
/// <c>lock_manager</c> unset, so no virtlockd; <c>backup_tls_x509_cert_dir</c> in the private
/// <c>/etc/libvirt</c> (<see cref="BackupTlsDirectory"/>), which libvirtd requires to exist at
/// start (virQEMUDriverConfigValidate) and QEMU reads only when a pull backup with
/// <c>tls='yes'</c> begins, so a test can put its certificates there afterwards. The driver still looks up the
/// <c>libvirt-qemu</c> user and group it was built with, so they must exist (without them
/// libvirtd exits with "Failed to parse user 'libvirt-qemu'"; the set-up script creates them).
/// <c>libvirtd.conf</c> turns authentication off on the unix sockets, which only root can open
/// (0700). libvirtd's pid file is moved into the private <c>/run/libvirt</c> (<c>-p</c>): as
/// root it defaults to <c>/run/libvirtd.pid</c>, outside the bind mounts, and a second
/// libvirtd (another test class's, running in parallel) exits at once on its lock. Start-up,
/// QEMU's capabilities probed into an empty cache, takes about two seconds here; errors about
/// dnsmasq, D-Bus, udev and dmidecode in <c>libvirtd.log</c> are harmless (drivers this
/// fixture does not use).
/// </para>
/// <para>
/// What did not do: a non-root libvirtd (<c>qemu:///session</c>) cannot be given a
/// <c>/system</c> URI and has no <c>qemu.conf</c> security settings to test against; pointing
/// <c>unix_sock_dir</c> elsewhere moves only the sockets, the QEMU driver's state and run
/// directories stay under <c>/var/lib/libvirt</c> and <c>/run/libvirt</c>; a graphics device of
/// type <c>none</c> is refused by libvirt 9.0 (no graphics element is the way).
/// </para>
/// </remarks>
public sealed class PrivateLibvirtd : IAsyncDisposable
{
    // The paths libvirtd uses as root, each replaced by a folder of the temporary directory.
    private static readonly (string System, string Private)[] Mounts =
    [
        ("/etc/libvirt", "etc"),
        ("/run/libvirt", "run"),
        ("/var/lib/libvirt", "lib"),
        ("/var/cache/libvirt", "cache"),
        ("/var/log/libvirt", "log"),
    ];

    private const string LibvirtdConf = """
        # Only root can open the sockets (0700), so they need no authentication.
        unix_sock_group = "root"
        unix_sock_ro_perms = "0700"
        unix_sock_rw_perms = "0700"
        auth_unix_ro = "none"
        auth_unix_rw = "none"
        log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
        """;

    private const string QemuConf = """
        user = "root"
        group = "root"
        security_driver = "none"
        dynamic_ownership = 0
        remember_owner = 0
        cgroup_controllers = [ ]
        namespaces = [ ]
        stdio_handler = "file"
        backup_tls_x509_cert_dir = "/etc/libvirt/backup-pki"
        """;

    // Debian's system libvirtd: QEMU as libvirt-qemu, which libvirt hands the images to (DAC
    // labelling stays on with security_driver "none" in a privileged driver).
    private static string QemuConfFor(QemuAccount account) => account == QemuAccount.Root ? QemuConf : QemuConf
        .Replace("user = \"root\"", "user = \"libvirt-qemu\"", StringComparison.Ordinal)
        .Replace("group = \"root\"", "group = \"libvirt-qemu\"", StringComparison.Ordinal)
        .Replace("dynamic_ownership = 0", "dynamic_ownership = 1", StringComparison.Ordinal);

    // PID 1 of the namespace: bind-mounts (mkdir -p only creates an empty mount point where the
    // machine has no such folder), then waits for libvirtd, reaping QEMU (reparented here when
    // libvirt daemonizes it) on the way; starts libvirtd again when it ended for a restart
    // (RestartAsync), the QEMU processes still running. $1 is the temporary directory.
    private static readonly string Init = $$"""
        set -e
        exec >"$1/libvirtd.out" 2>&1
        for m in {{string.Join(' ', Mounts.Select(m => m.System + ":" + m.Private))}}; do
          mkdir -p "${m%%:*}"
          mount --bind "$1/${m##*:}" "${m%%:*}"
        done
        while :; do
          /usr/sbin/libvirtd -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid &
          wait $! || true
          [ -e "$1/restart" ] || break
          rm -f "$1/restart"
        done
        """;

    private readonly Process _process;
    private int _domainCount;

    private PrivateLibvirtd(TempDirectory directory, Process process)
    {
        Directory = directory;
        _process = process;
    }

    /// <summary>The temporary directory: configuration and state folders, images, sockets.</summary>
    public TempDirectory Directory { get; }

    /// <summary>libvirtd's read-write socket, as seen from outside its namespace.</summary>
    public string SocketPath => Path.Combine(Directory.Path, "run", "libvirt-sock");

    /// <summary>The URI virsh and Tidemark's client take.</summary>
    public string Uri => $"qemu+unix:///system?socket={SocketPath}";

    /// <summary>The same socket as a local URI (the form virtnbdbackup needs to see a local host).</summary>
    public string LocalUri => $"qemu:///system?socket={SocketPath}";

    /// <summary>
    /// <c>backup_tls_x509_cert_dir</c> as seen from outside the namespace: empty until a test
    /// puts <c>ca-cert.pem</c>, <c>server-cert.pem</c> and <c>server-key.pem</c> there.
    /// </summary>
    public string BackupTlsDirectory => Path.Combine(Directory.Path, "etc", "backup-pki");

    /// <summary>libvirtd's own log file.</summary>
    public string LogPath => Path.Combine(Directory.Path, "log", "libvirtd.log");

    /// <summary>
    /// Starts libvirtd and returns once it answers a call. Skips (fails under CI) when a
    /// requirement is missing.
    /// </summary>
    public static Task<PrivateLibvirtd> StartAsync(CancellationToken cancellationToken = default) =>
        StartAsync(QemuAccount.Root, cancellationToken);

    /// <summary>As <see cref="StartAsync(CancellationToken)"/>, with QEMU run as <paramref name="account"/>.</summary>
    public static async Task<PrivateLibvirtd> StartAsync(QemuAccount account, CancellationToken cancellationToken = default)
    {
        var unshare = Require();

        // Short: QEMU's and the pull backups' unix sockets live under it (108 bytes at most).
        var directory = new TempDirectory("lvd");
        foreach (var (_, folder) in Mounts)
        {
            System.IO.Directory.CreateDirectory(Path.Combine(directory.Path, folder));
        }

        System.IO.Directory.CreateDirectory(Path.Combine(directory.Path, "images"));
        System.IO.Directory.CreateDirectory(Path.Combine(directory.Path, "etc", "backup-pki"));
        await System.IO.File.WriteAllTextAsync(Path.Combine(directory.Path, "etc", "libvirtd.conf"), LibvirtdConf + "\n", cancellationToken).ConfigureAwait(false);
        await System.IO.File.WriteAllTextAsync(Path.Combine(directory.Path, "etc", "qemu.conf"), QemuConfFor(account) + "\n", cancellationToken).ConfigureAwait(false);

        var info = new ProcessStartInfo(unshare) { UseShellExecute = false };
        foreach (var a in (string[])["--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc", "--kill-child", "--", "/bin/sh", "-c", Init, "sh", directory.Path])
        {
            info.ArgumentList.Add(a);
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {unshare}");
        var libvirtd = new PrivateLibvirtd(directory, process);
        try
        {
            await libvirtd.WaitReadyAsync(cancellationToken).ConfigureAwait(false);
            return libvirtd;
        }
        catch
        {
            await libvirtd.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Stops libvirtd as <c>systemctl restart libvirtd</c> does (SIGTERM) and starts it again;
    /// returns once it answers. Its QEMU processes keep running, and the new libvirtd reconnects
    /// to them from its status files (qemuProcessReconnect).
    /// </summary>
    public async Task RestartAsync(CancellationToken cancellationToken = default)
    {
        // The namespace's PID 1 is unshare's child; libvirtd is that shell's.
        var init = (await Peer.RunCheckedAsync("pgrep", "-P", _process.Id.ToString(CultureInfo.InvariantCulture)).ConfigureAwait(false)).Trim();
        var libvirtd = int.Parse((await Peer.RunCheckedAsync("pgrep", "-P", init, "-x", "libvirtd").ConfigureAwait(false)).Trim(), CultureInfo.InvariantCulture);
        await System.IO.File.WriteAllTextAsync(Path.Combine(Directory.Path, "restart"), "", cancellationToken).ConfigureAwait(false);
        using (var old = Process.GetProcessById(libvirtd))
        {
            await Peer.RunCheckedAsync("kill", "-TERM", libvirtd.ToString(CultureInfo.InvariantCulture)).ConfigureAwait(false);
            await old.WaitForExitAsync(cancellationToken).WaitAsync(TimeSpan.FromMinutes(1), cancellationToken).ConfigureAwait(false);
        }

        await WaitReadyAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Runs virsh against this libvirtd.</summary>
    public Task<PeerResult> VirshAsync(params string[] arguments) =>
        Peer.RunAsync("virsh", ["-c", Uri, .. arguments], timeout: TimeSpan.FromMinutes(1));

    /// <summary>Runs virsh, fails the test unless it exits 0 with nothing on stderr, returns stdout.</summary>
    public async Task<string> VirshOkAsync(params string[] arguments)
    {
        var r = await VirshAsync(arguments).ConfigureAwait(false);
        Assert.True(r.ExitCode == 0 && r.Stderr.Length == 0, $"virsh {string.Join(' ', arguments)} exited {r.ExitCode}: {r.Stderr}");
        return r.Stdout;
    }

    /// <summary>
    /// Defines a <c>type='qemu'</c> (TCG) domain with <paramref name="disks"/> fresh qcow2 images
    /// of <paramref name="size"/> on virtio targets vda, vdb …, no OS, and starts it paused
    /// unless <paramref name="start"/> is false. A paused guest never touches its disks; writes
    /// come from <see cref="GuestWriteAsync"/>.
    /// </summary>
    /// <param name="hotplug">Define it with ACPI, so disks can be hot-plugged (<see cref="LibvirtdDomain.Hotplug"/>).</param>
    public async Task<LibvirtdDomain> DefineDomainAsync(string name, int disks = 1, string size = "16M", bool start = true, bool hotplug = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(disks);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(disks, 26);
        var list = new List<LibvirtdDisk>();
        for (var i = 0; i < disks; i++)
        {
            var target = "vd" + (char)('a' + i);
            var image = Path.Combine(Directory.Path, "images", $"{name}-{target}.qcow2");
            await Peer.RunCheckedAsync("qemu-img", "create", "-q", "-f", "qcow2", image, size).ConfigureAwait(false);
            list.Add(new LibvirtdDisk(target, image));
        }

        var domain = new LibvirtdDomain(name, list, hotplug);
        var xmlFile = Path.Combine(Directory.Path, "images", name + ".xml");
        await System.IO.File.WriteAllTextAsync(xmlFile, domain.Xml()).ConfigureAwait(false);
        await VirshOkAsync("define", xmlFile).ConfigureAwait(false);
        if (start)
        {
            await VirshOkAsync("start", name, "--paused").ConfigureAwait(false);
        }

        return domain;
    }

    /// <summary>
    /// Runs qemu-io <paramref name="command"/> (e.g. <c>write -P 0x41 0 1M</c>) inside the running
    /// QEMU on disk <paramref name="target"/>'s block backend, as the guest's writes would go,
    /// and fails the test unless qemu-io reports it done without a failure.
    /// </summary>
    /// <remarks>
    /// HMP <c>qemu-io</c> prints its result on QEMU's stdout, not on the monitor, so virsh shows
    /// nothing either way; the result is read from the domain's log, where
    /// <c>stdio_handler="file"</c> sends QEMU's stdout. Every qemu-io command that did its I/O
    /// ends with a statistics line ("1 MiB, 1 ops; …").
    /// </remarks>
    public async Task GuestWriteAsync(string domain, string target, string command)
    {
        var log = Path.Combine(Directory.Path, "log", "qemu", domain + ".log");
        var before = new FileInfo(log).Length;
        var monitor = await VirshOkAsync("qemu-monitor-command", domain, "--hmp",
            $"qemu-io -d {LibvirtdDisk.BackendPathOf(target)} \"{command}\"").ConfigureAwait(false);
        Assert.True(monitor.Trim().Length == 0, $"qemu-io {command} on {domain}/{target}: {monitor}");

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var added = await ReadFromAsync(log, before).ConfigureAwait(false);
            Assert.False(added.Contains("failed", StringComparison.Ordinal), $"qemu-io {command} on {domain}/{target}: {added}");
            if (added.Contains(" ops; ", StringComparison.Ordinal))
            {
                return;
            }

            Assert.True(DateTime.UtcNow < deadline, $"qemu-io {command} on {domain}/{target} printed nothing in {log}");
            await Task.Delay(50).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Runs <paramref name="command"/> in libvirtd's mount namespace, whose mounts are private:
    /// a file system a test mounts for the QEMU processes (a small tmpfs to fill) must be mounted
    /// there, and is seen only there.
    /// </summary>
    public async Task<PeerResult> InNamespaceAsync(params string[] command)
    {
        // The namespace's PID 1 is unshare's child.
        var init = (await Peer.RunCheckedAsync("pgrep", "-P", _process.Id.ToString(CultureInfo.InvariantCulture)).ConfigureAwait(false)).Trim();
        return await Peer.RunAsync("nsenter", ["-t", init, "-m", "--", .. command]).ConfigureAwait(false);
    }

    /// <summary>A path in the temporary directory for a file a test makes (a backup's socket or scratch file).</summary>
    public string File(string name) => Directory.File(name);

    /// <summary>A new domain name, unique in this libvirtd.</summary>
    public string NewDomainName(string prefix = "vm") =>
        prefix + Interlocked.Increment(ref _domainCount).ToString(CultureInfo.InvariantCulture);

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited && System.IO.File.Exists(SocketPath))
            {
                // A clean end for each guest first; the namespace's end below is the backstop.
                var running = await VirshAsync("list", "--name").ConfigureAwait(false);
                foreach (var name in running.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                {
                    await VirshAsync("destroy", name).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            if (!_process.HasExited)
            {
                // SIGKILL to unshare; --kill-child passes it to PID 1, whose death ends the namespace.
                _process.Kill(entireProcessTree: true);
            }

            await _process.WaitForExitAsync().ConfigureAwait(false);
            _process.Dispose();
            Directory.Dispose();
        }
    }

    private static string Require()
    {
        var unshare = Peer.Require("unshare");
        Peer.Require("libvirtd");
        Peer.Require("qemu-system-x86_64");
        Peer.Require("virsh");
        Peer.Require("qemu-img");
        string? missing = null;
        if (!Environment.IsPrivilegedProcess)
        {
            missing = "a private libvirtd runs as root (it bind-mounts its state directories)";
        }
        else if (!HasAccount("/etc/passwd", "libvirt-qemu") || !HasAccount("/etc/group", "libvirt-qemu"))
        {
            missing = "libvirt's QEMU driver needs the libvirt-qemu user and group (scripts/setup creates them)";
        }

        if (missing is not null)
        {
            if (Peer.InCi)
            {
                throw new InvalidOperationException(missing);
            }

            Assert.Skip(missing);
        }

        return unshare;
    }

    private static bool HasAccount(string file, string name) =>
        System.IO.File.Exists(file) && System.IO.File.ReadLines(file).Any(l => l.StartsWith(name + ":", StringComparison.Ordinal));

    private async Task WaitReadyAsync(CancellationToken cancellationToken)
    {
        // The socket listens before the drivers are initialized (QEMU's capabilities probed:
        // seconds under TCG); a call that returns means they are.
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        while (true)
        {
            if (_process.HasExited)
            {
                var output = await ReadFromAsync(Path.Combine(Directory.Path, "libvirtd.out"), 0).ConfigureAwait(false);
                var log = await ReadFromAsync(LogPath, 0).ConfigureAwait(false);
                throw new InvalidOperationException($"libvirtd exited: {output}{string.Join('\n', log.Split('\n').TakeLast(5))}");
            }

            if (System.IO.File.Exists(SocketPath) && (await VirshAsync("uri").ConfigureAwait(false)).ExitCode == 0)
            {
                return;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"libvirtd did not answer on {SocketPath}: {await ReadFromAsync(LogPath, 0).ConfigureAwait(false)}");
            }

            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }
    }

    private static async Task<string> ReadFromAsync(string path, long offset)
    {
        if (!System.IO.File.Exists(path))
        {
            return "";
        }

        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        stream.Position = Math.Min(offset, stream.Length);
        using var reader = new StreamReader(stream);
        return await reader.ReadToEndAsync().ConfigureAwait(false);
    }
}

/// <summary>The account a <see cref="PrivateLibvirtd"/>'s QEMU processes run as.</summary>
public enum QemuAccount
{
    /// <summary>root, images left as they are (<c>dynamic_ownership = 0</c>).</summary>
    Root,

    /// <summary>
    /// <c>libvirt-qemu</c>, as a Debian system libvirtd runs it: libvirt chowns images and
    /// scratch files to it, and QEMU can create files only where that account may write.
    /// </summary>
    LibvirtQemu,
}
