using System.CommandLine;
using Tidemark.Remote;
using Tidemark.Remote.Protocol;

namespace Tidemark.Cli.Commands.Virsh;

/// <summary>
/// Runs one virsh command as virsh runs it: connect, run, print the command's output and then
/// the empty line virsh ends every command with; on failure print the <c>error: …</c> lines,
/// still end with the empty line, and exit 1.
/// </summary>
internal static class VirshAction
{
    /// <summary>The connection URI, accepted before the verb (<c>tidemark -c URI list</c>) and after it.</summary>
    public static readonly Option<string?> RootConnect = NewConnect();

    private static Option<string?> NewConnect() => new("--connect", "-c") { Description = "The connection URI (default: $TIDEMARK_DEFAULT_URI, else the default daemon's socket)." };

    /// <summary>Sets <paramref name="command"/>'s action to <paramref name="body"/>, which returns what to print.</summary>
    public static void Set(Command command, CliConsole console, Func<VirshSession, Task<string>> body)
    {
        // The URI after the verb wins over one before it, as the later -c does with virsh.
        var connect = NewConnect();
        command.Options.Add(connect);
        command.SetAction((result, cancellationToken) => RunAsync(result, result.GetValue(connect) ?? result.GetValue(RootConnect), console, body, cancellationToken));
    }
    /// <summary>A call whose libvirt error virsh prints after a line of its own (vshError, then vshReportError).</summary>
    public static async Task Failing(string what, Task call)
    {
        try
        {
            await call.ConfigureAwait(false);
        }
        catch (LibvirtError e)
        {
            throw new VirshException([what, e.Message]);
        }
    }


    /// <summary>
    /// Adds the <c>domain</c> parameter to <paramref name="command"/> (after its options, as
    /// virsh lists it) and sets its action to <paramref name="body"/> on the domain it names.
    /// </summary>
    public static void SetOnDomain(Command command, CliConsole console, Func<VirshSession, RemoteDomain, Task<string>> body)
    {
        var domain = VirshParameter.Domain();
        domain.AddTo(command);
        Set(command, console, async s => await body(s, await s.DomainAsync(domain).ConfigureAwait(false)).ConfigureAwait(false));
    }

    private static async Task<int> RunAsync(ParseResult result, string? uri, CliConsole console, Func<VirshSession, Task<string>> body, CancellationToken cancellationToken)
    {
        string output;
        var exitCode = 0;
        try
        {
            var client = await VirshConnection.OpenAsync(uri, cancellationToken).ConfigureAwait(false);
            await using (client.ConfigureAwait(false))
            {
                var session = new VirshSession(result, client, console, cancellationToken);
                output = await body(session).ConfigureAwait(false);
                exitCode = session.ExitCode;
            }
        }
        catch (Exception e) when (e is VirshException or LibvirtError or RemoteProtocolException)
        {
            var (lines, printed) = e is VirshException v ? (v.Lines, v.Output) : ([e.Message], "");
            await console.Out.WriteAsync(printed).ConfigureAwait(false);
            foreach (var line in lines)
            {
                await console.Error.WriteLineAsync("error: " + line).ConfigureAwait(false);
            }

            output = "";
            exitCode = 1;
            if (e is VirshException { BeforeRun: true })
            {
                return exitCode;
            }
        }

        await console.Out.WriteAsync(output + "\n").ConfigureAwait(false);
        await console.Out.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        return exitCode;
    }
}
