using System.CommandLine;

namespace Tidemark.Cli.Commands.Validate;

/// <summary><c>tidemark validate FILE...</c>: the options and help of the verb.</summary>
internal static class ValidateCommandDefinition
{
    public static readonly Argument<string[]> Files = new("FILE")
    {
        Description = "XML documents to check: <domaincheckpoint>, <domainbackup> or <domain>",
        Arity = ArgumentArity.OneOrMore,
    };

    public static Command Create(CliConsole console)
    {
        var command = new Command(
            "validate",
            "Check XML documents completely, like virt-xml-validate: the kind is told by the root element; "
            + "each file's report ends with 'FILE validates' or 'FILE fails to validate'. Exits 0 only if every file validates.");
        command.Arguments.Add(Files);
        command.SetAction((result, cancellationToken) => ValidateCommand.RunAsync(console, result.GetValue(Files)!, cancellationToken));
        return command;
    }
}
