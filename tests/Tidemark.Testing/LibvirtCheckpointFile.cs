namespace Tidemark.Testing;

/// <summary>What libvirt's own checkpoint metadata files look like, for tests that hold Tidemark's to them.</summary>
public static class LibvirtCheckpointFile
{
    /// <summary>
    /// The comment libvirt writes above a checkpoint's metadata: virXMLEmitWarning
    /// (src/util/virxml.c) as qemuCheckpointWriteMetadata calls it, with command
    /// "checkpoint-edit" and no name (src/qemu/qemu_checkpoint.c). Copied from libvirt, not from
    /// the engine.
    /// </summary>
    public const string EditWarning = """
        <!--
        WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE
        OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:
          virsh checkpoint-edit
        or other application using the libvirt API.
        -->


        """;
}
