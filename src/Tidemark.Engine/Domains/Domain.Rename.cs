using System.Xml.Linq;
using Tidemark.Engine.State;
using Tidemark.Formats.Domains;

namespace Tidemark.Engine.Domains;

public sealed partial class Domain
{
    /// <summary>
    /// Renames the inactive domain under its lock (the host has checked the new name): the
    /// definition is written under the new name, the checkpoint metadata moves with it
    /// (<c>checkpoint/&lt;new&gt;/</c>, each file unchanged: a checkpoint's embedded domain is
    /// the domain as it was when the checkpoint was taken, matched by UUID), and the old
    /// definition goes, crash-safely (<see cref="DomainRenameRecord"/>).
    /// </summary>
    internal async Task RenameLockedAsync(string newName, CancellationToken cancellationToken)
    {
        var oldName = Name;
        if (File.Exists(Store.DomainFile(newName)))
        {
            // A definition that failed to parse at start-up: it is no domain, but it is not ours.
            throw new EngineException(EngineErrorReason.StateWriteFailed, $"cannot rename domain '{oldName}' to '{newName}': {Store.DomainFile(newName)} already exists");
        }

        var element = new XElement(Definition.Element);
        element.Element("name")!.Value = newName;
        var renamed = Definition with { Name = newName, Element = element };
        Exception? failure = null;
        try
        {
            await DomainRenameRecord.WriteAsync(Store, oldName, newName, cancellationToken).ConfigureAwait(false);
            await AtomicFile.WriteLibvirtFileAsync(Store.DomainFile(newName), EditWarning.Domain(newName, Uuid) + DomainFormatter.Format(renamed, DomainFormatFlags.Secure), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or OperationCanceledException)
        {
            failure = e;
        }

        // The new definition decides, as it does for the next host after a kill: once it is
        // there (even if making its directory entry durable failed), the rename goes through.
        if (!File.Exists(Store.DomainFile(newName)))
        {
            DomainRenameRecord.Finish(Store, oldName, newName);
            if (failure is OperationCanceledException or null)
            {
                throw failure ?? new OperationCanceledException(cancellationToken);
            }

            throw new EngineException(EngineErrorReason.StateWriteFailed, $"cannot save definition of domain '{newName}': {failure.Message}", failure);
        }

        Definition = renamed;
        try
        {
            DomainRenameRecord.Finish(Store, oldName, newName);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The domain has its new name; the record stays, and the next host finishes the move.
            throw new EngineException(EngineErrorReason.StateWriteFailed, $"domain '{oldName}' renamed to '{newName}', but its old files could not be moved yet: {e.Message}", e);
        }
    }
}
