using Tidemark.Remote.Protocol;
using Tidemark.Remote.Xdr;

namespace Tidemark.Remote.Server;

/// <summary>
/// Where the backend announces domain events. Each event goes, as a MESSAGE, to every
/// connection that registered a matching callback (316: the event ID, and the domain or any
/// domain), with that callback's ID. Publishing never waits on a client: a connection that
/// does not read its messages is closed instead (see
/// <see cref="RemoteServerLimits.MaxPendingRepliesPerConnection"/>).
/// </summary>
public sealed class DomainEventPublisher
{
    private readonly Func<IEnumerable<RemoteConnection>> _connections;

    internal DomainEventPublisher(Func<IEnumerable<RemoteConnection>> connections)
    {
        _connections = connections;
    }

    /// <summary>Whether any connection has a callback for <paramref name="eventId"/> (so the backend can skip building an event nobody wants).</summary>
    public bool HasCallbacks(DomainEventId eventId) => _connections().Any(c => c.HasCallbacks(eventId));

    /// <summary>DOMAIN_EVENT_CALLBACK_LIFECYCLE (318): <paramref name="detail"/> is the per-event detail enum.</summary>
    public void PublishLifecycle(RemoteDomain domain, DomainLifecycleEvent lifecycleEvent, int detail)
        => Publish(DomainEventId.Lifecycle, RemoteProcedure.DomainEventCallbackLifecycle, domain, w =>
        {
            w.WriteInt32((int)lifecycleEvent);
            w.WriteInt32(detail);
        });

    /// <summary>
    /// A disk's block job ended: DOMAIN_EVENT_CALLBACK_BLOCK_JOB (326, naming the disk by its
    /// source <paramref name="path"/>) and DOMAIN_EVENT_BLOCK_JOB_2 (339, by its target
    /// <paramref name="dev"/>), as libvirt's qemuBlockJobEmitEvents sends both for a local disk.
    /// </summary>
    public void PublishBlockJob(RemoteDomain domain, string path, string dev, BlockJobType type, BlockJobStatus status)
    {
        foreach (var (eventId, procedure, disk) in new[] { (DomainEventId.BlockJob, RemoteProcedure.DomainEventCallbackBlockJob, path), (DomainEventId.BlockJob2, RemoteProcedure.DomainEventBlockJob2, dev) })
        {
            Publish(eventId, procedure, domain, w =>
            {
                w.WriteString(disk, RemoteWire.MaxStringLength);
                w.WriteInt32((int)type);
                w.WriteInt32((int)status);
            });
        }
    }

    /// <summary>
    /// A device joined (<paramref name="added"/>: DOMAIN_EVENT_CALLBACK_DEVICE_ADDED, 354) or
    /// left (DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED, 333) the running domain, named by its alias:
    /// both messages are { callbackID, dom, devAlias }.
    /// </summary>
    public void PublishDevice(RemoteDomain domain, string alias, bool added)
    {
        ArgumentNullException.ThrowIfNull(alias);
        var (eventId, procedure) = added
            ? (DomainEventId.DeviceAdded, RemoteProcedure.DomainEventCallbackDeviceAdded)
            : (DomainEventId.DeviceRemoved, RemoteProcedure.DomainEventCallbackDeviceRemoved);
        Publish(eventId, procedure, domain, w => w.WriteString(alias, RemoteWire.MaxStringLength));
    }

    /// <summary>
    /// A guest request's I/O failed: DOMAIN_EVENT_CALLBACK_IO_ERROR (322: { callbackID, dom,
    /// srcPath, devAlias, action }) then DOMAIN_EVENT_CALLBACK_IO_ERROR_REASON (324: the same and
    /// the reason), as libvirt's qemuProcessHandleIOError queues them.
    /// </summary>
    public void PublishIoError(RemoteDomain domain, string sourcePath, string alias, IoErrorAction action, string reason)
    {
        ArgumentNullException.ThrowIfNull(sourcePath);
        ArgumentNullException.ThrowIfNull(alias);
        ArgumentNullException.ThrowIfNull(reason);
        foreach (var (eventId, procedure) in new[] { (DomainEventId.IoError, RemoteProcedure.DomainEventCallbackIoError), (DomainEventId.IoErrorReason, RemoteProcedure.DomainEventCallbackIoErrorReason) })
        {
            Publish(eventId, procedure, domain, w =>
            {
                w.WriteString(sourcePath, RemoteWire.MaxStringLength);
                w.WriteString(alias, RemoteWire.MaxStringLength);
                w.WriteInt32((int)action);
                if (eventId == DomainEventId.IoErrorReason)
                {
                    w.WriteString(reason, RemoteWire.MaxStringLength);
                }
            });
        }
    }

    /// <summary>DOMAIN_EVENT_CALLBACK_TRAY_CHANGE (328): { callbackID, dom, devAlias, reason }.</summary>
    public void PublishTrayChange(RemoteDomain domain, string alias, TrayChangeReason reason)
    {
        ArgumentNullException.ThrowIfNull(alias);
        Publish(DomainEventId.TrayChange, RemoteProcedure.DomainEventCallbackTrayChange, domain, w =>
        {
            w.WriteString(alias, RemoteWire.MaxStringLength);
            w.WriteInt32((int)reason);
        });
    }

    /// <summary>DOMAIN_EVENT_CALLBACK_JOB_COMPLETED (363): the same statistics as GET_JOB_STATS with flag COMPLETED.</summary>
    public void PublishJobCompleted(RemoteDomain domain, IReadOnlyList<TypedParameter> statistics)
    {
        ArgumentNullException.ThrowIfNull(statistics);
        Publish(DomainEventId.JobCompleted, RemoteProcedure.DomainEventCallbackJobCompleted, domain, w => TypedParameter.WriteList(w, statistics, RemoteWire.MaxJobStats, "job statistics"));
    }

    /// <summary>
    /// Sends the event to every callback registered for it: each message is the callback's ID,
    /// the domain, then what <paramref name="body"/> writes.
    /// </summary>
    private void Publish(DomainEventId eventId, RemoteProcedure procedure, RemoteDomain domain, Action<XdrWriter> body)
    {
        ArgumentNullException.ThrowIfNull(domain);
        foreach (var connection in _connections())
        {
            foreach (var callbackId in connection.CallbacksFor(eventId, domain))
            {
                var message = MessageBuilder.Remote(procedure, RemoteMessageType.Message, 0);
                var w = message.Payload;
                w.WriteInt32(callbackId);
                domain.Write(w);
                body(w);
                connection.SendEvent(message.Finish());
            }
        }
    }
}
