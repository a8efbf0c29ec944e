using System.CommandLine;

namespace Tidemark.Cli.Commands.Daemon;

/// <summary>
/// <c>tidemark daemon [--state-dir DIR] [--socket PATH] [--guest-tcp] [--backup-tls-dir DIR] [--backup-tls-no-verify] [--keepalive-interval S] [--keepalive-count N] [--stop-domains]</c>: runs Tidemark's daemon in the
/// foreground; virsh, libvirt-python and virtnbdbackup connect with
/// <c>qemu+unix:///system?socket=PATH</c>. Its stop leaves the running domains to the next
/// daemon on the state directory, as libvirtd's leaves QEMU running, unless <c>--stop-domains</c>.
/// </summary>
internal static class DaemonCommandDefinition
{
    public static readonly Option<string?> StateDirectory = new("--state-dir") { Description = "The state directory (default: /var/lib/tidemark as root, else $XDG_STATE_HOME/tidemark)." };
    public static readonly Option<string?> Socket = new("--socket") { Description = "The libvirt protocol socket (default: <state-dir>/tidemark-sock, mode 0600)." };
    public static readonly Option<bool> GuestTcp = new("--guest-tcp") { Description = "Serve every running domain's disks on 127.0.0.1 too (nbd://127.0.0.1:PORT/vda; see domnbd), not only on its unix socket." };
    public static readonly Option<string?> BackupTlsDirectory = new("--backup-tls-dir") { Description = "Where pull backups with tls='yes' find ca-cert.pem, server-cert.pem and server-key.pem (libvirt's backup_tls_x509_cert_dir; default: /etc/pki/qemu)." };
    public static readonly Option<bool> BackupTlsNoVerify = new("--backup-tls-no-verify") { Description = "Let TLS pull clients connect without a client certificate (libvirt's backup_tls_x509_verify = 0)." };
    public static readonly Option<int> KeepaliveInterval = new("--keepalive-interval") { Description = "Seconds of silence before a client that speaks keepalive (virsh, libvirt-python with an event loop) is sent a ping; -1 never pings (libvirt's keepalive_interval).", DefaultValueFactory = _ => 5 };
    public static readonly Option<int> KeepaliveCount = CountOption();
    public static readonly Option<bool> StopDomains = new("--stop-domains") { Description = "Stop the running domains when the daemon stops (as libvirt-guests does at shutdown); by default the next daemon on the state directory starts them again as they were, on the same sockets." };
    public static readonly Option<bool> Verbose = new("--verbose", "-v") { Description = "Log each connection and call failure in detail." };

    private static Option<int> CountOption()
    {
        var option = new Option<int>("--keepalive-count") { Description = "Unanswered pings before such a client is disconnected and its calls cancelled (libvirt's keepalive_count).", DefaultValueFactory = _ => 5 };
        option.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() < 0)
            {
                r.AddError($"--keepalive-count must be 0 or more, not {r.GetValueOrDefault<int>()}");
            }
        });
        return option;
    }

    public static Command Create(CliConsole console)
    {
        var command = new Command("daemon", "Run the daemon: domains, checkpoints and backups behind libvirt's remote protocol.")
        {
            StateDirectory, Socket, GuestTcp, BackupTlsDirectory, BackupTlsNoVerify, KeepaliveInterval, KeepaliveCount, StopDomains, Verbose,
        };
        command.SetAction((result, cancellationToken) => DaemonCommand.RunAsync(result, console, cancellationToken));
        return command;
    }
}
