using System.Net.Sockets;
using System.Runtime.InteropServices;
using Tidemark.Engine.Backups;

namespace Tidemark.Engine.Domains;

/// <summary><c>virDomainFDAssociate</c> flags.</summary>
[Flags]
public enum FdAssociateFlags : uint
{
    None = 0,

    /// <summary>VIR_DOMAIN_FD_ASSOCIATE_SECLABEL_RESTORE: restore the fds' security labels after use.</summary>
    SeclabelRestore = 1,

    /// <summary>VIR_DOMAIN_FD_ASSOCIATE_SECLABEL_WRITABLE: label the fds for writing.</summary>
    SeclabelWritable = 2,
}

/// <summary>
/// The domain's file-descriptor groups (<c>virDomainFDAssociate</c>): named sets of open file
/// descriptors a client passed in, for documents that name a group instead of a path — a pull
/// backup's <c>&lt;server transport='fd' fdgroup='NAME'/&gt;</c> (spec §3.1, §6.7 step 12).
/// </summary>
/// <remarks>
/// As libvirt's qemu driver keeps them: a group replaces an earlier one of the same name; it
/// lives until the connection that associated it closes (here: until
/// <see cref="ReleaseFdGroups"/> with its owner), not until the domain stops; a job that uses
/// a group's descriptor takes a duplicate, so the group stays usable and the job is unaffected
/// by the group going away.
/// </remarks>
public sealed partial class Domain
{
    private const string FdAssociateFunction = "qemuDomainFDAssociate";

    private readonly Lock _fdGroupsLock = new();
    private readonly Dictionary<string, FdGroup> _fdGroups = new(StringComparer.Ordinal);

    /// <summary>
    /// <c>virDomainFDAssociate</c>: keeps <paramref name="fds"/> under <paramref name="name"/>,
    /// replacing (and closing) a group of that name. The domain owns the descriptors from the
    /// call on, also when it throws. Tidemark labels nothing, so the security-label flags are
    /// accepted and change nothing.
    /// </summary>
    /// <param name="owner">Whose the group is: <see cref="ReleaseFdGroups"/> with it closes the group (libvirt: the connection).</param>
    /// <exception cref="EngineException">Unknown flags; no descriptors ("nfds in virDomainFDAssociate must not be zero").</exception>
    public void AssociateFds(string name, IReadOnlyList<SafeHandle> fds, FdAssociateFlags flags = FdAssociateFlags.None, object? owner = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(fds);
        var group = new FdGroup(fds, owner);
        try
        {
            Flags.Check(flags, FdAssociateFlags.SeclabelRestore | FdAssociateFlags.SeclabelWritable, FdAssociateFunction);
            if (fds.Count == 0)
            {
                // libvirt's public API checks this (virCheckNonZeroArgGoto) before any driver.
                throw new EngineException(EngineErrorReason.NoFileDescriptors, "nfds in virDomainFDAssociate must not be zero");
            }
        }
        catch
        {
            group.Dispose();
            throw;
        }

        FdGroup? replaced;
        lock (_fdGroupsLock)
        {
            _fdGroups.Remove(name, out replaced);
            _fdGroups[name] = group;
        }

        replaced?.Dispose();
    }

    /// <summary>Closes the groups <paramref name="owner"/> associated (libvirt: when its connection closes).</summary>
    public void ReleaseFdGroups(object owner)
    {
        ArgumentNullException.ThrowIfNull(owner);
        List<FdGroup> released = [];
        lock (_fdGroupsLock)
        {
            foreach (var (name, group) in _fdGroups.Where(g => g.Value.Owner == owner).ToList())
            {
                _fdGroups.Remove(name);
                released.Add(group);
            }
        }

        foreach (var group in released)
        {
            group.Dispose();
        }
    }

    /// <summary>The names of the associated groups, in name order.</summary>
    public IReadOnlyList<string> FdGroupNames()
    {
        lock (_fdGroupsLock)
        {
            return [.. _fdGroups.Keys.Order(StringComparer.Ordinal)];
        }
    }

    /// <summary>Closes every group (the domain is forgotten or the host disposed).</summary>
    internal void CloseFdGroups()
    {
        List<FdGroup> closed;
        lock (_fdGroupsLock)
        {
            closed = [.. _fdGroups.Values];
            _fdGroups.Clear();
        }

        foreach (var group in closed)
        {
            group.Dispose();
        }
    }

    /// <summary>
    /// The pull server's socket for <c>transport='fd'</c> (spec §6.7 step 12): a duplicate of the
    /// group's one descriptor, which the job's server owns and closes; the group keeps its own.
    /// </summary>
    /// <exception cref="BackupJobException">No such group; a group of more than one descriptor; a descriptor that cannot be duplicated.</exception>
    private Socket DuplicateServerSocket(string name)
    {
        lock (_fdGroupsLock)
        {
            if (!_fdGroups.TryGetValue(name, out var group))
            {
                throw new BackupJobException(BackupErrorReason.UnusableFdGroup, $"file descriptor group '{name}' was not associated with the domain");
            }

            if (group.Fds.Count != 1)
            {
                throw new BackupJobException(BackupErrorReason.UnusableFdGroup, $"file descriptor group '{name}' must contain only 1 file descriptor for NBD server");
            }

            var fd = FileDescriptor.Duplicate(group.Fds[0]);
            if (fd < 0)
            {
                throw new BackupJobException(BackupErrorReason.ServerFailed, $"cannot duplicate the descriptor of file descriptor group '{name}': {Marshal.GetLastPInvokeErrorMessage()}");
            }

            return new Socket(new SafeSocketHandle(fd, ownsHandle: true));
        }
    }

    private sealed class FdGroup(IReadOnlyList<SafeHandle> fds, object? owner) : IDisposable
    {
        public IReadOnlyList<SafeHandle> Fds => fds;

        public object? Owner => owner;

        public void Dispose()
        {
            foreach (var fd in fds)
            {
                fd.Dispose();
            }
        }
    }

    private static class FileDescriptor
    {
        private const int DuplicateWithCloseOnExec = 1030; // F_DUPFD_CLOEXEC

        /// <summary>A new descriptor for the same open file (close-on-exec), or -1 with errno set.</summary>
        public static int Duplicate(SafeHandle fd)
        {
            var added = false;
            try
            {
                fd.DangerousAddRef(ref added);
                return Fcntl((int)fd.DangerousGetHandle(), DuplicateWithCloseOnExec, 0);
            }
            finally
            {
                if (added)
                {
                    fd.DangerousRelease();
                }
            }
        }

        [DllImport("libc", EntryPoint = "fcntl", SetLastError = true)]
        private static extern int Fcntl(int fd, int command, int argument);
    }
}
