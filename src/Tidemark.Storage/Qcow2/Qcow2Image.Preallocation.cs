namespace Tidemark.Storage.Qcow2;

public sealed partial class Qcow2Image
{
    /// <summary>
    /// Whether this open image looks metadata-preallocated; null until the first extent query.
    /// Only then are data clusters checked against the host file's holes.
    /// </summary>
    /// <remarks>
    /// QEMU's qcow2_co_block_status decides this once per open image, at its first block-status
    /// call (metadata_preallocation_checked), and asks the file under a data cluster
    /// (BDRV_BLOCK_RECURSE) only when it is set: otherwise a cluster written in part reports as
    /// data throughout, whatever holes the file system keeps inside it.
    /// </remarks>
    private bool? _metadataPreallocated;

    /// <summary>
    /// QEMU's qcow2_detect_metadata_preallocation (block/qcow2-refcount.c): the image is taken as
    /// metadata-preallocated when the clusters in use by refcount reach
    /// <c>MAX(real_clusters * 10 / 9, real_clusters + 2)</c>, where real_clusters is what the
    /// file system has allocated for the file (st_blocks * 512) in whole clusters. Counting stops
    /// at the threshold and covers the clusters up to the file's length. An error gives false,
    /// as QEMU's <c>ret == 1</c> test does. Called with <see cref="_lock"/> held.
    /// </summary>
    private async ValueTask DetectMetadataPreallocationAsync(CancellationToken cancellationToken)
    {
        if (_metadataPreallocated is not null)
        {
            return;
        }

        bool detected;
        try
        {
            var fileLength = _file.Length;
            var realClusters = _file.AllocatedBytes() / _header.ClusterSize;
            var threshold = Math.Max(realClusters * 10 / 9, realClusters + 2);
            var endCluster = (fileLength + _header.ClusterSize - 1) >> _header.ClusterBits;
            detected = await _refcounts.CountInUseAsync(endCluster, threshold, cancellationToken).ConfigureAwait(false) >= threshold;
        }
        catch (Exception e) when (e is IOException or StorageException)
        {
            detected = false;
        }

        _metadataPreallocated = detected;
    }
}
