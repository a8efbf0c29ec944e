using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tidemark.Engine.Domains;
using Tidemark.Engine.State;
using Tidemark.Remote;
using Tidemark.Remote.Server;

namespace Tidemark.Daemon;

/// <summary>Where the daemon keeps its state and listens.</summary>
public sealed record DaemonOptions
{
    /// <summary>The state directory (<see cref="StateDirectory.DefaultRoot"/> by default).</summary>
    public string StateDirectory { get; init; } = Engine.State.StateDirectory.DefaultRoot();

    /// <summary>The libvirt protocol socket; <c>&lt;state-dir&gt;/tidemark-sock</c> when null.</summary>
    public string? SocketPath { get; init; }

    /// <summary>
    /// Serve every domain's disks on 127.0.0.1 as well as on its unix socket, whoever starts it
    /// (<c>tidemark daemon --guest-tcp</c>); without it a start asks with
    /// <see cref="DomainCreateFlags.GuestTcp"/>.
    /// </summary>
    public bool GuestTcp { get; init; }

    /// <summary>
    /// <c>backup_tls_x509_cert_dir</c>: where a pull backup with <c>tls='yes'</c> finds
    /// <c>ca-cert.pem</c>, <c>server-cert.pem</c> and <c>server-key.pem</c>; libvirt's default
    /// TLS directory unless set. Null refuses such backups.
    /// </summary>
    public string? BackupTlsDirectory { get; init; } = "/etc/pki/qemu";

    /// <summary><c>backup_tls_x509_verify</c>: TLS pull clients must present a certificate signed by the CA.</summary>
    public bool BackupTlsVerifyPeer { get; init; } = true;

    /// <summary>
    /// libvirtd's <c>keepalive_interval</c>: seconds of silence after which a client that speaks
    /// keepalive is sent a PING (default 5); 0 or less never pings.
    /// </summary>
    public int KeepaliveInterval { get; init; } = 5;

    /// <summary>libvirtd's <c>keepalive_count</c>: unanswered PINGs before such a client is disconnected (default 5).</summary>
    public int KeepaliveCount { get; init; } = 5;

    /// <summary>
    /// Stop every running domain when the daemon stops (<c>tidemark daemon --stop-domains</c>), as
    /// libvirt-guests does at a host's shutdown. Without it the domains are left to the next
    /// daemon on the state directory, which starts them again as they were, as libvirtd's stop
    /// leaves QEMU running (<see cref="DomainHost.CloseKeepingDomainsAsync"/>).
    /// </summary>
    public bool StopDomains { get; init; }

    /// <summary>The socket path in effect.</summary>
    public string EffectiveSocketPath => Path.GetFullPath(SocketPath ?? Path.Combine(StateDirectory, "tidemark-sock"));
}

/// <summary>
/// The daemon: the engine on one state directory behind libvirt's remote protocol, so that
/// virsh, libvirt-python and virtnbdbackup drive it as they drive libvirtd
/// (<c>qemu+unix:///system?socket=PATH</c>).
/// </summary>
/// <remarks>
/// Start: take the state directory's lock (a second daemon is refused), open the engine (which
/// removes what jobs cut short by a crash left behind and starts again the domains the previous
/// daemon left running), listen (mode 0600), start the domains marked autostart. Stop (SIGTERM,
/// SIGINT): stop listening and end every client connection, then close every running domain:
/// the guests' NBD connections end, its backup job stops where it is, bitmaps are stored and
/// images closed. The domain and its job are left to the next daemon (as libvirtd leaves QEMU
/// and its block jobs running), or stopped with <see cref="DaemonOptions.StopDomains"/>, which
/// cancels the job and cleans its files up.
/// </remarks>
public sealed class TidemarkDaemon : IHostedService, IAsyncDisposable
{
    private readonly DaemonOptions _options;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private StateDirectoryLock? _lock;
    private DomainHost? _host;
    private RemoteServer? _server;

    public TidemarkDaemon(DaemonOptions options, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _options = options;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<TidemarkDaemon>();
    }

    /// <summary>The socket clients connect to.</summary>
    public string SocketPath => _options.EffectiveSocketPath;

    /// <summary>The engine, once started.</summary>
    public DomainHost? Host => _host;

    /// <summary>
    /// A host for <c>tidemark daemon</c>: the daemon as its one hosted service, console logs
    /// (one line each), SIGTERM and SIGINT stopping it gracefully. Nothing is read from
    /// configuration files or the environment, so it stays trim- and AOT-safe.
    /// </summary>
    public static IHost CreateHost(DaemonOptions options, LogLevel minimumLevel = LogLevel.Information)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-dd HH:mm:ss ";
        });
        builder.Logging.SetMinimumLevel(minimumLevel);
        builder.Services.Configure<ConsoleLifetimeOptions>(o => o.SuppressStatusMessages = true);

        // Stopping waits for domains to close their images and for backup jobs to clean up.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromMinutes(2));
        builder.Services.AddSingleton(options);
        builder.Services.AddHostedService<TidemarkDaemon>();
        return builder.Build();
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var stateRoot = Path.GetFullPath(_options.StateDirectory);
        _lock = StateDirectoryLock.Acquire(stateRoot);
        try
        {
            _host = await DomainHost.OpenAsync(stateRoot, loggerFactory: _loggerFactory, cancellationToken: cancellationToken).ConfigureAwait(false);
            _host.BackupTlsDirectory = _options.BackupTlsDirectory;
            _host.BackupTlsVerifyPeer = _options.BackupTlsVerifyPeer;
            var hypervisor = new EngineHypervisor(_host, new AutostartMarks(stateRoot), _loggerFactory.CreateLogger<EngineHypervisor>())
            {
                StartFlags = _options.GuestTcp ? DomainStartFlags.GuestTcp : DomainStartFlags.None,
            };
            var limits = new RemoteServerLimits
            {
                KeepaliveInterval = TimeSpan.FromSeconds(_options.KeepaliveInterval),
                KeepaliveCount = _options.KeepaliveCount,
            };
            _server = new RemoteServer(new RemoteServerOptions { SocketPath = SocketPath, Limits = limits }, hypervisor, _loggerFactory);
            hypervisor.Events = _server.Events;
            hypervisor.WatchCarriedBackups();
            try
            {
                await _server.StartAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or IOException)
            {
                throw new DaemonException(DaemonErrorReason.SocketUnavailable, $"cannot listen on '{SocketPath}': {e.Message}", e);
            }

            _logger.LogInformation("Tidemark daemon on state directory {State}; connect with qemu+unix:///system?socket={Socket}", stateRoot, SocketPath);
            await hypervisor.AutostartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _logger.LogInformation("Tidemark daemon stopping");
        await DisposeAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is { } server)
        {
            _server = null;
            await server.DisposeAsync().ConfigureAwait(false);
        }

        if (_host is { } host)
        {
            _host = null;
            if (_options.StopDomains)
            {
                await host.DisposeAsync().ConfigureAwait(false);
            }
            else
            {
                await host.CloseKeepingDomainsAsync().ConfigureAwait(false);
            }
        }

        _lock?.Dispose();
        _lock = null;
    }
}
