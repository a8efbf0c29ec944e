using System.CommandLine;
using System.Globalization;
using Tidemark.Remote;
using Tidemark.Remote.Client;
using Tidemark.Remote.Protocol;

namespace Tidemark.Cli.Commands.Virsh;

/// <summary>
/// One virsh command's run: its parsed line, its open connection, where it prints, and virsh's
/// lookups (a domain by id, UUID or name; a checkpoint by name).
/// </summary>
internal sealed class VirshSession(ParseResult result, LibvirtClient client, CliConsole console, CancellationToken cancellationToken)
{
    public ParseResult Result { get; } = result;

    public LibvirtClient Client { get; } = client;

    public CliConsole Console { get; } = console;

    public CancellationToken CancellationToken { get; } = cancellationToken;

    /// <summary>The process exit code when the command printed its output but did not succeed (an event loop that timed out).</summary>
    public int ExitCode { get; set; }

    /// <summary>
    /// virsh's domain lookup: a number is tried as an id, a UUID as a UUID, then the text as a
    /// name; when none matches, virsh's one line "failed to get domain 'X'".
    /// </summary>
    public async Task<RemoteDomain> DomainAsync(string text)
    {
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var id) && id >= 0)
        {
            try
            {
                return await Client.LookupDomainByIdAsync(id, CancellationToken).ConfigureAwait(false);
            }
            catch (LibvirtError e) when (e.Code == VirErrorNumber.NoDomain)
            {
            }
        }

        if (Guid.TryParse(text, out var uuid))
        {
            try
            {
                return await Client.LookupDomainByUuidAsync(uuid, CancellationToken).ConfigureAwait(false);
            }
            catch (LibvirtError e) when (e.Code == VirErrorNumber.NoDomain)
            {
            }
        }

        try
        {
            return await Client.LookupDomainByNameAsync(text, CancellationToken).ConfigureAwait(false);
        }
        catch (LibvirtError e) when (e.Code == VirErrorNumber.NoDomain)
        {
            throw new VirshException($"failed to get domain '{text}'");
        }
    }

    /// <summary>The domain named by <paramref name="parameter"/>.</summary>
    public Task<RemoteDomain> DomainAsync(VirshParameter parameter) => DomainAsync(parameter.Get(Result));

    /// <summary>The checkpoint named by <paramref name="parameter"/> of <paramref name="domain"/>.</summary>
    public Task<RemoteCheckpoint> CheckpointAsync(RemoteDomain domain, VirshParameter parameter) =>
        Client.LookupCheckpointByNameAsync(domain, parameter.Find(Result) ?? throw new VirshException($"--{parameter.Name} is required"), cancellationToken: CancellationToken);

    /// <summary>A file's text as virsh reads it (virFileReadAll), with its message on failure.</summary>
    public async Task<string> ReadFileAsync(string path)
    {
        try
        {
            return await File.ReadAllTextAsync(path, CancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var why = e switch
            {
                FileNotFoundException or DirectoryNotFoundException => "No such file or directory",
                UnauthorizedAccessException => "Permission denied",
                _ => e.Message,
            };
            throw new VirshException($"Failed to open file '{path}': {why}");
        }
    }

    /// <summary>The value of a flag option.</summary>
    public bool Has(Option<bool> option) => Result.GetValue(option);
}
