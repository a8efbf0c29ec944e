using System.Globalization;
using System.Xml.Linq;
using Microsoft.Extensions.Logging;
using Tidemark.Engine.Disks;
using Tidemark.Formats.Domains;
using Tidemark.Storage;

namespace Tidemark.Engine.Domains;

/// <summary>
/// Device update (virDomainUpdateDeviceFlags: virsh update-device and change-media): the media
/// of a running CD-ROM or floppy drive is inserted, ejected or swapped, and a persistent
/// definition's disk is replaced whole. A running drive's change is its tray opening and
/// closing: the old media's export goes (its guests' connections end), the new media is opened
/// and served under the same name. The checks and their words are libvirt's
/// (qemuDomainUpdateDeviceFlags, qemuDomainChangeDiskLive, qemuDomainUpdateDeviceConfig).
/// </summary>
public sealed partial class Domain
{
    /// <summary>
    /// Updates the device <paramref name="deviceXml"/> describes in the running domain
    /// (<see cref="DeviceModifyFlags.Live"/>: only a removable drive's media may change), in the
    /// persistent definition (<see cref="DeviceModifyFlags.Config"/>: the disk of the same
    /// target is replaced), or both; the persistent definition is saved only once the running
    /// domain took the change.
    /// </summary>
    /// <param name="trayMoved">
    /// Called with the drive's alias when its tray opened and closed again, for the tray-change
    /// events; also when the new media then failed to open (the old is back in the drive).
    /// </param>
    /// <exception cref="Formats.DocumentException">The XML is malformed or the disk breaks the schema.</exception>
    /// <exception cref="EngineException">
    /// Unknown flags; "domain is not running"; "transient domains do not have any persistent
    /// config"; a device other than a disk; no such disk; a field a running disk cannot change;
    /// a new source for a drive that is not removable; the drive in the running backup job; new
    /// media that cannot be reached or opened.
    /// </exception>
    public async Task UpdateDeviceAsync(string deviceXml, DeviceModifyFlags flags, Action<string>? trayMoved = null, CancellationToken cancellationToken = default)
    {
        Flags.Check(flags, DeviceModifyFlags.Live | DeviceModifyFlags.Config | DeviceModifyFlags.Force, "qemuDomainUpdateDeviceFlags");
        var device = DiskDefaults.Apply(ParseDevice(deviceXml, cancellationToken));
        using var held = await LockAsync(cancellationToken).ConfigureAwait(false);

        // FORCE lets QEMU open a tray the guest has locked; no Tidemark guest can lock one.
        var (live, config) = Impact(flags & ~DeviceModifyFlags.Force, null, "update");
        CheckUpdatedKind(device, live);

        var target = device.Element("target")?.Attribute("dev")?.Value
            ?? throw new EngineException(EngineErrorReason.DeviceMissing, "disk has no target");

        // libvirt parses the device against the domain first, and refuses a controller there.
        DomainDisks.CheckController(Definition, device);
        DomainDisks.CheckSharedAccess(device);
        DomainDisks.CheckFrontend(device);
        TransientDisks.Check(device);
        DomainDefinition? persistent = null;
        if (config)
        {
            var current = _nextDefinition ?? Definition;
            if (DomainDisks.ElementOf(current.Element, target) is null)
            {
                throw new EngineException(EngineErrorReason.InvalidDiskPath, $"target {target} doesn't exist.");
            }

            persistent = WithDisk(current, target, new XElement(device));
        }

        if (live)
        {
            await ChangeLiveDiskAsync(device, target, trayMoved, cancellationToken).ConfigureAwait(false);
        }

        if (persistent is not null)
        {
            await SavePersistentAsync(persistent, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Only disks are updated. An interface none of the domain's matches gets libvirt's words
    /// for it (virDomainNetFindIdx), since the lookup comes before anything else there.
    /// </summary>
    private void CheckUpdatedKind(XElement device, bool live)
    {
        var kind = device.Name.LocalName;
        if (kind == "interface")
        {
            var mac = device.Element("mac")?.Attribute("address")?.Value?.ToLowerInvariant();
            var alias = device.Element("alias")?.Attribute("name")?.Value;
            var address = PciAddress(device.Element("address"));
            var known = Definition.Element.Element("devices")?.Elements("interface")
                .Any(i => mac is null || string.Equals(i.Element("mac")?.Attribute("address")?.Value, mac, StringComparison.OrdinalIgnoreCase)) == true;
            if (!known)
            {
                throw new EngineException(EngineErrorReason.DeviceMissing, $"no device found at address '{address ?? "(<null>)"}' matching MAC address '{mac ?? "(<null>)"}' and alias '{alias ?? "(<null>)"}'");
            }
        }

        if (kind != "disk")
        {
            throw new EngineException(EngineErrorReason.DeviceUnsupported, $"{(live ? "live" : "persistent")} update of device '{kind}' is not supported");
        }
    }

    /// <summary>virPCIDeviceAddressAsString: "dddd:bb:ss.f", for a PCI address only.</summary>
    private static string? PciAddress(XElement? address)
    {
        if (address?.Attribute("type")?.Value != "pci")
        {
            return null;
        }

        static int Part(XElement a, string name) => a.Attribute(name)?.Value is { } v
            ? int.Parse(v.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? v[2..] : v, v.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? NumberStyles.HexNumber : NumberStyles.Integer, CultureInfo.InvariantCulture)
            : 0;
        return string.Create(CultureInfo.InvariantCulture, $"{Part(address, "domain"):x4}:{Part(address, "bus"):x2}:{Part(address, "slot"):x2}.{Part(address, "function")}");
    }

    /// <summary>qemuDomainChangeDiskLive, under the domain's lock.</summary>
    private async Task ChangeLiveDiskAsync(XElement updated, string target, Action<string>? trayMoved, CancellationToken cancellationToken)
    {
        var current = DomainDisks.ElementOf(Definition.Element, target)
            ?? throw new EngineException(EngineErrorReason.UpdatedDiskMissing, $"disk '{target}' not found");
        if (LiveDiskUpdate.FixedFieldChanged(updated, current) is { } field)
        {
            throw new EngineException(EngineErrorReason.FixedDiskField, $"cannot modify field '{field}' of the disk");
        }

        if (LiveDiskUpdate.SameLocation(updated, current))
        {
            // libvirt then takes only the startup policy, which Tidemark's drives do not use.
            return;
        }

        if (current.Attribute("device")?.Value is not ("cdrom" or "floppy"))
        {
            throw new EngineException(EngineErrorReason.MediaNotRemovable, "disk source can be changed only in removable drives");
        }

        if (Backup is { } backup && backup.Targets.Contains(target))
        {
            throw new EngineException(EngineErrorReason.DeviceUnsupported, $"disk '{target}' already in active block job");
        }

        var changed = WithDisk(Definition, target, LiveDiskUpdate.WithMediaOf(current, updated));
        var media = changed.DiskByTarget(target)!;
        if (!media.IsEmpty)
        {
            CheckReachable(media.SourcePath!);
        }

        var running = Running!;
        var alias = DiskAliases.Of(Definition, target);
        if (IsPersistent)
        {
            _nextDefinition ??= Definition;
        }

        // The tray opens: the old media leaves the guest.
        var old = running.DiskByTarget(target);
        if (old is not null)
        {
            try
            {
                await running.DetachDiskAsync(old).ConfigureAwait(false);
            }
            catch (EngineException e)
            {
                Logger.LogError("domain {Domain}: {Error}", Name, e.Message);
            }
        }

        var before = Definition;
        Definition = WithDisk(Definition, target, LiveDiskUpdate.WithMediaOf(current, new XElement("disk")));
        try
        {
            if (!media.IsEmpty)
            {
                var attached = await running.AttachDiskAsync(media, cancellationToken).ConfigureAwait(false);
                Nodes.Add(target, BitmapChain.Layers(attached.LiveImage).Count);
            }
            else
            {
                // libvirt gives the empty source a node of its own.
                Nodes.Eject(target);
            }

            Definition = changed;
            Logger.LogInformation("domain {Domain}: media of {Target} changed ({Old} to {New})", Name, target, old?.Definition.SourcePath ?? "none", media.SourcePath ?? "none");
        }
        catch (EngineException e)
        {
            // libvirt numbered the new node before QEMU refused it.
            Nodes.Skip();
            await PutBackAsync(running, old, before, target).ConfigureAwait(false);
            if (e.Reason == EngineErrorReason.ImageLocked)
            {
                var lockText = LockConflict.QemuWords(e.Message, e.Detail);
                throw new EngineException(EngineErrorReason.MonitorCommandFailed, $"unable to execute QEMU command 'blockdev-add': {lockText}", e);
            }

            throw;
        }
        finally
        {
            if (alias is not null)
            {
                trayMoved?.Invoke(alias);
            }
        }
    }

    /// <summary>
    /// The old media goes back into the drive after the new failed to open, so the guest keeps
    /// what it had (libvirt leaves the drive empty in QEMU while its XML still names the old
    /// source). When even that fails, the drive is shown empty, as it is.
    /// </summary>
    private async Task PutBackAsync(RunningDomain running, RunningDisk? old, DomainDefinition before, string target)
    {
        if (old is null)
        {
            return;
        }

        try
        {
            await running.AttachDiskAsync(old.Definition, CancellationToken.None).ConfigureAwait(false);
            Definition = before;
        }
        catch (EngineException e)
        {
            Logger.LogError("domain {Domain}: the media of {Target} could not be put back, the drive is empty: {Error}", Name, target, e.Message);
        }
    }

    /// <summary>libvirt's look at new media before QEMU is asked (qemuDomainDetermineDiskChain): "Cannot access storage file '%s': strerror".</summary>
    private static void CheckReachable(string path)
    {
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new EngineException(EngineErrorReason.ImageInaccessible, $"Cannot access storage file '{path}': {HostErrno.Describe(e)}", e);
        }
    }

    /// <summary>The definition with the disk of <paramref name="target"/> replaced by <paramref name="disk"/>, validated as a whole.</summary>
    private static DomainDefinition WithDisk(DomainDefinition definition, string target, XElement disk)
    {
        var element = new XElement(definition.Element);
        DomainDisks.ElementOf(element, target)!.ReplaceWith(disk);
        return DomainParser.Parse(element);
    }
}
