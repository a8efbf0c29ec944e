namespace Tidemark.Nbd;

/// <summary>The kinds of meta context Tidemark serves (formats.md §4.10).</summary>
public enum MetaContextKind
{
    /// <summary><c>base:allocation</c>: HOLE and ZERO flags from the image's extents.</summary>
    BaseAllocation,

    /// <summary><c>qemu:allocation-depth</c>: the backing-chain layer as a value.</summary>
    AllocationDepth,

    /// <summary><c>qemu:dirty-bitmap:NAME</c>: DIRTY flag from a dirty-bitmap source.</summary>
    DirtyBitmap,
}

/// <summary>One meta context an export offers, with the id the server gives it.</summary>
/// <param name="Id">
/// The transient id sent in REP_META_CONTEXT and BLOCK_STATUS chunks. Tidemark numbers as QEMU
/// does: base:allocation 0, qemu:allocation-depth 1, dirty bitmap i 2 + i. Clients must not rely on it.
/// </param>
public sealed record MetaContext(uint Id, string Name, MetaContextKind Kind, IDirtyBitmapSource? Bitmap)
{
    /// <summary>The <c>base:allocation</c> context name.</summary>
    public const string BaseAllocationName = "base:allocation";

    /// <summary>The <c>qemu:allocation-depth</c> context name.</summary>
    public const string AllocationDepthName = "qemu:allocation-depth";

    /// <summary>The prefix of dirty-bitmap contexts; the bitmap name follows.</summary>
    public const string DirtyBitmapPrefix = "qemu:dirty-bitmap:";

    /// <summary>Every context <paramref name="export"/> offers, in id order.</summary>
    public static IReadOnlyList<MetaContext> Offered(NbdExport export)
    {
        ArgumentNullException.ThrowIfNull(export);
        var contexts = new List<MetaContext>(2 + export.DirtyBitmaps.Count)
        {
            new(0, BaseAllocationName, MetaContextKind.BaseAllocation, null),
        };
        if (export.AllocationDepth)
        {
            contexts.Add(new(1, AllocationDepthName, MetaContextKind.AllocationDepth, null));
        }

        for (var i = 0; i < export.DirtyBitmaps.Count; i++)
        {
            var bitmap = export.DirtyBitmaps[i];
            contexts.Add(new((uint)(2 + i), DirtyBitmapPrefix + bitmap.Name, MetaContextKind.DirtyBitmap, bitmap));
        }

        return contexts;
    }

    /// <summary>
    /// The contexts of <paramref name="export"/> that <paramref name="queries"/> select, each
    /// once, in id order. For LIST (<paramref name="listing"/> true) no query means every context,
    /// and the namespace queries <c>base:</c>, <c>qemu:</c> and <c>qemu:dirty-bitmap:</c> act as
    /// wildcards; for SET only exact names select, and anything unknown selects nothing, silently
    /// (formats.md §4.10, as qemu 7.2 answers).
    /// </summary>
    public static IReadOnlyList<MetaContext> Select(NbdExport export, IReadOnlyList<string> queries, bool listing)
    {
        ArgumentNullException.ThrowIfNull(queries);
        var offered = Offered(export);
        if (listing && queries.Count == 0)
        {
            return offered;
        }

        var selected = new List<MetaContext>();
        foreach (var context in offered)
        {
            foreach (var query in queries)
            {
                if (Matches(context.Name, query, listing))
                {
                    selected.Add(context);
                    break;
                }
            }
        }

        return selected;
    }

    private static bool Matches(string name, string query, bool listing)
    {
        if (string.Equals(name, query, StringComparison.Ordinal))
        {
            return true;
        }

        if (!listing)
        {
            return false;
        }

        // Namespace-wide queries (proto.md "leaf-name may be empty" for LIST).
        return query switch
        {
            "base:" => name.StartsWith("base:", StringComparison.Ordinal),
            "qemu:" => name.StartsWith("qemu:", StringComparison.Ordinal),
            DirtyBitmapPrefix => name.StartsWith(DirtyBitmapPrefix, StringComparison.Ordinal),
            _ => false,
        };
    }
}
