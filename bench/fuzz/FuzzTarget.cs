namespace Tidemark.Fuzz;

/// <summary>
/// One input format fed to one parser. An input the parser refuses with its own exception
/// family is a pass; any other exception, or a warning logged for an unexpected failure, is
/// a finding (afl-fuzz records it as a crash).
/// </summary>
internal abstract class FuzzTarget
{
    /// <summary>The targets by the names <c>bench/fuzz/run</c> takes.</summary>
    public static IReadOnlyDictionary<string, Func<FuzzTarget>> All { get; } = new Dictionary<string, Func<FuzzTarget>>(StringComparer.Ordinal)
    {
        ["documents"] = () => new DocumentTarget(),
        ["nbd-requests"] = () => new NbdRequestTarget(),
        ["qcow2"] = () => new Qcow2ImageTarget(),
        ["remote"] = () => new RemoteCallTarget(),
    };

    /// <summary>Runs one input to its end.</summary>
    public abstract void Run(byte[] input);
}
