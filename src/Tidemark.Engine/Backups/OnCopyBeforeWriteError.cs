namespace Tidemark.Engine.Backups;

/// <summary>
/// What happens when copying a cluster's old content aside fails before a guest write (the
/// scratch or target is full or failing). Either way the backup never mixes instants: QEMU's
/// <c>on-cbw-error</c> (block/copy-before-write.c) offers the same two choices.
/// </summary>
public enum OnCopyBeforeWriteError
{
    /// <summary>
    /// The job fails and the guest write goes on (libvirt's behaviour; QEMU's
    /// <c>break-snapshot</c>). Every later read of the point-in-time view fails.
    /// </summary>
    FailJob,

    /// <summary>
    /// The guest write fails with the copy's error and the job goes on (QEMU's
    /// <c>break-guest-write</c>): the cluster is still the job's, its old content still in the
    /// live image.
    /// </summary>
    FailGuestWrite,
}
