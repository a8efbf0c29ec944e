namespace Tidemark.Engine;

/// <summary>Checks of libvirt API flags, with libvirt's messages (spec §4.1, §4.2).</summary>
internal static class Flags
{
    /// <summary>libvirt's <c>virCheckFlags</c>: any bit outside <paramref name="known"/> is refused.</summary>
    /// <exception cref="EngineException">"unsupported flags (0x%x) in function %s".</exception>
    public static void Check<T>(T flags, T known, string function)
        where T : struct, Enum
    {
        var value = Convert.ToInt64(flags, System.Globalization.CultureInfo.InvariantCulture);
        var mask = Convert.ToInt64(known, System.Globalization.CultureInfo.InvariantCulture);
        if ((value & ~mask) != 0)
        {
            throw new EngineException(EngineErrorReason.UnsupportedFlags, $"unsupported flags (0x{value & ~mask:x}) in function {function}");
        }
    }

    /// <summary>libvirt's <c>VIR_EXCLUSIVE_FLAGS_RET</c>.</summary>
    /// <exception cref="EngineException">"Flags '%s' and '%s' are mutually exclusive".</exception>
    public static void Exclusive(bool first, string firstName, bool second, string secondName)
    {
        if (first && second)
        {
            throw new EngineException(EngineErrorReason.ConflictingFlags, $"Flags '{firstName}' and '{secondName}' are mutually exclusive");
        }
    }

    /// <summary>libvirt's <c>VIR_REQUIRE_FLAG_RET</c>.</summary>
    /// <exception cref="EngineException">"Flag '%s' is required by flag '%s'".</exception>
    public static void Requires(bool flag, string flagName, bool required, string requiredName)
    {
        if (flag && !required)
        {
            throw new EngineException(EngineErrorReason.ConflictingFlags, $"Flag '{requiredName}' is required by flag '{flagName}'");
        }
    }
}
