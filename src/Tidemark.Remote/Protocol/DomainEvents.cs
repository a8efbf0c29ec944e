namespace Tidemark.Remote.Protocol;

/// <summary>virDomainEventID: what a client registers a callback for (316).</summary>
public enum DomainEventId
{
    Lifecycle = 0,
    IoError = 4,
    IoErrorReason = 6,
    BlockJob = 8,
    TrayChange = 10,
    DeviceRemoved = 15,
    BlockJob2 = 16,
    DeviceAdded = 19,
    JobCompleted = 21,
}

/// <summary>virDomainEventIOErrorAction: what a failed guest request came to (322, 324).</summary>
public enum IoErrorAction
{
    /// <summary>Ignored: the guest was told it succeeded.</summary>
    None = 0,

    /// <summary>The domain paused.</summary>
    Pause = 1,

    /// <summary>Reported to the guest.</summary>
    Report = 2,
}

/// <summary>virDomainEventTrayChangeReason: what a drive's tray did (328).</summary>
public enum TrayChangeReason
{
    Opened = 0,
    Closed = 1,
}

/// <summary>virConnectDomainEventBlockJobStatus: how a disk's block job ended (326, 339).</summary>
public enum BlockJobStatus
{
    Completed = 0,
    Failed = 1,
    Canceled = 2,
}

/// <summary>virDomainEventType: the <c>event</c> of a lifecycle event (318).</summary>
public enum DomainLifecycleEvent
{
    Defined = 0,
    Undefined = 1,
    Started = 2,
    Suspended = 3,
    Resumed = 4,
    Stopped = 5,
    Shutdown = 6,
    PmSuspended = 7,
    Crashed = 8,
}
