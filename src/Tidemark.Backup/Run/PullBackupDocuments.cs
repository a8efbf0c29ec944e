using System.Xml.Linq;
using Tidemark.Backup.Repository;

namespace Tidemark.Backup.Run;

/// <summary>
/// The two documents of virDomainBackupBegin for a pull backup, as libvirt 9.0 takes them
/// (checkpoint-backup.md §3.1, §2.1): the export on a unix socket, one scratch file per disk,
/// per-disk <c>backupmode</c>/<c>incremental</c> (each disk continues its own chain), export
/// names left to their default (the disk target) and the export bitmap to its default
/// (<c>backup-DISK</c>); the new checkpoint keeps a bitmap for exactly the disks backed up.
/// </summary>
internal static class PullBackupDocuments
{
    public static string BackupXml(string socket, string workDirectory, IReadOnlyList<DiskPlan> plans, IEnumerable<string> otherDisks)
    {
        var disks = new XElement("disks");
        foreach (var plan in plans)
        {
            var disk = new XElement("disk", new XAttribute("name", plan.Disk), new XAttribute("backup", "yes"), new XAttribute("type", "file"));
            if (plan.Level == BackupLevel.Incremental)
            {
                disk.Add(new XAttribute("backupmode", "incremental"), new XAttribute("incremental", plan.PreviousCheckpoint!));
            }
            else
            {
                disk.Add(new XAttribute("backupmode", "full"));
            }

            disk.Add(new XElement("scratch", new XAttribute("file", Path.Combine(workDirectory, plan.Disk + ".scratch"))));
            disks.Add(disk);
        }

        foreach (var other in otherDisks)
        {
            disks.Add(new XElement("disk", new XAttribute("name", other), new XAttribute("backup", "no")));
        }

        return new XElement(
            "domainbackup",
            new XAttribute("mode", "pull"),
            new XElement("server", new XAttribute("transport", "unix"), new XAttribute("socket", socket)),
            disks).ToString();
    }

    public static string CheckpointXml(string name, IReadOnlyList<DiskPlan> plans, IEnumerable<string> otherDisks) =>
        new XElement(
            "domaincheckpoint",
            new XElement("name", name),
            new XElement(
                "disks",
                plans.Select(p => new XElement("disk", new XAttribute("name", p.Disk), new XAttribute("checkpoint", "bitmap"))),
                otherDisks.Select(d => new XElement("disk", new XAttribute("name", d), new XAttribute("checkpoint", "no"))))).ToString();
}
