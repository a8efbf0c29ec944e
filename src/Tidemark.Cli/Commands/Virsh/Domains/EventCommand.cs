using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Threading.Channels;
using Tidemark.Remote.Client;
using Tidemark.Remote.Protocol;

namespace Tidemark.Cli.Commands.Virsh.Domains;

/// <summary>
/// virsh's <c>event</c> for the events the daemon sends (lifecycle, io-error, io-error-reason, device-removed, device-added, job-completed): prints
/// each as virsh does, stops after the first unless --loop, and after --timeout seconds says
/// "event loop timed out"; then "events received: N", exit 0 only if N &gt; 0.
/// </summary>
internal static class EventCommand
{
    // libvirt's event names in virDomainEventID order, as virsh lists them; the daemon sends lifecycle, io-error, io-error-reason, device-removed, device-added and job-completed.
    // virsh's words for virDomainEventIOErrorAction.
    private static readonly string[] IoErrorActions = ["none", "pause", "report"];

    private static readonly string[] EventNames =
    [
        "lifecycle", "reboot", "rtc-change", "watchdog", "io-error", "graphics", "io-error-reason", "control-error", "block-job",
        "disk-change", "tray-change", "pm-wakeup", "pm-suspend", "balloon-change", "pm-suspend-disk", "device-removed", "block-job-2",
        "tunable", "agent-lifecycle", "device-added", "migration-iteration", "job-completed", "device-removal-failed", "metadata-change",
        "block-threshold", "memory-failure", "memory-device-size-change",
    ];

    public static Command Create(CliConsole console)
    {
        var domain = new VirshParameter("domain", "filter by domain name, id or uuid");
        var eventName = new Option<string?>("--event") { Description = "which event type to wait for (lifecycle, io-error, io-error-reason, device-removed, device-added, job-completed)" };
        var all = new Option<bool>("--all") { Description = "wait for all events instead of just one type" };
        var loop = new Option<bool>("--loop") { Description = "loop until timeout or interrupt, rather than one-shot" };
        var timeout = new Option<int?>("--timeout") { Description = "timeout seconds" };
        var list = new Option<bool>("--list") { Description = "list valid event types" };
        var command = new Command("event", "Domain Events.") { eventName, all, loop, timeout, list };
        domain.AddTo(command);
        VirshAction.Set(command, console, async s =>
        {
            if (s.Has(list))
            {
                return string.Concat(EventNames.Select(n => n + "\n"));
            }

            var name = s.Result.GetValue(eventName);
            if (name is null && !s.Has(all))
            {
                throw new VirshException("one of --list, --all, or --event <type> is required");
            }

            var ids = s.Has(all) ? [DomainEventId.Lifecycle, DomainEventId.IoError, DomainEventId.IoErrorReason, DomainEventId.DeviceRemoved, DomainEventId.DeviceAdded, DomainEventId.JobCompleted] : new[]
            {
                name switch
                {
                    "lifecycle" => DomainEventId.Lifecycle,
                    "io-error" => DomainEventId.IoError,
                    "io-error-reason" => DomainEventId.IoErrorReason,
                    "device-removed" => DomainEventId.DeviceRemoved,
                    "device-added" => DomainEventId.DeviceAdded,
                    "job-completed" => DomainEventId.JobCompleted,
                    _ => throw new VirshException($"unknown event type {name}"),
                },
            };
            var filter = domain.Find(s.Result) is { } text ? await s.DomainAsync(text).ConfigureAwait(false) : null;
            return await WaitAsync(s, ids, filter, s.Has(loop), s.Result.GetValue(timeout)).ConfigureAwait(false);
        });
        return command;
    }

    private static async Task<string> WaitAsync(VirshSession s, DomainEventId[] ids, RemoteDomain? filter, bool loop, int? timeoutSeconds)
    {
        var events = Channel.CreateUnbounded<string>();
        void OnLifecycle(object? sender, DomainLifecycleEventArgs e) =>
            events.Writer.TryWrite($"event 'lifecycle' for domain '{e.Domain.Name}': {VirshText.LifecycleEvent(e.Event)} {VirshText.LifecycleDetail(e.Event, e.Detail)}\n");
        void OnJobCompleted(object? sender, JobCompletedEventArgs e)
        {
            var sb = new StringBuilder($"event 'job-completed' for domain '{e.Domain.Name}':\n");
            foreach (var p in e.Statistics)
            {
                // virTypedParameterToString prints a boolean as a number.
                var value = p.Type == TypedParameterType.Boolean ? (p.Bits != 0 ? "1" : "0") : p.FormatValue();
                sb.Append(CultureInfo.InvariantCulture, $"\t{p.Field}: {value}\n");
            }

            events.Writer.TryWrite(sb.ToString());
        }

        void OnDevice(object? sender, DeviceEventArgs e) =>
            events.Writer.TryWrite($"event '{(e.Added ? "device-added" : "device-removed")}' for domain '{e.Domain.Name}': {e.Alias}\n");

        // virshEventIOErrorPrint and virshEventIOErrorReasonPrint.
        void OnIoError(object? sender, IoErrorEventArgs e)
        {
            var action = (int)e.Action is >= 0 and < 3 ? IoErrorActions[(int)e.Action] : "unknown";
            events.Writer.TryWrite(e.Reason is { } reason
                ? $"event 'io-error-reason' for domain '{e.Domain.Name}': {e.SourcePath} ({e.Alias}) {action} due to {reason}\n"
                : $"event 'io-error' for domain '{e.Domain.Name}': {e.SourcePath} ({e.Alias}) {action}\n");
        }

        s.Client.LifecycleEvent += OnLifecycle;
        s.Client.JobCompleted += OnJobCompleted;
        s.Client.DeviceEvent += OnDevice;
        s.Client.IoErrorEvent += OnIoError;
        var callbacks = new List<int>();
        var count = 0;
        var timedOut = false;
        try
        {
            foreach (var id in ids)
            {
                callbacks.Add(await s.Client.RegisterDomainEventAsync(id, filter, s.CancellationToken).ConfigureAwait(false));
            }

            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(s.CancellationToken);
            if (timeoutSeconds is { } seconds)
            {
                deadline.CancelAfter(TimeSpan.FromSeconds(seconds));
            }

            try
            {
                do
                {
                    var text = await events.Reader.ReadAsync(deadline.Token).ConfigureAwait(false);
                    count++;
                    await s.Console.Out.WriteAsync(text).ConfigureAwait(false);
                    await s.Console.Out.FlushAsync(s.CancellationToken).ConfigureAwait(false);
                }
                while (loop);
            }
            catch (OperationCanceledException) when (!s.CancellationToken.IsCancellationRequested)
            {
                timedOut = true;
            }
        }
        finally
        {
            s.Client.LifecycleEvent -= OnLifecycle;
            s.Client.JobCompleted -= OnJobCompleted;
            s.Client.DeviceEvent -= OnDevice;
            s.Client.IoErrorEvent -= OnIoError;
            foreach (var callback in callbacks)
            {
                await s.Client.DeregisterDomainEventAsync(callback, CancellationToken.None).ConfigureAwait(false);
            }
        }

        s.ExitCode = count > 0 ? 0 : 1;
        return (timedOut ? "event loop timed out\n" : "") + string.Create(CultureInfo.InvariantCulture, $"events received: {count}\n");
    }
}
