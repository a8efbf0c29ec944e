using System.CommandLine;

namespace Tidemark.Cli.Commands.Virsh;

/// <summary>
/// A virsh data option, which virsh accepts both named (<c>--domain vm1</c>) and by position
/// (<c>vm1</c>): an option and an optional argument of one name, the option winning.
/// </summary>
internal sealed class VirshParameter
{
    public VirshParameter(string name, string description)
    {
        Name = name;
        Option = new Option<string?>("--" + name) { Description = description };
        Argument = new Argument<string?>(name) { Description = description, Arity = ArgumentArity.ZeroOrOne };
    }

    public string Name { get; }

    /// <summary>virsh's <c>[--domain] &lt;string&gt;</c>, which most verbs take first.</summary>
    public static VirshParameter Domain() => new("domain", "domain name, id or uuid");

    public Option<string?> Option { get; }

    public Argument<string?> Argument { get; }

    /// <summary>Adds the option and the positional argument to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        command.Options.Add(Option);
        command.Arguments.Add(Argument);
    }

    /// <summary>The value given, or null.</summary>
    public string? Find(ParseResult result) => result.GetValue(Option) ?? result.GetValue(Argument);

    /// <summary>The value given; virsh's complaint when it is missing.</summary>
    public string Get(ParseResult result) =>
        Find(result) ?? throw new VirshException([$"command '{result.CommandResult.Command.Name}' requires <{Name}> option"]) { BeforeRun = true };
}
