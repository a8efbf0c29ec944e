using System.Xml.Linq;
using Microsoft.Extensions.Logging;
using Tidemark.Engine.Disks;
using Tidemark.Engine.State;
using Tidemark.Formats;
using Tidemark.Formats.Domains;
using Tidemark.Formats.Xml;

namespace Tidemark.Engine.Domains;

/// <summary>
/// Disk hotplug (virDomainAttachDeviceFlags, virDomainDetachDeviceFlags): a disk added to the
/// running domain is opened and served as one more export at once; one removed has its
/// connections ended, its image flushed and closed, its bitmaps stored. No guest has to
/// acknowledge anything, unlike QEMU's PCI unplug. A disk added after checkpoints has no
/// bitmap for them, so an incremental backup from one of them names it as broken (libvirt's
/// behaviour): it needs a full. The checks and their words are libvirt's.
/// </summary>
public sealed partial class Domain
{
    /// <summary>
    /// Adds the <c>&lt;disk&gt;</c> in <paramref name="deviceXml"/> to the running domain
    /// (<see cref="DeviceModifyFlags.Live"/>), to the persistent definition
    /// (<see cref="DeviceModifyFlags.Config"/>), or to both.
    /// </summary>
    /// <returns>The disk's alias (<see cref="DiskAliases"/>) when it joined the running domain, for the device-added event; null for the definition alone.</returns>
    /// <exception cref="DocumentException">The XML is malformed or the disk breaks the schema.</exception>
    /// <exception cref="EngineException">Unknown flags; "domain is not running"; "transient domains do not have any persistent config"; another device than a disk; the target taken; the image cannot be opened.</exception>
    public async Task<string?> AttachDeviceAsync(string deviceXml, DeviceModifyFlags flags, CancellationToken cancellationToken = default)
    {
        Flags.Check(flags, DeviceModifyFlags.Live | DeviceModifyFlags.Config, "qemuDomainAttachDeviceFlags");
        var device = DiskDefaults.Apply(ParseDevice(deviceXml, cancellationToken));
        using var held = await LockAsync(cancellationToken).ConfigureAwait(false);
        var (live, config) = Impact(flags, device, "attach");
        DomainDisks.CheckController(_nextDefinition ?? Definition, device);
        DomainDisks.CheckSharedAccess(device);
        DomainDisks.CheckFrontend(device);
        TransientDisks.Check(device);

        // As qemuDomainAttachDeviceFlags: the persistent copy first (so a refusal there changes
        // nothing), then the running domain, then the persistent definition is saved.
        DomainDefinition? persistent = null;
        string? alias = null;
        if (config)
        {
            var current = _nextDefinition ?? Definition;
            persistent = WithDevice(current, device);
            var target = AddedTarget(device);
            if (current.DiskByTarget(target) is not null)
            {
                throw new EngineException(EngineErrorReason.DiskTargetExists, $"target {target} already exists");
            }
        }

        if (live)
        {
            DomainDisks.Check(WithDevice(Definition, device));

            // A transient disk joins with its overlay, as at a start (TransientDisks).
            var liveDevice = device;
            string? overlay = null;
            if (device.Element("transient") is not null && !DomainParser.ParseDisk(device).IsEmpty)
            {
                liveDevice = new XElement(device);
                overlay = await TransientDisks.AddOverlayAsync(liveDevice, Name, cancellationToken).ConfigureAwait(false);
            }

            var running = WithDevice(Definition, liveDevice);
            var disk = running.DiskByTarget(AddedTarget(device))!;
            if (!disk.IsEmpty)
            {
                try
                {
                    var attached = await Running!.AttachDiskAsync(disk, cancellationToken).ConfigureAwait(false);
                    Nodes.Add(disk.TargetDev, BitmapChain.Layers(attached.LiveImage).Count);
                }
                catch (EngineException e) when (e.Reason == EngineErrorReason.ImageLocked)
                {
                    DeleteOverlay(overlay);

                    // QEMU refuses the node it is asked to add; libvirt passes its words on.
                    var lockText = LockConflict.QemuWords(e.Message, e.Detail);
                    throw new EngineException(EngineErrorReason.MonitorCommandFailed, $"unable to execute QEMU command 'blockdev-add': {lockText}", e);
                }
                catch
                {
                    DeleteOverlay(overlay);
                    throw;
                }
            }

            if (IsPersistent)
            {
                _nextDefinition ??= Definition;
            }

            Definition = running;
            alias = DiskAliases.Of(running, disk.TargetDev);
            Logger.LogInformation("domain {Domain}: disk {Target} attached ({Source})", Name, disk.TargetDev, disk.SourcePath);
        }

        if (persistent is not null)
        {
            await SavePersistentAsync(persistent, cancellationToken).ConfigureAwait(false);
        }

        return alias;
    }

