using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace Tidemark.Formats.Xml;

/// <summary>
/// The data types of libvirt's schemas that these documents use (<c>basictypes.rng</c>,
/// <c>domaincommon.rng</c>, <c>domaincheckpoint.rng</c>). An XSD pattern matches the whole value
/// and its <c>.</c> excludes CR and LF; libxml2 applies patterns to the raw value (no whitespace
/// collapsing, checked with xmllint 2.9.14), so <c>' 12 '</c> is not an unsignedInt.
/// </summary>
internal static partial class SchemaTypes
{
    /// <summary>
    /// RELAX NG's <c>token</c> normalisation, which the schemas' <c>&lt;value&gt;</c> choices apply
    /// before comparing: trim, and collapse inner runs of whitespace.
    /// </summary>
    public static string Token(string value)
        => string.Join(' ', value.Split([' ', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries));

    /// <summary><c>checkpointName</c>: no leading dot, no slash, no whitespace.</summary>
    public static bool IsCheckpointName(string value) => CheckpointNamePattern().IsMatch(value);

    /// <summary><c>diskTargetDev</c>: <c>vda</c>, <c>sdb</c>, <c>hdc</c>, …</summary>
    public static bool IsDiskTargetDev(string value) => DiskTargetDevPattern().IsMatch(value);

    /// <summary><c>absFilePath</c>: a slash (or a drive letter) and at least one more character.</summary>
    public static bool IsAbsFilePath(string value) => AbsFilePathPattern().IsMatch(value);

    /// <summary><c>unsignedInt</c>: digits only, at most 4294967295.</summary>
    public static bool IsUnsignedInt(string value)
        => DigitsPattern().IsMatch(value) && uint.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out _);

    /// <summary><c>unsignedLong</c>: digits only, at most 18446744073709551615.</summary>
    public static bool IsUnsignedLong(string value)
        => DigitsPattern().IsMatch(value) && ulong.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out _);

    /// <summary><c>unit</c> of a <c>scaledInteger</c>: b, bytes, k, KiB, KB, M, … E, any case.</summary>
    public static bool IsUnit(string value) => UnitPattern().IsMatch(value);

    /// <summary><c>UUID</c>: 32 hex digits, bare or in the 8-4-4-4-12 form.</summary>
    public static bool IsUuid(string value) => UuidPattern().IsMatch(value);

    /// <summary><c>dnsName</c> or <c>ipAddr</c> (IPv4 dotted quad or IPv6).</summary>
    public static bool IsHostName(string value)
        => DnsNamePattern().IsMatch(value)
           || (value.Contains(':', StringComparison.Ordinal) && !value.Contains('%', StringComparison.Ordinal)
               && IPAddress.TryParse(value, out var address) && address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6);

    /// <summary><c>objectNameWithSlash</c> (a domain name): one line, not empty.</summary>
    public static bool IsDomainName(string value) => value.Length > 0 && value.IndexOfAny(['\n', '\r']) < 0;

    /// <summary><c>genericName</c>, e.g. a driver name.</summary>
    public static bool IsGenericName(string value) => GenericNamePattern().IsMatch(value);

    [GeneratedRegex(@"^[a-zA-Z0-9_+\-]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex GenericNamePattern();

    [GeneratedRegex(@"^[a-zA-Z0-9_\-][a-zA-Z0-9_\-.]*\z", RegexOptions.CultureInvariant)]
    private static partial Regex CheckpointNamePattern();

    [GeneratedRegex(@"^(ioemu:)?(fd|hd|sd|vd|xvd|ubd)[a-zA-Z0-9_]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex DiskTargetDevPattern();

    [GeneratedRegex(@"^(/|[a-zA-Z]:\\)[^\r\n]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex AbsFilePathPattern();

    [GeneratedRegex(@"^(([bB]([yY][tT][eE][sS]?)?)|([kKmMgGtTpPeE]([iI]?[bB])?))\z", RegexOptions.CultureInvariant)]
    private static partial Regex UnitPattern();

    [GeneratedRegex(@"^[0-9]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex DigitsPattern();

    [GeneratedRegex(@"^([a-fA-F0-9]{32}|[a-fA-F0-9]{8}-([a-fA-F0-9]{4}-){3}[a-fA-F0-9]{12})\z", RegexOptions.CultureInvariant)]
    private static partial Regex UuidPattern();

    [GeneratedRegex(@"^[a-zA-Z0-9.\-]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex DnsNamePattern();
}