    private static void DeleteOverlay(string? path)
    {
        if (path is not null)
        {
            TransientDisks.TryDelete(path);
        }
    }

    /// <summary>
    /// Removes the disk whose target the <c>&lt;disk&gt;</c> in <paramref name="deviceXml"/>
    /// names (virsh detach-disk passes the domain's own element) from the running domain, the
    /// persistent definition, or both.
    /// </summary>
    /// <returns>The disk's alias when it left the running domain, for the device-removed event; null for the definition alone.</returns>
    /// <exception cref="DocumentException">The XML is malformed.</exception>
    /// <exception cref="EngineException">Unknown flags; "domain is not running"; "transient domains do not have any persistent config"; no such disk; the disk is in the running backup job.</exception>
    public async Task<string?> DetachDeviceAsync(string deviceXml, DeviceModifyFlags flags, CancellationToken cancellationToken = default)
    {
        Flags.Check(flags, DeviceModifyFlags.Live | DeviceModifyFlags.Config, "qemuDomainDetachDeviceFlags");
        var device = ParseDevice(deviceXml, cancellationToken);
        using var held = await LockAsync(cancellationToken).ConfigureAwait(false);
        var (live, config) = Impact(flags, device, "detach");

        var target = device.Element("target")?.Attribute("dev")?.Value
            ?? throw new EngineException(EngineErrorReason.DeviceMissing, "disk has no target");
        return await DetachDiskLockedAsync(target, live, config, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// virDomainDetachDeviceAlias: removes the disk whose alias is <paramref name="alias"/> from
    /// the running domain (its aliases: <see cref="DiskAliases"/>), the persistent definition
    /// (where only a user's own alias names a disk), or both. The removal is done when this
    /// returns; libvirt's returns once QEMU was asked.
    /// </summary>
    /// <returns>The alias when the disk left the running domain, for the device-removed event; null for the definition alone.</returns>
    /// <exception cref="EngineException">Unknown flags; "domain is not running"; "transient domains do not have any persistent config"; "no device found with alias %s"; the disk is in the running backup job.</exception>
    public async Task<string?> DetachDeviceAliasAsync(string alias, DeviceModifyFlags flags, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(alias);
        Flags.Check(flags, DeviceModifyFlags.Live | DeviceModifyFlags.Config, "qemuDomainDetachDeviceAlias");
        using var held = await LockAsync(cancellationToken).ConfigureAwait(false);
        var (live, config) = Impact(flags, null, "detach");
        string? target = null;
        if (live)
        {
            target = DiskAliases.TargetOf(Definition, alias) ?? throw NoDeviceWithAlias(alias);
        }

        if (config)
        {
            // A persistent definition holds no aliases but its user's own.
            var own = (_nextDefinition ?? Definition).Element.Element("devices")?.Elements("disk")
                .FirstOrDefault(d => d.Element("alias")?.Attribute("name")?.Value == alias)?.Element("target")?.Attribute("dev")?.Value;
            if (own is null || (target is not null && own != target))
            {
                throw NoDeviceWithAlias(alias);
            }

            target = own;
        }

        return await DetachDiskLockedAsync(target!, live, config, cancellationToken).ConfigureAwait(false);
    }

    private static EngineException NoDeviceWithAlias(string alias) => new(EngineErrorReason.NoDeviceWithAlias, $"no device found with alias {alias}");

    /// <summary>Detach's work once the disk is known by <paramref name="target"/>; under the domain's lock.</summary>
    private async Task<string?> DetachDiskLockedAsync(string target, bool live, bool config, CancellationToken cancellationToken)
    {
        DomainDefinition? persistent = null;
        string? alias = null;
        if (config)
        {
            var current = _nextDefinition ?? Definition;
            if (current.DiskByTarget(target) is null)
            {
                throw new EngineException(EngineErrorReason.DeviceMissing, $"no target device {target}");
            }

            persistent = WithoutDisk(current, target);
        }

        if (live)
        {
            if (Definition.DiskByTarget(target) is not { } defined)
            {
                throw new EngineException(EngineErrorReason.DeviceMissing, $"disk {target} not found");
            }

            // qemuDomainDetachPrepDisk: a removable drive stays; its media is what changes.
            if (defined.Device is DiskDevice.Cdrom or DiskDevice.Floppy)
            {
                throw new EngineException(EngineErrorReason.NotDetachable, $"disk device type '{DomainDiskNames.Of(defined.Device)}' cannot be detached");
            }

            if (Backup is { } backup && backup.Targets.Contains(target))
            {
                throw new EngineException(EngineErrorReason.DeviceUnsupported, $"disk '{target}' already in active block job");
            }

            var running = WithoutDisk(Definition, target);
            if (IsPersistent)
            {
                _nextDefinition ??= Definition;
            }

            var old = Definition;
            alias = DiskAliases.Of(old, target);
            Definition = running;
            Nodes.Remove(target);
            if (Running!.DiskByTarget(target) is { } disk)
            {
                try
                {
                    await Running.DetachDiskAsync(disk).ConfigureAwait(false);
                }
                catch (EngineException e)
                {
                    // It is gone from the guest all the same; its bitmaps stay IN_USE (broken).
                    Logger.LogError("domain {Domain}: {Error}", Name, e.Message);
                }

                // A transient disk's writes go with it (libvirt's qemuDomainRemoveDiskDevice).
                if (TransientDisks.Targets(old).Contains(target))
                {
                    DeleteOverlay(disk.Definition.SourcePath);
                }
            }

            Logger.LogInformation("domain {Domain}: disk {Target} detached ({Source})", Name, target, old.DiskByTarget(target)?.SourcePath);
        }

        if (persistent is not null)
        {
            await SavePersistentAsync(persistent, cancellationToken).ConfigureAwait(false);
        }

        return alias;
    }

    /// <summary>
    /// Resizes a running disk's top image to <paramref name="size"/> bytes (virDomainBlockResize):
    /// the guest's requests are held for the moment it takes (the domain does not read as
    /// paused), the checkpoints' bitmaps are resized with the image (the new area clean, as
    /// QEMU resizes them), and the NBD export shows the new size to the connections made
    /// afterwards. A qcow2 size is rounded up to whole sectors, as libvirt rounds it.
    /// </summary>
    /// <exception cref="EngineException">"domain is not running"; no such disk; the disk is in the running backup job; the image cannot take the size.</exception>
    public async Task ResizeDiskAsync(string disk, long size, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(disk);
        using var held = await LockAsync(cancellationToken).ConfigureAwait(false);
        var running = Running ?? throw NotRunning();
        var defined = Definition.DiskByName(disk)
            ?? throw new EngineException(EngineErrorReason.InvalidDiskPath, $"disk '{disk}' was not found in the domain config");
        if (defined.IsEmpty || defined.ReadOnly)
        {
            throw new EngineException(EngineErrorReason.NotResizable, $"can't resize empty or readonly disk '{defined.TargetDev}'");
        }

        var target = running.DiskByTarget(defined.TargetDev)
            ?? throw new EngineException(EngineErrorReason.DiskNotServed, $"disk '{defined.TargetDev}' does not have an associated source");
        if (defined.Device == DiskDevice.Floppy && Nodes.Disks.TryGetValue(defined.TargetDev, out var indexes))
        {
            // QEMU's floppy device does not share the resize permission (blkconf_apply_backend_options).
            var node = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"libvirt-{indexes[0]}-format");
            throw new EngineException(EngineErrorReason.MonitorCommandFailed, $"unable to execute QEMU command 'block_resize': Permission conflict on node '{node}': permissions 'resize' are both required by an unnamed block device (uses node '{node}' as 'root' child) and unshared by block device '{DiskAliases.Of(Definition, defined.TargetDev)}' (uses node '{node}' as 'root' child).");
        }

        if (Backup is { } backup && backup.Targets.Contains(defined.TargetDev))
        {
            // QEMU's op blocker on a node a block job uses.
            throw new EngineException(EngineErrorReason.MonitorCommandFailed, $"unable to execute QEMU command 'block_resize': disk '{defined.TargetDev}' is in use by block job: backup");
        }

        if (target.Format == Storage.ImageFormat.Qcow2)
        {
            size = (size + 511) & ~511L;
        }

        using (await running.Gate.HoldAsync(cancellationToken).ConfigureAwait(false))
        {
            try
            {
                switch (target.LiveImage)
                {
                    case Storage.Qcow2.Qcow2Image qcow2:
                        await qcow2.ResizeAsync(size, cancellationToken).ConfigureAwait(false);
                        break;
                    case Storage.RawImage raw:
                        await raw.ResizeAsync(size, cancellationToken).ConfigureAwait(false);
                        break;
                    default:
                        throw new EngineException(EngineErrorReason.MonitorCommandFailed, $"unable to execute QEMU command 'block_resize': disk '{defined.TargetDev}' cannot be resized");
                }
            }
            catch (Storage.StorageException e)
            {
                throw new EngineException(EngineErrorReason.MonitorCommandFailed, $"unable to execute QEMU command 'block_resize': {e.Message}", e);
            }
        }

        Logger.LogInformation("domain {Domain}: disk {Target} resized to {Size} bytes", Name, defined.TargetDev, size);
    }

    /// <summary>
    /// virDomainObjUpdateModificationImpact (CURRENT means LIVE while running, CONFIG otherwise),
    /// then the device kind: only disks are attached or detached here.
    /// </summary>
    private (bool Live, bool Config) Impact(DeviceModifyFlags flags, XElement? device, string verb)
    {
        if (flags == DeviceModifyFlags.Current)
        {
            flags = Running is null ? DeviceModifyFlags.Config : DeviceModifyFlags.Live;
        }

        if (flags.HasFlag(DeviceModifyFlags.Live) && Running is null)
        {
            throw NotRunning();
        }

        if (flags.HasFlag(DeviceModifyFlags.Config) && !IsPersistent)
        {
            throw new EngineException(EngineErrorReason.TransientDomain, "transient domains do not have any persistent config");
        }

        var live = flags.HasFlag(DeviceModifyFlags.Live);
        if (device is not null && device.Name.LocalName != "disk")
        {
            throw new EngineException(EngineErrorReason.DeviceUnsupported, $"{(live ? "live" : "persistent")} {verb} of device '{device.Name.LocalName}' is not supported");
        }

        return (live, flags.HasFlag(DeviceModifyFlags.Config));
    }

    private async Task SavePersistentAsync(DomainDefinition persistent, CancellationToken cancellationToken)
    {
        try
        {
            await AtomicFile.WriteLibvirtFileAsync(Store.DomainFile(Name), EditWarning.Domain(Name, Uuid) + DomainFormatter.Format(persistent, DomainFormatFlags.Secure), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new EngineException(EngineErrorReason.StateWriteFailed, $"cannot save definition of domain '{Name}': {e.Message}", e);
        }

        if (Running is null)
        {
            Definition = persistent;
        }
        else
        {
            _nextDefinition = persistent;
        }
    }

    private static XElement ParseDevice(string deviceXml, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(deviceXml);
        return XmlDocumentLoader.Load(deviceXml, "(device_definition)", cancellationToken).Root!;
    }

    /// <summary>
    /// The definition with the disk <paramref name="device"/> added where libvirt's
    /// virDomainDiskInsert puts it: before the first disk on its bus whose name comes after its
    /// own, else after the last disk on its bus, else after every disk. Validated as a whole.
    /// </summary>
    private static DomainDefinition WithDevice(DomainDefinition definition, XElement device)
    {
        var element = new XElement(definition.Element);
        var devices = element.Element("devices");
        if (devices is null)
        {
            devices = new XElement("devices");
            element.Add(devices);
        }

        var disks = devices.Elements("disk").ToList();
        var added = new XElement(device);
        var (bus, index) = BusAndIndex(added);
        var sameBus = disks.Where(d => BusAndIndex(d).Bus == bus).ToList();
        if (sameBus.FirstOrDefault(d => BusAndIndex(d).Index > index) is { } after)
        {
            after.AddBeforeSelf(added);
        }
        else if ((sameBus.LastOrDefault() ?? disks.LastOrDefault()) is { } before)
        {
            before.AddAfterSelf(added);
        }
        else
        {
            devices.AddFirst(added);
        }

        return DomainParser.Parse(element);
    }

    /// <summary>The target of a disk the schema has accepted (<see cref="WithDevice"/>), which requires it.</summary>
    private static string AddedTarget(XElement device) => device.Element("target")!.Attribute("dev")!.Value;

    private static (string Bus, int Index) BusAndIndex(XElement disk)
    {
        var target = disk.Element("target");
        var dev = target?.Attribute("dev")?.Value ?? "";
        return (target?.Attribute("bus")?.Value ?? DiskAliases.DefaultBus(dev, disk.Attribute("device")?.Value), DiskAliases.NameToIndex(dev));
    }

    private static DomainDefinition WithoutDisk(DomainDefinition definition, string target)
    {
        var element = new XElement(definition.Element);
        DomainDisks.ElementOf(element, target)?.Remove();
        return DomainParser.Parse(element);
    }
}
